"""zoo-noise: a complete third-party vocoder-zoo plugin (architecture, model card, weights)."""

from __future__ import annotations

from pathlib import Path

from zoo import hookimpl
from zoo.registry.hookspecs import ArchitectureRegister, ModelCardRegister
from zoo_noise.model import NoiseConfig, NoiseVocoder

__all__ = ["NoiseConfig", "NoiseVocoder"]


@hookimpl
def zoo_register_architectures(register: ArchitectureRegister) -> None:
    register("noise", NoiseVocoder)


@hookimpl
def zoo_register_model_cards(register: ModelCardRegister) -> None:
    register(Path(__file__).with_name("noise.demo.md"))
