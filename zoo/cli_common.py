"""What every ``zoo`` command module shares: the one-line error type and the subcommand registration.

A command module decorates each function that adds its subparser with :func:`subcommand`; ``zoo.cli``
imports the command modules explicitly and adds their subparsers, module by module, in a fixed order.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

AddParser = Callable[[argparse._SubParsersAction], None]

_ADDERS: dict[str, list[AddParser]] = {}


class CliError(Exception):
    """An error reported as one line, without a traceback."""


def subcommand(fn: AddParser) -> AddParser:
    """Register a function that adds a subparser, under the module that defines it."""
    _ADDERS.setdefault(fn.__module__, []).append(fn)
    return fn


def registered(module: str) -> list[AddParser]:
    """The subparser adders the module named ``module`` registered, in definition order."""
    return list(_ADDERS.get(module, []))
