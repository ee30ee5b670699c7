"""Builders for the reference implementations, for ``compare_reference.py`` (harness code, not the library).

The reference repositories are cloned under a folder of your choice (never committed), at the commits
named in ``../shared/parity/*/reference.json``::

    DIR/waveglow                  NVIDIA/waveglow          8afb643
    DIR/wavenet_vocoder           r9y9/wavenet_vocoder     a35fff7 (HEAD)
    DIR/wavenet_vocoder_2092a64   r9y9/wavenet_vocoder     2092a64 (the published LJSpeech checkpoint's code)
    DIR/FloWaveNet                ksw0306/FloWaveNet       44061ca
    DIR/ClariNet                  ksw0306/ClariNet         df31b4c

Nothing in those folders is edited. What the harness changes at runtime, and only in this process:

* NVIDIA's ``WaveGlow.infer`` allocates its noise with ``torch.cuda.FloatTensor``: the name is looked up
  on ``torch.cuda`` at call time, so :func:`cpu_float_tensor` swaps in ``torch.FloatTensor`` around the
  call (no numerical change).
* r9y9 HEAD imports ``wavenet_vocoder.version``, which its ``setup.py`` generates at install time: a stub
  module holding ``version`` is put in ``sys.modules``.
* Several repositories use the same top-level module names (``modules``, ``model``, ``wavenet``): each
  is imported with its folder first on ``sys.path`` and those names are removed from ``sys.modules``
  afterwards, so the next repository gets its own.
* Identical random draws: :func:`replay_draws` temporarily replaces ``torch.Tensor.normal_`` /
  ``uniform_`` so that the reference's next draws are copied from tensors we give (used only for the
  correctness check, never for timing).

Every reference model is built at its published (or README) size with seeded random weights, then
perturbed (weight-norm gains rescaled, zero-initialised output layers given small random values, the
flows' ActNorm moved off identity) so that no layer is trivially the identity, and its ``state_dict`` is
written in the reference's checkpoint layout and read back by *our* converter.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

# --------------------------------------------------------------------------- importing the references


def import_isolated(folder: Path, names: list[str], shadow: tuple[str, ...] = ()) -> dict[str, types.ModuleType]:
    """Import ``names`` from ``folder`` and forget the top-level names they share with other repositories."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing (clone the reference there; see benchmarks/reference_models.py)")
    clash = set(shadow) | set(names)
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] in clash}
    sys.path.insert(0, str(folder))
    try:
        mods = {n: importlib.import_module(n) for n in names}
    finally:
        sys.path.remove(str(folder))
        for k in list(sys.modules):
            if k.split(".")[0] in clash:
                del sys.modules[k]
        sys.modules.update(saved)
    return mods


def import_r9y9(folder: Path) -> types.ModuleType:
    """The ``wavenet_vocoder.wavenet`` module of an r9y9 checkout (HEAD or 2092a64)."""
    stub = types.ModuleType("wavenet_vocoder.version")
    stub.version = stub.__version__ = "0.0.0+reference"  # type: ignore[attr-defined]
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] == "wavenet_vocoder"}
    if not (Path(folder) / "wavenet_vocoder" / "version.py").exists():
        sys.modules["wavenet_vocoder.version"] = stub
    sys.path.insert(0, str(folder))
    try:
        mod = importlib.import_module("wavenet_vocoder.wavenet")
        importlib.import_module("wavenet_vocoder.mixture")
    finally:
        sys.path.remove(str(folder))
        for k in list(sys.modules):
            if k.split(".")[0] == "wavenet_vocoder":
                del sys.modules[k]
        sys.modules.update(saved)
    return mod


@contextlib.contextmanager
def cpu_float_tensor() -> Iterator[None]:
    """``torch.cuda.FloatTensor`` -> ``torch.FloatTensor`` for the duration (NVIDIA's infer on CPU)."""
    cuda = torch.cuda
    had = hasattr(cuda, "FloatTensor")
    old = getattr(cuda, "FloatTensor", None)
    cuda.FloatTensor = torch.FloatTensor  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if had:
            cuda.FloatTensor = old  # type: ignore[attr-defined]
        else:
            delattr(cuda, "FloatTensor")


@contextlib.contextmanager
def replay_draws(method: str, draws: list[Tensor]) -> Iterator[list[Tensor]]:
    """While active, ``tensor.<method>(...)`` (``normal_`` or ``uniform_``) copies the next of ``draws``."""
    original = getattr(torch.Tensor, method)
    queue = list(draws)

    def replay(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if not queue:
            raise RuntimeError(f"the reference drew more {method} values than were recorded")
        src = queue.pop(0)
        if tuple(src.shape) != tuple(self.shape):
            raise RuntimeError(f"reference draw of shape {tuple(self.shape)}, recorded {tuple(src.shape)}")
        with torch.no_grad():
            return self.copy_(src)

    setattr(torch.Tensor, method, replay)
    try:
        yield queue
    finally:
        setattr(torch.Tensor, method, original)


# --------------------------------------------------------------------------- seeded weights


def perturb_(module: torch.nn.Module, seed: int = 1, zero_std: float = 0.02, exclude: tuple[str, ...] = ()) -> None:
    """Move every layer off its trivial initialisation, reproducibly (the parity fixtures' rule, scaled).

    ``weight_g`` is multiplied by U(0.75, 1.25); tensors that are all zero get ``zero_std`` Gaussian noise;
    tensors that are one repeated constant get 10% multiplicative noise.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point() or any(e in name for e in exclude):
                continue
            if name.endswith("weight_g"):
                t.mul_(0.75 + 0.5 * torch.rand(t.shape, generator=g))
            elif not t.any():
                t.copy_(zero_std * torch.randn(t.shape, generator=g))
            elif t.numel() > 1 and bool((t == t.flatten()[0]).all()):
                t.mul_(1 + 0.1 * torch.randn(t.shape, generator=g))


def save_state(module: torch.nn.Module, path: Path, wrap: str | None = "state_dict") -> Path:
    state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    torch.save({wrap: state} if wrap else state, str(path))
    return path


# --------------------------------------------------------------------------- the five references


def waveglow(ref_dir: Path, *, seed: int = 0, n_channels: int = 256) -> Any:
    """NVIDIA's ``glow.WaveGlow`` at the published config (``config.json``: 12 flows, 8 layers, 256 ch)."""
    glow = import_isolated(ref_dir / "waveglow", ["glow"])["glow"]
    torch.manual_seed(seed)
    model = glow.WaveGlow(n_mel_channels=80, n_flows=12, n_group=8, n_early_every=4, n_early_size=2,
                          WN_config={"n_layers": 8, "n_channels": n_channels, "kernel_size": 3})
    # A trained WaveGlow's coupling outputs are small; 0.02 keeps exp(-log_s) over 12 flows in range.
    perturb_(model, seed=seed + 1, zero_std=0.02)
    model.eval()
    return model


def waveglow_infer(ref: Any, mel: Tensor, sigma: float, noise: Tensor | None = None) -> Tensor:
    """``ref.infer(mel, sigma)`` on CPU; with ``noise`` (our ``z`` ``[B, 8, T/8]``), the same draws."""
    with torch.no_grad(), cpu_float_tensor():
        if noise is None:
            return ref.infer(mel, sigma=sigma)
        n = ref.n_early_size
        n_early = sum(1 for k in range(1, ref.n_flows) if k % ref.n_early_every == 0)
        # Our z holds the early outputs in flow order, then the remaining channels; NVIDIA draws the
        # remaining channels first, then the early ones from the last to the first.
        draws = [noise[:, n_early * n:]] + [noise[:, j * n:(j + 1) * n] for j in reversed(range(n_early))]
        with replay_draws("normal_", draws) as left:
            out = ref.infer(mel, sigma=sigma)
        if left:
            raise RuntimeError(f"{len(left)} recorded draws were not used")
        return out


def flowavenet(ref_dir: Path, *, seed: int = 0, n_block: int = 8, n_flow: int = 6, n_layer: int = 2,
               block_per_split: int = 4) -> Any:
    """ksw0306's ``model.Flowavenet`` at the README config (8 blocks x 6 flows x 2 layers, 256 wide)."""
    mod = import_isolated(ref_dir / "FloWaveNet", ["model"], shadow=("modules",))["model"]
    torch.manual_seed(seed)
    model = mod.Flowavenet(in_channel=1, cin_channel=80, n_block=n_block, n_flow=n_flow, n_layer=n_layer,
                           affine=True, pretrained=True, block_per_split=block_per_split)
    perturb_(model, seed=seed + 1, zero_std=0.01)
    model.eval()
    return model


def clarinet(ref_dir: Path, *, seed: int = 0) -> tuple[Any, Any]:
    """ksw0306's ClariNet ``(teacher, student)`` at the README config (teacher 2x10 layers 128/256/128;
    student 6 flows x 10 layers 64/128/64). The student uses the teacher's upsampler, as in the reference."""
    mods = import_isolated(ref_dir / "ClariNet", ["wavenet", "wavenet_iaf"], shadow=("modules", "loss"))
    torch.manual_seed(seed)
    teacher = mods["wavenet"].Wavenet(out_channels=2, num_blocks=2, num_layers=10, residual_channels=128,
                                      gate_channels=256, skip_channels=128, kernel_size=2, cin_channels=80,
                                      upsample_scales=[16, 16])
    torch.manual_seed(seed)
    student = mods["wavenet_iaf"].Wavenet_Student(num_blocks_student=[1, 1, 1, 1, 1, 1], num_layers=10,
                                                   front_channels=32, residual_channels=64, gate_channels=128,
                                                   skip_channels=64, kernel_size=3, cin_channels=80)
    perturb_(teacher, seed=seed + 1)
    perturb_(student, seed=seed + 2)
    # Kaiming-initialised heads make |logs| of order 1 per flow; a trained student's scales are small.
    with torch.no_grad():
        for iaf in student.iafs:
            iaf.final_conv[3].conv.weight_g.mul_(0.05)
    teacher.eval()
    student.eval()
    return teacher, student


def r9y9(ref_dir: Path, config: str, *, seed: int = 0) -> tuple[Any, types.ModuleType]:
    """An r9y9 WaveNet: ``"ljspeech"`` (the 2092a64 published LJSpeech MoL layout: 24 layers, 4 stacks,
    512/512/256, ConvTranspose2d upsampler) or ``"small"`` (HEAD ``mol`` recipe layout at 6 layers
    16/32/16, the parity fixture's size). Weight norm removed as ``synthesis.py`` does
    (``make_generation_fast_``). Returns ``(model, its wavenet module)``."""
    if config == "ljspeech":
        mod = import_r9y9(ref_dir / "wavenet_vocoder_2092a64")
        torch.manual_seed(seed)
        model = mod.WaveNet(out_channels=30, layers=24, stacks=4, residual_channels=512, gate_channels=512,
                            skip_out_channels=256, kernel_size=3, dropout=0.05, cin_channels=80, gin_channels=-1,
                            weight_normalization=True, upsample_conditional_features=True,
                            upsample_scales=[4, 4, 4, 4], freq_axis_kernel_size=3, scalar_input=True)
    elif config == "small":
        mod = import_r9y9(ref_dir / "wavenet_vocoder")
        torch.manual_seed(seed)
        model = mod.WaveNet(out_channels=30, layers=6, stacks=2, residual_channels=16, gate_channels=32,
                            skip_out_channels=16, kernel_size=3, dropout=0.0, cin_channels=80, gin_channels=-1,
                            upsample_conditional_features=True, upsample_net="ConvInUpsampleNetwork",
                            upsample_params={"upsample_scales": [4, 4, 4, 4], "cin_channels": 80, "cin_pad": 2},
                            scalar_input=True, output_distribution="Logistic", cin_pad=2)
    else:
        raise ValueError(f"unknown r9y9 config {config!r}")
    perturb_(model, seed=seed + 1, zero_std=0.05)
    model.eval()
    return model, mod
