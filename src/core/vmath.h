/* vmath.h - a branch-free expf for the hot elementwise loops (the softmaxes
 * over the vocabulary in ops/loss.c, SwiGLU).  libm's expf/exp are scalar
 * calls that gcc cannot vectorise without -ffast-math, and they cost ~10% of a
 * CPU distillation step; this one is plain float arithmetic and bit moves, so
 * a simple loop over float arrays that calls it vectorises at -O3
 * -march=native, with results fixed for a given build.
 *
 * Method (Cephes expf): n = round(x·log2 e) by the 1.5·2^23 trick, r = x − n·ln2
 * in two parts (Cody–Waite), exp(r) by a degree-5 minimax polynomial on
 * |r| ≤ ln2/2, times 2^n built in the exponent bits.  Max relative error vs
 * exp() is about 1 ulp (measured 8.1e-8 over [−87.3, 88]).  x is clamped to
 * [−87.3, 88] so 2^n stays a normal float: exp of anything below gives
 * ~1.2e-38 instead of a denormal or 0, which no sum here can tell apart.  NaN
 * passes the clamps (both comparisons are false) and comes out NaN. */
#ifndef BITLAB_CORE_VMATH_H
#define BITLAB_CORE_VMATH_H

#include <stdint.h>
#include <string.h>

static inline float bl_expf(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.0f ? 88.0f : x;
    const float shifter = 12582912.0f; /* 1.5·2^23: adding it rounds to an integer */
    float t = x * 1.44269504088896341f + shifter;
    float n = t - shifter;
    float r = x - n * 0.693359375f; /* ln2 high part: n·C1 is exact */
    r = r - n * -2.12194440e-4f;    /* ln2 low part */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    uint32_t tb, sb;
    memcpy(&tb, &t, sizeof tb);
    sb = (tb - 0x4B400000u + 127u) << 23; /* the low bits of t hold n: 2^n */
    float s;
    memcpy(&s, &sb, sizeof s);
    return y * s;
}

#endif
