"""vocoder-zoo: neural vocoders behind one plugin registry.

>>> import zoo
>>> voc = zoo.load("hifigan")                      # doctest: +SKIP
>>> audio = voc(voc.mel(waveform))                 # doctest: +SKIP
"""

from zoo import versions  # noqa: F401  (first: checks the torch/torchaudio pair before torchaudio loads)
from zoo.api import (
    MelMismatchError,
    RegistryError,
    card,
    check_mel_compatible,
    convert,
    create,
    info,
    list_architectures,
    list_models,
    load,
)
from zoo.audio.adapt import adapt, check_mel
from zoo.core.config import VocoderConfig
from zoo.core.mel import MelConfig
from zoo.core.vocoder import Vocoder
from zoo.registry.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "adapt",
    "check_mel",
    "MelConfig",
    "MelMismatchError",
    "RegistryError",
    "Vocoder",
    "VocoderConfig",
    "card",
    "check_mel_compatible",
    "convert",
    "create",
    "hookimpl",
    "info",
    "list_architectures",
    "list_models",
    "load",
]
