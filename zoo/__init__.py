"""vocoder-zoo: neural vocoders behind one plugin registry.

>>> import zoo
>>> voc = zoo.load("hifigan")                      # doctest: +SKIP
>>> audio = voc(voc.mel(waveform))                 # doctest: +SKIP
"""

from zoo import versions  # noqa: F401  (first: checks the torch/torchaudio pair before torchaudio loads)
from zoo.adapt import adapt, check_mel
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
from zoo.config import VocoderConfig
from zoo.hookspecs import hookimpl
from zoo.mel import MelConfig
from zoo.vocoder import Vocoder

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
