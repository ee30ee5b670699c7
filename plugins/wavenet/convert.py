"""Converter from r9y9/wavenet_vocoder checkpoints (``{'state_dict', 'optimizer', 'global_step', ...}``).

Read with ``torch.load(weights_only=True)`` only. The layout is recognised from the keys: the 2092a64
layout of the published LJSpeech checkpoint has ``upsample_conv.*`` (ConvTranspose2d) and a bias on
``conv1x1c``; HEAD has ``upsample_net.*`` (ConvInUpsampleNetwork). Shapes give the widths, the output
distribution (one-hot 256-way input: mu-law; 30 outputs: 10 logistics; 2: Gaussian) and the layer count;
the dilation cycle (``stacks``) is not stored in a checkpoint and comes from ``config`` (default: the r9y9
presets, 4 stacks of 6 layers for 24 layers, 3 of 10 for 30). Weight norm is folded.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from zoo_plugins.wavenet.model import WaveNet, WaveNetConfig

from zoo.core.mel import MelConfig
from zoo.hub.converting import convert_checkpoint, read_checkpoint


def read_state(path: str | Path) -> dict[str, Tensor]:
    """The folded state dict of an r9y9 checkpoint (read safely, ``module.`` stripped)."""
    return read_checkpoint(path, layout="r9y9 wavenet_vocoder", markers=["first_conv.weight_v", "first_conv.weight"])


def _count(state: dict[str, Tensor], pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def infer_config(state: dict[str, Tensor], config: dict[str, Any] | None = None) -> WaveNetConfig:
    config = dict(config or {})
    layers = _count(state, r"conv_layers\.(\d+)\.")
    in_ch = state["first_conv.weight"].shape[1]
    out_ch = state["last_conv_layers.3.weight"].shape[0]
    if in_ch > 1:
        dist: dict[str, Any] = {"output_distribution": "mulaw", "mulaw_classes": out_ch}
    elif out_ch == 2:
        dist = {"output_distribution": "gaussian"}
    else:
        dist = {"output_distribution": "mol", "num_mixtures": out_ch // 3}
    w = state["conv_layers.0.conv.weight"]
    n_mels = state["conv_layers.0.conv1x1c.weight"].shape[1]
    legacy = "upsample_conv.0.weight" in state
    default_stacks = layers // 10 if layers % 10 == 0 else max(1, layers // 6)
    cfg: dict[str, Any] = dict(
        layers=layers, stacks=int(config.pop("stacks", default_stacks)), residual_channels=w.shape[1],
        gate_channels=w.shape[0], skip_channels=state["conv_layers.0.conv1x1_skip.weight"].shape[0],
        kernel_size=w.shape[-1], front_kernel_size=state["first_conv.weight"].shape[-1],
        cond_bias="conv_layers.0.conv1x1c.bias" in state, **dist,
    )
    if legacy:
        convs = sorted(int(m.group(1)) for k in state if (m := re.match(r"upsample_conv\.(\d+)\.weight$", k)))
        scales = tuple(int(state[f"upsample_conv.{i}.weight"].shape[-1]) for i in convs)
        cfg.update(skip_mode="legacy_iterative", upsample="transposed2d", upsample_scales=scales,
                   upsample_freq_kernel=int(state["upsample_conv.0.weight"].shape[2]), upsample_time_kernel=scales[0],
                   upsample_activation="relu", log_scale_min=math.log(1e-14))
    else:
        ups = sorted(int(m.group(1)) for k in state
                     if (m := re.match(r"upsample_net\.upsample\.up_layers\.(\d+)\.weight$", k)))
        scales = tuple((int(state[f"upsample_net.upsample.up_layers.{i}.weight"].shape[-1]) - 1) // 2 for i in ups)
        cfg.update(skip_mode="sum_sqrt_layers", upsample="stretch2d", upsample_scales=scales,
                   cin_pad=(state["upsample_net.conv_in.weight"].shape[-1] - 1) // 2)
    if "embed_speakers.weight" in state:
        emb = state["embed_speakers.weight"]
        cfg.update(n_speakers=emb.shape[0], gin_channels=emb.shape[1])
    mel = config.pop("mel", "r9y9")
    mel_cfg = MelConfig.preset(mel) if isinstance(mel, str) else MelConfig.from_dict(mel)
    hop = math.prod(cfg["upsample_scales"])
    if mel_cfg.n_mels != n_mels or mel_cfg.hop_length != hop:
        mel_cfg = mel_cfg.replace(n_mels=n_mels, hop_length=hop)
    cfg["mel"] = mel_cfg
    cfg.update(config)
    return WaveNetConfig(**cfg)


def map_keys(state: dict[str, Tensor], cfg: WaveNetConfig) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for p in ("weight", "bias"):
        out[f"front.{p}"] = state[f"first_conv.{p}"]
        out[f"head1.{p}"] = state[f"last_conv_layers.1.{p}"]
        out[f"head2.{p}"] = state[f"last_conv_layers.3.{p}"]
        for i in range(cfg.layers):
            src = f"conv_layers.{i}."
            out[f"stack.layers.{i}.dilated.{p}"] = state[src + f"conv.{p}"]
            out[f"stack.layers.{i}.res.{p}"] = state[src + f"conv1x1_out.{p}"]
            out[f"stack.layers.{i}.skip.{p}"] = state[src + f"conv1x1_skip.{p}"]
    out["stack.cond.weight"] = torch.cat([state[f"conv_layers.{i}.conv1x1c.weight"] for i in range(cfg.layers)])
    if cfg.cond_bias:
        out["stack.cond.bias"] = torch.cat([state[f"conv_layers.{i}.conv1x1c.bias"] for i in range(cfg.layers)])
    if cfg.gin_channels:
        out["stack.gcond.weight"] = torch.cat([state[f"conv_layers.{i}.conv1x1g.weight"] for i in range(cfg.layers)])
        out["embed_speakers.weight"] = state["embed_speakers.weight"]
    if cfg.upsample == "stretch2d":
        out["upsample.conv_in.weight"] = state["upsample_net.conv_in.weight"]
        ups = sorted(int(m.group(1)) for k in state
                     if (m := re.match(r"upsample_net\.upsample\.up_layers\.(\d+)\.weight$", k)))
        for j, i in enumerate(ups):
            out[f"upsample.up_layers.{j}.weight"] = state[f"upsample_net.upsample.up_layers.{i}.weight"]
    else:
        convs = sorted(int(m.group(1)) for k in state if (m := re.match(r"upsample_conv\.(\d+)\.weight$", k)))
        for j, i in enumerate(convs):
            for p in ("weight", "bias"):
                out[f"upsample.convs.{j}.{p}"] = state[f"upsample_conv.{i}.{p}"]
    return out


def convert(path: str | Path, config: dict[str, Any] | None = None) -> WaveNet:
    """A ready :class:`WaveNet` from an r9y9 checkpoint (``config`` may give ``stacks``, ``mel``, ...)."""
    return convert_checkpoint(path, config, read=read_state, infer_config=infer_config, model_class=WaveNet,
                              map_keys=map_keys)
