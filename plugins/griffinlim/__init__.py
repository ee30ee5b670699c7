"""Griffin-Lim: phase reconstruction from the mel, no weights, always available."""

from __future__ import annotations

from zoo_model_cards import shipped_cards
from zoo_plugins.griffinlim.model import GriffinLim, GriffinLimConfig

from zoo import hookimpl
from zoo.registry.hookspecs import ArchitectureRegister, ModelCardRegister

__all__ = ["GriffinLim", "GriffinLimConfig"]


@hookimpl
def zoo_register_architectures(register: ArchitectureRegister) -> None:
    register("griffinlim", GriffinLim)


@hookimpl
def zoo_register_model_cards(register: ModelCardRegister) -> None:
    for path in shipped_cards("griffinlim"):
        register(path)
