"""Griffin-Lim: phase reconstruction from the mel, no weights, always available."""

from __future__ import annotations

from collections.abc import Callable

from zoo_plugins.griffinlim.model import GriffinLim, GriffinLimConfig

from zoo import hookimpl

__all__ = ["GriffinLim", "GriffinLimConfig"]


@hookimpl
def zoo_register_architectures(register: Callable[..., None]) -> None:
    register("griffinlim", GriffinLim)

