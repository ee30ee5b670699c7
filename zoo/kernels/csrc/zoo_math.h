/* Elementwise functions of the compiled kernels in a form the compiler vectorises (libm's expf and tanhf are
   calls it cannot): shared by zoo/kernels/csrc/tapconv.c (the flows' gate) and plugins/wavenet/csrc/wavenet.c
   (the WaveNet loop's gate). */

#ifndef ZOO_MATH_H
#define ZOO_MATH_H

#include <stdint.h>

/* e^x: x clamped to [-87.3, 88.3] (the result stays a normal float, and e^x of a larger x is taken as
   e^88.3, about 2e38), x = n ln 2 + r with |r| <= ln 2 / 2 (ln 2 in two parts, Cody and Waite), e^r by its
   Taylor series to r^7 (truncation below 1e-8 relative), then 2^n put into the exponent bits.  Within
   about 2 ulp of expf. */
static inline float zoo_expf(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    /* n = round(x / ln 2), by adding and taking away 1.5 * 2^23 (floorf is a call the compiler does not
       vectorise without -fno-trapping-math) */
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const union { int32_t i; float f; } scale = {((int32_t)n + 127) << 23};
    return p * scale.f;
}

/* tanh(x / 2) sigmoid(b), as (1 - 2 / (1 + e^x)) / (1 + e^-b): the gate of a WaveNet layer with its tanh
   half's input x doubled (absolute error below 4e-7, which is what the products that sum the gate see;
   tanh near 0 loses its relative precision). */
static inline float zoo_gate2(float x, float b) {
    return (1.0f - 2.0f / (1.0f + zoo_expf(x))) / (1.0f + zoo_expf(-b));
}

#endif
