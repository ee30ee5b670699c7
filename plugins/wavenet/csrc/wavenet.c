/* The compiled WaveNet sampling loop (see plugins/wavenet/kernel.py), one ISA level's build: setup.py
   compiles this file once per level with that level's flags and -DZOO_ISA=<level> (the AVX2 + FMA
   intrinsics exist in the levels whose flags enable them, plain C vectorised by the compiler elsewhere);
   wavenet_dispatch.c picks a level at run time. */

#include "wavenet.h"
#include "zoo_dispatch.h"
#include "zoo_math.h"

#include <math.h>
#include <pthread.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* out[q] = tanh(a[q]) sigmoid(b[q]) (zoo_math.h: vectorised, where libm's tanhf and expf are calls). */
static void gate_tanh_sigmoid(int n, const float *restrict a, const float *restrict b, float *restrict out) {
#pragma omp simd
    for (int q = 0; q < n; ++q) out[q] = zoo_gate2(2.0f * a[q], b[q]);
}

/* bfloat16 to float32, exactly (the bits of a bfloat16 are the upper half of a float32's). */
static inline float bf16_to_f32(const uint16_t *p) {
    const uint32_t u = (uint32_t)*p << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The matrix products for float32 weights (matvec_tile_f32 ...) and for bfloat16 weights (..._bf16). */
#define WN_FN(name) name##_f32
#define wn_weight float
#define WN_W(p) (*(p))
#define WN_W8(p) _mm256_loadu_ps(p)
#ifdef __AVX512F__
/* 32 float32 weights (or outputs) as two registers in column order. */
#define WN_ZW(p, lo, hi) (*(lo) = _mm512_loadu_ps(p), *(hi) = _mm512_loadu_ps((p) + 16))
#define WN_ZIN(y, lo, hi) WN_ZW(y, lo, hi)
#define WN_ZOUT(y, lo, hi) (_mm512_storeu_ps(y, lo), _mm512_storeu_ps((y) + 16, hi))
#endif
#include "wavenet_tiles.h"
#undef WN_FN
#undef wn_weight
#undef WN_W
#undef WN_W8
#ifdef __AVX512F__
#undef WN_ZW
#undef WN_ZIN
#undef WN_ZOUT
/* 32 bfloat16 weights widened as two registers, the even columns and the odd ones (a 32-bit lane holds
   columns 2j and 2j + 1: shifting it left by 16 or masking its low half off gives them as float32, two
   simple ops where widening in column order takes shuffles); the outputs' accumulators are held in the
   same even / odd order, gathered on load and interleaved back on store. */
#define WN_ZW(p, ev, od)                                                                   \
    do {                                                                                   \
        const __m512i w_ = _mm512_loadu_si512((const void *)(p));                          \
        *(ev) = _mm512_castsi512_ps(_mm512_slli_epi32(w_, 16));                            \
        *(od) = _mm512_castsi512_ps(_mm512_and_si512(w_, _mm512_set1_epi32((int)0xFFFF0000u))); \
    } while (0)
#define WN_ZIN(y, ev, od)                                                                                        \
    do {                                                                                                         \
        const __m512 a_ = _mm512_loadu_ps(y), b_ = _mm512_loadu_ps((y) + 16);                                    \
        *(ev) = _mm512_permutex2var_ps(a_, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b_); \
        *(od) = _mm512_permutex2var_ps(a_, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b_); \
    } while (0)
#define WN_ZOUT(y, ev, od)                                                                                        \
    do {                                                                                                          \
        _mm512_storeu_ps(y, _mm512_permutex2var_ps(ev, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), od)); \
        _mm512_storeu_ps((y) + 16, _mm512_permutex2var_ps(ev, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), od)); \
    } while (0)
#endif
#define WN_FN(name) name##_bf16
#define wn_weight uint16_t
#define WN_W(p) bf16_to_f32(p)
#define WN_W8(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#include "wavenet_tiles.h"
#undef WN_FN
#undef wn_weight
#undef WN_W
#undef WN_W8
#ifdef __AVX512F__
#undef WN_ZW
#undef WN_ZIN
#undef WN_ZOUT
#endif

#define PRE_GROUP 48 /* past-tap input vectors per matvec_tile_many call */

/* Work sharing: with nth threads, thread p owns a contiguous run of the column tiles of every product
   (tiles p * n / nth .. (p + 1) * n / nth - 1) and the elementwise work on those columns, so each output is
   made by one thread with the same sums as with one thread (the samples do not depend on nth).  The
   threads meet at a barrier whenever a full vector is needed as the next product's input. */
typedef struct {
    atomic_int count;
    atomic_int phase;
    int n;
} zoo_barrier;

static void barrier_wait(zoo_barrier *bar, int *phase) {
    const int next = *phase + 1;
    *phase = next;
    if (bar->n == 1) return;
    if (atomic_fetch_add(&bar->count, 1) == bar->n - 1) {
        atomic_store(&bar->count, 0);
        atomic_store(&bar->phase, next);
        return;
    }
    for (int spins = 0; atomic_load_explicit(&bar->phase, memory_order_acquire) != next; ++spins) {
        if (spins < 4000) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        } else {
            sched_yield(); /* the other thread is not running: do not burn its core */
        }
    }
}

/* Columns [*lo, *hi) of thread p's share of an ``out``-column product (whole tiles, possibly empty). */
static inline void share(int out, int p, int nth, int *lo, int *hi) {
    const int n = (out + TW - 1) / TW;
    *lo = (int)((long)p * n / nth) * TW;
    *hi = (int)((long)(p + 1) * n / nth) * TW;
    if (*lo > out) *lo = out;
    if (*hi > out) *hi = out;
}

/* Like share() but elementwise (any boundaries). */
static inline void share_cols(int n, int p, int nth, int *lo, int *hi) {
    *lo = (int)((long)p * n / nth);
    *hi = (int)((long)(p + 1) * n / nth);
}

typedef struct {
    int B, T, L, R, G, S, K, Q, FK, CIN, OUT, front_relu, skip_mode, dist, n_mix, nth;
    long t0;
    const float *front_w, *front_b, *br, *bs, *h1b, *h2b, *cond, *draws1, *draws2;
    const void *wd, *wr, *ws, *h1w, *h2w; /* tile-packed, float32 or bfloat16 (wdtype) */
    int wdtype;
    const uint8_t *has_res;
    const int64_t *offsets;
    float residual_scale, log_min, temperature;
    float *layer_buf, *front_buf, *x_in, *samples, *work, *pre;
    zoo_barrier bar;
} zoo_job;

/* The address of weight `off` of w (float32 or bfloat16 weights, by c->wdtype). */
static const void *w_at(const zoo_job *c, const void *w, long off) {
    return (const char *)w + off * (c->wdtype == WN_WEIGHTS_BF16 ? (long)sizeof(uint16_t) : (long)sizeof(float));
}

/* y[b, lo:hi] += x[b] @ W[:, lo:hi] for the tile-packed matrix W starting `off` weights into w (float32 or
   bfloat16 weights, by c->wdtype); lo a multiple of TW; `then`: the first tile of the product this thread
   runs next (w_at), prefetched during the last tile (NULL: none). */
static void mv_cols(const zoo_job *c, int nb, int in, int out, int lo, int hi, const float *x, long nx,
                    const void *w, long off, float *y, long ny, const void *then) {
    if (c->wdtype == WN_WEIGHTS_BF16)
        matvec_cols_bf16(nb, in, out, lo, hi, x, nx, (const uint16_t *)w + off, y, ny, (const uint16_t *)then);
    else matvec_cols_f32(nb, in, out, lo, hi, x, nx, (const float *)w + off, y, ny, (const float *)then);
}

/* ys[v] += xs[v] @ W for one tile of n columns starting `off` weights into w (as mv_cols); a full tile
   prefetches the full tile starting `next` weights into w meanwhile (-1: none). */
static void mv_tile_many(const zoo_job *c, int nv, int in, int n, const float *const *xs, const void *w, long off,
                         float *const *ys, long next) {
    if (c->wdtype == WN_WEIGHTS_BF16) {
        const uint16_t *wt = (const uint16_t *)w + off;
        if (n == TW) matvec_tile_many_bf16(nv, in, xs, wt, ys, next < 0 ? NULL : (const uint16_t *)w + next);
        else for (int v = 0; v < nv; ++v) matvec_tile_bf16(1, in, n, xs[v], 0, wt, ys[v], 0);
    } else {
        const float *wt = (const float *)w + off;
        if (n == TW) matvec_tile_many_f32(nv, in, xs, wt, ys, next < 0 ? NULL : (const float *)w + next);
        else for (int v = 0; v < nv; ++v) matvec_tile_f32(1, in, n, xs[v], 0, wt, ys[v], 0);
    }
}

/* Append the current input to the front conv's window of the last FK inputs. */
static void push_input(const zoo_job *c) {
    for (int b = 0; b < c->B; ++b) {
        float *fb = c->front_buf + (long)b * c->FK * c->CIN;
        if (c->FK > 1) memmove(fb, fb + c->CIN, sizeof(float) * (size_t)(c->FK - 1) * c->CIN);
        memcpy(fb + (long)(c->FK - 1) * c->CIN, c->x_in + (long)b * c->CIN, sizeof(float) * c->CIN);
    }
}

/* Draw step j's next input from the head's output y (thread 0). */
static void sample_next(const zoo_job *c, int j, const float *y) {
    const int B = c->B, CIN = c->CIN, OUT = c->OUT, n_mix = c->n_mix;
    for (int b = 0; b < B; ++b) {
        const float *yb = y + (long)b * OUT;
        float *xb = c->x_in + (long)b * CIN;
        if (c->dist == 0) {
            const float *u = c->draws1 + ((long)j * B + b) * n_mix;
            int best = 0;
            float best_v = -INFINITY;
            for (int m = 0; m < n_mix; ++m) {
                const float v = yb[m] - logf(-logf(u[m]));
                if (v > best_v) { best_v = v; best = m; }
            }
            float ls = yb[2 * n_mix + best];
            if (ls < c->log_min) ls = c->log_min;
            const float ul = c->draws2[(long)j * B + b];
            float x = yb[n_mix + best] + c->temperature * expf(ls) * (logf(ul) - logf(1.0f - ul));
            x = x < -1.0f ? -1.0f : (x > 1.0f ? 1.0f : x);
            c->samples[(long)j * B + b] = x;
            xb[0] = x;
        } else if (c->dist == 1) {
            float ls = yb[1];
            if (ls < c->log_min) ls = c->log_min;
            const float x = yb[0] + c->temperature * expf(ls) * c->draws1[(long)j * B + b];
            c->samples[(long)j * B + b] = x;
            xb[0] = x;
        } else {
            const float *u = c->draws1 + ((long)j * B + b) * CIN;
            int best = 0;
            float best_v = -INFINITY;
            for (int m = 0; m < OUT; ++m) {
                const float v = c->temperature <= 0.0f ? yb[m] : yb[m] / c->temperature - logf(-logf(u[m]));
                if (v > best_v) { best_v = v; best = m; }
            }
            c->samples[(long)j * B + b] = (float)best;
            memset(xb, 0, sizeof(float) * CIN);
            xb[best] = 1.0f;
        }
    }
}

/* The first tile of the product that a thread (its share of the gate's columns starting at g0, of the skips'
   at s0) runs after layer l's taps from k on: see TAPS_THEN in generate_share. */
static const void *taps_then(const zoo_job *c, int l, int kfrom, int g0, int s0) {
    const int K = c->K, R = c->R, G = c->G, half = c->G / 2;
    if (l >= c->L) return w_at(c, c->h1w, (long)s0 * c->S);
    for (int k = kfrom; k < K; ++k)
        if (c->offsets[(long)l * K + k] < 2) return w_at(c, c->wd, (long)l * K * R * G + (long)k * R * G + (long)g0 * R);
    return w_at(c, c->ws, (long)l * half * c->S + (long)s0 * half);
}

static void generate_share(zoo_job *c, int p) {
    const int B = c->B, L = c->L, R = c->R, G = c->G, S = c->S, K = c->K, Q = c->Q, FK = c->FK, CIN = c->CIN;
    const int OUT = c->OUT, nth = c->nth, half = G / 2;
    float *h = c->work;              /* [B, R] residual stream */
    float *tmp = h + (long)B * R;    /* [B, R] */
    float *a = tmp + (long)B * R;    /* [B, G] */
    float *o = a + (long)B * G;      /* [B, half] */
    float *sk = o + (long)B * half;  /* [B, S] skips */
    float *s = sk + (long)B * S;     /* [B, S] one layer's skip */
    float *y1 = s + (long)B * S;     /* [B, S] */
    float *y = y1 + (long)B * S;     /* [B, OUT] */
    int r0, r1, o0c, o1c, s0, s1;
    share(R, p, nth, &r0, &r1);
    share(S, p, nth, &s0, &s1);
    /* The dilated conv's columns: with whole tiles per gate half, a thread takes the same tiles of both
       halves (columns c and half + c, which its gate pairs); otherwise a run of tiles of G, and the gate,
       split on its own, waits for all of them. */
    const int paired = half % TW == 0;
    int ga[2][2], nga = paired ? 2 : 1;
    if (paired) {
        share(half, p, nth, &o0c, &o1c);
        ga[0][0] = o0c, ga[0][1] = o1c, ga[1][0] = half + o0c, ga[1][1] = half + o1c;
    } else {
        share(G, p, nth, &ga[0][0], &ga[0][1]);
        share_cols(half, p, nth, &o0c, &o1c);
    }
    const int nr = r1 - r0, ns = s1 - s0;
    const float inv_sqrt_l = sqrtf(1.0f / (float)L);
    /* The first tile this thread multiplies by after layer l's taps from k on: the next tap that reads this
       step's inputs (offset 0 or 1: the others come from the past-tap products), else the layer's skip conv;
       after the last layer's skip, the head's first 1x1. Prefetched during the product before it. */
#define TAPS_THEN(l, kfrom) taps_then(c, (l), (kfrom), ga[0][0], s0)

    int phase = 0;
    for (int j = 0; j < c->T; ++j) {
        const long t = c->t0 + j;
        /* front conv over the last FK inputs (the window already holds this step's input) */
        for (int b = 0; b < B; ++b) memcpy(h + (long)b * R + r0, c->front_b + r0, sizeof(float) * nr);
        for (int i = 0; i < FK * CIN; ++i) {
            const float *row = c->front_w + (long)i * R + r0;
            for (int b = 0; b < B; ++b) {
                const float v = c->front_buf[(long)b * FK * CIN + i];
                if (v != 0.0f) axpy_f32(nr, v, row, h + (long)b * R + r0);
            }
        }
        if (c->front_relu)
            for (int b = 0; b < B; ++b)
                for (float *hb = h + (long)b * R, *he = hb + r1, *hq = hb + r0; hq < he; ++hq)
                    *hq = *hq > 0.0f ? *hq : 0.0f;
        const int pos = (int)(t % Q);
        float *pre_l = c->pre;
        for (int l = 0; l < L; ++l) {
            const long wdl = (long)l * K * R * G; /* layer l's taps in wd */
            for (int b = 0; b < B; ++b) {
                memcpy(c->layer_buf + (((long)l * B + b) * Q + pos) * R + r0, h + (long)b * R + r0, sizeof(float) * nr);
                for (int u = 0; u < nga; ++u)
                    memcpy(a + (long)b * G + ga[u][0], c->cond + (((long)j * B + b) * L + l) * G + ga[u][0],
                           sizeof(float) * (size_t)(ga[u][1] - ga[u][0]));
            }
            barrier_wait(&c->bar, &phase); /* the layer's input is complete */
            for (int k = 0; k < K; ++k) {
                const long off = c->offsets[(long)l * K + k];
                const long wk = wdl + (long)k * R * G;
                if (off >= 2) {
                    /* A past tap: its input for the next m = min(off, PRE_MAX) steps is already in the ring,
                       so its products for those steps are made in one pass over its weights (read once
                       per m steps instead of every step) into pre [m, B, G], and step t reads row t % m. */
                    const long m = off < PRE_MAX ? off : PRE_MAX;
                    float *pk = pre_l;
                    pre_l += m * B * G;
                    const float *pr = pk + (t % m) * B * G;
                    for (int u = 0; u < nga; ++u) {
                        const int g0 = ga[u][0], g1 = ga[u][1];
                        if (t % m == 0) {
                            for (long col = 0; col < m; ++col)
                                for (int b = 0; b < B; ++b)
                                    memset(pk + (col * B + b) * G + g0, 0, sizeof(float) * (size_t)(g1 - g0));
                            for (int q0 = g0; q0 < g1; q0 += TW) {
                                const int n = G - q0 < TW ? G - q0 : TW;
                                /* one tile of the product for every (step, item) input, in groups of
                                   PRE_GROUP vectors: the tile stays in cache */
                                const float *xs[PRE_GROUP];
                                float *ys[PRE_GROUP];
                                int nv = 0;
                                /* the next tile of this thread's columns, prefetched during the first group */
                                long next = q0 + 2 * TW <= g1 ? wk + (long)(q0 + TW) * R : -1;
                                for (long col = 0; col < m; ++col) {
                                    long idx = (t + col - off) % Q;
                                    if (idx < 0) idx += Q;
                                    for (int b = 0; b < B; ++b) {
                                        xs[nv] = c->layer_buf + (((long)l * B + b) * Q + idx) * R;
                                        ys[nv] = pk + (col * B + b) * G + q0;
                                        if (++nv == PRE_GROUP || (col == m - 1 && b == B - 1)) {
                                            mv_tile_many(c, nv, R, n, xs, c->wd, wk + (long)q0 * R, ys, next);
                                            nv = 0;
                                            next = -1;
                                        }
                                    }
                                }
                            }
                        }
                        for (int b = 0; b < B; ++b)
                            for (int q = g0; q < g1; ++q) a[(long)b * G + q] += pr[(long)b * G + q];
                    }
                    continue;
                }
                long idx = (t - off) % Q;
                if (idx < 0) idx += Q;
                for (int u = 0; u < nga; ++u)
                    mv_cols(c, B, R, G, ga[u][0], ga[u][1], c->layer_buf + ((long)l * B * Q + idx) * R, (long)Q * R,
                            c->wd, wk, a, G,
                            u + 1 < nga ? w_at(c, c->wd, wk + (long)ga[u + 1][0] * R) : TAPS_THEN(l, k + 1));
            }
            if (nth > 1 && !paired) barrier_wait(&c->bar, &phase); /* a complete (the gate's columns straddle) */
            for (int b = 0; b < B; ++b) {
                const float *ab = a + (long)b * G;
                float *ob = o + (long)b * half;
                gate_tanh_sigmoid(o1c - o0c, ab + o0c, ab + half + o0c, ob + o0c);
            }
            barrier_wait(&c->bar, &phase); /* o complete */
            /* the last layer's residual output is never read (the head takes the skips): not computed */
            const int res_l = c->has_res[l] && l < L - 1;
            for (int b = 0; b < B; ++b) {
                memcpy(s + (long)b * S + s0, c->bs + (long)l * S + s0, sizeof(float) * ns);
                if (res_l) memcpy(tmp + (long)b * R + r0, c->br + (long)l * R + r0, sizeof(float) * nr);
            }
            mv_cols(c, B, half, S, s0, s1, o, half, c->ws, (long)l * half * S, s, S,
                    res_l ? w_at(c, c->wr, (long)l * half * R + (long)r0 * half) : TAPS_THEN(l + 1, 0));
            if (res_l) mv_cols(c, B, half, R, r0, r1, o, half, c->wr, (long)l * half * R, tmp, R, TAPS_THEN(l + 1, 0));
            for (int b = 0; b < B; ++b) {
                float *skb = sk + (long)b * S;
                const float *sb = s + (long)b * S;
                if (l == 0) memcpy(skb + s0, sb + s0, sizeof(float) * ns);
                else if (c->skip_mode == 2)
                    for (int q = s0; q < s1; ++q) skb[q] = (skb[q] + sb[q]) * 0.7071067811865476f;
                else
                    for (int q = s0; q < s1; ++q) skb[q] = skb[q] + sb[q];
                if (res_l) {
                    float *hb = h + (long)b * R;
                    const float *rb = tmp + (long)b * R;
                    for (int q = r0; q < r1; ++q) hb[q] = (hb[q] + rb[q]) * c->residual_scale;
                }
            }
        }
        /* head: relu -> 1x1 -> relu -> 1x1 */
        for (int b = 0; b < B; ++b) {
            float *skb = sk + (long)b * S;
            for (int q = s0; q < s1; ++q) {
                float v = c->skip_mode == 1 ? skb[q] * inv_sqrt_l : skb[q];
                skb[q] = v > 0.0f ? v : 0.0f;
            }
            memcpy(y1 + (long)b * S + s0, c->h1b + s0, sizeof(float) * ns);
        }
        barrier_wait(&c->bar, &phase); /* skips complete */
        mv_cols(c, B, S, S, s0, s1, sk, S, c->h1w, 0, y1, S, TAPS_THEN(0, 0));
        for (int b = 0; b < B; ++b)
            for (int q = s0; q < s1; ++q) y1[(long)b * S + q] = y1[(long)b * S + q] > 0.0f ? y1[(long)b * S + q] : 0.0f;
        barrier_wait(&c->bar, &phase); /* y1 complete */
        if (p == 0) {
            for (int b = 0; b < B; ++b) memcpy(y + (long)b * OUT, c->h2b, sizeof(float) * OUT);
            mv_cols(c, B, S, OUT, 0, OUT, y1, S, c->h2w, 0, y, OUT, NULL);
            sample_next(c, j, y);
            if (j + 1 < c->T) push_input(c);
        }
        barrier_wait(&c->bar, &phase); /* the next input is in the window */
    }
}
#undef TAPS_THEN

typedef struct {
    zoo_job *job;
    int p;
    atomic_int *go;
} zoo_share;

static void *generate_worker(void *arg) {
    zoo_share *sh = (zoo_share *)arg;
    int v;
    while ((v = atomic_load(sh->go)) == 0) sched_yield();
    if (v > 0) generate_share(sh->job, sh->p);
    return NULL;
}

#define MAX_THREADS 64

static int generate(WAVENET_GENERATE_PARAMS) {
    zoo_job c = {B, T, L, R, G, S, K, Q, FK, CIN, OUT, front_relu, skip_mode, dist, n_mix, 1, t0,
                 front_w, front_b, br, bs, h1b, h2b, cond, draws1, draws2, wd, wr, ws, h1w, h2w, wdtype, has_res,
                 offsets, residual_scale, log_min, temperature, layer_buf, front_buf, x_in, samples, work, pre};
    if (wdtype != WN_WEIGHTS_F32 && wdtype != WN_WEIGHTS_BF16) return -1;
    if (T <= 0) return 0;
    int nth = nthreads < 1 ? 1 : nthreads;
    const int g_tiles = (G / 2) % TW == 0 ? G / 2 / TW : (G + TW - 1) / TW;
    if (nth > g_tiles) nth = g_tiles; /* more threads than tiles to share would idle */
    if (nth > MAX_THREADS) nth = MAX_THREADS;
    pthread_t threads[MAX_THREADS];
    zoo_share shares[MAX_THREADS];
    atomic_int go;
    atomic_init(&go, 0);
    int started = 1;
    for (int p = 1; p < nth; ++p) {
        shares[p] = (zoo_share){&c, p, &go};
        if (pthread_create(&threads[p], NULL, generate_worker, &shares[p]) != 0) break;
        ++started;
    }
    if (started < nth) { /* could not start them all: run alone (the same samples) */
        atomic_store(&go, -1);
        for (int p = 1; p < started; ++p) pthread_join(threads[p], NULL);
        nth = started = 1;
    }
    c.nth = nth;
    c.bar.n = nth;
    atomic_init(&c.bar.count, 0);
    atomic_init(&c.bar.phase, 0);
    push_input(&c);
    atomic_store(&go, 1);
    generate_share(&c, 0);
    for (int p = 1; p < started; ++p) pthread_join(threads[p], NULL);
    return 0;
}

const wavenet_ops ZOO_OPS(zoo_wavenet_ops_) = {generate};
