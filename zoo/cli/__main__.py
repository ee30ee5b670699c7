"""``python -m zoo.cli``: the ``zoo`` command."""

import sys

from zoo.cli.app import main

sys.exit(main())
