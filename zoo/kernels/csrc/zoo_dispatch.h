/* Run-time dispatch on CPU features and the struct layout table, shared by every compiled kernel.

   A kernel's body (e.g. tapconv.c) is compiled once per ISA level by setup.py, each time with that level's
   flags (never -march=native) and -DZOO_ISA=<name>: it defines one table of function pointers named
   ZOO_OPS(<kernel>) (e.g. zoo_tapconv_ops_avx2).  The kernel's dispatch file, compiled with the
   baseline flags and -DZOO_HAVE_<LEVEL> for every body that compiled, points its exported functions at the
   best table this CPU can run (__builtin_cpu_supports), or at the one Python selects.

   Levels (the numbers Python uses):
     0 generic     portable C (baseline flags: x86-64's SSE2, or any other architecture)
     1 avx2        AVX2 + FMA (+ F16C)
     2 avx512      AVX-512 F/BW/DQ/VL on top of avx2
     3 avx512bf16  AVX-512 BF16 on top of avx512 */

#ifndef ZOO_DISPATCH_H
#define ZOO_DISPATCH_H

#include <stddef.h>

#define ZOO_ISA_GENERIC 0
#define ZOO_ISA_AVX2 1
#define ZOO_ISA_AVX512 2
#define ZOO_ISA_AVX512BF16 3
#define ZOO_ISA_COUNT 4

#define ZOO_CAT_(a, b) a##b
#define ZOO_CAT(a, b) ZOO_CAT_(a, b)
/* The ops table of one compiled body: ZOO_OPS(zoo_tapconv_ops_) -> zoo_tapconv_ops_avx2 under -DZOO_ISA=avx2. */
#define ZOO_OPS(prefix) ZOO_CAT(prefix, ZOO_ISA)

/* Whether this CPU (and its OS, which must save the wider registers) runs code of ISA level `level`. */
static inline int zoo_cpu_supports(int level) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    switch (level) {
    case ZOO_ISA_GENERIC: return 1;
    case ZOO_ISA_AVX2: return avx2;
    case ZOO_ISA_AVX512: return avx512;
#ifdef ZOO_HAVE_AVX512BF16 /* the compiler knows the feature's name (it built the body) */
    case ZOO_ISA_AVX512BF16: return avx512 && __builtin_cpu_supports("avx512bf16");
#endif
    default: return 0;
    }
#else
    return level == ZOO_ISA_GENERIC;
#endif
}

/* One row of a kernel's layout table: the size of struct `type` (field "") or the offset and size of its
   field `field`; Python compares each with its ctypes mirror before the first call.  NULL type ends it. */
typedef struct {
    const char *type;
    const char *field;
    long offset;
    long size;
} zoo_layout_entry;

#define ZOO_LAYOUT_STRUCT(T) {#T, "", 0, (long)sizeof(T)}
#define ZOO_LAYOUT_FIELD(T, f) {#T, #f, (long)offsetof(T, f), (long)sizeof(((T *)0)->f)}
#define ZOO_LAYOUT_END {NULL, NULL, 0, 0}

/* The ISA-selection functions every kernel library exports, for its table type OPS_T and its tables
   `tables[ZOO_ISA_COUNT]` (NULL where a level was not compiled):
     int P_isa_compiled(void)    bit l set: level l was compiled into this library
     int P_isa_supported(void)   bit l set: this CPU runs level l
     int P_isa_select(int l)     use level l (l < 0: the best compiled level this CPU runs); returns the
                                 level now in use, or -1 (nothing changed) if l is not compiled or not runnable
     int P_isa_active(void)      the level in use
   The library selects the best level when it is loaded. */
#define ZOO_DISPATCH(P, OPS_T, tables)                                                                  \
    static const OPS_T *P##_ops = NULL;                                                                 \
    static int P##_level = -1;                                                                          \
    int P##_isa_compiled(void) {                                                                        \
        int m = 0;                                                                                      \
        for (int l = 0; l < ZOO_ISA_COUNT; ++l)                                                         \
            if (tables[l]) m |= 1 << l;                                                                 \
        return m;                                                                                       \
    }                                                                                                   \
    int P##_isa_supported(void) {                                                                       \
        int m = 0;                                                                                      \
        for (int l = 0; l < ZOO_ISA_COUNT; ++l)                                                         \
            if (zoo_cpu_supports(l)) m |= 1 << l;                                                       \
        return m;                                                                                       \
    }                                                                                                   \
    int P##_isa_select(int level) {                                                                     \
        if (level < 0) {                                                                                \
            for (int l = ZOO_ISA_COUNT - 1; l >= 0; --l)                                                \
                if (tables[l] && zoo_cpu_supports(l)) { level = l; break; }                             \
        }                                                                                               \
        if (level < 0 || level >= ZOO_ISA_COUNT || !tables[level] || !zoo_cpu_supports(level)) return -1; \
        P##_ops = tables[level];                                                                        \
        P##_level = level;                                                                              \
        return level;                                                                                   \
    }                                                                                                   \
    int P##_isa_active(void) { return P##_level; }                                                      \
    __attribute__((constructor)) static void P##_isa_init(void) { P##_isa_select(-1); }

#endif
