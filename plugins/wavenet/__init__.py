"""WaveNet vocoder: mel-conditioned autoregressive WaveNet with fast incremental sampling."""

from __future__ import annotations

from zoo_model_cards import shipped_cards
from zoo_plugins.wavenet import kernel  # noqa: F401 - registers the compiled loop with zoo.kernels.native
from zoo_plugins.wavenet.model import WaveNet, WaveNetConfig

from zoo import hookimpl
from zoo.registry.hookspecs import ArchitectureRegister, ConverterRegister, ModelCardRegister

__all__ = ["WaveNet", "WaveNetConfig"]


@hookimpl
def zoo_register_architectures(register: ArchitectureRegister) -> None:
    register("wavenet", WaveNet)


@hookimpl
def zoo_register_converters(register: ConverterRegister) -> None:
    from zoo_plugins.wavenet.convert import convert

    register("wavenet", convert, "r9y9/wavenet_vocoder checkpoints (HEAD recipes and the 2092a64 LJSpeech layout)")


@hookimpl
def zoo_register_model_cards(register: ModelCardRegister) -> None:
    for path in shipped_cards("wavenet"):
        register(path)
