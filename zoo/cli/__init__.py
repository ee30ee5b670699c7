"""The ``zoo`` command line, one module per command group (``zoo.cli.app`` holds the parser and ``main``)."""
