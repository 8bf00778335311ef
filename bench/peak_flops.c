/* peak_flops.c - one core's peak rate of the two AVX-512 product instructions
 * a CPU GEMM could be built on: vfmadd231ps (fp32, 16 multiply-adds) and
 * vdpbf16ps (AVX-512 BF16: 32 bf16 products summed pairwise into 16 fp32).
 * Twelve independent accumulators hide either instruction's latency, so the
 * figure is its issue rate. bench/bf16_teacher.py compiles and runs it:
 *
 *     cc -O2 -mavx512f -mavx512bf16 bench/peak_flops.c -o peak_flops && ./peak_flops
 *
 * One line: {"fp32_fma_gflops": F, "bf16_dot_gflops": B} (FLOPs: 2 per product). */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

enum { ROUNDS = 20000000 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* twelve accumulators that start apart, so that the compiler cannot merge
 * their chains into one */
#define INIT_CHAINS(v)                                                                     \
    __m512 c0 = ADD(v, 0), c1 = ADD(v, 1), c2 = ADD(v, 2), c3 = ADD(v, 3), c4 = ADD(v, 4), \
           c5 = ADD(v, 5), c6 = ADD(v, 6), c7 = ADD(v, 7), c8 = ADD(v, 8), c9 = ADD(v, 9), \
           ca = ADD(v, 10), cb = ADD(v, 11)
#define ADD(v, i) _mm512_add_ps(v, _mm512_set1_ps((i) * 0x1p-10f))

/* twelve independent chains of OP(acc), ROUNDS times */
#define CHAINS(OP)                                                                      \
    do {                                                                                \
        for (long r = 0; r < ROUNDS; r++) {                                             \
            c0 = OP(c0); c1 = OP(c1); c2 = OP(c2); c3 = OP(c3); c4 = OP(c4); c5 = OP(c5); \
            c6 = OP(c6); c7 = OP(c7); c8 = OP(c8); c9 = OP(c9); ca = OP(ca); cb = OP(cb); \
        }                                                                               \
    } while (0)

/* the chains' sum, which keeps the compiler from dropping them */
#define SUM_CHAINS()                                                                     \
    _mm512_reduce_add_ps(_mm512_add_ps(                                                 \
        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),       \
                      _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7))),      \
        _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(ca, cb))))

static float fma_rate(double *gflops) {
    __m512 a = _mm512_set1_ps(0.5f), b = _mm512_set1_ps(0.25f);
    INIT_CHAINS(a);
#define FMA(c) _mm512_fmadd_ps(a, c, b) /* c ← c/2 + 1/4: stays finite, never subnormal */
    double t0 = now();
    CHAINS(FMA);
    *gflops = 12.0 * ROUNDS * 16 * 2 / (now() - t0) * 1e-9;
    return SUM_CHAINS();
}

static float bf16_rate(double *gflops) {
    /* products ±1/1024 that cancel in pairs: the accumulators stay put */
    __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1.0f / 32), _mm512_set1_ps(-1.0f / 32));
    __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1.0f / 32), _mm512_set1_ps(1.0f / 32));
    __m512 z = _mm512_set1_ps(1.0f);
    INIT_CHAINS(z);
#define DOT(c) _mm512_dpbf16_ps(c, a, b)
    double t0 = now();
    CHAINS(DOT);
    *gflops = 12.0 * ROUNDS * 32 * 2 / (now() - t0) * 1e-9;
    return SUM_CHAINS();
}

int main(void) {
    double f, b;
    float sink = fma_rate(&f) + bf16_rate(&b);
    printf("{\"fp32_fma_gflops\": %.1f, \"bf16_dot_gflops\": %.1f, \"sink\": %g}\n", f, b, sink);
    return 0;
}
