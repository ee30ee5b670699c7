"""WaveGlow: NVIDIA's flow vocoder, loading NVIDIA's and DeepLearningExamples' checkpoints."""

from __future__ import annotations

from collections.abc import Callable

from zoo_plugins.waveglow.convert import convert
from zoo_plugins.waveglow.model import WaveGlow, WaveGlowConfig

from zoo import hookimpl

__all__ = ["WaveGlow", "WaveGlowConfig", "convert"]


@hookimpl
def zoo_register_architectures(register: Callable[..., None]) -> None:
    register("waveglow", WaveGlow)


@hookimpl
def zoo_register_converters(register: Callable[..., None]) -> None:
    register("waveglow", convert, "NVIDIA/waveglow .pt (pickled module, read safely) or DLE torch.hub state_dict")
