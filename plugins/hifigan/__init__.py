"""HiFi-GAN: the GAN vocoder (Kong et al. 2020), with the official jik876 weights."""

from __future__ import annotations

from zoo_model_cards import shipped_cards
from zoo_plugins.hifigan.convert import convert
from zoo_plugins.hifigan.model import HiFiGAN, HiFiGANConfig

from zoo import hookimpl
from zoo.registry.hookspecs import ArchitectureRegister, ConverterRegister, ModelCardRegister

__all__ = ["HiFiGAN", "HiFiGANConfig", "convert"]


@hookimpl
def zoo_register_architectures(register: ArchitectureRegister) -> None:
    register("hifigan", HiFiGAN)


@hookimpl
def zoo_register_converters(register: ConverterRegister) -> None:
    register("hifigan", convert, "official jik876/hifi-gan generator checkpoint ({'generator': state_dict})")


@hookimpl
def zoo_register_model_cards(register: ModelCardRegister) -> None:
    for path in shipped_cards("hifigan"):
        register(path)
