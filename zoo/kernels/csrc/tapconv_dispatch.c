/* zoo.kernels.tapconv's exported functions: each calls the build of tapconv.c for the ISA level selected at load
   (the best one this CPU runs, see zoo_dispatch.h) or by zoo_tapconv_isa_select.  Compiled with the
   baseline flags, so loading the library runs on any CPU of its architecture. */

#include "tapconv.h"
#include "zoo_dispatch.h"
#include "zoo_pool.h"

static const tapconv_ops *const tables[ZOO_ISA_COUNT] = {
    &zoo_tapconv_ops_generic,
#ifdef ZOO_HAVE_AVX2
    &zoo_tapconv_ops_avx2,
#else
    NULL,
#endif
#ifdef ZOO_HAVE_AVX512
    &zoo_tapconv_ops_avx512,
#else
    NULL,
#endif
#ifdef ZOO_HAVE_AVX512BF16
    &zoo_tapconv_ops_avx512bf16,
#else
    NULL,
#endif
};

ZOO_DISPATCH(zoo_tapconv, tapconv_ops, tables)

void zoo_tap_conv(const prod_t *p, int nth) { zoo_tapconv_ops->tap_conv(p, nth); }
void zoo_tap_winograd3(const prod_t *w, int nth) { zoo_tapconv_ops->winograd3(w, nth); }
void zoo_bf16_leaky_relu(const leaky_t *l, long rows, int nth) { zoo_tapconv_ops->leaky_relu(l, rows, nth); }
void zoo_bf16_gate(const gate_t *g, long rows, int nth) { zoo_tapconv_ops->gate(g, rows, nth); }
int zoo_bf16_native(void) { return zoo_tapconv_ops->bf16_native(); }
int zoo_f32_native(void) { return zoo_tapconv_ops->f32_native(); }

void zoo_tapconv_parallel_for(int nth, long n, long grain, tapconv_range_fn fn, const void *ctx) {
    zoo_pool_for(nth, n, grain, fn, ctx);
}
/* The threads of the loops (zoo_pool.h): torch's OpenMP team through its runtime's GOMP_parallel (its
   omp_get_thread_num and omp_get_num_threads for a static split, NULL: dynamic), or (NULL)
   the persistent pthread pool; which one runs now (1 OpenMP, 0 pool, -1 pool in a forked child); and how
   many pool workers have been started in this process. */
void zoo_tapconv_use_openmp(void *gomp_parallel, void *thread_num, void *num_threads) {
    zoo_pool_use_openmp((zoo_gomp_parallel_fn)gomp_parallel, (zoo_omp_int_fn)thread_num, (zoo_omp_int_fn)num_threads);
}
int zoo_tapconv_pool_mode(void) { return zoo_pool_mode(); }
int zoo_tapconv_pool_workers(void) { return __atomic_load_n(&zoo_pool.workers, __ATOMIC_RELAXED); }

static const zoo_layout_entry layout[] = {
    ZOO_LAYOUT_STRUCT(prod_t),
    ZOO_LAYOUT_FIELD(prod_t, rows), ZOO_LAYOUT_FIELD(prod_t, cin), ZOO_LAYOUT_FIELD(prod_t, cout),
    ZOO_LAYOUT_FIELD(prod_t, taps), ZOO_LAYOUT_FIELD(prod_t, dil), ZOO_LAYOUT_FIELD(prod_t, src),
    ZOO_LAYOUT_FIELD(prod_t, lds), ZOO_LAYOUT_FIELD(prod_t, w), ZOO_LAYOUT_FIELD(prod_t, bias),
    ZOO_LAYOUT_FIELD(prod_t, out), ZOO_LAYOUT_FIELD(prod_t, ldo), ZOO_LAYOUT_FIELD(prod_t, accumulate),
    ZOO_LAYOUT_FIELD(prod_t, f32), ZOO_LAYOUT_FIELD(prod_t, src2), ZOO_LAYOUT_FIELD(prod_t, lds2),
    ZOO_LAYOUT_FIELD(prod_t, w2), ZOO_LAYOUT_FIELD(prod_t, cin2), ZOO_LAYOUT_FIELD(prod_t, gate),
    ZOO_LAYOUT_FIELD(prod_t, ldg), ZOO_LAYOUT_FIELD(prod_t, keep), ZOO_LAYOUT_FIELD(prod_t, ldk),
    ZOO_LAYOUT_FIELD(prod_t, gate_doubled),
    ZOO_LAYOUT_STRUCT(leaky_t),
    ZOO_LAYOUT_FIELD(leaky_t, x), ZOO_LAYOUT_FIELD(leaky_t, ldx), ZOO_LAYOUT_FIELD(leaky_t, out),
    ZOO_LAYOUT_FIELD(leaky_t, ldo), ZOO_LAYOUT_FIELD(leaky_t, cols), ZOO_LAYOUT_FIELD(leaky_t, slope),
    ZOO_LAYOUT_STRUCT(gate_t),
    ZOO_LAYOUT_FIELD(gate_t, h), ZOO_LAYOUT_FIELD(gate_t, ldh), ZOO_LAYOUT_FIELD(gate_t, out),
    ZOO_LAYOUT_FIELD(gate_t, ldo), ZOO_LAYOUT_FIELD(gate_t, half), ZOO_LAYOUT_FIELD(gate_t, doubled),
    ZOO_LAYOUT_FIELD(gate_t, keep),
    ZOO_LAYOUT_END,
};

const zoo_layout_entry *zoo_tapconv_layout(void) { return layout; }
