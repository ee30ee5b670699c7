"""FloWaveNet: the single-stage multi-scale flow vocoder, on the shared flow layers."""

from __future__ import annotations

from zoo_model_cards import shipped_cards
from zoo_plugins.flowavenet.model import FloWaveNet, FloWaveNetConfig

from zoo import hookimpl
from zoo.registry.hookspecs import ArchitectureRegister, ConverterRegister, ModelCardRegister

__all__ = ["FloWaveNet", "FloWaveNetConfig"]


@hookimpl
def zoo_register_architectures(register: ArchitectureRegister) -> None:
    register("flowavenet", FloWaveNet)


@hookimpl
def zoo_register_converters(register: ConverterRegister) -> None:
    from zoo_plugins.flowavenet.convert import convert

    register("flowavenet", convert, "ksw0306/FloWaveNet checkpoints (state_dict, optional 'module.' prefix)")


@hookimpl
def zoo_register_model_cards(register: ModelCardRegister) -> None:
    for path in shipped_cards("flowavenet"):
        register(path)
