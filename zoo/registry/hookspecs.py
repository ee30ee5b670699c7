"""Hook specifications of the ``zoo`` plugin system, and the types of what each hook registers.

A plugin is any module (or object) registered under the entry-point group ``zoo``. It implements one or
more of the hooks below with the :data:`hookimpl` marker; each hook receives a ``register`` callback and
calls it once per thing it contributes. The core never imports a plugin by name; the built-in plugins
(``zoo_plugins.*``) use these same hooks, their model cards included.

The ``register`` callbacks are typed by the protocols below (:class:`ArchitectureRegister`,
:class:`ModelCardRegister`, :class:`ConverterRegister`, :class:`CommandRegister`), so an editor or a type
checker sees what each accepts. A misspelled hook name, a hook that registers nothing and a name that
breaks the naming rule are reported against the plugin (a warning, and ``zoo list -v``).

Example::

    from zoo import hookimpl
    from zoo.registry.hookspecs import ArchitectureRegister

    @hookimpl
    def zoo_register_architectures(register: ArchitectureRegister) -> None:
        register("myvocoder", MyVocoder)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from zoo.core.vocoder import Vocoder
    from zoo.registry.cards import ModelCard

PROJECT = "zoo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

NAME_RULE = "lowercase letters, digits and '_' (the part of a model name before the dot)"
"""What an architecture, converter or command name may contain, in words (see :data:`NAME_PATTERN`)."""
NAME_PATTERN = re.compile(r"^[a-z0-9_]+$")
"""Architecture, converter and command names: what a model card's ``architecture.tag`` allows before the dot."""


class ArchitectureRegister(Protocol):
    """``register(name, cls)``: ``cls`` (a :class:`~zoo.core.vocoder.Vocoder` subclass) is architecture ``name``.

    ``name`` follows :data:`NAME_RULE`. The registry sets ``cls.architecture = name``; a class that declares
    ``architecture`` itself must declare this name. A subclass of a registered class registered under a new
    name gets the new name (it does not inherit its parent's).
    """

    def __call__(self, name: str, cls: type[Vocoder]) -> None: ...


class ModelCardRegister(Protocol):
    """``register(card, origin=None)``: a model card as a path, its text (``origin`` names it in errors) or a
    parsed :class:`~zoo.registry.cards.ModelCard`."""

    def __call__(self, card: str | Path | ModelCard, origin: str | None = None) -> None: ...


class ConverterFn(Protocol):
    """``fn(path, config=None) -> Vocoder``: a legacy checkpoint at ``path`` as a ready zoo model. ``config``
    is a card's config (a dict, its ``mel`` as a dict) or ``None`` for the converter's default."""

    def __call__(self, path: str | os.PathLike[str], config: dict[str, Any] | None = None) -> Vocoder: ...


class ConverterRegister(Protocol):
    """``register(name, fn, description="")``: ``zoo convert --from name`` and card sources with
    ``format: name`` call ``fn``."""

    def __call__(self, name: str, fn: ConverterFn, description: str = "") -> None: ...


@dataclasses.dataclass(frozen=True)
class Command:
    """An extra ``zoo`` subcommand contributed by a plugin (``zoo distill`` is the parallel_wavenet plugin's).

    ``add_arguments(parser)`` adds the options to the subcommand's ``argparse`` parser; ``run(args)`` does the
    work and returns the exit status. Errors a user can fix are raised as ``zoo.cli.common.CliError`` or
    ``ValueError`` and printed as one line.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class CommandRegister(Protocol):
    """``register(command)``: a :class:`Command` becomes ``zoo <command.name>``."""

    def __call__(self, command: Command) -> None: ...


@hookspec
def zoo_register_architectures(register: ArchitectureRegister) -> None:
    """Register vocoder architectures: ``register(name, cls)``.

    ``cls`` is a subclass of :class:`zoo.core.vocoder.Vocoder` whose ``config_class`` describes its
    hyperparameters. ``name`` is the architecture name used in model names (``name.tag``): lowercase
    letters, digits and ``_``. The registry sets ``cls.architecture`` to it.
    """


@hookspec
def zoo_register_model_cards(register: ModelCardRegister) -> None:
    """Register pretrained-model cards: ``register(path_or_text, origin=None)``.

    A card is a Hugging Face style model card (YAML front matter, then prose); see ``zoo.registry.cards``.
    """


@hookspec
def zoo_register_converters(register: ConverterRegister) -> None:
    """Register converters from original checkpoints: ``register(name, fn, description="")``.

    ``fn(path, config=None) -> Vocoder`` reads a legacy checkpoint (never with an unrestricted pickle) and
    returns a ready zoo model; ``zoo convert --from name`` calls it.
    """


@hookspec
def zoo_register_commands(register: CommandRegister) -> None:
    """Register extra ``zoo`` subcommands: ``register(Command(name, help, add_arguments, run))``.

    A command's name may not be one of the zoo's own (``list``, ``vocode`` ...) nor another plugin's.
    """
