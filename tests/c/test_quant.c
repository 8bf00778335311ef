/* test_quant.c - exact values of the BitNet quantisers: absmean ternary wq
 * and per-token absmax actq, on inputs whose scales are exact in binary so
 * every expected value is known by hand: ties (x·s = k + 0.5, which roundf
 * sends away from zero), the clamp to ±1 / the activation range, zero and
 * sub-eps inputs (the eps floor, no NaN), 4-bit levels and the λ-mix. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ops/quant.h"

#include "check.h"

// ----------------------------------------------------------------------------
// wq

static void test_wq_values(void) {
    /* Σ|w| = 5, n = 10: mean 0.5, s = 2. w·s = ±0.5 (ties → ±1), ±1.5 and 2
     * (clamped to ±1), ±0.4 (→ 0), 1.2 (→ 1). */
    float w[10] = {0.25f, -0.25f, 0.75f, -0.75f, 0.5f, -0.5f, 0.2f, -0.2f, 1.0f, 0.6f};
    int8_t want_q[10] = {1, -1, 1, -1, 1, -1, 0, 0, 1, 1};
    float wq[10];
    int8_t q[10];
    CHECK(bl_wq_scale(w, 10) == 2.0f, "scale %g, want 2", bl_wq_scale(w, 10));
    CHECK(bl_wq(wq, w, 10) == 2.0f, "bl_wq returns the scale");
    CHECK(bl_wq_int8(q, w, 10) == 2.0f, "bl_wq_int8 returns the scale");
    for (int i = 0; i < 10; i++) {
        CHECK(q[i] == want_q[i], "q[%d] = %d, want %d", i, q[i], want_q[i]);
        CHECK(wq[i] == want_q[i] * 0.5f, "wq[%d] = %g, want %g", i, wq[i], want_q[i] * 0.5f);
    }
    /* in place gives the same */
    bl_wq(w, w, 10);
    CHECK(memcmp(w, wq, sizeof w) == 0, "wq in place differs");
}

static void test_wq_zero(void) {
    /* mean|w| below 1e-5 is floored: s = 1e5, so 1e-7·s and 3e-6·s round to 0 */
    float z[6] = {0}, tiny[2] = {1e-7f, -3e-6f}, out[6];
    float s = bl_wq(out, z, 6);
    CHECK(isfinite(s) && fabsf(s - 1e5f) < 1.0f, "all-zero scale %g, want 1e5", s);
    for (int i = 0; i < 6; i++) CHECK(out[i] == 0.0f, "all-zero wq[%d] = %g", i, out[i]);
    bl_wq(out, tiny, 2);
    CHECK(out[0] == 0.0f && out[1] == 0.0f, "sub-eps wq = %g %g", out[0], out[1]);
    int8_t q[6];
    bl_wq_int8(q, z, 6);
    for (int i = 0; i < 6; i++) CHECK(q[i] == 0, "all-zero q[%d] = %d", i, q[i]);
}

static void test_weff(void) {
    /* mean 0.5, s = 2: wq = {0.5, -0.5, 0, 0.5}; λ = 0.25 mixes 3/4 w + 1/4 wq */
    float w[4] = {0.5f, -0.75f, 0.125f, 0.625f}, out[4];
    float want[4] = {0.5f, -0.6875f, 0.09375f, 0.59375f};
    bl_weff(out, w, 4, 0.25f);
    for (int i = 0; i < 4; i++)
        CHECK(out[i] == want[i], "weff[%d] = %g, want %g", i, out[i], want[i]);
    bl_weff(out, w, 4, 0.0f);
    CHECK(memcmp(out, w, sizeof w) == 0, "λ = 0 must copy w");
    bl_weff(out, w, 4, 1.0f);
    CHECK(out[0] == 0.5f && out[1] == -0.5f && out[2] == 0.0f && out[3] == 0.5f, "λ = 1 is wq");
}

// ----------------------------------------------------------------------------
// actq

static void test_actq_8bit(void) {
    /* row 0: max|x| = 127 → s = 1: ties ±2.5 → ±3, 3.5 → 4, ±127 stay at ±Q
     * (the −128 level is never reached by absmax scaling), 0.4 → 0, −0.6 → −1.
     * row 1: max|x| = 2 → s = 63.5: 0.5·s = 31.75 → 32, −1.0·s = −63.5 (tie) → −64.
     * row 2: all zero → s = 127/1e-5, output zero. */
    enum { D = 7 };
    float x[3 * D] = {2.5f, -2.5f, 127.0f, -127.0f, 0.4f, -0.6f, 3.5f,
                      2.0f, -1.0f, 0.5f, 0.0f, -2.0f, 1.0f, 0.25f,
                      0, 0, 0, 0, 0, 0, 0};
    float want0[D] = {3, -3, 127, -127, 0, -1, 4};
    float want1q[D] = {127, -64, 32, 0, -127, 64, 16}; /* 0.25·63.5 = 15.875 → 16 */
    float xq[3 * D], sc[3];
    BlError err;
    CHECK(bl_actq(xq, sc, x, 3, D, 8, &err) == 0, "actq 8 failed");
    CHECK(sc[0] == 1.0f && sc[1] == 63.5f, "scales %g %g", sc[0], sc[1]);
    CHECK(isfinite(sc[2]) && fabsf(sc[2] - 1.27e7f) < 2.0f, "zero-row scale %g", sc[2]);
    for (int i = 0; i < D; i++) {
        CHECK(xq[i] == want0[i], "row0[%d] = %g, want %g", i, xq[i], want0[i]);
        CHECK(xq[D + i] == want1q[i] / 63.5f, "row1[%d] = %g, want %g", i, xq[D + i],
              want1q[i] / 63.5f);
        CHECK(xq[2 * D + i] == 0.0f, "zero row[%d] = %g", i, xq[2 * D + i]);
    }
}

static void test_actq_4bit(void) {
    /* max|x| = 7 → s = 1: ties ±3.5 → ±4, 0.5 → 1, −0.49 → 0, 6.6 → 7 */
    enum { D = 7 };
    float x[D] = {7.0f, -7.0f, 3.5f, -3.5f, 0.5f, -0.49f, 6.6f}, xq[D];
    float want[D] = {7, -7, 4, -4, 1, 0, 7};
    CHECK(bl_actq(xq, NULL, x, 1, D, 4, NULL) == 0, "actq 4 failed");
    for (int i = 0; i < D; i++)
        CHECK(xq[i] == want[i], "4-bit[%d] = %g, want %g", i, xq[i], want[i]);

    /* random rows: every level is an integer in −8..7 and ±max hits ±7 */
    enum { M = 5, N = 13 };
    float r[M * N], rq[M * N], sc[M];
    unsigned seed = 12345u;
    for (int i = 0; i < M * N; i++) {
        seed = seed * 1103515245u + 12345u;
        r[i] = ((float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f) * (1 + i % 3);
    }
    CHECK(bl_actq(rq, sc, r, M, N, 4, NULL) == 0, "actq 4 failed");
    for (int i = 0; i < M * N; i++) {
        float lv = rq[i] * sc[i / N];
        CHECK(fabsf(lv - roundf(lv)) < 1e-4f && lv >= -8.0f && lv <= 7.0f, "level %g", lv);
    }
    CHECK(bl_actq_levels(4) == 7 && bl_actq_levels(8) == 127 && bl_actq_levels(16) == 0,
          "levels");
}

static void test_actq_off_and_errors(void) {
    float x[3] = {0.1f, -2.0f, 3.3f}, xq[3];
    BlError err = {{0}};
    CHECK(bl_actq(xq, NULL, x, 1, 3, 16, &err) == 0 && memcmp(xq, x, sizeof x) == 0,
          "16 bits must copy");
    CHECK(bl_actq(xq, NULL, x, 1, 3, 5, &err) == -1 && strstr(err.msg, "5 bits"),
          "5 bits must fail naming the width: '%s'", err.msg);
    /* in place */
    float y[3] = {1.0f, -0.5f, 0.25f};
    CHECK(bl_actq(y, NULL, y, 1, 3, 8, NULL) == 0 && y[0] == 1.0f && y[1] == -64.0f / 127.0f,
          "in place: %g %g", y[0], y[1]);
}

/* the λ blend at its ends: λ = 1 is actq bit for bit (scales too), λ = 0
 * copies x; between, each element lies between x and actq(x) */
static void test_actq_blend_ends(void) {
    enum { M = 3, N = 11 };
    float x[M * N], q[M * N], b[M * N], sq[M], sb[M];
    unsigned seed = 777u;
    for (int i = 0; i < M * N; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = ((float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f) * (1 + i % 5);
    }
    for (int bits = 4; bits <= 8; bits += 4) {
        CHECK(bl_actq(q, sq, x, M, N, bits, NULL) == 0, "actq %d", bits);
        CHECK(bl_actq_blend(b, sb, x, M, N, bits, 1.0f, NULL) == 0 &&
                  memcmp(b, q, sizeof q) == 0 && memcmp(sb, sq, sizeof sq) == 0,
              "%d bits: the blend at λ = 1 is actq bit for bit", bits);
        CHECK(bl_actq_blend(b, sb, x, M, N, bits, 0.0f, NULL) == 0 && memcmp(b, x, sizeof x) == 0 &&
                  memcmp(sb, sq, sizeof sq) == 0,
              "%d bits: the blend at λ = 0 copies x (scale still actq's)", bits);
        CHECK(bl_actq_blend(b, NULL, x, M, N, bits, 0.25f, NULL) == 0, "blend %d", bits);
        for (int i = 0; i < M * N; i++)
            CHECK(b[i] >= fminf(x[i], q[i]) && b[i] <= fmaxf(x[i], q[i]),
                  "%d bits: blend[%d] = %g outside [x, actq(x)] = %g, %g", bits, i, b[i], x[i],
                  q[i]);
    }
    BlError err = {{0}};
    CHECK(bl_actq_blend(b, NULL, x, 1, 3, 5, 0.5f, &err) == -1 && strstr(err.msg, "5 bits"),
          "the blend refuses 5 bits naming the width: '%s'", err.msg);
}

int main(void) {
    test_wq_values();
    test_wq_zero();
    test_weff();
    test_actq_8bit();
    test_actq_4bit();
    test_actq_off_and_errors();
    test_actq_blend_ends();
    if (failures) {
        fprintf(stderr, "test_quant: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_quant: ok\n");
    return 0;
}
