/* The WaveNet loop's matrix products for one weight type: wavenet.c includes this file twice (no include
   guard), once with float32 weights and once with bfloat16 weights, after defining
     WN_FN(name)  the function's name for this weight type (name##_f32, name##_bf16)
     wn_weight    the stored type of a weight (float, uint16_t)
     WN_W(p)      the weight at p as a float (a bfloat16 is widened exactly: its bits << 16)
     WN_W8(p)     with AVX2: the 8 weights at p as an __m256 of floats
     WN_ZW(p, a, b), WN_ZIN(y, a, b), WN_ZOUT(y, a, b)  with AVX-512: 32 weights at p, or 32 outputs at y,
                  as two __m512 of floats in the order the weight type loads best (the accumulators keep
                  that order; ZIN / ZOUT load and store outputs in it)
   Activations and sums are float32 for both: a bfloat16 weight is widened to float32 as it is loaded and
   the products are summed in the same order, with the same fused multiply-adds, as the float32 weights
   holding the same (bfloat16-rounded) values, so the two give bit-identical results; the bfloat16 copy
   only reads half the bytes (the loop is bound by memory bandwidth at batch 1).

   Matrices are tile-packed: [in, out] stored as ceil(out / TW) column tiles, tile j holding rows 0..in-1
   of columns j*TW .. j*TW+w-1 contiguously ([in][w], w = min(TW, out - j*TW)), so a product streams each
   tile once while TW outputs stay in registers.  The sum over inputs runs in order 0..in-1 for every
   output, exactly as a row-by-row axpy would.  For a batch, each tile is applied to all nb items before
   the next (it stays in L2).  y[b] += x[b] @ W, items nx (x) and ny (y) floats apart. */

static inline void WN_FN(axpy)(int n, float a, const wn_weight *restrict w, float *restrict y) {
#pragma omp simd
    for (int o = 0; o < n; ++o) y[o] += a * WN_W(w + o);
}

/* One tile (n <= TW columns) of y[b] += x[b] @ W: wt is the tile, y points at its first column. */
static inline void WN_FN(matvec_tile)(int nb, int in, int n, const float *restrict x, long nx,
                                      const wn_weight *restrict wt, float *restrict y, long ny) {
    for (int b = 0; b < nb; ++b) {
        const float *xb = x + b * nx;
        float *yb = y + b * ny;
        if (n == TW) {
            float acc[TW];
            for (int q = 0; q < TW; ++q) acc[q] = yb[q];
            for (int i = 0; i < in; ++i) {
                const float v = xb[i];
                const wn_weight *r = wt + (long)i * TW;
#pragma omp simd
                for (int q = 0; q < TW; ++q) acc[q] += v * WN_W(r + q);
            }
            for (int q = 0; q < TW; ++q) yb[q] = acc[q];
        } else {
            for (int i = 0; i < in; ++i) WN_FN(axpy)(n, xb[i], wt + (long)i * n, yb);
        }
    }
}

#ifdef __AVX512F__
/* With AVX-512 (32 registers): NV vectors x 16 NC columns of one tile row block, all in registers; each weight
   row is loaded once for the NV vectors and each x[i] is broadcast from memory into its FMAs.  Every output
   sums x[i] * W[i, :] over i = 0..in-1 in order, one fused multiply-add per term, starting from y, as
   matvec_tile does: the same values whatever the grouping.  While it runs it prefetches the next tile into
   L2 (pf: `pf_step` bytes per row, up to pf_end; NULL: none), so the first pass over a tile does not wait
   for memory while later passes (other vectors) compute from cache. */
static inline __attribute__((always_inline)) void WN_FN(zmm_block)(const int NV, const int NC, int in,
                                                                  const float *const *xs, const wn_weight *wt,
                                                                  float *const *ys, const char **pf,
                                                                  const char *pf_end, long pf_step) {
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
#pragma GCC unroll 2
        for (int c = 0; c < NC; c += 2) WN_ZIN(ys[v] + 16 * c, &acc[v][c], &acc[v][c + 1]);
    }
    const char *p = *pf;
    for (int i = 0; i < in; ++i) {
        const wn_weight *r = wt + (long)i * TW;
        __m512 w[4];
#pragma GCC unroll 2
        for (int c = 0; c < NC; c += 2) WN_ZW(r + 16 * c, &w[c], &w[c + 1]);
        if (p < pf_end) {
            for (long q = 0; q < pf_step; q += 64) _mm_prefetch(p + q, _MM_HINT_T1);
            p += pf_step;
        }
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
            const __m512 u = _mm512_set1_ps(xs[v][i]);
#pragma GCC unroll 4
            for (int c = 0; c < NC; ++c) acc[v][c] = _mm512_fmadd_ps(u, w[c], acc[v][c]);
        }
    }
    *pf = p;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
#pragma GCC unroll 2
        for (int c = 0; c < NC; c += 2) WN_ZOUT(ys[v] + 16 * c, acc[v][c], acc[v][c + 1]);
    }
}

/* NV vectors through one tile in two 32-column halves (2 NV accumulators each). */
static inline __attribute__((always_inline)) void WN_FN(zmm_halves)(const int NV, int in, const float *const *xs,
                                                                   const wn_weight *wt, float *const *ys,
                                                                   const char **pf, const char *pf_end,
                                                                   long pf_step) {
    float *y2[8];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) y2[v] = ys[v] + 32;
    WN_FN(zmm_block)(NV, 2, in, xs, wt, ys, pf, pf_end, pf_step);
    WN_FN(zmm_block)(NV, 2, in, xs, wt + 32, y2, pf, pf_end, pf_step);
}

/* nv (< 8) vectors through one tile: all 64 columns at once up to 6 vectors (24 accumulators), else two
   32-column halves. */
static void WN_FN(zmm_rest)(int nv, int in, const float *const *xs, const wn_weight *wt, float *const *ys,
                            const char **pf, const char *pf_end, long pf_step) {
    switch (nv) {
    case 1: WN_FN(zmm_block)(1, 4, in, xs, wt, ys, pf, pf_end, pf_step); break;
    case 2: WN_FN(zmm_block)(2, 4, in, xs, wt, ys, pf, pf_end, pf_step); break;
    case 3: WN_FN(zmm_block)(3, 4, in, xs, wt, ys, pf, pf_end, pf_step); break;
    case 4: WN_FN(zmm_block)(4, 4, in, xs, wt, ys, pf, pf_end, pf_step); break;
    case 5: WN_FN(zmm_block)(5, 4, in, xs, wt, ys, pf, pf_end, pf_step); break;
    case 6: WN_FN(zmm_block)(6, 4, in, xs, wt, ys, pf, pf_end, pf_step); break;
    case 7: WN_FN(zmm_halves)(7, in, xs, wt, ys, pf, pf_end, pf_step); break;
    default: break;
    }
}
#endif

/* One full tile (TW columns) of ys[v] += xs[v] @ W for nv input vectors at once (a batch's items, or a past
   tap's inputs for its next steps); `next`: the tile to prefetch meanwhile (NULL: none; AVX-512 only).
   With AVX-512, eight vectors at a time share each 32-column half of a weight row (16 accumulators), the
   rest by zmm_rest.  With AVX2 FMA, three vectors share each 32-column half while it is in L1, twelve
   accumulators in registers (one vector at a time reads the tile from L2 for every vector, twice the L2
   traffic the FMA units can take).  Every output still sums x[i] * W[i, :] over i = 0..in-1 in order, with
   one fused multiply-add per term, as matvec_tile does: the same values. */
static void WN_FN(matvec_tile_many)(int nv, int in, const float *const *xs, const wn_weight *restrict wt,
                                    float *const *ys, const wn_weight *next) {
#ifdef __AVX512F__
    const long tile_bytes = (long)in * TW * (long)sizeof(wn_weight);
    const long iters = (long)in * (2 * (nv / 8) + (nv % 8 == 7 ? 2 : nv % 8 ? 1 : 0));
    const long lines = (tile_bytes + 63) / 64;
    const long pf_step = iters > 0 ? (lines + iters - 1) / iters * 64 : 64;
    const char *pf = (const char *)next, *pf_end = next ? pf + tile_bytes : NULL;
    for (int v = 0; v + 8 <= nv; v += 8) WN_FN(zmm_halves)(8, in, xs + v, wt, ys + v, &pf, pf_end, pf_step);
    if (nv % 8) WN_FN(zmm_rest)(nv % 8, in, xs + nv - nv % 8, wt, ys + nv - nv % 8, &pf, pf_end, pf_step);
    return;
#else
    (void)next;
    int n3 = 0; /* vectors taken three at a time; the rest one at a time by matvec_tile */
#if defined(__AVX2__) && defined(__FMA__)
    n3 = nv - nv % 3;
    for (int h = 0; h < TW; h += 32) {
        const wn_weight *wh = wt + h;
        for (int v = 0; v < n3; v += 3) {
            const float *x0 = xs[v], *x1 = xs[v + 1], *x2 = xs[v + 2];
            float *y0 = ys[v] + h, *y1 = ys[v + 1] + h, *y2 = ys[v + 2] + h;
            __m256 a0 = _mm256_loadu_ps(y0), a1 = _mm256_loadu_ps(y0 + 8), a2 = _mm256_loadu_ps(y0 + 16),
                   a3 = _mm256_loadu_ps(y0 + 24);
            __m256 b0 = _mm256_loadu_ps(y1), b1 = _mm256_loadu_ps(y1 + 8), b2 = _mm256_loadu_ps(y1 + 16),
                   b3 = _mm256_loadu_ps(y1 + 24);
            __m256 c0 = _mm256_loadu_ps(y2), c1 = _mm256_loadu_ps(y2 + 8), c2 = _mm256_loadu_ps(y2 + 16),
                   c3 = _mm256_loadu_ps(y2 + 24);
            for (int i = 0; i < in; ++i) {
                const wn_weight *r = wh + (long)i * TW;
                const __m256 w0 = WN_W8(r), w1 = WN_W8(r + 8), w2 = WN_W8(r + 16), w3 = WN_W8(r + 24);
                __m256 u = _mm256_broadcast_ss(x0 + i);
                a0 = _mm256_fmadd_ps(u, w0, a0); a1 = _mm256_fmadd_ps(u, w1, a1);
                a2 = _mm256_fmadd_ps(u, w2, a2); a3 = _mm256_fmadd_ps(u, w3, a3);
                u = _mm256_broadcast_ss(x1 + i);
                b0 = _mm256_fmadd_ps(u, w0, b0); b1 = _mm256_fmadd_ps(u, w1, b1);
                b2 = _mm256_fmadd_ps(u, w2, b2); b3 = _mm256_fmadd_ps(u, w3, b3);
                u = _mm256_broadcast_ss(x2 + i);
                c0 = _mm256_fmadd_ps(u, w0, c0); c1 = _mm256_fmadd_ps(u, w1, c1);
                c2 = _mm256_fmadd_ps(u, w2, c2); c3 = _mm256_fmadd_ps(u, w3, c3);
            }
            _mm256_storeu_ps(y0, a0); _mm256_storeu_ps(y0 + 8, a1); _mm256_storeu_ps(y0 + 16, a2);
            _mm256_storeu_ps(y0 + 24, a3);
            _mm256_storeu_ps(y1, b0); _mm256_storeu_ps(y1 + 8, b1); _mm256_storeu_ps(y1 + 16, b2);
            _mm256_storeu_ps(y1 + 24, b3);
            _mm256_storeu_ps(y2, c0); _mm256_storeu_ps(y2 + 8, c1); _mm256_storeu_ps(y2 + 16, c2);
            _mm256_storeu_ps(y2 + 24, c3);
        }
    }
#endif
    for (int v = n3; v < nv; ++v) WN_FN(matvec_tile)(1, in, TW, xs[v], 0, wt, ys[v], 0);
#endif
}

/* y[b, lo:hi] += x[b] @ W[:, lo:hi] for a tile-packed W (lo a multiple of TW; lo = 0, hi = out: all).
   Full tiles go through matvec_tile_many: with AVX-512 for any batch (from three items on, prefetching the
   next full tile of the range, and during the range's last tile `then`, the first tile of the product that
   follows (NULL: none); one or two items stream the weights once, which the hardware prefetcher follows
   better alone, as measured), else from three items on (three items share each weight row while it is in
   L1, a third of the L2 reads of one item at a time).  The same sums in the same order as matvec_tile:
   batched samples stay equal to one-at-a-time ones. */
static void WN_FN(matvec_cols)(int nb, int in, int out, int lo, int hi, const float *restrict x, long nx,
                               const wn_weight *restrict w, float *restrict y, long ny, const wn_weight *then) {
    enum { GROUP = 48 };
    const float *xs[GROUP];
    float *ys[GROUP];
#ifdef __AVX512F__
    const int many_from = 1;
#else
    const int many_from = 3;
#endif
    for (int o0 = lo; o0 < hi; o0 += TW) {
        const int n = out - o0 < TW ? out - o0 : TW;
        const wn_weight *wt = w + (long)o0 * in;
        if (n < TW || nb < many_from) {
            WN_FN(matvec_tile)(nb, in, n, x, nx, wt, y + o0, ny);
            continue;
        }
        const wn_weight *next = o0 + 2 * TW <= hi && o0 + 2 * TW <= out ? wt + (long)TW * in
                                : o0 + TW >= hi ? then : NULL;
        for (int b0 = 0; b0 < nb; b0 += GROUP) {
            const int nv = nb - b0 < GROUP ? nb - b0 : GROUP;
            for (int v = 0; v < nv; ++v) {
                xs[v] = x + (long)(b0 + v) * nx;
                ys[v] = y + (long)(b0 + v) * ny + o0;
            }
            WN_FN(matvec_tile_many)(nv, in, xs, wt, ys, b0 == 0 && nv > 2 ? next : NULL);
        }
    }
}
