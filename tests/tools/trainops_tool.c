/* trainops_tool.c - drives the training ops for tests/py/test_train_ops_ref.py.
 *
 *   trainops_tool OP DIR ARGS...
 *
 * Reads raw little-endian arrays DIR/NAME.bin (f32, or i32 for ids and u8 for
 * masks), runs one op and writes its results as DIR/NAME.out (losses as one
 * f64). Exits 1 with a message on stderr when an input is missing.
 *   wq        N                                   w → wq, q (i8), scale
 *   actq      M D BITS                            x → xq, scale
 *   bitlinear M OUT IN R1 ALPHA1 R2 ALPHA2 LAMBDA BITS SUBLN
 *             x w b A1 B1 A2 B2 [g] dy → y dx dA dB [dg]   (adapter 2 trains)
 *   ce        B T V                               s tokens mask → loss grad
 *   kl        B T V TAU                           s t tokens mask → loss grad
 *   topk      B T V K TAU                         s t tokens mask → ids logp loss grad
 *   hidden    L M D WCOS WMAG                     hs ht lw mask → loss mag grad */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitlinear.h"
#include "train/lora.h"
#include "ops/loss.h"
#include "ops/quant.h"

static const char *dir;

/* Reads exactly n elements of size sz from DIR/name.bin, or exits. */
static void *load(const char *name, size_t n, size_t sz) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "rb");
    void *p = malloc(n * sz + 1); /* +1: a zero-size read still gets a block */
    if (!f || !p || fread(p, sz, n, f) != n) {
        fprintf(stderr, "trainops_tool: cannot read %zu values from %s\n", n, path);
        exit(1);
    }
    fclose(f);
    return p;
}

static void save(const char *name, const void *p, size_t n, size_t sz) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.out", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, sz, n, f) != n || fclose(f)) {
        fprintf(stderr, "trainops_tool: cannot write %s\n", path);
        exit(1);
    }
}

static float *loadf(const char *name, size_t n) { return load(name, n, sizeof(float)); }
static void savef(const char *name, const float *p, size_t n) { save(name, p, n, sizeof(float)); }
static void saved(const char *name, double v) { save(name, &v, 1, sizeof v); }

// ----------------------------------------------------------------------------

static int run_wq(char **a) {
    size_t n = (size_t)atol(a[0]);
    float *w = loadf("w", n), *wq = malloc(sizeof(float) * n);
    int8_t *q = malloc(n ? n : 1);
    float s = bl_wq(wq, w, n);
    bl_wq_int8(q, w, n);
    savef("wq", wq, n);
    save("q", q, n, 1);
    savef("scale", &s, 1);
    free(w), free(wq), free(q);
    return 0;
}

static int run_actq(char **a) {
    int M = atoi(a[0]), D = atoi(a[1]), bits = atoi(a[2]);
    float *x = loadf("x", (size_t)M * D), *xq = malloc(sizeof(float) * M * D);
    float *s = malloc(sizeof(float) * M);
    BlError err;
    if (bl_actq(xq, s, x, M, D, bits, &err)) {
        fprintf(stderr, "trainops_tool: %s\n", err.msg);
        return 1;
    }
    savef("xq", xq, (size_t)M * D);
    savef("scale", s, M);
    free(x), free(xq), free(s);
    return 0;
}

static int run_bitlinear(char **a) {
    int M = atoi(a[0]), out = atoi(a[1]), in = atoi(a[2]), r1 = atoi(a[3]), r2 = atoi(a[5]);
    float al1 = (float)atof(a[4]), al2 = (float)atof(a[6]), lambda = (float)atof(a[7]);
    int bits = atoi(a[8]), subln = atoi(a[9]);
    BlError err;
    BlLoraStack st;
    bl_lora_init(&st, out, in);
    if (bl_lora_add_adapter(&st, r1, al1, 1, &err) || bl_lora_add_adapter(&st, r2, al2, 2, &err)) {
        fprintf(stderr, "trainops_tool: %s\n", err.msg);
        return 1;
    }
    const char *names[4] = {"A1", "B1", "A2", "B2"};
    float **dst[4] = {&st.ad[0].A, &st.ad[0].B, &st.ad[1].A, &st.ad[1].B};
    size_t sizes[4] = {(size_t)r1 * in, (size_t)out * r1, (size_t)r2 * in, (size_t)out * r2};
    for (int i = 0; i < 4; i++) {
        free(*dst[i]);
        *dst[i] = loadf(names[i], sizes[i]);
    }
    float *w = loadf("w", (size_t)out * in), *b = loadf("b", out);
    BlBitLinear L = {.w = w, .b = b, .out = out, .in = in, .lora = &st, .lambda = lambda,
                     .act_bits = bits, .subln = subln ? loadf("g", in) : NULL,
                     .dsubln = subln ? calloc(in, sizeof(float)) : NULL, .subln_eps = 1e-5f};
    float *x = loadf("x", (size_t)M * in), *dy = loadf("dy", (size_t)M * out);
    float *y = malloc(sizeof(float) * M * out), *xq = malloc(sizeof(float) * M * in);
    float *dx = malloc(sizeof(float) * M * in), *rstd = malloc(sizeof(float) * M);
    float *weff = malloc(sizeof(float) * out * in);
    float *ls = malloc(sizeof(float) * bl_lora_scratch_floats(&st, M));
    if (bl_bitlinear_forward(y, xq, rstd, x, &L, M, weff, &err)) {
        fprintf(stderr, "trainops_tool: %s\n", err.msg);
        return 1;
    }
    bl_bitlinear_backward(dx, dy, x, xq, rstd, &L, M, weff, ls);
    savef("y", y, (size_t)M * out);
    savef("dx", dx, (size_t)M * in);
    savef("dA", st.ad[1].dA, sizes[2]);
    savef("dB", st.ad[1].dB, sizes[3]);
    if (subln) savef("dg", L.dsubln, in);
    bl_lora_free(&st);
    free(w), free(b), free(L.subln), free(L.dsubln), free(x), free(dy), free(y), free(xq);
    free(dx), free(rstd), free(weff), free(ls);
    return 0;
}

/* The token-loss inputs shared by ce, kl and topk. */
typedef struct {
    int B, T, V;
    float *s, *grad;
    int *tokens;
    uint8_t *mask;
    BlLossRows rows;
} TokIn;

static void tok_load(TokIn *t, char **a) {
    t->B = atoi(a[0]), t->T = atoi(a[1]), t->V = atoi(a[2]);
    size_t n = (size_t)t->B * t->T;
    t->s = loadf("s", n * t->V);
    t->grad = calloc(n * t->V, sizeof(float));
    t->tokens = load("tokens", n, sizeof(int));
    t->mask = load("mask", n, 1);
    t->rows = (BlLossRows){.tokens = t->tokens, .mask = t->mask, .B = t->B, .T = t->T, .V = t->V};
}

static void tok_finish(TokIn *t, double loss) {
    saved("loss", loss);
    savef("grad", t->grad, (size_t)t->B * t->T * t->V);
    free(t->s), free(t->grad), free(t->tokens), free(t->mask);
}

static int run_ce(char **a) {
    TokIn t;
    tok_load(&t, a);
    tok_finish(&t, bl_ce_loss(t.grad, 1.0f, t.s, &t.rows));
    return 0;
}

static int run_kl(char **a) {
    TokIn t;
    tok_load(&t, a);
    float *te = loadf("t", (size_t)t.B * t.T * t.V);
    tok_finish(&t, bl_kl_loss(t.grad, 1.0f, t.s, te, &t.rows, (float)atof(a[3])));
    free(te);
    return 0;
}

static int run_topk(char **a) {
    TokIn t;
    tok_load(&t, a);
    int K = atoi(a[3]);
    float tau = (float)atof(a[4]);
    size_t n = (size_t)t.B * t.T;
    float *te = loadf("t", n * t.V), *lp = malloc(sizeof(float) * n * K);
    int *ids = malloc(sizeof(int) * n * K);
    bl_topk_logprobs(ids, lp, te, (int)n, t.V, K, tau);
    save("ids", ids, n * K, sizeof(int));
    savef("logp", lp, n * K);
    tok_finish(&t, bl_topk_kl_loss(t.grad, 1.0f, t.s, ids, lp, K, &t.rows, tau));
    free(te), free(lp), free(ids);
    return 0;
}

static int run_hidden(char **a) {
    int L = atoi(a[0]), M = atoi(a[1]), D = atoi(a[2]);
    size_t n = (size_t)M * D;
    float *hs = loadf("hs", L * n), *ht = loadf("ht", L * n), *lw = loadf("lw", L);
    float *grad = calloc(L * n, sizeof(float));
    uint8_t *mask = load("mask", M, 1);
    const float **ps = malloc(sizeof(float *) * L), **pt = malloc(sizeof(float *) * L);
    float **pg = malloc(sizeof(float *) * L);
    for (int l = 0; l < L; l++) ps[l] = hs + l * n, pt[l] = ht + l * n, pg[l] = grad + l * n;
    double mag, loss = bl_hidden_loss(pg, (float)atof(a[3]), (float)atof(a[4]), ps, pt, lw, L,
                                      mask, M, D, &mag);
    saved("loss", loss);
    saved("mag", mag);
    savef("grad", grad, L * n);
    free(hs), free(ht), free(lw), free(grad), free(mask), free(ps), free(pt), free(pg);
    return 0;
}

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        int nargs;
        int (*fn)(char **);
    } ops[] = {{"wq", 1, run_wq},   {"actq", 3, run_actq}, {"bitlinear", 10, run_bitlinear},
               {"ce", 3, run_ce},   {"kl", 4, run_kl},     {"topk", 5, run_topk},
               {"hidden", 5, run_hidden}};
    for (size_t i = 0; argc >= 3 && i < sizeof ops / sizeof ops[0]; i++) {
        if (strcmp(argv[1], ops[i].name)) continue;
        if (argc != 3 + ops[i].nargs) break;
        dir = argv[2];
        return ops[i].fn(argv + 3);
    }
    fprintf(stderr, "usage: trainops_tool OP DIR ARGS... (see the header of trainops_tool.c)\n");
    return 2;
}
