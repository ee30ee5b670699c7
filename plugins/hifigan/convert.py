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

from zoo.weightnorm import fold_state_dict, strip_prefix


def load_legacy(path: str | Path) -> dict[str, torch.Tensor]:
    """The generator state dict of an official checkpoint, read without unpickling any code."""
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - anything that is not plain tensors is refused
        raise ValueError(f"{path}: not a loadable weights-only checkpoint ({type(exc).__name__}: {exc}); "
                         "refusing to unpickle arbitrary objects") from None
    state = ckpt.get("generator", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected {{'generator': state_dict}} of tensors (jik876 layout)")
    return strip_prefix(state)


def convert(path: str | Path, config: dict[str, Any] | None = None) -> HiFiGAN:
    """A ready :class:`HiFiGAN` from an official generator checkpoint (``config`` defaults to V1)."""
    cfg = HiFiGANConfig.from_dict(config) if config else HiFiGANConfig.v1()
    model = HiFiGAN(cfg)
    state = fold_state_dict(load_legacy(path))
    model.load_state_dict_checked(state, source=str(path))
    return model.prepare_for_inference()
