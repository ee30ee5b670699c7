"""WaveGlow: NVIDIA's flow vocoder, loading NVIDIA's and DeepLearningExamples' checkpoints."""

from __future__ import annotations

from zoo_model_cards import shipped_cards
from zoo_plugins.waveglow.convert import convert
from zoo_plugins.waveglow.model import WaveGlow, WaveGlowConfig

from zoo import hookimpl
from zoo.registry.hookspecs import ArchitectureRegister, ConverterRegister, ModelCardRegister

__all__ = ["WaveGlow", "WaveGlowConfig", "convert"]


@hookimpl
def zoo_register_architectures(register: ArchitectureRegister) -> None:
    register("waveglow", WaveGlow)


@hookimpl
def zoo_register_converters(register: ConverterRegister) -> None:
    register("waveglow", convert, "NVIDIA/waveglow .pt (pickled module, read safely) or DLE torch.hub state_dict")


@hookimpl
def zoo_register_model_cards(register: ModelCardRegister) -> None:
    for path in shipped_cards("waveglow"):
        register(path)
