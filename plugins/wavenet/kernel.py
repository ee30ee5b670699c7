"""A compiled sampling loop for :class:`~zoo_plugins.wavenet.incremental.IncrementalSampler` (CPU, float32).

The whole autoregressive loop of a block of steps runs in one C function: the front conv, every layer's
ring buffer, dilated taps, gate, skip and residual, the output head and the sampling of the next input
from pre-drawn uniforms (or normals), so no Python or operator dispatch happens per sample. Every matrix
product sums ``x[i] * W[i, :]`` over the inputs in order (the form the TorchScript step uses), on
weights packed in column tiles of 64 (:func:`tile_pack`) so that each tile streams through once while
its 64 outputs stay in registers: the loop is bound by memory bandwidth at batch 1 (a published-size
model reads about 56 MB of weights per sample), and this reads them at about 1.7x the rate of a
row-by-row ``y += x[i] * W[i, :]``, which has to load and store ``y`` for every row, with the same sums.
For a batch, each tile is applied to every item while it is in cache.

The source is compiled on first use with the system C compiler (``cc -O3 -march=native``) into a
per-user cache (``$ZOO_KERNEL_CACHE`` or ``~/.cache/vocoder-zoo/kernels``) and loaded with ``ctypes``.
Without a compiler (or with ``ZOO_DISABLE_KERNEL=1``) :func:`load` returns ``None`` and the sampler uses
its TorchScript step, which gives the same samples up to float32 rounding.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline void axpy(int n, float a, const float *restrict w, float *restrict y) {
#pragma omp simd
    for (int o = 0; o < n; ++o) y[o] += a * w[o];
}

static inline float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Matrices are tile-packed: [in, out] stored as ceil(out / TW) column tiles, tile j holding rows 0..in-1
   of columns j*TW .. j*TW+w-1 contiguously ([in][w], w = min(TW, out - j*TW)), so a product streams each
   tile once while TW outputs stay in registers.  The sum over inputs runs in order 0..in-1 for every
   output, exactly as a row-by-row axpy would.  For a batch, each tile is applied to all nb items before
   the next (it stays in L2).  y[b] += x[b] @ W, items nx (x) and ny (y) floats apart. */
#define TW 64
int zoo_wavenet_tile_width(void) { return TW; }

/* One tile (n <= TW columns) of y[b] += x[b] @ W: wt is the tile, y points at its first column. */
static inline void matvec_tile(int nb, int in, int n, const float *restrict x, long nx,
                               const float *restrict wt, float *restrict y, long ny) {
    for (int b = 0; b < nb; ++b) {
        const float *xb = x + b * nx;
        float *yb = y + b * ny;
        if (n == TW) {
            float acc[TW];
            for (int q = 0; q < TW; ++q) acc[q] = yb[q];
            for (int i = 0; i < in; ++i) {
                const float v = xb[i];
                const float *r = wt + (long)i * TW;
#pragma omp simd
                for (int q = 0; q < TW; ++q) acc[q] += v * r[q];
            }
            for (int q = 0; q < TW; ++q) yb[q] = acc[q];
        } else {
            for (int i = 0; i < in; ++i) axpy(n, xb[i], wt + (long)i * n, yb);
        }
    }
}

static void matvec(int nb, int in, int out, const float *restrict x, long nx, const float *restrict w,
                   float *restrict y, long ny) {
    for (int o0 = 0; o0 < out; o0 += TW)
        matvec_tile(nb, in, out - o0 < TW ? out - o0 : TW, x, nx, w + (long)o0 * in, y + o0, ny);
}

/* dist: 0 mixture of logistics, 1 Gaussian, 2 mu-law softmax.  skip_mode: 0 sum, 1 sum*sqrt(1/L),
   2 legacy iterative.  Shapes (row-major, float32):
     front_w [FK*CIN, R] (plain rows: its input is sparse), front_b [R], cond [T, B, L, G] (dilated
     bias included), tile-packed: wd [L, K] x [R, G], wr [L] x [G/2, R], ws [L] x [G/2, S], h1w [S, S],
     h2w [S, OUT]; br [L, R], bs [L, S], has_res [L], offsets [L, K],
     h1b [S], h2b [OUT], layer_buf [L, B, Q, R], front_buf [B, FK, CIN],
     x_in [B, CIN], draws1: MoL [T, B, M] / mu-law [T, B, CIN] / Gaussian [T, B], draws2: MoL [T, B],
     samples [T, B], work: scratch of work_size() floats, pre: pre_size() floats of state kept between
     calls (zeros before the first step). */
#define PRE_MAX 64

/* Floats of the past-tap state ``pre``: min(offset, PRE_MAX) rows of [B, G] for every tap 2+ steps back. */
long zoo_wavenet_pre_size(int B, int G, int L, int K, const int64_t *offsets) {
    long n = 0;
    for (long i = 0; i < (long)L * K; ++i)
        if (offsets[i] >= 2) n += (offsets[i] < PRE_MAX ? offsets[i] : PRE_MAX) * B * G;
    return n;
}

long zoo_wavenet_work_size(int B, int R, int G, int S, int OUT) {
    return (long)B * (2L * R + G + G / 2 + 2L * S + S + OUT);
}

int zoo_wavenet_generate(int B, int T, long t0, int L, int R, int G, int S, int K, int Q, int FK, int CIN,
                         int OUT, const float *front_w, const float *front_b, int front_relu,
                         const float *wd, const float *wr, const float *br, const float *ws,
                         const float *bs, const uint8_t *has_res, const int64_t *offsets,
                         float residual_scale, int skip_mode, const float *h1w, const float *h1b,
                         const float *h2w, const float *h2b, const float *cond, float *layer_buf,
                         float *front_buf, int dist, int n_mix, float log_min, float temperature,
                         const float *draws1, const float *draws2, float *x_in, float *samples,
                         float *work, float *pre) {
    const int half = G / 2;
    float *h = work;                 /* [B, R] residual stream */
    float *tmp = h + (long)B * R;    /* [B, R] */
    float *a = tmp + (long)B * R;    /* [B, G] */
    float *o = a + (long)B * G;      /* [B, half] */
    float *sk = o + (long)B * half;  /* [B, S] skips */
    float *s = sk + (long)B * S;     /* [B, S] one layer's skip */
    float *y1 = s + (long)B * S;     /* [B, S] */
    float *y = y1 + (long)B * S;     /* [B, OUT] */
    const float inv_sqrt_l = sqrtf(1.0f / (float)L);
    for (int j = 0; j < T; ++j) {
        const long t = t0 + j;
        /* front conv over the last FK inputs */
        for (int b = 0; b < B; ++b) {
            float *fb = front_buf + (long)b * FK * CIN;
            if (FK > 1) memmove(fb, fb + CIN, sizeof(float) * (size_t)(FK - 1) * CIN);
            memcpy(fb + (long)(FK - 1) * CIN, x_in + (long)b * CIN, sizeof(float) * CIN);
            memcpy(h + (long)b * R, front_b, sizeof(float) * R);
        }
        for (int i = 0; i < FK * CIN; ++i) {
            const float *row = front_w + (long)i * R;
            for (int b = 0; b < B; ++b) {
                const float v = front_buf[(long)b * FK * CIN + i];
                if (v != 0.0f) axpy(R, v, row, h + (long)b * R);
            }
        }
        if (front_relu)
            for (long q = 0; q < (long)B * R; ++q) h[q] = h[q] > 0.0f ? h[q] : 0.0f;
        const int pos = (int)(t % Q);
        float *pre_l = pre;
        for (int l = 0; l < L; ++l) {
            const float *wdl = wd + (long)l * K * R * G;
            for (int b = 0; b < B; ++b) {
                memcpy(layer_buf + (((long)l * B + b) * Q + pos) * R, h + (long)b * R, sizeof(float) * R);
                memcpy(a + (long)b * G, cond + (((long)j * B + b) * L + l) * G, sizeof(float) * G);
            }
            for (int k = 0; k < K; ++k) {
                const long off = offsets[(long)l * K + k];
                const float *wk = wdl + (long)k * R * G;
                if (off >= 2) {
                    /* A past tap: its input for the next m = min(off, PRE_MAX) steps is already in the ring,
                       so its products for those steps are made in one pass over its weights (read once
                       per m steps instead of every step) into pre [m, B, G], and step t reads row t % m. */
                    const long m = off < PRE_MAX ? off : PRE_MAX;
                    float *pk = pre_l;
                    pre_l += m * B * G;
                    if (t % m == 0) {
                        memset(pk, 0, sizeof(float) * (size_t)(m * B * G));
                        for (int o0 = 0; o0 < G; o0 += TW) {
                            const int n = G - o0 < TW ? G - o0 : TW;
                            for (long col = 0; col < m; ++col) {
                                long idx = (t + col - off) % Q;
                                if (idx < 0) idx += Q;
                                /* one tile of the product, for every item (the tile stays in cache) */
                                matvec_tile(B, R, n, layer_buf + ((long)l * B * Q + idx) * R, (long)Q * R,
                                            wk + (long)o0 * R, pk + col * B * G + o0, G);
                            }
                        }
                    }
                    const float *pr = pk + (t % m) * B * G;
                    for (long q = 0; q < (long)B * G; ++q) a[q] += pr[q];
                    continue;
                }
                long idx = (t - off) % Q;
                if (idx < 0) idx += Q;
                matvec(B, R, G, layer_buf + ((long)l * B * Q + idx) * R, (long)Q * R, wk, a, G);
            }
            for (int b = 0; b < B; ++b) {
                const float *ab = a + (long)b * G;
                float *ob = o + (long)b * half;
                for (int c = 0; c < half; ++c) ob[c] = tanhf(ab[c]) * sigmoidf_(ab[half + c]);
                memcpy(s + (long)b * S, bs + (long)l * S, sizeof(float) * S);
                if (has_res[l]) memcpy(tmp + (long)b * R, br + (long)l * R, sizeof(float) * R);
            }
            matvec(B, half, S, o, half, ws + (long)l * half * S, s, S);
            if (has_res[l]) matvec(B, half, R, o, half, wr + (long)l * half * R, tmp, R);
            for (int b = 0; b < B; ++b) {
                float *skb = sk + (long)b * S;
                const float *sb = s + (long)b * S;
                if (l == 0) memcpy(skb, sb, sizeof(float) * S);
                else if (skip_mode == 2)
                    for (int q = 0; q < S; ++q) skb[q] = (skb[q] + sb[q]) * 0.7071067811865476f;
                else
                    for (int q = 0; q < S; ++q) skb[q] = skb[q] + sb[q];
                if (has_res[l]) {
                    float *hb = h + (long)b * R;
                    const float *rb = tmp + (long)b * R;
                    for (int q = 0; q < R; ++q) hb[q] = (hb[q] + rb[q]) * residual_scale;
                }
            }
        }
        /* head: relu -> 1x1 -> relu -> 1x1 */
        for (int b = 0; b < B; ++b) {
            float *skb = sk + (long)b * S;
            for (int q = 0; q < S; ++q) {
                float v = skip_mode == 1 ? skb[q] * inv_sqrt_l : skb[q];
                skb[q] = v > 0.0f ? v : 0.0f;
            }
            memcpy(y1 + (long)b * S, h1b, sizeof(float) * S);
            memcpy(y + (long)b * OUT, h2b, sizeof(float) * OUT);
        }
        matvec(B, S, S, sk, S, h1w, y1, S);
        for (long q = 0; q < (long)B * S; ++q) y1[q] = y1[q] > 0.0f ? y1[q] : 0.0f;
        matvec(B, S, OUT, y1, S, h2w, y, OUT);
        /* sample the next input */
        for (int b = 0; b < B; ++b) {
            const float *yb = y + (long)b * OUT;
            float *xb = x_in + (long)b * CIN;
            if (dist == 0) {
                const float *u = draws1 + ((long)j * B + b) * n_mix;
                int best = 0;
                float best_v = -INFINITY;
                for (int m = 0; m < n_mix; ++m) {
                    const float v = yb[m] - logf(-logf(u[m]));
                    if (v > best_v) { best_v = v; best = m; }
                }
                float ls = yb[2 * n_mix + best];
                if (ls < log_min) ls = log_min;
                const float ul = draws2[(long)j * B + b];
                float x = yb[n_mix + best] + temperature * expf(ls) * (logf(ul) - logf(1.0f - ul));
                x = x < -1.0f ? -1.0f : (x > 1.0f ? 1.0f : x);
                samples[(long)j * B + b] = x;
                xb[0] = x;
            } else if (dist == 1) {
                float ls = yb[1];
                if (ls < log_min) ls = log_min;
                const float x = yb[0] + temperature * expf(ls) * draws1[(long)j * B + b];
                samples[(long)j * B + b] = x;
                xb[0] = x;
            } else {
                const float *u = draws1 + ((long)j * B + b) * CIN;
                int best = 0;
                float best_v = -INFINITY;
                for (int m = 0; m < OUT; ++m) {
                    const float v = temperature <= 0.0f ? yb[m] : yb[m] / temperature - logf(-logf(u[m]));
                    if (v > best_v) { best_v = v; best = m; }
                }
                samples[(long)j * B + b] = (float)best;
                memset(xb, 0, sizeof(float) * CIN);
                xb[best] = 1.0f;
            }
        }
    }
    return 0;
}
"""

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False


def _cache_dir() -> Path:
    root = os.environ.get("ZOO_KERNEL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "vocoder-zoo" / "kernels"


def _cpu_tag() -> str:
    tag = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    tag += line
    except OSError:
        pass
    return tag


def _compile(path: Path) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        src = Path(tmp) / "wavenet_kernel.c"
        src.write_text(SOURCE)
        out = Path(tmp) / path.name
        flags = ["-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-shared", "-fPIC"]
        subprocess.run([cc, *flags, str(src), "-o", str(out), "-lm"], check=True, capture_output=True, timeout=120)
        os.replace(out, path)


def load() -> ctypes.CDLL | None:
    """The compiled kernel, compiling it on first use; ``None`` if that is impossible or disabled."""
    global _lib, _tried
    if os.environ.get("ZOO_DISABLE_KERNEL"):
        return None
    with _lock:
        if _tried:
            return _lib
        _tried = True
        key = hashlib.sha256((SOURCE + _cpu_tag()).encode()).hexdigest()[:16]
        path = _cache_dir() / f"wavenet_{key}.so"
        try:
            if not path.exists():
                _compile(path)
            lib = ctypes.CDLL(str(path))
        except (OSError, RuntimeError, subprocess.SubprocessError):
            return None
        lib.zoo_wavenet_tile_width.restype = ctypes.c_int
        if lib.zoo_wavenet_tile_width() != TILE:
            return None
        lib.zoo_wavenet_generate.restype = ctypes.c_int
        lib.zoo_wavenet_work_size.restype = ctypes.c_long
        lib.zoo_wavenet_work_size.argtypes = [ctypes.c_int] * 5
        lib.zoo_wavenet_pre_size.restype = ctypes.c_long
        lib.zoo_wavenet_pre_size.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p]
        _lib = lib
        return lib


TILE = 64  # TW of the C source


def tile_pack(w: torch.Tensor) -> torch.Tensor:
    """``[N, in, out]`` matrices in the kernel's tile layout: per matrix, column tiles of ``TILE`` (the last
    one narrower) each stored ``[in, width]``; a flat contiguous tensor of the same size."""
    n = w.shape[0]
    tiles = [w[:, :, o0:o0 + TILE].reshape(n, -1) for o0 in range(0, w.shape[2], TILE)]
    return torch.cat(tiles, dim=1).contiguous().reshape(-1)


def ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    if t is None:
        return ctypes.c_void_p(0)
    if not t.is_contiguous():
        raise ValueError("kernel arguments must be contiguous")
    return ctypes.c_void_p(t.data_ptr())
