/* The WaveNet loop's matrix products for one weight type: wavenet.c includes this file twice (no include
   guard), once with float32 weights and once with bfloat16 weights, after defining
     WN_FN(name)  the function's name for this weight type (name##_f32, name##_bf16)
     wn_weight    the stored type of a weight (float, uint16_t)
     WN_W(p)      the weight at p as a float (a bfloat16 is widened exactly: its bits << 16)
     WN_W8(p)     with AVX2: the 8 weights at p as an __m256 of floats
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

/* One full tile (TW columns) of ys[v] += xs[v] @ W for nv input vectors at once (a past tap's inputs
   for its next steps).  With AVX2 FMA, three vectors share each 32-column half of a weight row while it is
   in L1, twelve accumulators in registers (one vector at a time reads the tile from L2 for every vector,
   twice the L2 traffic the FMA units can take).  Every output still sums x[i] * W[i, :] over
   i = 0..in-1 in order, with one fused multiply-add per term, as matvec_tile does: the same values. */
static void WN_FN(matvec_tile_many)(int nv, int in, const float *const *xs, const wn_weight *restrict wt,
                                    float *const *ys) {
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
}

/* y[b, lo:hi] += x[b] @ W[:, lo:hi] for a tile-packed W (lo a multiple of TW; lo = 0, hi = out: all).
   A batch of three or more items takes each full tile through matvec_tile_many (three items share each
   weight row while it is in L1, a third of the L2 reads of one item at a time), the same sums in the
   same order as matvec_tile: batched samples stay equal to one-at-a-time ones. */
static void WN_FN(matvec_cols)(int nb, int in, int out, int lo, int hi, const float *restrict x, long nx,
                               const wn_weight *restrict w, float *restrict y, long ny) {
    enum { GROUP = 48 };
    const float *xs[GROUP];
    float *ys[GROUP];
    for (int o0 = lo; o0 < hi; o0 += TW) {
        const int n = out - o0 < TW ? out - o0 : TW;
        const wn_weight *wt = w + (long)o0 * in;
        if (n < TW || nb < 3) {
            WN_FN(matvec_tile)(nb, in, n, x, nx, wt, y + o0, ny);
            continue;
        }
        for (int b0 = 0; b0 < nb; b0 += GROUP) {
            const int nv = nb - b0 < GROUP ? nb - b0 : GROUP;
            for (int v = 0; v < nv; ++v) {
                xs[v] = x + (long)(b0 + v) * nx;
                ys[v] = y + (long)(b0 + v) * ny + o0;
            }
            WN_FN(matvec_tile_many)(nv, in, xs, wt, ys);
        }
    }
}
