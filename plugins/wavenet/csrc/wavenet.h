/* The compiled WaveNet sampling loop: its constants and the table of one ISA level's build of wavenet.c.
   Python (plugins/wavenet/kernel.py) reads TW and PRE_MAX from zoo_wavenet_tile_width/pre_max. */

#ifndef ZOO_WAVENET_H
#define ZOO_WAVENET_H

#include <stdint.h>

#define TW 64      /* columns of a weight tile */
#define PRE_MAX 64 /* past-tap products made at most this many steps ahead */
/* wdtype: how the tile-packed matrices (wd, wr, ws, h1w, h2w) are stored; activations and sums are float32
   either way (a bfloat16 weight is widened to float32 as it is loaded).  Python reads them back through
   zoo_wavenet_weight_bytes. */
#define WN_WEIGHTS_F32 0
#define WN_WEIGHTS_BF16 1

/* dist: 0 mixture of logistics, 1 Gaussian, 2 mu-law softmax.  skip_mode: 0 sum, 1 sum*sqrt(1/L),
   2 legacy iterative.  Shapes (row-major, float32 but the tile-packed matrices, of type wdtype):
     front_w [FK*CIN, R] (plain rows: its input is sparse), front_b [R], cond [T, B, L, G] (dilated
     bias included), tile-packed: wd [L, K] x [R, G], wr [L] x [G/2, R], ws [L] x [G/2, S], h1w [S, S],
     h2w [S, OUT]; br [L, R], bs [L, S], has_res [L], offsets [L, K],
     h1b [S], h2b [OUT], layer_buf [L, B, Q, R], front_buf [B, FK, CIN],
     x_in [B, CIN], draws1: MoL [T, B, M] / mu-law [T, B, CIN] / Gaussian [T, B], draws2: MoL [T, B],
     samples [T, B], work: scratch of work_size() floats, pre: pre_size() floats of state kept between
     calls (zeros before the first step).  Returns 0, or -1 for an unknown wdtype. */
/* zoo_wavenet_generate's parameters (shapes above), and the same names as arguments. */
#define WAVENET_GENERATE_PARAMS \
    int B, int T, long t0, int L, int R, int G, int S, int K, int Q, int FK, int CIN, int OUT,                     \
        const float *front_w, const float *front_b, int front_relu, const void *wd, const void *wr, const float *br,   \
        const void *ws, const float *bs, const uint8_t *has_res, const int64_t *offsets, float residual_scale,          \
        int skip_mode, const void *h1w, const float *h1b, const void *h2w, const float *h2b, const float *cond,        \
        float *layer_buf, float *front_buf, int dist, int n_mix, float log_min, float temperature,                     \
        const float *draws1, const float *draws2, float *x_in, float *samples, float *work, float *pre, int nthreads,  \
        int wdtype
#define WAVENET_GENERATE_ARGS \
    B, T, t0, L, R, G, S, K, Q, FK, CIN, OUT, front_w, front_b, front_relu, wd, wr, br, ws, bs, has_res, offsets,     \
        residual_scale, skip_mode, h1w, h1b, h2w, h2b, cond, layer_buf, front_buf, dist, n_mix, log_min, temperature, \
        draws1, draws2, x_in, samples, work, pre, nthreads, wdtype

/* One ISA level's build of wavenet.c. */
typedef struct {
    int (*generate)(WAVENET_GENERATE_PARAMS);
} wavenet_ops;

extern const wavenet_ops zoo_wavenet_ops_generic, zoo_wavenet_ops_avx2, zoo_wavenet_ops_avx512;

#endif
