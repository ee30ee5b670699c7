"""The built-in vocoder plugins (package ``zoo_plugins``), each registered through the ``zoo`` entry points."""
