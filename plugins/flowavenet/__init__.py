"""FloWaveNet: the single-stage multi-scale flow vocoder, on the shared flow layers."""

from __future__ import annotations

from collections.abc import Callable

from zoo_plugins.flowavenet.model import FloWaveNet, FloWaveNetConfig

from zoo import hookimpl

__all__ = ["FloWaveNet", "FloWaveNetConfig"]


@hookimpl
def zoo_register_architectures(register: Callable[..., None]) -> None:
    register("flowavenet", FloWaveNet)


@hookimpl
def zoo_register_converters(register: Callable[..., None]) -> None:
    from zoo_plugins.flowavenet.convert import convert

    register("flowavenet", convert, "ksw0306/FloWaveNet checkpoints (state_dict, optional 'module.' prefix)")
