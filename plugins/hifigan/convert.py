"""Converter from the official jik876/hifi-gan generator checkpoint (``{'generator': state_dict}``).

The file is read with ``torch.load(weights_only=True)`` only: a checkpoint that needs anything beyond
tensors and plain containers is refused. Weight norm (``weight_g``/``weight_v``) is folded, every key and
shape is checked against the model built from the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from zoo_plugins.hifigan.model import HiFiGAN, HiFiGANConfig

from zoo.hub.safe_pickle import load_state_dict
from zoo.hub.weightnorm import fold_state_dict


def load_legacy(path: str | Path) -> dict[str, torch.Tensor]:
    """The generator state dict of an official checkpoint, read without unpickling any code."""
    return load_state_dict(path, key="generator")


def convert(path: str | Path, config: dict[str, Any] | None = None) -> HiFiGAN:
    """A ready :class:`HiFiGAN` from an official generator checkpoint (``config`` defaults to V1)."""
    cfg = HiFiGANConfig.from_dict(config) if config else HiFiGANConfig.v1()
    model = HiFiGAN(cfg)
    state = fold_state_dict(load_legacy(path))
    model.load_state_dict_checked(state, source=str(path))
    return model.prepare_for_inference()
