"""Convolutions with bfloat16 operands and float32 sums on CPU (the bfloat16 fast paths).

Rounding a conv's inputs and weights to bfloat16 costs a vocoder almost nothing; rounding its *outputs*
does: HiFi-GAN V1 run all in bfloat16 (``model.bfloat16()``, or autocast) loses 1.9% of its
multi-resolution STFT distance on LJSpeech, while bfloat16 operands with float32 sums and a float32
residual stream lose none. torch on CPU has no bfloat16 x bfloat16 -> float32 product, so this module
compiles one (:func:`zoo.native.build`): with AVX-512 BF16 (``vdpbf16ps``) it multiplies at about twice the
float32 rate; elsewhere the same function runs in plain C (slower, same sums up to float32 rounding).

Buffers are time-major, as in :mod:`zoo.timemajor`: activations ``[rows, C_in]`` bfloat16, outputs
``[rows, C_out]`` float32, weights packed by :func:`pack` as ``[taps, C_in / 2, C_out, 2]`` (pairs of
inputs side by side, the layout ``vdpbf16ps`` reads). :func:`conv_taps` is a dilated conv whose taps all
sum in registers before one float32 store (or add, for a residual update); :func:`winograd3` is a 3-tap
conv through Winograd F(4, 3), its transforms in float32 on blocks that stay in cache and its six
products in bfloat16; :func:`leaky_relu` makes the next conv's bfloat16 input from a float32 buffer.
Every function splits its rows among ``threads`` threads (default ``torch.get_num_threads()``).
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from zoo import native

SOURCE = r"""
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint16_t bf16;

static inline float bf2f(bf16 h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }

/* Round to nearest even, as torch rounds float32 to bfloat16 (NaN stays NaN). */
static inline bf16 f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (bf16)((u & 0x7fffffffu) > 0x7f800000u ? ((u >> 16) | 0x40u) : r);
}

int zoo_bf16_native(void) {
#ifdef __AVX512BF16__
    return 1;
#else
    return 0;
#endif
}

/* out[r, n] (+)= bias[n] + sum_j sum_c src[(r + j dil) lds + c] W_j[c, n] for rows r of [0, rows):
   src bfloat16, w packed [taps][ceil(cin / 2)][cout][2] (an odd cin's last pair has a zero second
   weight, and its second input is never read), out float32 (row stride ldo). */
typedef struct {
    long rows;
    int cin, cout, taps;
    long dil;
    const bf16 *src;
    long lds;
    const bf16 *w;
    const float *bias;
    float *out;
    long ldo;
    int accumulate;
} prod_t;

/* A parallel loop over [0, n) in runs of whole grains, one run per thread. */
typedef void (*range_fn)(const void *ctx, long a, long b);
typedef struct { range_fn fn; const void *ctx; long a, b; } job_t;
static void *job_main(void *arg) { job_t *j = (job_t *)arg; j->fn(j->ctx, j->a, j->b); return NULL; }

#define MAX_THREADS 64
static void parallel_for(int nth, long n, long grain, range_fn fn, const void *ctx) {
    long units = (n + grain - 1) / grain;
    if (nth > units) nth = (int)units;
    if (nth > MAX_THREADS) nth = MAX_THREADS;
    if (nth <= 1) { if (n > 0) fn(ctx, 0, n); return; }
    job_t jobs[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    int ok[MAX_THREADS];
    for (int k = 0; k < nth; ++k) {
        long a = units * k / nth * grain, b = units * (k + 1) / nth * grain;
        jobs[k].fn = fn; jobs[k].ctx = ctx; jobs[k].a = a < n ? a : n; jobs[k].b = b < n ? b : n;
    }
    for (int k = 1; k < nth; ++k) ok[k] = pthread_create(&th[k], NULL, job_main, &jobs[k]) == 0;
    fn(ctx, jobs[0].a, jobs[0].b);
    for (int k = 1; k < nth; ++k) {
        if (ok[k]) pthread_join(th[k], NULL);
        else fn(ctx, jobs[k].a, jobs[k].b);
    }
}

static inline void store_row(const prod_t *p, long r, int n, float x) {
    float *o = p->out + r * p->ldo + n;
    if (p->bias) x += p->bias[n];
    *o = p->accumulate ? *o + x : x;
}

#ifdef __AVX512BF16__
/* MR rows x 16 NV columns of the product, all taps summed in registers. */
static inline __attribute__((always_inline)) void tile(const prod_t *p, long r0, int n0, const int MR,
                                                       const int NV) {
    __m512 acc[12][4];
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
    const int P = (p->cin + 1) / 2, full = p->cin / 2;
    const long ws = (long)p->cout * 2;
    for (int j = 0; j < p->taps; ++j) {
        const bf16 *a = p->src + (r0 + j * p->dil) * p->lds;
        const bf16 *b = p->w + (long)j * P * ws + (long)n0 * 2;
        for (int q = 0; q < P; ++q) {
            __m512i bv[4];
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512((const void *)(b + q * ws + v * 32));
#pragma GCC unroll 12
            for (int i = 0; i < MR; ++i) {
                int32_t ai;
                if (q < full) memcpy(&ai, a + i * p->lds + 2 * q, 4);
                else ai = a[i * p->lds + 2 * q];  /* odd cin: the last input alone (its pair's weight is 0) */
                __m512bh av = (__m512bh)_mm512_set1_epi32(ai);
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, (__m512bh)bv[v]);
            }
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
        float *o = p->out + (r0 + i) * p->ldo + n0;
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
            __m512 x = acc[i][v];
            if (p->bias) x = _mm512_add_ps(x, _mm512_loadu_ps(p->bias + n0 + 16 * v));
            if (p->accumulate) x = _mm512_add_ps(_mm512_loadu_ps(o + 16 * v), x);
            _mm512_storeu_ps(o + 16 * v, x);
        }
    }
}

static void tile_6_4(const prod_t *p, long r, int n) { tile(p, r, n, 6, 4); }
static void tile_1_4(const prod_t *p, long r, int n) { tile(p, r, n, 1, 4); }
static void tile_12_2(const prod_t *p, long r, int n) { tile(p, r, n, 12, 2); }
static void tile_1_2(const prod_t *p, long r, int n) { tile(p, r, n, 1, 2); }
static void tile_12_1(const prod_t *p, long r, int n) { tile(p, r, n, 12, 1); }
static void tile_1_1(const prod_t *p, long r, int n) { tile(p, r, n, 1, 1); }
#endif

/* Rows [a, b) of the product on this thread: blocks of RB rows, within each every column panel. */
#define RB 192
static void prod_rows(const void *ctx, long a, long b) {
    const prod_t *p = (const prod_t *)ctx;
#ifdef __AVX512BF16__
    if (p->cout % 16 == 0) {
        for (long m0 = a; m0 < b; m0 += RB) {
            long m1 = m0 + RB < b ? m0 + RB : b;
            for (int n0 = 0; n0 < p->cout;) {
                int left = p->cout - n0;
                long r = m0;
                if (left >= 64) {
                    for (; r + 6 <= m1; r += 6) tile_6_4(p, r, n0);
                    for (; r < m1; ++r) tile_1_4(p, r, n0);
                    n0 += 64;
                } else if (left >= 32) {
                    for (; r + 12 <= m1; r += 12) tile_12_2(p, r, n0);
                    for (; r < m1; ++r) tile_1_2(p, r, n0);
                    n0 += 32;
                } else {
                    for (; r + 12 <= m1; r += 12) tile_12_1(p, r, n0);
                    for (; r < m1; ++r) tile_1_1(p, r, n0);
                    n0 += 16;
                }
            }
        }
        return;
    }
#endif
    /* Plain C: four rows at a time share each weight pair; every pair of inputs is one fused step. */
    const int P = (p->cin + 1) / 2, C = p->cout;
    const long ws = (long)C * 2;
    float *acc = (float *)malloc(sizeof(float) * 4 * (size_t)C);
    if (!acc) return;
    for (long r0 = a; r0 < b; r0 += 4) {
        int nr = b - r0 < 4 ? (int)(b - r0) : 4;
        memset(acc, 0, sizeof(float) * 4 * (size_t)C);
        for (int j = 0; j < p->taps; ++j) {
            const bf16 *wj = p->w + (long)j * P * ws;
            for (int q = 0; q < P; ++q) {
                const bf16 *wq = wj + q * ws;
                for (int i = 0; i < nr; ++i) {
                    const bf16 *ar = p->src + (r0 + i + j * p->dil) * p->lds + 2 * q;
                    const float x0 = bf2f(ar[0]), x1 = 2 * q + 1 < p->cin ? bf2f(ar[1]) : 0.0f;
                    float *ai = acc + (size_t)i * C;
#pragma omp simd
                    for (int n = 0; n < C; ++n) ai[n] += x0 * bf2f(wq[2 * n]) + x1 * bf2f(wq[2 * n + 1]);
                }
            }
        }
        for (int i = 0; i < nr; ++i)
            for (int n = 0; n < C; ++n) store_row(p, r0 + i, n, acc[(size_t)i * C + n]);
    }
    free(acc);
}

void zoo_bf16_conv(const prod_t *p, int nth) { parallel_for(nth, p->rows, 48, prod_rows, p); }

/* One 3-tap group by Winograd F(4, 3): output rows r = 4 dil k + o dil + i (o < 4, i < dil) form tile
   t = k dil + i, whose input rows are src[(4 dil k + i + q dil) lds], q < 6.  u is packed
   [6][ceil(cin / 2)][cout][2] (the job's w; its rows count tiles, its taps are 3); scratch per thread:
   v [6][NT][cin] bfloat16, m [6][NT][cout] float32. */

#define NT 48
static void wino_tiles(const void *ctx, long a, long b) {
    const prod_t *w = (const prod_t *)ctx;
    const int cin = w->cin, cout = w->cout;
    const long d = w->dil;
    bf16 *v = (bf16 *)aligned_alloc(64, ((sizeof(bf16) * 6 * NT * (size_t)cin + 63) / 64) * 64);
    float *m = (float *)aligned_alloc(64, ((sizeof(float) * 6 * NT * (size_t)cout + 63) / 64) * 64);
    if (!v || !m) { free(v); free(m); return; }
    const long vs = (long)NT * cin, ms = (long)NT * cout;
    for (long t0 = a; t0 < b; t0 += NT) {
        const int nt = b - t0 < NT ? (int)(b - t0) : NT;
        for (int tt = 0; tt < nt; ++tt) {
            const long t = t0 + tt, base = 4 * d * (t / d) + t % d;
            const bf16 *s0 = w->src + base * w->lds, *s1 = s0 + d * w->lds, *s2 = s1 + d * w->lds,
                       *s3 = s2 + d * w->lds, *s4 = s3 + d * w->lds, *s5 = s4 + d * w->lds;
            bf16 *v0 = v + (long)tt * cin;
#pragma omp simd
            for (int c = 0; c < cin; ++c) {
                const float d0 = bf2f(s0[c]), d1 = bf2f(s1[c]), d2 = bf2f(s2[c]), d3 = bf2f(s3[c]),
                            d4 = bf2f(s4[c]), d5 = bf2f(s5[c]);
                v0[c] = f2bf(4.0f * d0 - 5.0f * d2 + d4);
                v0[vs + c] = f2bf(d4 + d3 - 4.0f * (d1 + d2));
                v0[2 * vs + c] = f2bf(d4 - d3 + 4.0f * (d1 - d2));
                v0[3 * vs + c] = f2bf(d4 - d2 + 2.0f * (d3 - d1));
                v0[4 * vs + c] = f2bf(d4 - d2 - 2.0f * (d3 - d1));
                v0[5 * vs + c] = f2bf(4.0f * d1 - 5.0f * d3 + d5);
            }
        }
        for (int j = 0; j < 6; ++j) {
            prod_t p = {nt, cin, cout, 1, 0, v + j * vs, cin, w->w + (long)j * ((cin + 1) / 2) * cout * 2, NULL,
                        m + j * ms, cout, 0};
            prod_rows(&p, 0, nt);
        }
        for (int tt = 0; tt < nt; ++tt) {
            const long t = t0 + tt, base = 4 * d * (t / d) + t % d;
            float *o0 = w->out + base * w->ldo, *o1 = o0 + d * w->ldo, *o2 = o1 + d * w->ldo,
                  *o3 = o2 + d * w->ldo;
            const float *m0 = m + (long)tt * cout;
            const float *bias = w->bias;
            const int accumulate = w->accumulate;
#pragma omp simd
            for (int n = 0; n < cout; ++n) {
                const float a0 = m0[n], a1 = m0[ms + n], a2 = m0[2 * ms + n], a3 = m0[3 * ms + n],
                            a4 = m0[4 * ms + n], a5 = m0[5 * ms + n];
                const float bn = bias ? bias[n] : 0.0f;
                const float e = a1 + a2, f = a1 - a2, g = a3 + a4, h = a3 - a4;
                const float y0 = a0 + e + g + bn, y1 = f + 2.0f * h + bn, y2 = e + 4.0f * g + bn,
                            y3 = f + 8.0f * h + a5 + bn;
                if (accumulate) { o0[n] += y0; o1[n] += y1; o2[n] += y2; o3[n] += y3; }
                else { o0[n] = y0; o1[n] = y1; o2[n] = y2; o3[n] = y3; }
            }
        }
    }
    free(v);
    free(m);
}

void zoo_bf16_winograd3(const prod_t *w, int nth) { parallel_for(nth, w->rows, NT, wino_tiles, w); }

/* out[r, c] = bfloat16(leaky_relu(x[r, c])) for r < rows, c < cols. */
typedef struct { const float *x; long ldx; bf16 *out; long ldo; int cols; float slope; } leaky_t;

static void leaky_rows(const void *ctx, long a, long b) {
    const leaky_t *l = (const leaky_t *)ctx;
    const float s = l->slope;
    for (long r = a; r < b; ++r) {
        const float *x = l->x + r * l->ldx;
        bf16 *o = l->out + r * l->ldo;
#pragma omp simd
        for (int c = 0; c < l->cols; ++c) o[c] = f2bf(x[c] > 0.0f ? x[c] : s * x[c]);
    }
}

void zoo_bf16_leaky_relu(const leaky_t *l, long rows, int nth) { parallel_for(nth, rows, 256, leaky_rows, l); }
"""


class _Prod(ctypes.Structure):
    _fields_ = [("rows", ctypes.c_long), ("cin", ctypes.c_int), ("cout", ctypes.c_int), ("taps", ctypes.c_int),
                ("dil", ctypes.c_long), ("src", ctypes.c_void_p), ("lds", ctypes.c_long), ("w", ctypes.c_void_p),
                ("bias", ctypes.c_void_p), ("out", ctypes.c_void_p), ("ldo", ctypes.c_long),
                ("accumulate", ctypes.c_int)]


class _Leaky(ctypes.Structure):
    _fields_ = [("x", ctypes.c_void_p), ("ldx", ctypes.c_long), ("out", ctypes.c_void_p), ("ldo", ctypes.c_long),
                ("cols", ctypes.c_int), ("slope", ctypes.c_float)]


_lib: ctypes.CDLL | None = None
_tried = False


def load() -> ctypes.CDLL | None:
    """The compiled kernel (built on first use); ``None`` without a C compiler or with ``ZOO_DISABLE_KERNEL``."""
    global _lib, _tried
    if not _tried:
        lib = native.build("bf16conv", SOURCE, ("-fopenmp-simd",))
        if lib is not None:
            lib.zoo_bf16_native.restype = ctypes.c_int
            for fn in (lib.zoo_bf16_conv, lib.zoo_bf16_winograd3, lib.zoo_bf16_leaky_relu):
                fn.restype = None
        _lib, _tried = lib, True
    return _lib


def available() -> bool:
    """Whether the kernel could be built here (the bfloat16 fast paths need it)."""
    return load() is not None


def native_bf16() -> bool:
    """Whether the kernel multiplies with this CPU's AVX-512 BF16 instructions (else it runs in plain C)."""
    lib = load()
    return bool(lib is not None and lib.zoo_bf16_native())


def _lib_or_raise() -> ctypes.CDLL:
    lib = load()
    if lib is None:
        raise RuntimeError("the bfloat16 conv kernel is not available (no C compiler, or ZOO_DISABLE_KERNEL is set)")
    return lib


def pack(taps: Tensor) -> Tensor:
    """Weights ``[k, C_in, C_out]`` (:func:`zoo.timemajor.tap_weights`' layout, any float dtype) as the
    kernel's bfloat16 ``[k, ceil(C_in / 2), C_out, 2]`` (an odd ``C_in`` gets a zero input row)."""
    k, c_in, c_out = taps.shape
    w = taps.detach().to(torch.bfloat16)
    if c_in % 2:
        w = torch.cat([w, w.new_zeros(k, 1, c_out)], dim=1)
    return w.reshape(k, -1, 2, c_out).transpose(2, 3).contiguous()


def _rows_view(t: Tensor, name: str, dtype: torch.dtype) -> None:
    if t.dtype != dtype or t.device.type != "cpu" or t.dim() != 2 or t.stride(1) != 1:
        raise ValueError(f"{name} must be a CPU {dtype} [rows, channels] buffer with contiguous rows, got "
                         f"{tuple(t.shape)} {t.dtype} strides {t.stride()}")


def _threads(threads: int | None) -> int:
    return torch.get_num_threads() if threads is None else max(1, int(threads))


def _bias(bias: Tensor | None, c_out: int) -> tuple[Tensor | None, ctypes.c_void_p]:
    if bias is None:
        return None, ctypes.c_void_p(0)
    b = bias.detach().to(torch.float32).contiguous()
    if b.shape != (c_out,):
        raise ValueError(f"bias must have {c_out} values, got {tuple(b.shape)}")
    return b, ctypes.c_void_p(b.data_ptr())


def conv_taps(out: Tensor, src: Tensor, first: int, packed: Tensor, dilation: int, bias: Tensor | None = None,
              *, accumulate: bool = False, threads: int | None = None) -> Tensor:
    """``out[r] (+)= bias + sum_j src[first + r + j * dilation] @ W[j]`` with bfloat16 ``src`` and
    :func:`pack`'d ``W``, every tap summed in float32 before one store into float32 ``out``."""
    lib = _lib_or_raise()
    _rows_view(out, "out", torch.float32)
    _rows_view(src, "src", torch.bfloat16)
    k, pairs, c_out, _ = packed.shape
    rows = out.shape[0]
    if src.shape[1] not in (2 * pairs - 1, 2 * pairs) or out.shape[1] != c_out:
        raise ValueError(f"packed weights [{k}, {pairs}, {c_out}, 2] take {2 * pairs - 1} or {2 * pairs} input and "
                         f"give {c_out} output channels; src has {src.shape[1]}, out {out.shape[1]}")
    if first < 0 or first + rows + (k - 1) * dilation > src.shape[0]:
        raise ValueError(f"src has {src.shape[0]} rows; {rows} outputs from row {first} with {k} taps of "
                         f"dilation {dilation} need {first + rows + (k - 1) * dilation}")
    b, bptr = _bias(bias, c_out)
    args = _Prod(rows, src.shape[1], c_out, k, dilation, src.data_ptr() + first * src.stride(0) * 2, src.stride(0),
                 packed.data_ptr(), bptr, out.data_ptr(), out.stride(0), int(accumulate))
    lib.zoo_bf16_conv(ctypes.byref(args), _threads(threads))
    return out


def winograd3(out: Tensor, src: Tensor, first: int, dilation: int, rows: int, packed_u: Tensor,
              bias: Tensor | None = None, *, accumulate: bool = False, threads: int | None = None) -> Tensor:
    """:func:`zoo.timemajor.winograd_conv3` with bfloat16 operands: ``out[:rows] (+)= bias +
    sum_j src[first + r + j * dilation] @ w[j]`` for a 3-tap ``w`` whose transformed filters
    (:func:`zoo.timemajor.winograd_weights`) are :func:`pack`'d as ``packed_u [6, C_in / 2, C_out, 2]``.
    ``rows`` is a multiple of ``4 * dilation``; ``src`` needs ``first + rows + 2 * dilation`` rows."""
    lib = _lib_or_raise()
    _rows_view(out, "out", torch.float32)
    _rows_view(src, "src", torch.bfloat16)
    six, pairs, c_out, _ = packed_u.shape
    span = 4 * dilation
    if six != 6 or rows % span or rows > out.shape[0] or first + rows + 2 * dilation > src.shape[0]:
        raise ValueError(f"winograd3: {rows} rows (a multiple of {span}) of out {tuple(out.shape)} from src "
                         f"{tuple(src.shape)} at row {first}, transformed filters {tuple(packed_u.shape)}")
    if src.shape[1] not in (2 * pairs - 1, 2 * pairs) or out.shape[1] != c_out:
        raise ValueError(f"transformed filters take {2 * pairs} inputs and give {c_out} outputs; src has "
                         f"{src.shape[1]}, out {out.shape[1]}")
    if rows == 0:
        return out
    b, bptr = _bias(bias, c_out)
    args = _Prod(rows // 4, src.shape[1], c_out, 3, dilation, src.data_ptr() + first * src.stride(0) * 2,
                 src.stride(0), packed_u.data_ptr(), bptr, out.data_ptr(), out.stride(0), int(accumulate))
    lib.zoo_bf16_winograd3(ctypes.byref(args), _threads(threads))
    return out


def leaky_relu(x: Tensor, slope: float, out: Tensor, *, threads: int | None = None) -> Tensor:
    """``out = bfloat16(leaky_relu(x, slope))`` for float32 ``x [rows, C]`` into bfloat16 ``out [rows, C]``."""
    lib = _lib_or_raise()
    _rows_view(x, "x", torch.float32)
    _rows_view(out, "out", torch.bfloat16)
    if x.shape != out.shape:
        raise ValueError(f"leaky_relu: x {tuple(x.shape)} and out {tuple(out.shape)} differ")
    args = _Leaky(x.data_ptr(), x.stride(0), out.data_ptr(), out.stride(0), x.shape[1], slope)
    lib.zoo_bf16_leaky_relu(ctypes.byref(args), ctypes.c_long(x.shape[0]), _threads(threads))
    return out
