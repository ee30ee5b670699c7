/* zoo.kernels.tapconv's compiled convolutions: the argument structs (mirrored by ctypes in zoo/kernels/tapconv.py and
   checked there against zoo_tapconv_layout()) and the table of one ISA level's functions. */

#ifndef ZOO_TAPCONV_H
#define ZOO_TAPCONV_H

#include <stdint.h>

/* out[r, n] (+)= bias[n] + sum_j sum_c src[(r + j dil) lds + c] W_j[c, n] for rows r of [0, rows):
   src bfloat16, w packed [taps][ceil(cin / 2)][cout][2] (an odd cin's last pair has a zero second
   weight, and its second input is never read), out float32 (row stride ldo); with f32, src and w are
   float32 (w [taps][cin][cout]), the same tiles multiplying with vfmadd.  With src2 (NULL: none), a second
   operand joins the same sums: + sum_c src2[r lds2 + c] W2[c, n] over its cin2 inputs (w2 packed as one tap
   of its own, same dtype and cout), after every tap and before the bias, so a conditioning product adds
   into the registers instead of reading and writing `out` once more. */
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
    const void *src2; /* NULL, or the second operand (same dtype as src) */
    long lds2;
    const void *w2;
    int cin2;
    /* With gate (NULL: none) the product is a gated layer's h, its columns in 64-wide panels [32 inputs of
       the tanh half | the 32 matching inputs of the sigmoid half] (cout a multiple of 64, no accumulate):
       instead of storing h, each tile stores g = -tanh(x) sigmoid(b) (x undoubled: doubled in the weights
       where gate_doubled) of its 32 pairs, rounded to bfloat16 into gate[r ldg + c] (c: the pair's index in
       the half) and, where keep is not NULL, in float32 into keep[r ldk + c]; out is not touched. */
    uint16_t *gate;
    long ldg;
    float *keep;
    long ldk;
    int gate_doubled;
} prod_t;

/* out[r, c] = bfloat16(leaky_relu(x[r, c])) for r < rows, c < cols. */
typedef struct { const float *x; long ldx; uint16_t *out; long ldo; int cols; float slope; } leaky_t;

/* The gate of a WaveNet-like layer on h = [x | b] (float32 rows of 2 half, stride ldh; x the tanh half's input,
   doubled already when `doubled`): g = -tanh(x') sigmoid(b) with x' the undoubled input; out[r, c] =
   bfloat16(g) (stride ldo) and, when `keep`, g also replaces b in h (float32). */
typedef struct { float *h; long ldh; uint16_t *out; long ldo; int half; int doubled; int keep; } gate_t;

/* The parallel loop every level's functions split their work with (tapconv_dispatch.c, zoo_pool.h): fn(ctx, a,
   b) over [0, n) in chunks of `grain`, on up to nth threads (torch's OpenMP team, or a persistent pool). */
typedef void (*tapconv_range_fn)(const void *ctx, long a, long b);
void zoo_tapconv_parallel_for(int nth, long n, long grain, tapconv_range_fn fn, const void *ctx);

/* One ISA level's build of tapconv.c. */
typedef struct {
    void (*tap_conv)(const prod_t *p, int nth);
    void (*winograd3)(const prod_t *w, int nth);
    void (*leaky_relu)(const leaky_t *l, long rows, int nth);
    void (*gate)(const gate_t *g, long rows, int nth);
    int (*bf16_native)(void); /* bfloat16 products by AVX-512 BF16 tiles (else plain C) */
    int (*f32_native)(void);  /* float32 products by vector tiles: AVX2 FMA or AVX-512 (else plain C) */
} tapconv_ops;

extern const tapconv_ops zoo_tapconv_ops_generic, zoo_tapconv_ops_avx2, zoo_tapconv_ops_avx512,
    zoo_tapconv_ops_avx512bf16;

#endif
