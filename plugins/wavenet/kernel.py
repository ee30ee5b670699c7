"""A compiled sampling loop for :class:`~zoo_plugins.wavenet.incremental.IncrementalSampler` (CPU, float32
activations; float32 or bfloat16 weights).

The whole autoregressive loop of a block of steps runs in one C function: the front conv, every layer's
ring buffer, dilated taps, gate, skip and residual, the output head and the sampling of the next input
from pre-drawn uniforms (or normals), so no Python or operator dispatch happens per sample. Every matrix
product sums ``x[i] * W[i, :]`` over the inputs in order (the form the TorchScript step uses), on
weights packed in column tiles of 64 (:func:`tile_pack`) so that each tile streams through once while
its 64 outputs stay in registers: the loop is bound by memory bandwidth at batch 1 (a published-size
model reads about 56 MB of weights per sample), and this reads them at about 1.7x the rate of a
row-by-row ``y += x[i] * W[i, :]``, which has to load and store ``y`` for every row, with the same sums.
For a batch, each tile is applied to every item while it is in cache. With more than one thread
(``IncrementalSampler.threads``, by default ``torch.get_num_threads()``) every product's column tiles are
shared among them, each output still made by one thread with the same sums, so the samples do not depend
on the thread count; the threads meet at a barrier whenever a whole vector is the next product's input
(twice per layer), and two cores read the weights at about 1.7x the rate of one.

The C is ``plugins/wavenet/csrc/wavenet.c``, built at install for the ``generic``, ``avx2`` and
``avx512`` ISA levels and dispatched on this CPU's features (:mod:`zoo.kernels.native`; every level sums the same
terms in the same order, with one fused multiply-add per term where the level has FMA). Where it was
not built (no compiler at install) or with ``ZOO_DISABLE_KERNEL=1``, :func:`load` returns ``None`` and
the sampler uses its TorchScript step, which gives the same samples up to float32 rounding.

*bfloat16 weights* (a model cast with ``.to(torch.bfloat16)``, or ``zoo.load(..., dtype=torch.bfloat16)``):
the matrices the loop streams every step (dilated taps, residual and skip 1x1s, the head) are packed in
bfloat16, half the bytes per sample, and each weight is widened to float32 as it is loaded (its bits
shifted up 16, exact); activations, sums, biases and the conditioning stay float32, and every product sums
the same terms in the same order as the float32 loop does. So the bfloat16 loop gives *bit-identical*
samples to the float32 loop run on the bfloat16-rounded weights (tested per ISA variant), and its only
cost in quality is that rounding of the weights (``benchmarks/wavenet_bf16_nll.py`` measures it as the
change of teacher-forced negative log-likelihood on eval-lj; ``docs/performance.md``). AVX-512 BF16's
``vdpbf16ps`` is not used: it multiplies bfloat16 *activations* too (rounding each layer's input) and
sums pairs of inputs in another order, and in a micro-benchmark of this tile product over 105 MB of
bfloat16 weights it read them at the widening load's rate (about 25 GB/s on one EPYC core, within 5%),
while the widening load works on every ISA level.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import torch

from zoo.kernels import native

TILE = 64  # TW of wavenet.h
PRE_MAX = 64  # PRE_MAX of wavenet.h: past-tap products made at most this many steps ahead
#: wavenet.h's WN_WEIGHTS_* codes of the matrices' storage (the loop's last argument) and each one's element size.
WEIGHT_CODES = {torch.float32: 0, torch.bfloat16: 1}


def _configure(lib: ctypes.CDLL) -> None:
    lib.zoo_wavenet_tile_width.restype = ctypes.c_int
    lib.zoo_wavenet_pre_max.restype = ctypes.c_int
    if lib.zoo_wavenet_tile_width() != TILE or lib.zoo_wavenet_pre_max() != PRE_MAX:
        raise native.KernelLoadError(
            f"the WaveNet loop library has tile width {lib.zoo_wavenet_tile_width()} and PRE_MAX "
            f"{lib.zoo_wavenet_pre_max()}; its bindings expect {TILE} and {PRE_MAX} (rebuild: pip install -e .)")
    lib.zoo_wavenet_weight_bytes.restype = ctypes.c_int
    lib.zoo_wavenet_weight_bytes.argtypes = [ctypes.c_int]
    sizes = {dt: lib.zoo_wavenet_weight_bytes(code) for dt, code in WEIGHT_CODES.items()}
    if any(sizes[dt] != dt.itemsize for dt in WEIGHT_CODES):
        raise native.KernelLoadError(
            f"the WaveNet loop library stores weights of codes {list(WEIGHT_CODES.values())} in "
            f"{list(sizes.values())} bytes; its bindings expect {[dt.itemsize for dt in WEIGHT_CODES]} "
            "(float32, bfloat16; rebuild: pip install -e .)")
    i, p, f = ctypes.c_int, ctypes.c_void_p, ctypes.c_float
    lib.zoo_wavenet_generate.restype = ctypes.c_int
    lib.zoo_wavenet_generate.argtypes = ([i, i, ctypes.c_long] + [i] * 9 + [p, p, i] + [p] * 7 + [f, i] + [p] * 7
                                         + [i, i, f, f] + [p] * 6 + [i, i])
    lib.zoo_wavenet_work_size.restype = ctypes.c_long
    lib.zoo_wavenet_work_size.argtypes = [ctypes.c_int] * 5
    lib.zoo_wavenet_pre_size.restype = ctypes.c_long
    lib.zoo_wavenet_pre_size.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p]


def _path(lib: native.KernelLibrary | None, reason: str, dtype: torch.dtype) -> str:
    if lib is None:
        return ("TorchScript sampling step, bfloat16-rounded weights in float32" if dtype == torch.bfloat16
                else "TorchScript sampling step") + f" ({reason})"
    if dtype == torch.bfloat16:
        return f"compiled sampling loop, bfloat16 weights widened to float32 as loaded ({lib.isa} variant)"
    return f"compiled sampling loop ({lib.isa} variant)"


SPEC = native.register(native.KernelSpec("wavenet", lambda: Path(__file__).resolve().parent, "_kernel", "zoo_wavenet",
                                         (), _configure, _path))


def load() -> native.KernelLibrary | None:
    """The compiled loop (:func:`zoo.kernels.native.kernel`); ``None`` where it was not built at install or with
    ``ZOO_DISABLE_KERNEL`` (raises :class:`zoo.kernels.native.KernelLoadError` for a library that cannot be used)."""
    return native.kernel("wavenet")


def tile_pack(w: torch.Tensor) -> torch.Tensor:
    """``[N, in, out]`` matrices in the kernel's tile layout: per matrix, column tiles of ``TILE`` (the last
    one narrower) each stored ``[in, width]``; a flat contiguous tensor of the same size."""
    n = w.shape[0]
    tiles = [w[:, :, o0:o0 + TILE].reshape(n, -1) for o0 in range(0, w.shape[2], TILE)]
    return torch.cat(tiles, dim=1).contiguous().reshape(-1)


ptr = native.ptr


def weight_bytes_per_sample(sampler: Any) -> tuple[int, float]:
    """``(every_step, amortised)``: bytes of weights the compiled loop reads per sample at batch 1 (4 per weight,
    2 where the sampler's weights are bfloat16).

    Every step reads the taps that reach 0 or 1 steps back, the residual (but the last layer's, whose output
    nothing reads) and skip 1x1s and the head; a tap reaching ``o >= 2`` steps back is read once per
    ``min(o, PRE_MAX)`` steps. At batch 1 every weight is
    used once per read, so ``read bandwidth / (every_step + amortised)`` bounds the samples per second of
    any loop that reads its weights this way (the conditioning is projected per block, not per step).
    """
    r, gate = sampler.layer_buf.shape[-1], sampler.gate
    half, skip = gate // 2, sampler.model.stack.skip_channels
    offsets = sampler.offsets.flatten().tolist()
    every = sum(r * gate for o in offsets if o < 2) + int(sampler.has_res[:-1].sum()) * half * r
    every += sampler.n_layers * half * skip + skip * skip + skip * sampler.out_channels
    amortised = sum(r * gate / min(o, PRE_MAX) for o in offsets if o >= 2)
    size = sampler.weight_dtype.itemsize
    return size * every, size * amortised
