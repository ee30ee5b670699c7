"""A compiled sampling loop for :class:`~zoo_plugins.wavenet.incremental.IncrementalSampler` (CPU, float32).

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
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import torch

from zoo.kernels import native

TILE = 64  # TW of wavenet.h
PRE_MAX = 64  # PRE_MAX of wavenet.h: past-tap products made at most this many steps ahead


def _configure(lib: ctypes.CDLL) -> None:
    lib.zoo_wavenet_tile_width.restype = ctypes.c_int
    lib.zoo_wavenet_pre_max.restype = ctypes.c_int
    if lib.zoo_wavenet_tile_width() != TILE or lib.zoo_wavenet_pre_max() != PRE_MAX:
        raise native.KernelLoadError(
            f"the WaveNet loop library has tile width {lib.zoo_wavenet_tile_width()} and PRE_MAX "
            f"{lib.zoo_wavenet_pre_max()}; its bindings expect {TILE} and {PRE_MAX} (rebuild: pip install -e .)")
    i, p, f = ctypes.c_int, ctypes.c_void_p, ctypes.c_float
    lib.zoo_wavenet_generate.restype = ctypes.c_int
    lib.zoo_wavenet_generate.argtypes = ([i, i, ctypes.c_long] + [i] * 9 + [p, p, i] + [p] * 7 + [f, i] + [p] * 7
                                         + [i, i, f, f] + [p] * 6 + [i])
    lib.zoo_wavenet_work_size.restype = ctypes.c_long
    lib.zoo_wavenet_work_size.argtypes = [ctypes.c_int] * 5
    lib.zoo_wavenet_pre_size.restype = ctypes.c_long
    lib.zoo_wavenet_pre_size.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p]


def _path(lib: native.KernelLibrary | None, reason: str, dtype: torch.dtype) -> str:
    if lib is None:
        return f"TorchScript sampling step ({reason})"
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
    """``(every_step, amortised)``: bytes of float32 weights the compiled loop reads per sample at batch 1.

    Every step reads the taps that reach 0 or 1 steps back, the residual (but the last layer's, whose output
    nothing reads) and skip 1x1s and the head; a tap reaching ``o >= 2`` steps back is read once per
    ``min(o, PRE_MAX)`` steps. At batch 1 every weight is
    used once per read, so ``read bandwidth / (every_step + amortised)`` bounds the samples per second of
    any float32 loop that reads its weights this way (the conditioning is projected per block, not per step).
    """
    r, gate = sampler.layer_buf.shape[-1], sampler.gate
    half, skip = gate // 2, sampler.model.stack.skip_channels
    offsets = sampler.offsets.flatten().tolist()
    every = sum(r * gate for o in offsets if o < 2) + int(sampler.has_res[:-1].sum()) * half * r
    every += sampler.n_layers * half * skip + skip * skip + skip * sampler.out_channels
    amortised = sum(r * gate / min(o, PRE_MAX) for o in offsets if o >= 2)
    return 4 * every, 4 * amortised
