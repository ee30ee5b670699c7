"""zoo-noise: a complete third-party vocoder-zoo plugin (architecture, model card, weights)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from zoo import hookimpl
from zoo_noise.model import NoiseConfig, NoiseVocoder

__all__ = ["NoiseConfig", "NoiseVocoder"]


@hookimpl
def zoo_register_architectures(register: Callable[..., None]) -> None:
    register("noise", NoiseVocoder)


@hookimpl
def zoo_register_model_cards(register: Callable[..., None]) -> None:
    register(Path(__file__).with_name("noise.demo.md"))
