"""Compiled time-major convolutions on CPU: float32, and bfloat16 operands with float32 sums.

Buffers are time-major, as in :mod:`zoo.timemajor`: activations ``[rows, C_in]``, outputs
``[rows, C_out]`` float32. :func:`conv_taps` is a dilated conv whose taps all sum in registers (tiles of
up to 6 rows x 64 columns) before one float32 store, or add for a residual update, so its output is read
and written once whatever the number of taps (torch's per-tap products write it once per tap);
:func:`winograd3` is a 3-tap conv through Winograd F(4, 3), its transforms in float32 on blocks of 48
tiles that stay in cache, its six products on the same tiles. Every function splits its rows among
``threads`` threads (default ``torch.get_num_threads()``). The kernel is compiled on first use
(:func:`zoo.native.build`).

*float32* operands (weights :func:`pack`'d as :func:`zoo.timemajor.tap_weights`' ``[k, C_in, C_out]``)
are tiled with AVX-512 FMAs where the CPU has AVX-512 (:func:`native_f32`); elsewhere the float32 fast
paths keep using torch's products, which the plain C fallback would not beat.

*bfloat16* operands: rounding a conv's inputs and weights to bfloat16 costs a vocoder almost nothing;
rounding its *outputs* does: HiFi-GAN V1 run all in bfloat16 (``model.bfloat16()``, or autocast) loses
1.9% of its multi-resolution STFT distance on LJSpeech, while bfloat16 operands with float32 sums and a
float32 residual stream lose none. torch on CPU has no bfloat16 x bfloat16 -> float32 product; this one
uses ``vdpbf16ps`` with AVX-512 BF16 (:func:`native_bf16`: about twice the float32 rate), plain C
elsewhere (slower, the same sums up to float32 rounding). Weights are :func:`pack`'d as
``[k, ceil(C_in / 2), C_out, 2]`` (pairs of inputs side by side, the layout ``vdpbf16ps`` reads);
:func:`leaky_relu` makes the next conv's bfloat16 input from a float32 buffer.
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

int zoo_f32_native(void) {
#ifdef __AVX512F__
    return 1;
#else
    return 0;
#endif
}

/* out[r, n] (+)= bias[n] + sum_j sum_c src[(r + j dil) lds + c] W_j[c, n] for rows r of [0, rows):
   src bfloat16, w packed [taps][ceil(cin / 2)][cout][2] (an odd cin's last pair has a zero second
   weight, and its second input is never read), out float32 (row stride ldo); with f32, src and w are
   float32 (w [taps][cin][cout]), the same tiles multiplying with vfmadd. */
typedef struct {
    long rows;
    int cin, cout, taps;
    long dil;
    const void *src;  /* bf16, or float when f32 */
    long lds;
    const void *w;    /* bf16 pairs [taps][ceil(cin / 2)][cout][2], or float [taps][cin][cout] when f32 */
    const float *bias;
    float *out;
    long ldo;
    int accumulate;
    int f32;
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

#ifdef __AVX512F__
static inline __attribute__((always_inline)) void tile_store(const prod_t *p, long r0, int n0, __m512 acc[12][4],
                                                             const int MR, const int NV) {
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

/* MR rows x 16 NV columns of a float32 product, all taps summed in registers. */
static inline __attribute__((always_inline)) void tile_f32(const prod_t *p, long r0, int n0, const int MR,
                                                           const int NV) {
    __m512 acc[12][4];
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
    const long ws = p->cout;
    for (int j = 0; j < p->taps; ++j) {
        const float *a = (const float *)p->src + (r0 + j * p->dil) * p->lds;
        const float *b = (const float *)p->w + (long)j * p->cin * ws + n0;
        for (int c = 0; c < p->cin; ++c) {
            __m512 bv[4];
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + c * ws + v * 16);
#pragma GCC unroll 12
            for (int i = 0; i < MR; ++i) {
                const __m512 av = _mm512_set1_ps(a[i * p->lds + c]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
            }
        }
    }
    tile_store(p, r0, n0, acc, MR, NV);
}
#endif

#ifdef __AVX512BF16__
/* The same with bfloat16 operands: each vdpbf16ps adds a pair of inputs' products. */
static inline __attribute__((always_inline)) void tile_bf16(const prod_t *p, long r0, int n0, const int MR,
                                                            const int NV) {
    __m512 acc[12][4];
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
    const int P = (p->cin + 1) / 2, full = p->cin / 2;
    const long ws = (long)p->cout * 2;
    for (int j = 0; j < p->taps; ++j) {
        const bf16 *a = (const bf16 *)p->src + (r0 + j * p->dil) * p->lds;
        const bf16 *b = (const bf16 *)p->w + (long)j * P * ws + (long)n0 * 2;
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
    tile_store(p, r0, n0, acc, MR, NV);
}
#endif

#ifdef __AVX512F__
static inline __attribute__((always_inline)) void tile(const prod_t *p, long r, int n, const int MR, const int NV) {
#ifdef __AVX512BF16__
    if (!p->f32) { tile_bf16(p, r, n, MR, NV); return; }
#endif
    tile_f32(p, r, n, MR, NV);
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
    const int tiled = 1;
#elif defined(__AVX512F__)
    const int tiled = p->f32;
#endif
#ifdef __AVX512F__
    if (tiled && p->cout % 16 == 0) {
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
        if (p->f32) {
            for (int j = 0; j < p->taps; ++j)
                for (int c = 0; c < p->cin; ++c) {
                    const float *wc = (const float *)p->w + ((long)j * p->cin + c) * C;
                    for (int i = 0; i < nr; ++i) {
                        const float x = ((const float *)p->src)[(r0 + i + j * p->dil) * p->lds + c];
                        float *ai = acc + (size_t)i * C;
#pragma omp simd
                        for (int n = 0; n < C; ++n) ai[n] += x * wc[n];
                    }
                }
        } else
        for (int j = 0; j < p->taps; ++j) {
            const bf16 *wj = (const bf16 *)p->w + (long)j * P * ws;
            for (int q = 0; q < P; ++q) {
                const bf16 *wq = wj + q * ws;
                for (int i = 0; i < nr; ++i) {
                    const bf16 *ar = (const bf16 *)p->src + (r0 + i + j * p->dil) * p->lds + 2 * q;
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

void zoo_tap_conv(const prod_t *p, int nth) { parallel_for(nth, p->rows, 48, prod_rows, p); }

/* One 3-tap group by Winograd F(4, 3): output rows r = 4 dil k + o dil + i (o < 4, i < dil) form tile
   t = k dil + i, whose input rows are src[(4 dil k + i + q dil) lds], q < 6.  u is packed
   [6][ceil(cin / 2)][cout][2] (the job's w; its rows count tiles, its taps are 3); scratch per thread:
   v [6][NT][cin] bfloat16, m [6][NT][cout] float32. */

#define NT 48
/* B^T d for the points 0, 1, -1, 2, -2 and infinity. */
static inline void wino_in(const float d0, const float d1, const float d2, const float d3, const float d4,
                           const float d5, float v[6]) {
    v[0] = 4.0f * d0 - 5.0f * d2 + d4;
    v[1] = d4 + d3 - 4.0f * (d1 + d2);
    v[2] = d4 - d3 + 4.0f * (d1 - d2);
    v[3] = d4 - d2 + 2.0f * (d3 - d1);
    v[4] = d4 - d2 - 2.0f * (d3 - d1);
    v[5] = 4.0f * d1 - 5.0f * d3 + d5;
}

#ifdef __AVX512F__
/* wino_in on 16 inputs at once. */
static inline void wino_in_v(const __m512 x[6], __m512 v[6]) {
    const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f);
    const __m512 d42 = _mm512_sub_ps(x[4], x[2]), d31 = _mm512_sub_ps(x[3], x[1]);
    v[0] = _mm512_fnmadd_ps(five, x[2], _mm512_fmadd_ps(four, x[0], x[4]));
    v[1] = _mm512_fnmadd_ps(four, _mm512_add_ps(x[1], x[2]), _mm512_add_ps(x[4], x[3]));
    v[2] = _mm512_fmadd_ps(four, _mm512_sub_ps(x[1], x[2]), _mm512_sub_ps(x[4], x[3]));
    v[3] = _mm512_fmadd_ps(two, d31, d42);
    v[4] = _mm512_fnmadd_ps(two, d31, d42);
    v[5] = _mm512_fnmadd_ps(five, x[3], _mm512_fmadd_ps(four, x[1], x[5]));
}
#endif

static void wino_tiles(const void *ctx, long a, long b) {
    const prod_t *w = (const prod_t *)ctx;
    const int cin = w->cin, cout = w->cout, f32 = w->f32;
    const long d = w->dil, ld = w->lds;
    const size_t esize = f32 ? sizeof(float) : sizeof(bf16);
    void *v = aligned_alloc(64, ((esize * 6 * NT * (size_t)cin + 63) / 64) * 64);
    float *m = (float *)aligned_alloc(64, ((sizeof(float) * 6 * NT * (size_t)cout + 63) / 64) * 64);
    if (!v || !m) { free(v); free(m); return; }
    const long vs = (long)NT * cin, ms = (long)NT * cout;
    for (long t0 = a; t0 < b; t0 += NT) {
        const int nt = b - t0 < NT ? (int)(b - t0) : NT;
        for (int tt = 0; tt < nt; ++tt) {
            const long t = t0 + tt, base = 4 * d * (t / d) + t % d;
            int c0 = 0;  /* inputs done with AVX-512; the rest below */
#ifdef __AVX512F__
            if (f32) {
                const float *s0 = (const float *)w->src + base * ld;
                float *v0 = (float *)v + (long)tt * cin;
                for (; c0 + 16 <= cin; c0 += 16) {
                    __m512 x[6];
                    for (int q = 0; q < 6; ++q) x[q] = _mm512_loadu_ps(s0 + q * d * ld + c0);
                    __m512 o[6];
                    wino_in_v(x, o);
                    for (int q = 0; q < 6; ++q) _mm512_storeu_ps(v0 + q * vs + c0, o[q]);
                }
            }
#endif
#ifdef __AVX512BF16__
            if (!f32) {
                const bf16 *s0 = (const bf16 *)w->src + base * ld;
                bf16 *v0 = (bf16 *)v + (long)tt * cin;
                for (; c0 + 16 <= cin; c0 += 16) {
                    __m512 x[6];
                    for (int q = 0; q < 6; ++q)
                        x[q] = _mm512_castsi512_ps(_mm512_slli_epi32(
                            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(s0 + q * d * ld + c0))), 16));
                    __m512 o[6];
                    wino_in_v(x, o);
                    for (int q = 0; q < 6; ++q)
                        _mm256_storeu_si256((__m256i *)(v0 + q * vs + c0), (__m256i)_mm512_cvtneps_pbh(o[q]));
                }
            }
#endif
            if (f32) {
                const float *s0 = (const float *)w->src + base * ld;
                float *v0 = (float *)v + (long)tt * cin;
#pragma omp simd
                for (int c = c0; c < cin; ++c) {
                    float o[6];
                    wino_in(s0[c], s0[d * ld + c], s0[2 * d * ld + c], s0[3 * d * ld + c], s0[4 * d * ld + c],
                            s0[5 * d * ld + c], o);
                    for (int q = 0; q < 6; ++q) v0[q * vs + c] = o[q];
                }
            } else {
                const bf16 *s0 = (const bf16 *)w->src + base * ld;
                bf16 *v0 = (bf16 *)v + (long)tt * cin;
#pragma omp simd
                for (int c = c0; c < cin; ++c) {
                    float o[6];
                    wino_in(bf2f(s0[c]), bf2f(s0[d * ld + c]), bf2f(s0[2 * d * ld + c]), bf2f(s0[3 * d * ld + c]),
                            bf2f(s0[4 * d * ld + c]), bf2f(s0[5 * d * ld + c]), o);
                    for (int q = 0; q < 6; ++q) v0[q * vs + c] = f2bf(o[q]);
                }
            }
        }
        for (int j = 0; j < 6; ++j) {
            const long wstep = f32 ? (long)cin * cout * 4 : (long)((cin + 1) / 2) * cout * 4;  /* bytes */
            prod_t p = {nt, cin, cout, 1, 0, (const char *)v + j * vs * (long)esize, cin,
                        (const char *)w->w + j * wstep, NULL, m + j * ms, cout, 0, f32};
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

void zoo_tap_winograd3(const prod_t *w, int nth) { parallel_for(nth, w->rows, NT, wino_tiles, w); }

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
                ("accumulate", ctypes.c_int), ("f32", ctypes.c_int)]


class _Leaky(ctypes.Structure):
    _fields_ = [("x", ctypes.c_void_p), ("ldx", ctypes.c_long), ("out", ctypes.c_void_p), ("ldo", ctypes.c_long),
                ("cols", ctypes.c_int), ("slope", ctypes.c_float)]


_lib: ctypes.CDLL | None = None
_tried = False


def load() -> ctypes.CDLL | None:
    """The compiled kernel (built on first use); ``None`` without a C compiler or with ``ZOO_DISABLE_KERNEL``."""
    global _lib, _tried
    if not _tried:
        lib = native.build("tapconv", SOURCE, ("-fopenmp-simd",))
        if lib is not None:
            lib.zoo_bf16_native.restype = ctypes.c_int
            lib.zoo_f32_native.restype = ctypes.c_int
            for fn in (lib.zoo_tap_conv, lib.zoo_tap_winograd3, lib.zoo_bf16_leaky_relu):
                fn.restype = None
        _lib, _tried = lib, True
    return _lib


def available() -> bool:
    """Whether the kernel could be built here (the bfloat16 fast paths need it)."""
    return load() is not None


def native_f32() -> bool:
    """Whether float32 products run on AVX-512 tiles here (the float32 fast paths use the kernel only then)."""
    lib = load()
    return bool(lib is not None and lib.zoo_f32_native())


def native_bf16() -> bool:
    """Whether the kernel multiplies with this CPU's AVX-512 BF16 instructions (else it runs in plain C)."""
    lib = load()
    return bool(lib is not None and lib.zoo_bf16_native())


def _lib_or_raise() -> ctypes.CDLL:
    lib = load()
    if lib is None:
        raise RuntimeError("the compiled conv kernel is not available (no C compiler, or ZOO_DISABLE_KERNEL is set)")
    return lib


def pack(taps: Tensor, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Weights ``[k, C_in, C_out]`` (:func:`zoo.timemajor.tap_weights`' layout, any float dtype) for
    operands of ``dtype``: bfloat16 ``[k, ceil(C_in / 2), C_out, 2]`` (an odd ``C_in`` gets a zero input
    row), or float32 ``[k, C_in, C_out]`` contiguous."""
    k, c_in, c_out = taps.shape
    if dtype == torch.float32:
        return taps.detach().to(torch.float32).contiguous()
    if dtype != torch.bfloat16:
        raise ValueError(f"the kernel takes float32 or bfloat16 operands, not {dtype}")
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


def _operands(src: Tensor, packed: Tensor, what: str) -> tuple[int, int, int]:
    """``(taps, C_in, C_out)`` of :func:`pack`'d weights for ``src``'s dtype, checked against ``src``."""
    if src.dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"src must be float32 or bfloat16, got {src.dtype}")
    _rows_view(src, "src", src.dtype)
    if packed.dtype != src.dtype:
        raise ValueError(f"{what} are {packed.dtype} but src is {src.dtype}: pack(taps, {src.dtype})")
    if src.dtype == torch.float32:
        k, c_in, c_out = packed.shape
        ok = src.shape[1] == c_in
    else:
        k, pairs, c_out, _ = packed.shape
        c_in = src.shape[1]
        ok = c_in in (2 * pairs - 1, 2 * pairs)
    if not ok:
        raise ValueError(f"{what} {tuple(packed.shape)} do not take src's {src.shape[1]} input channels")
    return k, c_in, c_out


def _job(out: Tensor, src: Tensor, first: int, rows: int, c_in: int, c_out: int, taps: int, dilation: int,
         packed: Tensor, bias: Tensor | None, accumulate: bool) -> tuple[_Prod, Tensor | None]:
    _rows_view(out, "out", torch.float32)
    if out.shape[1] != c_out:
        raise ValueError(f"the weights give {c_out} output channels; out has {out.shape[1]}")
    b, bptr = _bias(bias, c_out)
    start = src.data_ptr() + first * src.stride(0) * src.element_size()
    job = _Prod(rows, c_in, c_out, taps, dilation, start, src.stride(0), packed.data_ptr(), bptr, out.data_ptr(),
                out.stride(0), int(accumulate), int(src.dtype == torch.float32))
    return job, b  # the bias tensor must outlive the call


def conv_taps(out: Tensor, src: Tensor, first: int, packed: Tensor, dilation: int, bias: Tensor | None = None,
              *, accumulate: bool = False, threads: int | None = None) -> Tensor:
    """``out[r] (+)= bias + sum_j src[first + r + j * dilation] @ W[j]`` with float32 or bfloat16 ``src``
    and :func:`pack`'d ``W`` of the same dtype, every tap summed in float32 before one store into float32
    ``out``."""
    lib = _lib_or_raise()
    k, c_in, c_out = _operands(src, packed, "packed weights")
    rows = out.shape[0]
    if first < 0 or first + rows + (k - 1) * dilation > src.shape[0]:
        raise ValueError(f"src has {src.shape[0]} rows; {rows} outputs from row {first} with {k} taps of "
                         f"dilation {dilation} need {first + rows + (k - 1) * dilation}")
    job, _b = _job(out, src, first, rows, c_in, c_out, k, dilation, packed, bias, accumulate)
    lib.zoo_tap_conv(ctypes.byref(job), _threads(threads))
    return out


def winograd3(out: Tensor, src: Tensor, first: int, dilation: int, rows: int, packed_u: Tensor,
              bias: Tensor | None = None, *, accumulate: bool = False, threads: int | None = None) -> Tensor:
    """:func:`zoo.timemajor.winograd_conv3` on the kernel: ``out[:rows] (+)= bias +
    sum_j src[first + r + j * dilation] @ w[j]`` for a 3-tap ``w`` whose six transformed filters
    (:func:`zoo.timemajor.winograd_weights`) are :func:`pack`'d in ``src``'s dtype as ``packed_u``.
    ``rows`` is a multiple of ``4 * dilation``; ``src`` needs ``first + rows + 2 * dilation`` rows."""
    lib = _lib_or_raise()
    six, c_in, c_out = _operands(src, packed_u, "transformed filters")
    span = 4 * dilation
    if six != 6 or rows % span or rows > out.shape[0] or first + rows + 2 * dilation > src.shape[0]:
        raise ValueError(f"winograd3: {rows} rows (a multiple of {span}) of out {tuple(out.shape)} from src "
                         f"{tuple(src.shape)} at row {first}, transformed filters {tuple(packed_u.shape)}")
    job, _b = _job(out, src, first, rows // 4, c_in, c_out, 3, dilation, packed_u, bias, accumulate)
    if rows:
        lib.zoo_tap_winograd3(ctypes.byref(job), _threads(threads))
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
