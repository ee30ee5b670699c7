"""Checkpoint files in NVIDIA's exact WaveGlow formats, made without NVIDIA's code.

``glow_source`` is a tiny module tree written for the tests whose classes carry NVIDIA/waveglow's module and
class names (``glow.WaveGlow``, ``glow.WN``, ``glow.Invertible1x1Conv``) and hold their parameters the way
``glow.py`` of 2019-2020 does (``torch.nn.ConvTranspose1d`` upsampler, ``torch.nn.ModuleList``s of
``torch.nn.Conv1d``, the old ``torch.nn.utils.weight_norm`` hook: ``weight_g``/``weight_v`` parameters, a
``weight`` attribute and a ``WeightNorm`` forward pre-hook). It has no forward pass: the files only need
the objects. The module is written to a folder as ``glow.py`` and imported as ``glow``, so that torch's
legacy serializer records ``('module', glow.WaveGlow, '<dir>/glow.py', '<source>')`` exactly as it did on
NVIDIA's machines. Tensors saved on a GPU are imitated by renaming the storage records (``torch.cuda``
storage types, location ``cuda:0``), the only trace CUDA leaves in the file.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

GLOW_SOURCE = '''\
"""Test stand-in for NVIDIA/waveglow's glow.py: the same class names and parameters, no forward pass."""
import torch


class Invertible1x1Conv(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = torch.nn.Conv1d(c, c, kernel_size=1, stride=1, padding=0, bias=False)


class WN(torch.nn.Module):
    def __init__(self, n_in_channels, n_mel_channels, n_layers, n_channels, kernel_size, fused_cond=True):
        super().__init__()
        self.n_layers = n_layers
        self.n_channels = n_channels
        self.in_layers = torch.nn.ModuleList()
        self.res_skip_layers = torch.nn.ModuleList()
        wn = torch.nn.utils.weight_norm
        self.start = wn(torch.nn.Conv1d(n_in_channels, n_channels, 1), name="weight")
        self.end = torch.nn.Conv1d(n_channels, 2 * n_in_channels, 1)
        if fused_cond:
            self.cond_layer = wn(torch.nn.Conv1d(n_mel_channels, 2 * n_channels * n_layers, 1), name="weight")
        else:
            self.cond_layers = torch.nn.ModuleList(
                [wn(torch.nn.Conv1d(n_mel_channels, 2 * n_channels, 1), name="weight") for _ in range(n_layers)])
        for i in range(n_layers):
            dilation = 2 ** i
            padding = int((kernel_size * dilation - dilation) / 2)
            self.in_layers.append(wn(torch.nn.Conv1d(n_channels, 2 * n_channels, kernel_size, dilation=dilation,
                                                     padding=padding), name="weight"))
            out = 2 * n_channels if i < n_layers - 1 else n_channels
            self.res_skip_layers.append(wn(torch.nn.Conv1d(n_channels, out, 1), name="weight"))


class WaveGlow(torch.nn.Module):
    def __init__(self, n_mel_channels, n_flows, n_group, n_early_every, n_early_size, WN_config):
        super().__init__()
        self.upsample = torch.nn.ConvTranspose1d(n_mel_channels, n_mel_channels, 1024, stride=256)
        self.n_flows = n_flows
        self.n_group = n_group
        self.n_early_every = n_early_every
        self.n_early_size = n_early_size
        self.WN = torch.nn.ModuleList()
        self.convinv = torch.nn.ModuleList()
        n_half = int(n_group / 2)
        n_remaining_channels = n_group
        for k in range(n_flows):
            if k % self.n_early_every == 0 and k > 0:
                n_half = n_half - int(self.n_early_size / 2)
                n_remaining_channels = n_remaining_channels - self.n_early_size
            self.convinv.append(Invertible1x1Conv(n_remaining_channels))
            self.WN.append(WN(n_half, n_mel_channels * n_group, **WN_config))
        self.n_remaining_channels = n_remaining_channels
'''

SMALL_CONFIG: dict[str, Any] = {"n_mel_channels": 8, "n_flows": 6, "n_group": 8, "n_early_every": 2,
                                "n_early_size": 2, "WN_config": {"n_layers": 3, "n_channels": 16, "kernel_size": 3}}


@contextlib.contextmanager
def glow_module(folder: Path):
    """``glow`` (the stand-in above) importable from ``folder/glow.py`` while the block runs."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "glow.py"
    path.write_text(GLOW_SOURCE)
    spec = importlib.util.spec_from_file_location("glow", path)
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get("glow")
    sys.modules["glow"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        if previous is None:
            sys.modules.pop("glow", None)
        else:
            sys.modules["glow"] = previous


def nvidia_module(glow: Any, state: dict[str, torch.Tensor], config: dict[str, Any] = SMALL_CONFIG,
                  fused_cond: bool = True) -> torch.nn.Module:
    """A ``glow.WaveGlow`` holding ``state`` (NVIDIA's key names, weight_g/weight_v)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated: NVIDIA's files use it
        cfg = {**config, "WN_config": {**config["WN_config"], "fused_cond": fused_cond}}
        model = glow.WaveGlow(**cfg)
    model.load_state_dict(state)
    with torch.no_grad():  # the stale cached products NVIDIA's pickles carry: `weight` of each weight-normed conv
        for module in model.modules():
            if hasattr(module, "weight_g"):
                module.weight = torch._weight_norm(module.weight_v, module.weight_g, 0)
        model.convinv[0].W_inverse = model.convinv[0].conv.weight.squeeze().inverse()[..., None]
    return model.eval()


def reference_state(parity: Path) -> dict[str, torch.Tensor]:
    """The parity fixture's small WaveGlow weights (NVIDIA's state_dict names)."""
    return load_file(str(parity / "waveglow" / "small.safetensors"))


def save(obj: Any, path: Path, legacy: bool, on_gpu: bool = False) -> Path:
    """``torch.save`` in the legacy (pre-1.6) or the zip format; ``on_gpu`` rewrites the storage records as
    if the tensors had been on ``cuda:0``."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    data = buf.getvalue()
    if on_gpu:
        data = _legacy_on_gpu(data) if legacy else _zip_on_gpu(data)
    path.write_bytes(data)
    return path


def _gpu_records(pickle_bytes: bytes) -> bytes:
    """Protocol-2 opcodes: ``GLOBAL 'torch FloatStorage'`` -> ``'torch.cuda FloatStorage'`` and the
    ``BINUNICODE 'cpu'`` location -> ``'cuda:0'`` (both opcodes carry no offsets, so lengths may change)."""
    out = pickle_bytes
    for name in ("FloatStorage", "HalfStorage", "LongStorage", "ByteStorage", "IntStorage", "DoubleStorage"):
        out = out.replace(b"ctorch\n" + name.encode() + b"\n", b"ctorch.cuda\n" + name.encode() + b"\n")
    return out.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")


def _legacy_on_gpu(data: bytes) -> bytes:
    return _gpu_records(data)  # the raw storages follow the pickles; they are found by reading in order


def _zip_on_gpu(data: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            body = src.read(info)
            dst.writestr(info, _gpu_records(body) if info.filename.endswith("data.pkl") else body)
    return out.getvalue()


def nvidia_checkpoint(glow: Any, state: dict[str, torch.Tensor], **kw: Any) -> dict[str, Any]:
    """What NVIDIA's ``train.py`` saves: the whole module plus iteration, optimizer state and learning rate."""
    model = nvidia_module(glow, state, **kw)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    return {"model": model, "iteration": 580000, "optimizer": opt.state_dict(), "learning_rate": 1e-4}


def dle_checkpoint(state: dict[str, torch.Tensor], config: dict[str, Any] = SMALL_CONFIG) -> dict[str, Any]:
    """DeepLearningExamples' layout: ``module.``-prefixed per-layer ``cond_layers`` and the config."""
    n_layers, channels = config["WN_config"]["n_layers"], config["WN_config"]["n_channels"]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".cond_layer." in key:
            for i in range(n_layers):
                piece = value[i * 2 * channels:(i + 1) * 2 * channels].clone()
                out["module." + key.replace(".cond_layer.", f".cond_layers.{i}.")] = piece
        else:
            out["module." + key] = value.clone()
    return {"state_dict": out, "config": dict(config), "epoch": 1000,
            "random_rng_state": torch.random.get_rng_state(), "optimizer": {"state": {}, "param_groups": []}}


def write_synthetic(path: Path, n_channels: int, n_layers: int = 8, legacy: bool = True, seed: int = 0) -> Path:
    """A random WaveGlow of the published shape (12 flows, n_group 8, 80 mels) with ``n_channels``, saved
    whole as NVIDIA's train.py saves it: the size of the published file at 256 channels (about 676 MB:
    the weight-norm products NVIDIA's pickles carry double the weight-normed convs)."""
    torch.manual_seed(seed)
    config = {"n_mel_channels": 80, "n_flows": 12, "n_group": 8, "n_early_every": 4, "n_early_size": 2,
              "WN_config": {"n_layers": n_layers, "n_channels": n_channels, "kernel_size": 3}}
    with glow_module(path.parent / f".glow-{path.stem}") as glow, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = glow.WaveGlow(**config)
        state = model.state_dict()
        del model
        ckpt = nvidia_checkpoint(glow, state, config=config)
        del state
        ckpt["optimizer"] = {"state": {}, "param_groups": []}
        return save(ckpt, path, legacy=legacy)


PEAK_SCRIPT = """
import json, os, sys, threading, time
import zoo
from zoo.registry.plugins import get_registry
get_registry()  # plugins imported and cards read before the baseline
CKPT = os.path.realpath(sys.argv[1])
def usage():
    out, where = {'rss': 0, 'anon': 0, 'ckpt': 0}, ''
    with open('/proc/self/smaps') as f:
        for line in f:
            parts = line.split()
            if parts and not parts[0].endswith(':'):
                where = parts[5] if len(parts) > 5 else ''
            elif parts[0] == 'Rss:':
                out['rss'] += int(parts[1]) * 1024
                out['ckpt'] += int(parts[1]) * 1024 if where == CKPT else 0
            elif parts[0] == 'Anonymous:':
                out['anon'] += int(parts[1]) * 1024
    return out
base, stop = usage(), []
peak = dict(base)
def sample():
    while not stop:
        for key, value in usage().items():
            peak[key] = max(peak[key], value)
        time.sleep(0.005)
thread = threading.Thread(target=sample)
thread.start()
zoo.convert('waveglow', sys.argv[1], sys.argv[2])
stop.append(1)
thread.join()
print(json.dumps({key: peak[key] - base[key] for key in base}))
"""
"""Run in a fresh interpreter: the peak increase, while ``zoo convert`` reads a file, of the resident memory
(``rss``), of its anonymous part (``anon``) and of the pages of the checkpoint file mapped (``ckpt``), sampled
from /proc/self/smaps every 5 ms."""
