/* test_ops_forward.c - the CPU forward ops on cases small enough to check by
 * hand: known rms values, rope of a unit vector against cos/sin, and the
 * attention masks (padding, causality, GQA head mapping). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "ops/ops_decode.h"

#include "check.h"

static int close_to(float a, double b, double tol) { return fabs(a - b) <= tol * (1 + fabs(b)); }

static void fill(float *x, int n, unsigned *seed) {
    for (int i = 0; i < n; i++) {
        *seed = *seed * 1103515245u + 12345u;
        x[i] = (float)((*seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
}

// ----------------------------------------------------------------------------

static void test_matmul(void) {
    /* [1 2; 3 4] · [[1 0],[1 1],[0 2]]ᵀ + [10 20 30] */
    float x[] = {1, 2, 3, 4}, w[] = {1, 0, 1, 1, 0, 2}, b[] = {10, 20, 30}, y[6];
    float want[] = {11, 23, 34, 13, 27, 38};
    bl_matmul(y, x, w, b, 2, 3, 2);
    for (int i = 0; i < 6; i++) CHECK(y[i] == want[i], "matmul y[%d] = %g, want %g", i, y[i], want[i]);
    bl_matmul(y, x, w, NULL, 2, 3, 2);
    CHECK(y[0] == 1 && y[5] == 8, "matmul without bias: %g %g", y[0], y[5]);
}

static void test_rmsnorm(void) {
    /* rms(3, 4) = sqrt(12.5); rms(0, 0) with eps 1e-6 → 1/sqrt(1e-6) = 1000 */
    float x[] = {3, 4, 0, 0}, g[] = {1, 2}, y[4], rstd[2];
    bl_rmsnorm(y, rstd, x, g, 2, 2, 0.0f);
    double r = 1.0 / sqrt(12.5);
    CHECK(close_to(rstd[0], r, 1e-6), "rstd %g want %g", rstd[0], r);
    CHECK(close_to(y[0], 3 * r, 1e-6) && close_to(y[1], 8 * r, 1e-6), "rmsnorm %g %g", y[0], y[1]);
    bl_rmsnorm(y, rstd, x, g, 2, 2, 1e-6f);
    CHECK(close_to(rstd[1], 1000.0, 1e-5) && y[2] == 0 && y[3] == 0, "zero row: rstd %g", rstd[1]);
}

static void test_rope(void) {
    /* head_dim 4, theta 100: pair i rotates by pos·100^(-i/2) */
    int hd = 4, pos[2] = {0, 7};
    for (int inter = 0; inter < 2; inter++) {
        for (int pair = 0; pair < 2; pair++) {
            int i0 = inter ? 2 * pair : pair, i1 = inter ? 2 * pair + 1 : pair + 2;
            float x[8] = {0};
            x[i0] = 1.0f;     /* row 0: unit vector at pos 0 stays put */
            x[4 + i0] = 1.0f; /* row 1: unit vector at pos 7 turns by the pair's angle */
            bl_rope(x, pos, 2, 1, hd, 100.0f, inter);
            double ang = 7.0 * pow(100.0, -2.0 * pair / hd);
            CHECK(x[i0] == 1.0f && x[i1] == 0.0f, "rope at pos 0 moved the vector");
            CHECK(close_to(x[4 + i0], cos(ang), 1e-6) && close_to(x[4 + i1], sin(ang), 1e-6),
                  "rope interleaved=%d pair %d: (%g, %g) want (%g, %g)", inter, pair, x[4 + i0],
                  x[4 + i1], cos(ang), sin(ang));
            for (int j = 0; j < hd; j++)
                if (j != i0 && j != i1) CHECK(x[4 + j] == 0.0f, "rope leaked into dim %d", j);
        }
    }
    /* several heads rotate alike, at large positions the angle stays exact */
    float x[6] = {1, 0, 0, 1, 0, 0};
    int p = 5000;
    bl_rope(x, &p, 1, 3, 2, 10000.0f, false);
    CHECK(close_to(x[0], cos(5000.0), 1e-6) && close_to(x[1], sin(5000.0), 1e-6) &&
              close_to(x[2], -sin(5000.0), 1e-6) && close_to(x[3], cos(5000.0), 1e-6),
          "rope at pos 5000: %g %g %g %g", x[0], x[1], x[2], x[3]);
}

/* softmax-weighted average of v rows 0..n-1 with scores q·k_j/√hd */
static void naive_head(double *o, const float *q, const float *k, const float *v, int ldkv, int n,
                       int hd) {
    double s[64], mx = -1e300, sum = 0;
    for (int j = 0; j < n; j++) {
        s[j] = 0;
        for (int d = 0; d < hd; d++) s[j] += (double)q[d] * k[j * ldkv + d];
        s[j] /= sqrt(hd);
        mx = s[j] > mx ? s[j] : mx;
    }
    for (int j = 0; j < n; j++) sum += (s[j] = exp(s[j] - mx));
    for (int d = 0; d < hd; d++) {
        o[d] = 0;
        for (int j = 0; j < n; j++) o[d] += s[j] / sum * v[j * ldkv + d];
    }
}

static void test_attention_masks(void) {
    enum { B = 2, T = 5, NH = 4, NKV = 2, HD = 3 };
    int lens[B] = {5, 3};
    float q[B * T * NH * HD], k[B * T * NKV * HD], v[B * T * NKV * HD];
    float out[B * T * NH * HD], out2[B * T * NH * HD], att[B * NH * T * T];
    unsigned seed = 7;
    fill(q, B * T * NH * HD, &seed);
    fill(k, B * T * NKV * HD, &seed);
    fill(v, B * T * NKV * HD, &seed);
    bl_attention(out, att, q, k, v, lens, NULL, B, T, NH, NKV, HD);
    bl_attention(out2, NULL, q, k, v, lens, NULL, B, T, NH, NKV, HD);
    for (int i = 0; i < B * T * NH * HD; i++)
        CHECK(close_to(out2[i], out[i], 1e-6), "stack path differs at %d", i);

    /* each query row equals the naive attention over its own prefix, with
     * query head h reading kv head h / (NH / NKV) */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < lens[b]; t++)
            for (int h = 0; h < NH; h++) {
                double o[HD];
                int g = h / (NH / NKV), r = b * T + t;
                naive_head(o, q + r * NH * HD + h * HD, k + b * T * NKV * HD + g * HD,
                           v + b * T * NKV * HD + g * HD, NKV * HD, t + 1, HD);
                for (int d = 0; d < HD; d++)
                    CHECK(close_to(out[r * NH * HD + h * HD + d], o[d], 1e-5),
                          "attention b%d t%d h%d d%d: %g want %g", b, t, h, d,
                          out[r * NH * HD + h * HD + d], o[d]);
                for (int j = 0; j < T; j++) {
                    float p = att[((b * NH + h) * T + t) * T + j];
                    if (j > t) CHECK(p == 0.0f, "causal: att[%d,%d,%d,%d] = %g", b, h, t, j, p);
                }
            }

    /* padded query rows are zero; rewriting padded keys and values changes nothing */
    for (int t = lens[1]; t < T; t++)
        for (int i = 0; i < NH * HD; i++) CHECK(out[(T + t) * NH * HD + i] == 0.0f, "padded row");
    for (int t = lens[1]; t < T; t++)
        for (int i = 0; i < NKV * HD; i++) k[(T + t) * NKV * HD + i] = 1e3f, v[(T + t) * NKV * HD + i] = -1e3f;
    bl_attention(out2, att, q, k, v, lens, NULL, B, T, NH, NKV, HD);
    CHECK(memcmp(out, out2, sizeof out) == 0, "a padded key influenced the output");

    /* a first token attends only to itself: out = its own v */
    for (int h = 0; h < NH; h++)
        for (int d = 0; d < HD; d++)
            CHECK(close_to(out[h * HD + d], v[(h / 2) * HD + d], 1e-6), "t=0 head %d", h);

    /* KV-cache attention of the last 2 rows of sequence 0 equals the batch rows */
    float o3[2 * NH * HD];
    bl_attention_kv(o3, q + 3 * NH * HD, k, v, 2, 3, NH, NKV, HD);
    for (int i = 0; i < 2 * NH * HD; i++)
        CHECK(close_to(o3[i], out[3 * NH * HD + i], 1e-6), "attention_kv differs at %d", i);
}

static void test_swiglu_embed(void) {
    /* fused layout: row = [gate(2) | up(2)], ld = 4 */
    float gu[] = {0, 1, 2, 3, -1, 2, 0.5f, 4}, y[4];
    bl_swiglu(y, gu, gu + 2, 2, 2, 4);
    double s1 = 1 / (1 + exp(-1.0)), sm1 = -1 / (1 + exp(1.0)), s2 = 2 / (1 + exp(-2.0));
    CHECK(y[0] == 0.0f && close_to(y[1], 3 * s1, 1e-6), "swiglu row 0: %g %g", y[0], y[1]);
    CHECK(close_to(y[2], 0.5 * sm1, 1e-6) && close_to(y[3], 4 * s2, 1e-6), "swiglu row 1");
    float table[] = {1, 2, 3, 4, 5, 6}, e[6];
    int ids[] = {2, 0, 2};
    bl_embed(e, table, ids, 3, 2);
    CHECK(e[0] == 5 && e[1] == 6 && e[2] == 1 && e[3] == 2 && e[4] == 5, "embed");
}

int main(void) {
    test_matmul();
    test_rmsnorm();
    test_rope();
    test_attention_masks();
    test_swiglu_embed();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_ops_forward: ok\n");
    return 0;
}
