/* zoo.kernels.tapconv's time-major convolutions (see zoo/kernels/tapconv.py), one ISA level's build: setup.py compiles
   this file once per level with that level's flags and -DZOO_ISA=<level>; the #ifdef __AVX512F__ /
   __AVX512BF16__ paths exist in the levels whose flags enable them, plain C (vectorised by the compiler
   for the level) everywhere else.  tapconv_dispatch.c picks a level at run time. */

#include "tapconv.h"
#include "zoo_dispatch.h"
#include "zoo_math.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
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

static int bf16_native(void) {
#ifdef __AVX512BF16__
    return 1;
#else
    return 0;
#endif
}

/* The float32 tiles' vectors: 16 floats in the AVX-512 levels, 8 in the AVX2 one (with FMA); none elsewhere. */
#if defined(__AVX512F__)
#define ZOO_F32_TILES 1
#define VW 16
typedef __m512 vf;
#define vf_zero _mm512_setzero_ps
#define vf_load _mm512_loadu_ps
#define vf_store _mm512_storeu_ps
#define vf_store_aligned _mm512_store_ps
#define vf_set1 _mm512_set1_ps
#define vf_add _mm512_add_ps
#define vf_sub _mm512_sub_ps
#define vf_fmadd _mm512_fmadd_ps
#define vf_fnmadd _mm512_fnmadd_ps
#elif defined(__AVX2__) && defined(__FMA__)
#define ZOO_F32_TILES 1
#define VW 8
typedef __m256 vf;
#define vf_zero _mm256_setzero_ps
#define vf_load _mm256_loadu_ps
#define vf_store _mm256_storeu_ps
#define vf_store_aligned _mm256_store_ps
#define vf_set1 _mm256_set1_ps
#define vf_add _mm256_add_ps
#define vf_sub _mm256_sub_ps
#define vf_fmadd _mm256_fmadd_ps
#define vf_fnmadd _mm256_fnmadd_ps
#endif

/* Whether the float32 tiles read their weights from panel_weights' copies (the AVX2 level's). */
#if defined(ZOO_F32_TILES) && VW == 8
#define VW_PANELS 1
#else
#define VW_PANELS 0
#endif

static int f32_native(void) {
#ifdef ZOO_F32_TILES
    return 1;
#else
    return 0;
#endif
}

/* Work is split into units that threads claim one at a time (zoo_tapconv_parallel_for): blocks of rows, and
   where the rows are too few for UNITS_PER_THREAD blocks per thread, groups of whole 64-wide column panels
   first (each thread then reads only its columns' weights: a wide layer on few rows, e.g. HiFi-GAN's first
   upsampling, 178 rows x 2048 columns of 8 MB of weights, would read all of them once per smaller row block),
   and smaller row blocks only where the columns do not give enough units.  Every output is summed by one
   thread in the same order whatever the split, so the threads change nothing in the results. */
#define UNITS_PER_THREAD 4

/* Rows per block of a thread's share of a product. */
#define RB 192

typedef struct {
    long rows, block; /* rows to do, in blocks of `block` */
    int cols, group;  /* columns, in groups of `group` */
    long nblocks;
    int ngroups;
} split_t;

/* Blocks of at most `block` rows (a multiple of `align`) and column groups of whole `panel`s for nth threads. */
static split_t plan_split(long rows, int cols, long block, long align, int nth, int panel) {
    split_t s = {rows, block, cols, cols, 0, 1};
    const long target = nth > 1 ? (long)UNITS_PER_THREAD * nth : 1;
    s.nblocks = (rows + block - 1) / block;
    if (s.nblocks >= target || rows <= 0) return s;
    const int panels = (cols + panel - 1) / panel;
    const long want = (target + s.nblocks - 1) / s.nblocks;
    const int groups = want < panels ? (int)want : panels;
    s.group = (panels + groups - 1) / groups * panel;
    s.ngroups = (cols + s.group - 1) / s.group;
    if (s.nblocks * s.ngroups < target) { /* still too few: smaller row blocks */
        const long per_group = (target + s.ngroups - 1) / s.ngroups;
        long b = (rows + per_group - 1) / per_group;
        b = (b + align - 1) / align * align;
        s.block = b < align ? align : b;
        s.nblocks = (rows + s.block - 1) / s.block;
    }
    return s;
}

/* Thread-local scratch of at least `size` bytes, 64-byte aligned, one buffer per slot (SCRATCH_WINOGRAD: a
   Winograd block's transforms; SCRATCH_PANEL: the AVX2 tiles' weights, panel_weights), kept for
   the thread's later calls (the pool's and OpenMP's threads persist; freed when a thread exits). */
enum { SCRATCH_WINOGRAD, SCRATCH_PANEL, SCRATCH_SLOTS };
static pthread_key_t scratch_key[SCRATCH_SLOTS];
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
typedef struct { void *p; size_t size; } scratch_t;
static void scratch_free(void *arg) {
    scratch_t *s = (scratch_t *)arg;
    free(s->p);
    free(s);
}
static void scratch_init(void) {
    for (int i = 0; i < SCRATCH_SLOTS; ++i) (void)pthread_key_create(&scratch_key[i], scratch_free);
}
static void *scratch(int slot, size_t size) {
    pthread_once(&scratch_once, scratch_init);
    scratch_t *s = (scratch_t *)pthread_getspecific(scratch_key[slot]);
    if (!s) {
        s = (scratch_t *)calloc(1, sizeof(*s));
        if (!s || pthread_setspecific(scratch_key[slot], s)) { free(s); return NULL; }
    }
    if (s->size < size) {
        free(s->p);
        s->p = aligned_alloc(64, (size + 63) / 64 * 64);
        s->size = s->p ? size : 0;
    }
    return s->p;
}

/* The gated store of one row's 64-column panel starting at column n (t: its 64 sums, bias not yet added):
   32 gate values at pair index n / 2. */
static inline void gate_row(const prod_t *p, long r, int n, float *restrict t) {
    const float twice = p->gate_doubled ? 1.0f : 2.0f;
    if (p->bias) {
#pragma omp simd
        for (int c = 0; c < 64; ++c) t[c] += p->bias[n + c];
    }
    bf16 *g = p->gate + r * p->ldg + n / 2;
    if (p->keep) {
        float *k = p->keep + r * p->ldk + n / 2;
#pragma omp simd
        for (int c = 0; c < 32; ++c) {
            const float v = -zoo_gate2(twice * t[c], t[32 + c]);
            g[c] = f2bf(v);
            k[c] = v;
        }
    } else {
#pragma omp simd
        for (int c = 0; c < 32; ++c) g[c] = f2bf(-zoo_gate2(twice * t[c], t[32 + c]));
    }
}

static inline void store_row(const prod_t *p, long r, int n, float x) {
    float *o = p->out + r * p->ldo + n;
    if (p->bias) x += p->bias[n];
    *o = p->accumulate ? *o + x : x;
}

#ifdef ZOO_F32_TILES
/* MR rows x VW NV columns of sums in registers, stored (bias added, or added to the output), or gated where
   the tile is one whole 64-column gate panel (the AVX-512 levels' 64-wide tiles). */
static inline __attribute__((always_inline)) void tile_store(const prod_t *p, long r0, int n0, vf acc[12][4],
                                                             const int MR, const int NV) {
    if (NV * VW == 64 && p->gate) {
#pragma GCC unroll 12
        for (int i = 0; i < MR; ++i) {
            float t[64] __attribute__((aligned(64)));
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) vf_store_aligned(t + VW * v, acc[i][v]);
            gate_row(p, r0 + i, n0, t);
        }
        return;
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
        float *o = p->out + (r0 + i) * p->ldo + n0;
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
            vf x = acc[i][v];
            if (p->bias) x = vf_add(x, vf_load(p->bias + n0 + VW * v));
            if (p->accumulate) x = vf_add(vf_load(o + VW * v), x);
            vf_store(o + VW * v, x);
        }
    }
}

/* The output lines the next tile (MR rows down) stores, fetched for writing while this one sums (none where
   the tile stores the gate instead). */
static inline __attribute__((always_inline)) void prefetch_next_out(const prod_t *p, long r0, int n0, const int MR,
                                                                    const int NV) {
    if (p->gate) return;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v += 64 / (VW * 4))  /* one prefetch per 64-byte line */
            _mm_prefetch((const char *)(p->out + (r0 + MR + i) * p->ldo + n0 + VW * v), _MM_HINT_ET0);
}

/* acc[i][v] += sum_c a[i * lda + c] b[c * ws + VW v] over c < cin: one float32 operand's share of a tile. */
static inline __attribute__((always_inline)) void sum_f32(vf acc[12][4], const float *a, long lda,
                                                          const float *b, long ws, int cin, const int MR,
                                                          const int NV) {
    for (int c = 0; c < cin; ++c) {
        if ((c & 15) == 0) {
#pragma GCC unroll 12
            for (int i = 0; i < MR; ++i) _mm_prefetch((const char *)(a + (i + MR) * lda + c), _MM_HINT_T0);
        }
        vf bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) bv[v] = vf_load(b + c * ws + v * VW);
#pragma GCC unroll 12
        for (int i = 0; i < MR; ++i) {
            const vf av = vf_set1(a[i * lda + c]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[i][v] = vf_fmadd(av, bv[v], acc[i][v]);
        }
    }
}

/* A float32 tile's weights: tap j's row c at w + (j cin + c) ws, src2's row c at w2 + c ws (ws: cout where they
   are read in place from the packed weights, 16 in panel_weights' copies). */
typedef struct { const float *w, *w2; long ws; } wpanel_t;

/* MR rows x VW NV columns of a float32 product, all taps (and src2) summed in registers. */
static inline __attribute__((always_inline)) void tile_f32(const prod_t *p, long r0, int n0, const int MR,
                                                           const int NV, const wpanel_t *wp) {
    vf acc[12][4];
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = vf_zero();
    const long ws = wp->ws;
    prefetch_next_out(p, r0, n0, MR, NV);
    for (int j = 0; j < p->taps; ++j)
        sum_f32(acc, (const float *)p->src + (r0 + j * p->dil) * p->lds, p->lds, wp->w + (long)j * p->cin * ws, ws,
                p->cin, MR, NV);
    if (p->src2) sum_f32(acc, (const float *)p->src2 + r0 * p->lds2, p->lds2, wp->w2, ws, p->cin2, MR, NV);
    tile_store(p, r0, n0, acc, MR, NV);
}
#endif

#ifdef __AVX512BF16__
/* The same with bfloat16 operands: each vdpbf16ps adds a pair of inputs' products (an odd cin's last input
   alone: its pair's weight is 0). */
static inline __attribute__((always_inline)) void sum_bf16(__m512 acc[12][4], const bf16 *a, long lda,
                                                           const bf16 *b, long ws, int cin, const int MR,
                                                           const int NV) {
    const int P = (cin + 1) / 2, full = cin / 2;
    for (int q = 0; q < P; ++q) {
        if ((q & 15) == 0) {
#pragma GCC unroll 12
            for (int i = 0; i < MR; ++i) _mm_prefetch((const char *)(a + (i + MR) * lda + 2 * q), _MM_HINT_T0);
        }
        __m512i bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512((const void *)(b + q * ws + v * 32));
#pragma GCC unroll 12
        for (int i = 0; i < MR; ++i) {
            int32_t ai;
            if (q < full) memcpy(&ai, a + i * lda + 2 * q, 4);
            else ai = a[i * lda + 2 * q];
            __m512bh av = (__m512bh)_mm512_set1_epi32(ai);
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, (__m512bh)bv[v]);
        }
    }
}

static inline __attribute__((always_inline)) void tile_bf16(const prod_t *p, long r0, int n0, const int MR,
                                                            const int NV) {
    __m512 acc[12][4];
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
    const long ws = (long)p->cout * 2;
    const long tap_size = (long)(p->cin + 1) / 2 * ws;
    prefetch_next_out(p, r0, n0, MR, NV);
    for (int j = 0; j < p->taps; ++j)
        sum_bf16(acc, (const bf16 *)p->src + (r0 + j * p->dil) * p->lds, p->lds,
                 (const bf16 *)p->w + j * tap_size + (long)n0 * 2, ws, p->cin, MR, NV);
    if (p->src2)
        sum_bf16(acc, (const bf16 *)p->src2 + r0 * p->lds2, p->lds2, (const bf16 *)p->w2 + (long)n0 * 2, ws,
                 p->cin2, MR, NV);
    tile_store(p, r0, n0, acc, MR, NV);
}
#endif

#ifdef ZOO_F32_TILES
static inline __attribute__((always_inline)) void tile(const prod_t *p, long r, int n, const int MR, const int NV,
                                                       const wpanel_t *wp) {
#ifdef __AVX512BF16__
    if (!p->f32) { tile_bf16(p, r, n, MR, NV); return; }
#endif
    tile_f32(p, r, n, MR, NV, wp);
}

#define TILE(MR, NV) \
    static void tile_##MR##_##NV(const prod_t *p, long r, int n, const wpanel_t *wp) { tile(p, r, n, MR, NV, wp); }
TILE(6, 4)
TILE(1, 4)
TILE(6, 2)
TILE(12, 2)
TILE(1, 2)
TILE(12, 1)
TILE(1, 1)
#undef TILE

/* Rows [m0, m1) of the tiles' product in columns [nb, ne) (ne - nb a multiple of VW): the widest tiles that
   fit the columns left (each keeps at most 12 x 2 or 6 x 4 vectors of sums in registers: 24 of AVX-512's 32,
   12 of AVX2's 16), then single rows. */
static void tiled_rows(const prod_t *p, long m0, long m1, int nb, int ne, const float *panels, long pstride) {
    for (int n0 = nb; n0 < ne;) {
        const int left = ne - n0;
        const int width = VW == 16 ? (left >= 64 ? 64 : left >= 32 ? 32 : 16) : (left >= 16 ? 16 : 8);
        wpanel_t wp = {(const float *)p->w + n0, p->w2 ? (const float *)p->w2 + n0 : NULL, p->cout};
        if (VW_PANELS) {  /* the panel's rows side by side */
            const float *w = panels + n0 / 16 * pstride;
            wp = (wpanel_t){w, w + (long)p->taps * p->cin * 16, 16};
        }
        long r = m0;
        if (width == 64) {
            for (; r + 6 <= m1; r += 6) tile_6_4(p, r, n0, &wp);
            for (; r < m1; ++r) tile_1_4(p, r, n0, &wp);
        } else if (width == 32) {
            for (; r + 12 <= m1; r += 12) tile_12_2(p, r, n0, &wp);
            for (; r < m1; ++r) tile_1_2(p, r, n0, &wp);
        } else if (width == 16 && VW == 8) {
            for (; r + 6 <= m1; r += 6) tile_6_2(p, r, n0, &wp);
            for (; r < m1; ++r) tile_1_2(p, r, n0, &wp);
        } else {
            for (; r + 12 <= m1; r += 12) tile_12_1(p, r, n0, &wp);
            for (; r < m1; ++r) tile_1_1(p, r, n0, &wp);
        }
        n0 += width;
    }
}
#endif

/* The plain C form of sum_f32 / sum_bf16: acc[i][n] += one operand's products for nr rows (rows lds apart from
   a, in src's dtype) and the C columns from nb of weights w (one tap's, packed as for the tiles). */
static void sum_plain(const prod_t *p, float *acc, int nr, int C, int nb, const void *a, long lds, const void *w,
                      int cin) {
    if (p->f32) {
        for (int c = 0; c < cin; ++c) {
            const float *wc = (const float *)w + (long)c * p->cout + nb;
            for (int i = 0; i < nr; ++i) {
                const float x = ((const float *)a)[i * lds + c];
                float *ai = acc + (size_t)i * C;
#pragma omp simd
                for (int n = 0; n < C; ++n) ai[n] += x * wc[n];
            }
        }
        return;
    }
    const long ws = (long)p->cout * 2;
    for (int q = 0; q < (cin + 1) / 2; ++q) {
        const bf16 *wq = (const bf16 *)w + q * ws + 2L * nb;
        for (int i = 0; i < nr; ++i) {
            const bf16 *ar = (const bf16 *)a + i * lds + 2 * q;
            const float x0 = bf2f(ar[0]), x1 = 2 * q + 1 < cin ? bf2f(ar[1]) : 0.0f; /* odd cin: its last alone */
            float *ai = acc + (size_t)i * C;
#pragma omp simd
            for (int n = 0; n < C; ++n) ai[n] += x0 * bf2f(wq[2 * n]) + x1 * bf2f(wq[2 * n + 1]);
        }
    }
}

/* The AVX2 tiles' weights in 16-column panels: this thread's copy of the float32 weight rows w (`rows` of them,
   cout apart) and then w2 (`rows2`), panel P (columns [16 P, 16 P + 16)) at P * (rows + rows2) * 16, its rows
   16 floats apart, one contiguous stream (in the packed weights a tile's rows are cout floats apart, for most
   layers a power of two, and the rows of a panel share a few cache sets and evict each other); a last panel
   of 8 columns fills the first 8 of each row.  Made once per call (`gen`) on each thread, reading each weight
   row once. */
static const float *panel_weights(const float *w, long rows, const float *w2, long rows2, int cout, long gen) {
    static __thread long made_gen = 0;
    static __thread const float *made_w = NULL;
    const long k = rows + rows2;
    float *buf = (float *)scratch(SCRATCH_PANEL, sizeof(float) * (size_t)k * (size_t)((cout + 15) / 16 * 16));
    if (!buf) abort(); /* out of memory for one layer's weights: nothing sensible is left to do */
    if (made_gen == gen && made_w == w) return buf;  /* the same call's weights: the same size, not reallocated */
    const int full = cout / 16, tail = cout % 16;
    for (long q = 0; q < k; ++q) {
        const float *row = q < rows ? w + q * cout : w2 + (q - rows) * cout;
        for (int P = 0; P < full; ++P) memcpy(buf + (P * k + q) * 16, row + 16 * P, sizeof(float) * 16);
        if (tail) memcpy(buf + (full * k + q) * 16, row + 16 * full, sizeof(float) * tail);
    }
    made_gen = gen;
    made_w = w;
    return buf;
}

/* Whether this level's tiles do job p (else plain C): bfloat16 only with AVX-512 BF16, a gate only on the
   AVX-512 levels' 64-column tiles (AVX2's are 16 wide), outputs a whole number of vectors wide. */
static int tiled(const prod_t *p) {
#ifdef ZOO_F32_TILES
#ifdef __AVX512BF16__
    const int dtype_ok = 1;
#else
    const int dtype_ok = p->f32;
#endif
    return dtype_ok && (VW == 16 || !p->gate) && p->cout % VW == 0;
#else
    (void)p;
    return 0;
#endif
}

/* Rows [a, b) and columns [nb, ne) of the product on this thread: blocks of RB rows, within each every column
   panel (nb a multiple of 16 when cout is); `panels`: panel_weights' copy where the tiles read one (AVX2). */
static void prod_block(const prod_t *p, long a, long b, int nb, int ne, const float *panels, long pstride) {
#ifdef ZOO_F32_TILES
    if (tiled(p)) {
        for (long m0 = a; m0 < b; m0 += RB) tiled_rows(p, m0, m0 + RB < b ? m0 + RB : b, nb, ne, panels, pstride);
        return;
    }
#endif
    /* Plain C: four rows at a time share each weight pair; every pair of inputs is one fused step. */
    const int C = ne - nb;
    const size_t esize = p->f32 ? sizeof(float) : sizeof(bf16);
    const long tap_size = p->f32 ? (long)p->cin * p->cout : (long)(p->cin + 1) / 2 * p->cout * 2;
    float *acc = (float *)malloc(sizeof(float) * 4 * (size_t)C);
    if (!acc) return;
    for (long r0 = a; r0 < b; r0 += 4) {
        int nr = b - r0 < 4 ? (int)(b - r0) : 4;
        memset(acc, 0, sizeof(float) * 4 * (size_t)C);
        for (int j = 0; j < p->taps; ++j)
            sum_plain(p, acc, nr, C, nb, (const char *)p->src + (r0 + j * p->dil) * p->lds * (long)esize, p->lds,
                      (const char *)p->w + j * tap_size * (long)esize, p->cin);
        if (p->src2)
            sum_plain(p, acc, nr, C, nb, (const char *)p->src2 + r0 * p->lds2 * (long)esize, p->lds2, p->w2, p->cin2);
        for (int i = 0; i < nr; ++i) {
            if (p->gate)  /* nb and C are whole 64-column panels here */
                for (int n = 0; n < C; n += 64) gate_row(p, r0 + i, nb + n, acc + (size_t)i * C + n);
            else
                for (int n = 0; n < C; ++n) store_row(p, r0 + i, nb + n, acc[(size_t)i * C + n]);
        }
    }
    free(acc);
}

/* A job split into units (a block of rows or tiles, a group of columns), each done by `block`. */
typedef void (*block_fn)(const prod_t *p, long a, long b, int nb, int ne, long gen);
typedef struct { const prod_t *p; split_t s; block_fn block; long gen; } units_t;

/* A number of its own for each call (panel_weights). */
static long next_gen(void) {
    static long gen = 0;
    return __atomic_add_fetch(&gen, 1, __ATOMIC_RELAXED);
}

static void run_units(const void *ctx, long a, long b) {
    const units_t *j = (const units_t *)ctx;
    for (long u = a; u < b; ++u) {
        const long r0 = u / j->s.ngroups * j->s.block;
        const long r1 = r0 + j->s.block < j->s.rows ? r0 + j->s.block : j->s.rows;
        const int n0 = (int)(u % j->s.ngroups) * j->s.group;
        const int n1 = n0 + j->s.group < j->s.cols ? n0 + j->s.group : j->s.cols;
        j->block(j->p, r0, r1, n0, n1, j->gen);
    }
}

/* A unit of a product: its panels (AVX2 float32 tiles) made once per call on this thread, then its rows. */
static void conv_block(const prod_t *p, long a, long b, int nb, int ne, long gen) {
    const float *panels = NULL;
    long pstride = 0;
    if (VW_PANELS && tiled(p)) {
        const long rows = (long)p->taps * p->cin;
        panels = panel_weights((const float *)p->w, rows, (const float *)p->w2, p->src2 ? p->cin2 : 0, p->cout, gen);
        pstride = (rows + (p->src2 ? p->cin2 : 0)) * 16;
    }
    prod_block(p, a, b, nb, ne, panels, pstride);
}

/* Row blocks of up to RB rows (multiples of 12, the tiles' heights), column groups of 64-wide panels where the
   rows are few (only when cout is a multiple of 16: the tiles' widths; else one group). */
static void tap_conv(const prod_t *p, int nth) {
    units_t j = {p, plan_split(p->rows, p->cout, RB, 12, nth, p->cout % 16 == 0 ? 64 : p->cout), conv_block,
                 next_gen()};
    zoo_tapconv_parallel_for(nth, j.s.nblocks * j.s.ngroups, 1, run_units, &j);
}


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

#ifdef ZOO_F32_TILES
/* wino_in on VW inputs at once. */
static inline void wino_in_v(const vf x[6], vf v[6]) {
    const vf two = vf_set1(2.0f), four = vf_set1(4.0f), five = vf_set1(5.0f);
    const vf d42 = vf_sub(x[4], x[2]), d31 = vf_sub(x[3], x[1]);
    v[0] = vf_fnmadd(five, x[2], vf_fmadd(four, x[0], x[4]));
    v[1] = vf_fnmadd(four, vf_add(x[1], x[2]), vf_add(x[4], x[3]));
    v[2] = vf_fmadd(four, vf_sub(x[1], x[2]), vf_sub(x[4], x[3]));
    v[3] = vf_fmadd(two, d31, d42);
    v[4] = vf_fnmadd(two, d31, d42);
    v[5] = vf_fnmadd(five, x[3], vf_fmadd(four, x[1], x[5]));
}
#endif

/* Tiles [a, b) (at most NT), output columns [nb, ne): the input transforms of those tiles (all inputs), the
   six products and the output transforms of those columns. */
static void wino_block(const prod_t *w, long a, long b, int nb, int ne, long gen) {
    const int cin = w->cin, cout = w->cout, f32 = w->f32;
    const long d = w->dil, ld = w->lds;
    const size_t esize = f32 ? sizeof(float) : sizeof(bf16);
    const size_t vbytes = ((esize * 6 * NT * (size_t)cin + 63) / 64) * 64;
    char *work = (char *)scratch(SCRATCH_WINOGRAD, vbytes + sizeof(float) * 6 * NT * (size_t)cout);
    if (!work) abort(); /* out of memory for a few hundred KB: nothing sensible is left to do */
    void *v = work;
    float *m = (float *)(work + vbytes);
    const long vs = (long)NT * cin, ms = (long)NT * cout;
    const long t0 = a;
    const int nt = (int)(b - a);
    for (int tt = 0; tt < nt; ++tt) {
        const long t = t0 + tt, base = 4 * d * (t / d) + t % d;
        int c0 = 0;  /* inputs done in vectors; the rest below */
#ifdef ZOO_F32_TILES
        if (f32) {
            const float *s0 = (const float *)w->src + base * ld;
            float *v0 = (float *)v + (long)tt * cin;
            for (; c0 + VW <= cin; c0 += VW) {
                vf x[6];
                for (int q = 0; q < 6; ++q) x[q] = vf_load(s0 + q * d * ld + c0);
                vf o[6];
                wino_in_v(x, o);
                for (int q = 0; q < 6; ++q) vf_store(v0 + q * vs + c0, o[q]);
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
    /* the six products' panels where the tiles read a copy (AVX2): the six filters as one of 6 cin rows */
    const prod_t p0 = {nt, cin, cout, 1, 0, NULL, cin, NULL, NULL, NULL, cout, 0, f32};
    const float *panels = VW_PANELS && tiled(&p0) ? panel_weights((const float *)w->w, 6L * cin, NULL, 0, cout, gen)
                                                  : NULL;
    for (int j = 0; j < 6; ++j) {
        const long wstep = f32 ? (long)cin * cout * 4 : (long)((cin + 1) / 2) * cout * 4;  /* bytes */
        prod_t p = {nt, cin, cout, 1, 0, (const char *)v + j * vs * (long)esize, cin,
                    (const char *)w->w + j * wstep, NULL, m + j * ms, cout, 0, f32};
        prod_block(&p, 0, nt, nb, ne, panels ? panels + (long)j * cin * 16 : NULL, 6L * cin * 16);
    }
    for (int tt = 0; tt < nt; ++tt) {
        const long t = t0 + tt, base = 4 * d * (t / d) + t % d;
        float *o0 = w->out + base * w->ldo, *o1 = o0 + d * w->ldo, *o2 = o1 + d * w->ldo,
              *o3 = o2 + d * w->ldo;
        const float *m0 = m + (long)tt * cout;
        const float *bias = w->bias;
        const int accumulate = w->accumulate;
#pragma omp simd
        for (int n = nb; n < ne; ++n) {
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

/* Blocks of up to NT tiles (multiples of 12, the tall tiles' height), column groups where the tiles are few (each
   group repeats its tiles' input transforms, a small part of the work). */
static void tap_winograd3(const prod_t *w, int nth) {
    units_t j = {w, plan_split(w->rows, w->cout, NT, 12, nth, w->cout % 16 == 0 ? 64 : w->cout), wino_block,
                 next_gen()};
    zoo_tapconv_parallel_for(nth, j.s.nblocks * j.s.ngroups, 1, run_units, &j);
}

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

/* Chunks of at least 16384 values. */
static void bf16_leaky_relu(const leaky_t *l, long rows, int nth) {
    const long grain = l->cols > 0 && 16384 / l->cols > 16 ? 16384 / l->cols : 16;
    zoo_tapconv_parallel_for(nth, rows, grain, leaky_rows, l);
}

static void gate_rows(const void *ctx, long a, long b) {
    const gate_t *g = (const gate_t *)ctx;
    const int half = g->half, keep = g->keep;
    const float twice = g->doubled ? 1.0f : 2.0f;
    for (long r = a; r < b; ++r) {
        float *x = g->h + r * g->ldh, *y = x + half;
        bf16 *o = g->out + r * g->ldo;
        if (keep) {
#pragma omp simd
            for (int c = 0; c < half; ++c) {
                const float v = -zoo_gate2(twice * x[c], y[c]);
                o[c] = f2bf(v);
                y[c] = v;
            }
        } else {
#pragma omp simd
            for (int c = 0; c < half; ++c) o[c] = f2bf(-zoo_gate2(twice * x[c], y[c]));
        }
    }
}

/* Chunks of at least 16384 values, as bf16_leaky_relu. */
static void bf16_gate(const gate_t *g, long rows, int nth) {
    const long grain = g->half > 0 && 16384 / g->half > 16 ? 16384 / g->half : 16;
    zoo_tapconv_parallel_for(nth, rows, grain, gate_rows, g);
}

const tapconv_ops ZOO_OPS(zoo_tapconv_ops_) = {tap_conv, tap_winograd3, bf16_leaky_relu, bf16_gate, bf16_native,
                                               f32_native};
