/* The WaveNet loop's exported functions: zoo_wavenet_generate calls the build of wavenet.c for the ISA
   level selected at load (the best one this CPU runs, see zoo_dispatch.h) or by zoo_wavenet_isa_select.
   Compiled with the baseline flags, so loading the library runs on any CPU of its architecture. */

#include "wavenet.h"
#include "zoo_dispatch.h"

static const wavenet_ops *const tables[ZOO_ISA_COUNT] = {
    &zoo_wavenet_ops_generic,
#ifdef ZOO_HAVE_AVX2
    &zoo_wavenet_ops_avx2,
#else
    NULL,
#endif
#ifdef ZOO_HAVE_AVX512
    &zoo_wavenet_ops_avx512,
#else
    NULL,
#endif
    NULL, /* bfloat16 weights are widened to float32 as they are loaded (no bfloat16 products): the avx512
             build serves AVX-512 BF16 CPUs */
};

ZOO_DISPATCH(zoo_wavenet, wavenet_ops, tables)

int zoo_wavenet_tile_width(void) { return TW; }
int zoo_wavenet_pre_max(void) { return PRE_MAX; }
/* Bytes of one weight stored as wdtype `code` (0 for a code the loop does not take). */
int zoo_wavenet_weight_bytes(int code) {
    return code == WN_WEIGHTS_F32 ? (int)sizeof(float) : code == WN_WEIGHTS_BF16 ? (int)sizeof(uint16_t) : 0;
}

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

int zoo_wavenet_generate(WAVENET_GENERATE_PARAMS) { return zoo_wavenet_ops->generate(WAVENET_GENERATE_ARGS); }

/* No struct crosses to Python (the loop takes plain arguments): an empty layout table. */
static const zoo_layout_entry layout[] = {ZOO_LAYOUT_END};

const zoo_layout_entry *zoo_wavenet_layout(void) { return layout; }
