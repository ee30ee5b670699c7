"""WaveNet vocoder: mel-conditioned autoregressive WaveNet with fast incremental sampling."""

from __future__ import annotations

from collections.abc import Callable

from zoo_plugins.wavenet import kernel  # noqa: F401 - registers the compiled loop with zoo.native
from zoo_plugins.wavenet.model import WaveNet, WaveNetConfig

from zoo import hookimpl

__all__ = ["WaveNet", "WaveNetConfig"]


@hookimpl
def zoo_register_architectures(register: Callable[..., None]) -> None:
    register("wavenet", WaveNet)


@hookimpl
def zoo_register_converters(register: Callable[..., None]) -> None:
    from zoo_plugins.wavenet.convert import convert

    register("wavenet", convert, "r9y9/wavenet_vocoder checkpoints (HEAD recipes and the 2092a64 LJSpeech layout)")
