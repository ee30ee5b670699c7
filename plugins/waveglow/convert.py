"""Converter from NVIDIA's WaveGlow checkpoints to zoo models.

Two formats, detected automatically:

* NVIDIA/waveglow ``train.py``: ``{'model': <glow.WaveGlow module object>, ...}``. Read with
  :mod:`zoo.hub.safe_pickle` (the module becomes an inert record; NVIDIA's code is never imported and nothing
  in the pickle is executed), then its parameters are collected.
* DeepLearningExamples / torch.hub: ``{'state_dict': {...'module.'-prefixed...}, 'config': {...}}``, read
  the same way (its optimizer state is never materialised); the embedded ``config`` must agree with the
  tensors and with the model card's config.

Both torch serialization formats are read (the zip archive and the legacy pre-1.6 stream that NVIDIA's
2019-2020 files use, with their ``('module', class, file, source)`` records).

Older layouts are accepted too: per-layer ``cond_layers.i`` (DLE, NVIDIA before 2019-08) are concatenated
into the fused conditioning conv, and separate ``res_layers``/``skip_layers`` (before 2018-11) are mapped
directly. Weight norm is folded. Every key and shape is checked against the model built from the config.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from zoo_plugins.waveglow.model import WaveGlow, WaveGlowConfig

from zoo.core.mel import MelConfig
from zoo.hub.converting import map_checkpoint
from zoo.hub.safe_pickle import ModuleStub, load_checkpoint, module_attributes, state_dict_of, weights_only_load
from zoo.hub.weightnorm import fold_state_dict, strip_prefix

#: The modules of NVIDIA's code whose classes its checkpoints pickle (``glow.WaveGlow``, ``glow.Invertible1x1Conv``
#: ..., the older ``glow_old`` and DeepLearningExamples' ``waveglow.model``, and ``denoiser.Denoiser``): the
#: restricted unpickler keeps them as inert records.
NVIDIA_MODULES = ("glow.", "glow_old.", "waveglow.model.", "denoiser.")

def read_reference_state(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(reference state dict with weight norm folded, hints)`` from either checkpoint format.

    The file is read with the restricted unpickler (both torch serialization formats, tensors as views on a
    memory map, so only the pages of the weights used are ever read); a file it cannot read is tried with
    ``torch.load(weights_only=True)`` and, failing both, refused with the restricted reader's message.
    Floating-point weights are taken as float32 (DeepLearningExamples' AMP checkpoints may hold float16).
    """
    path = Path(path)
    hints: dict[str, Any] = {}
    try:
        ckpt = load_checkpoint(path, NVIDIA_MODULES)
    except ValueError as exc:
        try:
            ckpt = weights_only_load(path)
        except ValueError:
            raise exc from None
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), ModuleStub):
        module = ckpt["model"]
        state = state_dict_of(module)
        hints.update(module_attributes(module))
        hints.update(_wn_attributes(module))
    elif isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        state = strip_prefix(strip_prefix(ckpt["state_dict"], "module.1."), "module.")
        cfg = ckpt.get("config")
        if isinstance(cfg, dict):
            hints.update(cfg)
            hints.update(cfg.get("WN_config", {}) or {})
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):
        state = strip_prefix(ckpt)
    else:
        raise ValueError(f"{path}: not a WaveGlow checkpoint ({{'model': WaveGlow}} or {{'state_dict': ...}})")
    if not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: the state dict holds values that are not tensors")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    folded = fold_state_dict(state)
    # Weights that were not weight-normed are still views on the file's memory map: copy them, so the
    # mapping (and the pages it read) is released with the checkpoint before the model is built.
    return {k: (v if f"{k}_g" in state else v.clone()) for k, v in folded.items()}, hints


def _wn_attributes(module: ModuleStub) -> dict[str, Any]:
    """``n_layers`` / ``n_channels`` recorded on the first ``glow.WN`` of a pickled NVIDIA module."""
    try:
        first = module.__dict__["state"]["_modules"]["WN"].__dict__["state"]["_modules"]["0"]
        return {k: v for k, v in module_attributes(first).items() if k in ("n_layers", "n_channels")}
    except (KeyError, TypeError, AttributeError):
        return {}


CHECKED_FIELDS = ("n_flows", "n_group", "n_early_every", "n_early_size", "n_layers", "n_channels", "kernel_size",
                  "upsample_kernel")


def check_config(cfg: WaveGlowConfig, hints: dict[str, Any], base: dict[str, Any] | None, source: str) -> None:
    """Refuse a checkpoint whose tensors, embedded config (DLE ``config``, NVIDIA's module attributes) and
    the card's config (``base``) do not all describe the same WaveGlow; the message lists every field."""
    problems = []
    mine = {f: getattr(cfg, f) for f in CHECKED_FIELDS} | {"n_mel_channels": cfg.mel.n_mels}
    for field, value in mine.items():
        if field in hints and isinstance(hints[field], (int, float)) and int(hints[field]) != value:
            problems.append(f"{field}: the checkpoint's own config says {hints[field]}, its tensors {value}")
    if base:
        card = {f: base[f] for f in CHECKED_FIELDS if f in base}
        if isinstance(base.get("mel"), dict) and "n_mels" in base["mel"]:
            card["n_mel_channels"] = base["mel"]["n_mels"]
        for field, value in card.items():
            if value != mine[field]:
                problems.append(f"{field}: the card says {value}, the checkpoint has {mine[field]}")
    if problems:
        raise ValueError(f"{source}: the checkpoint does not match the model card: " + "; ".join(problems))


def infer_config(state: dict[str, Tensor], hints: dict[str, Any], base: dict[str, Any] | None = None) -> WaveGlowConfig:
    """A :class:`WaveGlowConfig` from the tensor shapes (and the checkpoint's own hints)."""
    n_flows = len({k.split(".")[1] for k in state if k.startswith("convinv.")})
    sizes = [state[f"convinv.{k}.conv.weight"].shape[0] for k in range(n_flows)]
    drops = [k for k in range(1, n_flows) if sizes[k] < sizes[k - 1]]
    n_early_every = int(hints.get("n_early_every", drops[0] if drops else n_flows))
    n_early_size = int(hints.get("n_early_size", sizes[drops[0] - 1] - sizes[drops[0]] if drops else 2))
    n_layers = len({k.split(".")[3] for k in state if k.startswith("WN.0.in_layers.")})
    up = state["upsample.weight"]
    n_mel = up.shape[0]
    mel = MelConfig.preset("tacotron2")
    if base and "mel" in base:
        mel = MelConfig.from_dict(base["mel"]) if isinstance(base["mel"], dict) else MelConfig.preset(base["mel"])
    if mel.n_mels != n_mel and not (base and "mel" in base):
        mel = mel.replace(n_mels=n_mel)
    cfg = dict(n_flows=n_flows, n_group=sizes[0], n_early_every=n_early_every, n_early_size=n_early_size,
               n_layers=n_layers, n_channels=state["WN.0.start.weight"].shape[0],
               kernel_size=state["WN.0.in_layers.0.weight"].shape[-1], upsample_kernel=up.shape[-1], mel=mel)
    if base:
        cfg.update({k: v for k, v in base.items() if k in ("sigma", "infer_sigma", "chunk_frames")})
    return WaveGlowConfig(**cfg)  # type: ignore[arg-type]


def map_keys(state: dict[str, Tensor], config: WaveGlowConfig) -> dict[str, Tensor]:
    """Reference (folded) key names -> zoo WaveGlow parameter names."""
    out: dict[str, Tensor] = {"upsample.conv.weight": state["upsample.weight"],
                              "upsample.conv.bias": state["upsample.bias"]}
    c, n = config.n_channels, config.n_layers
    for k in range(config.n_flows):
        out[f"convinv.{k}.conv.weight"] = state[f"convinv.{k}.conv.weight"]
        src, dst = f"WN.{k}.", f"WN.{k}."
        for p in ("weight", "bias"):
            out[f"{dst}front.{p}"] = state[f"{src}start.{p}"]
            out[f"{dst}head.{p}"] = state[f"{src}end.{p}"]
            if f"{src}cond_layer.{p}" in state:
                out[f"{dst}stack.cond.{p}"] = state[f"{src}cond_layer.{p}"]
            else:
                out[f"{dst}stack.cond.{p}"] = torch.cat([state[f"{src}cond_layers.{i}.{p}"] for i in range(n)])
            for i in range(n):
                out[f"{dst}stack.layers.{i}.dilated.{p}"] = state[f"{src}in_layers.{i}.{p}"]
                if f"{src}res_skip_layers.{i}.{p}" in state:
                    w = state[f"{src}res_skip_layers.{i}.{p}"]
                    if i < n - 1:
                        out[f"{dst}stack.layers.{i}.res.{p}"] = w[:c]
                        out[f"{dst}stack.layers.{i}.skip.{p}"] = w[c:]
                    else:
                        out[f"{dst}stack.layers.{i}.skip.{p}"] = w
                else:
                    if i < n - 1:
                        out[f"{dst}stack.layers.{i}.res.{p}"] = state[f"{src}res_layers.{i}.{p}"]
                    out[f"{dst}stack.layers.{i}.skip.{p}"] = state[f"{src}skip_layers.{i}.{p}"]
    return out


def reference_keys_ok(state: dict[str, Tensor]) -> None:
    """Refuse state dicts that are not WaveGlow's (clear message instead of a KeyError deep inside)."""
    needed = ("upsample.weight", "convinv.0.conv.weight", "WN.0.start.weight", "WN.0.in_layers.0.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        sample = sorted(state)[:5]
        raise ValueError(f"not a WaveGlow state dict: missing {missing} (keys start with {sample})")
    if not any(re.match(r"WN\.0\.(cond_layer|cond_layers\.0)\.weight$", k) for k in state):
        raise ValueError("not a WaveGlow state dict: no conditioning layer (cond_layer / cond_layers)")


def convert(path: str | Path, config: dict[str, Any] | None = None) -> WaveGlow:
    """A ready :class:`WaveGlow` from an NVIDIA or DeepLearningExamples checkpoint."""
    state, hints = read_reference_state(path)
    reference_keys_ok(state)
    cfg = infer_config(state, hints, config)
    check_config(cfg, hints, config, str(path))
    model = WaveGlow(cfg)
    model.load_state_dict_checked(map_checkpoint(state, lambda s: map_keys(s, cfg), str(path)), source=str(path))
    return model.prepare_for_inference()
