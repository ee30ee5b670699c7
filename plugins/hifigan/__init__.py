"""HiFi-GAN: the GAN vocoder (Kong et al. 2020), with the official jik876 weights."""

from __future__ import annotations

from collections.abc import Callable

from zoo_plugins.hifigan.convert import convert
from zoo_plugins.hifigan.model import HiFiGAN, HiFiGANConfig

from zoo import hookimpl

__all__ = ["HiFiGAN", "HiFiGANConfig", "convert"]


@hookimpl
def zoo_register_architectures(register: Callable[..., None]) -> None:
    register("hifigan", HiFiGAN)


@hookimpl
def zoo_register_converters(register: Callable[..., None]) -> None:
    register("hifigan", convert, "official jik876/hifi-gan generator checkpoint ({'generator': state_dict})")
