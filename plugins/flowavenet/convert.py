"""Converter from ksw0306/FloWaveNet checkpoints (``{'state_dict', 'optimizer', 'scheduler', ...}``).

Read with ``torch.load(weights_only=True)``; a DataParallel ``module.`` prefix is stripped, weight norm
folded, separate filter/gate convs concatenated into the shared stack's layout, per-layer conditioning
convs fused, and ActNorm marked as initialised (the reference keeps that flag out of its state dict).
``n_block``, ``n_flow``, ``n_layer``, ``filter_size`` and ``block_per_split`` are read from the shapes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from zoo_plugins.flowavenet.model import FloWaveNet, FloWaveNetConfig

from zoo.core.mel import MelConfig
from zoo.hub.converting import convert_checkpoint, read_checkpoint


def read_state(path: str | Path) -> dict[str, Tensor]:
    """The folded state dict of a ksw0306 checkpoint (read safely, ``module.`` stripped)."""
    return read_checkpoint(path, layout="ksw0306/FloWaveNet", markers=["blocks.0.flows.0.actnorm.loc"])


def _ids(state: dict[str, Tensor], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})


def infer_config(state: dict[str, Tensor], config: dict[str, Any] | None = None) -> FloWaveNetConfig:
    config = dict(config or {})
    n_block = len(_ids(state, r"blocks\.(\d+)\."))
    n_flow = len(_ids(state, r"blocks\.0\.flows\.(\d+)\."))
    n_layer = len(_ids(state, r"blocks\.0\.flows\.0\.coupling\.net\.res_blocks\.(\d+)\."))
    splits = [i for i in range(n_block) if f"blocks.{i}.prior.front_conv.0.conv.weight" in state]
    filter_size = state["blocks.0.flows.0.coupling.net.front_conv.0.conv.weight"].shape[0]
    n_mels = state["blocks.0.flows.0.coupling.net.res_blocks.0.filter_conv_c.weight"].shape[1]
    prior_layers = (len(_ids(state, rf"blocks\.{splits[0]}\.prior\.res_blocks\.(\d+)\.")) if splits else 2)
    convs = _ids(state, r"upsample_conv\.(\d+)\.weight$")
    scales = tuple(int(state[f"upsample_conv.{i}.weight"].shape[-1]) // 2 for i in convs)
    mel = config.pop("mel", "flowavenet")
    mel_cfg = MelConfig.preset(mel) if isinstance(mel, str) else MelConfig.from_dict(mel)
    if mel_cfg.n_mels != n_mels:
        mel_cfg = mel_cfg.replace(n_mels=n_mels)
    cfg: dict[str, Any] = dict(mel=mel_cfg, n_block=n_block, n_flow=n_flow, n_layer=n_layer,
                               block_per_split=splits[0] + 1 if splits else n_block, filter_size=filter_size,
                               prior_layers=prior_layers, upsample_scales=scales)
    cfg.update(config)
    return FloWaveNetConfig(**cfg)


def _net(state: dict[str, Tensor], src: str, dst: str, layers: int, out: dict[str, Tensor]) -> None:
    for p in ("weight", "bias"):
        out[f"{dst}front.0.{p}"] = state[f"{src}front_conv.0.conv.{p}"]
        out[f"{dst}head.1.{p}"] = state[f"{src}final_conv.1.conv.{p}"]
        out[f"{dst}head.3.conv.{p}"] = state[f"{src}final_conv.3.conv.{p}"]
        for i in range(layers):
            b = f"{src}res_blocks.{i}."
            out[f"{dst}stack.layers.{i}.dilated.{p}"] = torch.cat([state[b + f"filter_conv.conv.{p}"],
                                                                    state[b + f"gate_conv.conv.{p}"]])
            out[f"{dst}stack.layers.{i}.res.{p}"] = state[b + f"res_conv.{p}"]
            out[f"{dst}stack.layers.{i}.skip.{p}"] = state[b + f"skip_conv.{p}"]
        out[f"{dst}stack.cond.{p}"] = torch.cat([
            state[f"{src}res_blocks.{i}.{part}.{p}"] for i in range(layers) for part in ("filter_conv_c", "gate_conv_c")
        ])
    out[f"{dst}head.3.scale"] = state[f"{src}final_conv.3.scale"]


def map_keys(state: dict[str, Tensor], cfg: FloWaveNetConfig) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for j, i in enumerate(_ids(state, r"upsample_conv\.(\d+)\.weight$")):
        for p in ("weight", "bias"):
            out[f"upsample.convs.{j}.{p}"] = state[f"upsample_conv.{i}.{p}"]
    for b in range(cfg.n_block):
        for f in range(cfg.n_flow):
            src = f"blocks.{b}.flows.{f}."
            out[src + "actnorm.loc"] = state[src + "actnorm.loc"]
            out[src + "actnorm.scale"] = state[src + "actnorm.scale"]
            out[src + "actnorm.initialized"] = torch.tensor(1, dtype=torch.uint8)
            _net(state, src + "coupling.net.", src + "coupling.net.", cfg.n_layer, out)
        if cfg.is_split(b):
            _net(state, f"blocks.{b}.prior.", f"blocks.{b}.prior.", cfg.prior_layers, out)
    return out


def convert(path: str | Path, config: dict[str, Any] | None = None) -> FloWaveNet:
    """A ready :class:`FloWaveNet` from a ksw0306 checkpoint; ``config`` may set ``mel``."""
    return convert_checkpoint(path, config, read=read_state, infer_config=infer_config, model_class=FloWaveNet,
                              map_keys=map_keys)
