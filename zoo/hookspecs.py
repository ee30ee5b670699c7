"""Hook specifications of the ``zoo`` plugin system.

A plugin is any module (or object) registered under the entry-point group ``zoo``. It implements one or
more of the hooks below with the :data:`hookimpl` marker; each hook receives a ``register`` callback and
calls it once per thing it contributes. The core never imports a plugin by name.

Example::

    from zoo import hookimpl

    @hookimpl
    def zoo_register_architectures(register):
        register("myvocoder", MyVocoder)
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT = "zoo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zoo_register_architectures(register: Callable[..., None]) -> None:
    """Register vocoder architectures: ``register(name, cls)``.

    ``cls`` is a subclass of :class:`zoo.vocoder.Vocoder` whose ``config_class`` describes its
    hyperparameters. ``name`` is the architecture name used in model names (``name.tag``).
    """


@hookspec
def zoo_register_model_cards(register: Callable[..., None]) -> None:
    """Register pretrained-model cards: ``register(path_or_text, origin=None)``.

    A card is a Hugging Face style model card (YAML front matter, then prose); see ``zoo.cards``.
    """


@hookspec
def zoo_register_converters(register: Callable[..., None]) -> None:
    """Register converters from original checkpoints: ``register(name, fn, description="")``.

    ``fn(path, config=None) -> Vocoder`` reads a legacy checkpoint (never with an unrestricted pickle) and
    returns a ready zoo model; ``zoo convert --from name`` calls it.
    """


