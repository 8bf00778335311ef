/* test_backend_ops.c - every backend op, forward and backward, on the CUDA
 * backend against the CPU reference (in the style of ggml's
 * test-backend-ops): a table of op cases, each with fresh random inputs of
 * several shapes (odd sizes, GQA, padding), outputs poisoned with NaN before
 * each run so an element a backend forgot to write fails, and a comparison by
 * normalised mean squared error with a bound per op (bf16 GEMMs looser, fp32
 * ops tight, integer outputs and the quantisers exact).
 *
 *   test_backend_ops [-o OP] [--seed N]   CUDA vs CPU (exit 77 without a device
 *                                         or in a build without CUDA)
 *   test_backend_ops --perf [-o OP]       time each op on the CUDA backend
 *   test_backend_ops --self-check         CPU vs CPU, then a deliberately broken
 *                                         backend that the harness must catch
 *
 * A case whose `ref` is set compares two paths on the backend under test
 * (the ternary fast path against the bf16 path; the own int8 kernel against
 * cuBLASLt) instead of the backend against the CPU. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cuda_module.h"
#include "ops/ops.h"
#include "bitlinear.h"
#include "train/lora.h"
#include "ops/quant.h"

#include "check.h"
#include "rand.h"

// ----------------------------------------------------------------------------
// random inputs


// ----------------------------------------------------------------------------
// cases

enum { F32, I32, U8 };
enum {
    IN,      /* uploaded, not compared */
    WEIGHT,  /* uploaded through be->weights_upload (bf16 on CUDA), not compared */
    OUT,     /* poisoned (NaN / 0x7f7f7f7f), compared */
    INOUT,   /* uploaded (accumulated into or updated in place), compared */
    SCRATCH, /* poisoned, not compared (intermediates of a path) */
};
enum { MAXT = 16, MAXS = 2 };

typedef struct {
    const char *name;
    int type, role;
    size_t n;
    void *host;
} Tens;

typedef struct Case Case;
/* runs the op on be with d[i] = backend pointer of tensor i; scalars out */
typedef int (*RunFn)(const Case *c, const BlBackend *be, void **d, double *scal, BlError *err);

struct Case {
    char label[200];
    const char *op;
    Tens t[MAXT];
    int nt, nscal;
    double tol;  /* NMSE bound of float outputs (0: bit-exact) */
    double stol; /* relative bound of scalars (0: exact) */
    RunFn run;
    RunFn ref;   /* non-NULL: reference = this path on the backend under test */
    bool cuda_only, perf;
    int i[12];
    float f[4];
    float layer_w[4];
};

static size_t type_size(int type) { return type == F32 ? 4 : type == I32 ? 4 : 1; }

/* a new tensor of the case; returns its host buffer to fill */
static void *tens(Case *c, const char *name, int type, int role, size_t n) {
    Tens *t = &c->t[c->nt++];
    *t = (Tens){name, type, role, n, calloc(n ? n : 1, type_size(type))};
    return t->host;
}

static float *ftens(Case *c, const char *name, int role, size_t n, float lo, float hi) {
    float *p = tens(c, name, F32, role, n);
    if (role != OUT && role != SCRATCH)
        for (size_t i = 0; i < n; i++) p[i] = frand(lo, hi);
    return p;
}

static void free_case(Case *c) {
    for (int i = 0; i < c->nt; i++) free(c->t[i].host);
    c->nt = 0;
}

// ----------------------------------------------------------------------------
// running a case on a backend

/* Uploads, poisons, runs, syncs and downloads: outs[i] (malloc'd) receives
 * tensor i for OUT and INOUT tensors. reps > 1 times the run (perf mode). */
static int exec_case(const Case *c, const BlBackend *be, RunFn run, void **outs, double *scal,
                     int reps, double *seconds, BlError *err) {
    void *d[MAXT] = {0};
    int rc = 0;
    for (int i = 0; i < c->nt && rc == 0; i++) {
        const Tens *t = &c->t[i];
        size_t bytes = t->n * type_size(t->type);
        if (t->role == WEIGHT) {
            if (!(d[i] = be->weights_upload(t->host, t->n, err))) rc = -1;
            continue;
        }
        if (!(d[i] = be->alloc(bytes ? bytes : 1, err))) {
            rc = -1;
            continue;
        }
        if (t->role == IN || t->role == INOUT) {
            rc = be->upload(d[i], t->host, bytes, err);
        } else { /* poison: NaN floats, 0x7f7f7f7f ints */
            unsigned char *p = malloc(bytes ? bytes : 1);
            if (t->type == F32)
                for (size_t k = 0; k < t->n; k++) ((float *)p)[k] = NAN;
            else
                memset(p, 0x7f, bytes);
            rc = be->upload(d[i], p, bytes, err);
            free(p);
        }
    }
    for (int s = 0; s < MAXS; s++) scal[s] = NAN;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < reps && rc == 0; r++) rc = run(c, be, d, scal, err);
    if (rc == 0) rc = be->sync(err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (seconds) *seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    for (int i = 0; i < c->nt; i++) {
        const Tens *t = &c->t[i];
        outs[i] = NULL;
        if (rc == 0 && (t->role == OUT || t->role == INOUT)) {
            size_t bytes = t->n * type_size(t->type);
            outs[i] = malloc(bytes ? bytes : 1);
            rc = be->download(outs[i], d[i], bytes, err);
        }
    }
    for (int i = 0; i < c->nt; i++) {
        if (!d[i]) continue;
        if (c->t[i].role == WEIGHT) be->weights_free(d[i]);
        else be->free(d[i]);
    }
    return rc;
}

/* NMSE of got against want; elements NaN in both count as equal (unwritten
 * by contract on both backends), NaN in only one counts in *bad. */
static double nmse(const float *got, const float *want, size_t n, size_t *bad) {
    double num = 0.0, den = 0.0;
    *bad = 0;
    for (size_t i = 0; i < n; i++) {
        bool gn = isnan(got[i]), wn = isnan(want[i]);
        if (gn && wn) continue;
        if (gn != wn || isinf(got[i]) != isinf(want[i])) {
            (*bad)++;
            continue;
        }
        if (isinf(want[i])) continue;
        double e = (double)got[i] - want[i];
        num += e * e;
        den += (double)want[i] * want[i];
    }
    if (num == 0.0) return 0.0;
    return num / (den > 1e-30 ? den : 1e-30);
}

static bool scalar_ok(double got, double want, double stol) {
    if (isnan(got) || isnan(want)) return isnan(got) && isnan(want);
    if (stol == 0.0) return got == want;
    return fabs(got - want) <= stol * fmax(fabs(want), 1e-3);
}

/* Runs the case on `test` and on its reference; prints one line; true = pass. */
static bool check_case(const Case *c, const BlBackend *ref_be, const BlBackend *test) {
    void *got[MAXT], *want[MAXT];
    double sg[MAXS], sw[MAXS];
    BlError err = {{0}};
    const BlBackend *rbe = c->ref ? test : ref_be;
    RunFn rrun = c->ref ? c->ref : c->run;
    bool ok = true;
    char why[1200] = "";
    double worst = 0.0;
    /* exec_case sets every outs[i] (NULL when not downloaded) */
    if (exec_case(c, rbe, rrun, want, sw, 1, NULL, &err)) {
        snprintf(why, sizeof why, "reference failed: %s", err.msg);
        ok = false;
    }
    if (exec_case(c, test, c->run, got, sg, 1, NULL, &err)) {
        if (ok) snprintf(why, sizeof why, "%s failed: %s", test->name, err.msg);
        ok = false;
    }
    for (int i = 0; ok && i < c->nt; i++) {
        const Tens *t = &c->t[i];
        if (t->role != OUT && t->role != INOUT) continue;
        if (t->type == F32) {
            size_t bad;
            double e = nmse(got[i], want[i], t->n, &bad);
            worst = e > worst ? e : worst;
            if (bad) {
                snprintf(why, sizeof why, "%s: %zu element(s) NaN/Inf in one backend only "
                         "(unwritten?)", t->name, bad);
                ok = false;
            } else if (c->tol == 0.0 ? memcmp(got[i], want[i], t->n * 4) != 0 : e > c->tol) {
                snprintf(why, sizeof why, "%s: nmse %.3e > %.1e", t->name, e, c->tol);
                ok = false;
            }
        } else if (memcmp(got[i], want[i], t->n * type_size(t->type)) != 0) {
            size_t k = 0;
            const int *gi = got[i], *wi = want[i];
            if (t->type == I32)
                while (k < t->n && gi[k] == wi[k]) k++;
            snprintf(why, sizeof why, "%s: integer outputs differ (first at %zu)", t->name, k);
            ok = false;
        }
    }
    for (int s = 0; ok && s < c->nscal; s++)
        if (!scalar_ok(sg[s], sw[s], c->stol)) {
            snprintf(why, sizeof why, "scalar %d: %.9g vs %.9g", s, sg[s], sw[s]);
            ok = false;
        }
    for (int i = 0; i < c->nt; i++) {
        free(got[i]);
        free(want[i]);
    }
    printf("  %s  %-58s nmse %.2e (<= %.0e)%s%s\n", ok ? "OK  " : "FAIL", c->label, worst, c->tol,
           ok ? "" : "  ", why);
    return ok;
}

// ----------------------------------------------------------------------------
// the ops: one builder (shapes → tensors) and one run function each

#define D(k) (d[k])
#define FP(k) ((float *)d[k])
#define IP(k) ((int *)d[k])

/* matmul: x, w, b, y */
static int run_matmul(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    be->matmul(FP(3), FP(0), FP(1), c->i[3] ? FP(2) : NULL, c->i[0], c->i[1], c->i[2]);
    return 0;
}
static void mk_matmul(Case *c, int M, int N, int K, int bias, int w16) {
    snprintf(c->label, sizeof c->label, "matmul M=%d N=%d K=%d%s%s", M, N, K, bias ? " bias" : "",
             w16 ? " w=bf16-handle" : "");
    ftens(c, "x", IN, (size_t)M * K, -1, 1);
    ftens(c, "w", w16 ? WEIGHT : IN, (size_t)N * K, -1, 1);
    ftens(c, "b", IN, N, -1, 1);
    ftens(c, "y", OUT, (size_t)M * N, 0, 0);
    c->i[0] = M, c->i[1] = N, c->i[2] = K, c->i[3] = bias;
    c->run = run_matmul;
    c->tol = 5e-4; /* bf16 operands, fp32 accumulation */
}

/* matmul_backward: dy, x, w, dx, dw, db */
static int run_matmul_bw(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    be->matmul_backward(FP(3), FP(4), FP(5), FP(0), FP(1), FP(2), c->i[0], c->i[1], c->i[2]);
    return 0;
}
static void mk_matmul_bw(Case *c, int M, int N, int K, int w16) {
    snprintf(c->label, sizeof c->label, "matmul_backward M=%d N=%d K=%d%s", M, N, K,
             w16 ? " w=bf16-handle" : "");
    ftens(c, "dy", IN, (size_t)M * N, -1, 1);
    ftens(c, "x", IN, (size_t)M * K, -1, 1);
    ftens(c, "w", w16 ? WEIGHT : IN, (size_t)N * K, -1, 1);
    ftens(c, "dx", OUT, (size_t)M * K, 0, 0);
    ftens(c, "dw", INOUT, (size_t)N * K, -1, 1);
    ftens(c, "db", INOUT, N, -1, 1);
    c->i[0] = M, c->i[1] = N, c->i[2] = K;
    c->run = run_matmul_bw;
    c->tol = 5e-4;
}

/* gemm (fp32): A, B, C */
static int run_gemm(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    int M = c->i[0], N = c->i[1], K = c->i[2], ta = c->i[3], tb = c->i[4];
    be->gemm(ta, tb, M, N, K, c->f[0], FP(0), ta ? M : K, FP(1), tb ? K : N, c->f[1], FP(2), N);
    return 0;
}
static void mk_gemm(Case *c, int M, int N, int K, int ta, int tb) {
    snprintf(c->label, sizeof c->label, "gemm fp32 M=%d N=%d K=%d %c%c", M, N, K, ta ? 'T' : 'N',
             tb ? 'T' : 'N');
    ftens(c, "A", IN, (size_t)M * K, -1, 1);
    ftens(c, "B", IN, (size_t)K * N, -1, 1);
    ftens(c, "C", INOUT, (size_t)M * N, -1, 1);
    c->i[0] = M, c->i[1] = N, c->i[2] = K, c->i[3] = ta, c->i[4] = tb;
    c->f[0] = 0.75f, c->f[1] = 0.5f;
    c->run = run_gemm;
    c->tol = 1e-9;
}

/* rmsnorm: x, g, y, rstd */
static int run_rmsnorm(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    be->rmsnorm(FP(2), FP(3), FP(0), FP(1), c->i[0], c->i[1], 1e-5f);
    return 0;
}
static void mk_rmsnorm(Case *c, int M, int D) {
    snprintf(c->label, sizeof c->label, "rmsnorm M=%d D=%d", M, D);
    ftens(c, "x", IN, (size_t)M * D, -2, 2);
    ftens(c, "g", IN, D, 0.5f, 1.5f);
    ftens(c, "y", OUT, (size_t)M * D, 0, 0);
    ftens(c, "rstd", OUT, M, 0, 0);
    c->i[0] = M, c->i[1] = D;
    c->run = run_rmsnorm;
    c->tol = 1e-10;
}

/* rmsnorm_backward: dy, x, g, rstd, dx, dg; in place: dx = dy (tensor 0 INOUT) */
static int run_rmsnorm_bw(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    float *dx = c->i[2] ? FP(0) : FP(4);
    be->rmsnorm_backward(dx, FP(5), FP(0), FP(1), FP(2), FP(3), c->i[0], c->i[1]);
    return 0;
}
static void mk_rmsnorm_bw(Case *c, int M, int D, int inplace) {
    snprintf(c->label, sizeof c->label, "rmsnorm_backward M=%d D=%d%s", M, D,
             inplace ? " dx=dy" : "");
    ftens(c, "dy", inplace ? INOUT : IN, (size_t)M * D, -1, 1);
    float *x = ftens(c, "x", IN, (size_t)M * D, -2, 2);
    float *g = ftens(c, "g", IN, D, 0.5f, 1.5f);
    float *rstd = ftens(c, "rstd", IN, M, 0, 0);
    float *y = malloc(sizeof(float) * M * D);
    bl_rmsnorm(y, rstd, x, g, M, D, 1e-5f); /* the forward's own rstd */
    free(y);
    ftens(c, "dx", inplace ? SCRATCH : OUT, (size_t)M * D, 0, 0);
    ftens(c, "dg", INOUT, D, -1, 1);
    c->i[0] = M, c->i[1] = D, c->i[2] = inplace;
    c->run = run_rmsnorm_bw;
    c->tol = 1e-9;
}

/* rope / rope_backward: x (in place), pos */
static int run_rope(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    (c->i[4] ? be->rope_backward : be->rope)(FP(0), IP(1), c->i[0], c->i[1], c->i[2], c->f[0],
                                             c->i[3]);
    return 0;
}
static void mk_rope(Case *c, int M, int nh, int hd, int interleaved, int backward, float theta) {
    snprintf(c->label, sizeof c->label, "rope%s M=%d heads=%d hd=%d %s theta=%g",
             backward ? "_backward" : "", M, nh, hd, interleaved ? "interleaved" : "neox",
             (double)theta);
    ftens(c, "x", INOUT, (size_t)M * nh * hd, -1, 1);
    int *pos = tens(c, "pos", I32, IN, M);
    for (int m = 0; m < M; m++) pos[m] = irand(4096);
    c->i[0] = M, c->i[1] = nh, c->i[2] = hd, c->i[3] = interleaved, c->i[4] = backward;
    c->f[0] = theta;
    c->run = run_rope;
    c->tol = 1e-10;
}

/* attention: q, k, v, lens, out, att, then doc_start when c->i[6] */
static int run_attention(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    be->attention(FP(4), c->i[5] ? FP(5) : NULL, FP(0), FP(1), FP(2), IP(3),
                  c->i[6] ? IP(6) : NULL, c->i[0], c->i[1], c->i[2], c->i[3], c->i[4]);
    return 0;
}

/* Packed rows: doc_start [B·T] of documents of random lengths 1..max_doc
 * (length-1 ones included) back to back over each row's lens[b] tokens; the
 * padded tail holds junk the ops must not read. */
static int *doc_starts(Case *c, int B, int T, const int *lens, int max_doc) {
    int *ds = tens(c, "doc_start", I32, IN, (size_t)B * T);
    for (int b = 0; b < B; b++) {
        int t = 0;
        while (t < lens[b]) {
            int n = 1 + irand(max_doc);
            for (int i = t; i < t + n && i < lens[b]; i++) ds[b * T + i] = t;
            t += n;
        }
        for (t = lens[b]; t < T; t++) ds[b * T + t] = T + 7; /* outside every row */
    }
    return ds;
}
static int *attn_inputs(Case *c, int B, int T, int nh, int nkv, int hd, const int *lens,
                        float **q, float **k, float **v) {
    *q = ftens(c, "q", IN, (size_t)B * T * nh * hd, -1, 1);
    *k = ftens(c, "k", IN, (size_t)B * T * nkv * hd, -1, 1);
    *v = ftens(c, "v", IN, (size_t)B * T * nkv * hd, -1, 1);
    int *L = tens(c, "lens", I32, IN, B);
    memcpy(L, lens, sizeof(int) * B);
    c->i[0] = B, c->i[1] = T, c->i[2] = nh, c->i[3] = nkv, c->i[4] = hd;
    return L;
}
/* max_doc > 0: packed rows of documents up to max_doc tokens (doc_starts) */
static void mk_attention(Case *c, int B, int T, int nh, int nkv, int hd, const int *lens,
                         int with_att, int max_doc) {
    snprintf(c->label, sizeof c->label, "attention B=%d T=%d nh=%d nkv=%d hd=%d lens0=%d%s%s", B,
             T, nh, nkv, hd, lens[0], with_att ? " +att" : "", max_doc ? " packed" : "");
    float *q, *k, *v;
    attn_inputs(c, B, T, nh, nkv, hd, lens, &q, &k, &v);
    ftens(c, "out", OUT, (size_t)B * T * nh * hd, 0, 0);
    ftens(c, "att", with_att ? OUT : SCRATCH, with_att ? (size_t)B * nh * T * T : 1, 0, 0);
    if (max_doc) doc_starts(c, B, T, lens, max_doc);
    c->i[5] = with_att;
    c->i[6] = max_doc > 0;
    c->run = run_attention;
    c->tol = 1e-9;
}

/* attention_backward: q, k, v, lens, dout, att, dq, dk, dv, then doc_start
 * when c->i[6] */
static int run_attention_bw(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    be->attention_backward(FP(6), FP(7), FP(8), FP(4), FP(5), FP(0), FP(1), FP(2), IP(3),
                           c->i[6] ? IP(9) : NULL, c->i[0], c->i[1], c->i[2], c->i[3], c->i[4]);
    return 0;
}
static void mk_attention_bw(Case *c, int B, int T, int nh, int nkv, int hd, const int *lens,
                            int max_doc) {
    snprintf(c->label, sizeof c->label,
             "attention_backward B=%d T=%d nh=%d nkv=%d hd=%d lens0=%d%s", B, T, nh, nkv, hd,
             lens[0], max_doc ? " packed" : "");
    float *q, *k, *v;
    int *L = attn_inputs(c, B, T, nh, nkv, hd, lens, &q, &k, &v);
    ftens(c, "dout", IN, (size_t)B * T * nh * hd, -1, 1);
    float *att = ftens(c, "att", IN, (size_t)B * nh * T * T, 0, 0);
    ftens(c, "dq", OUT, (size_t)B * T * nh * hd, 0, 0);
    ftens(c, "dk", OUT, (size_t)B * T * nkv * hd, 0, 0);
    ftens(c, "dv", OUT, (size_t)B * T * nkv * hd, 0, 0);
    int *ds = max_doc ? doc_starts(c, B, T, lens, max_doc) : NULL;
    c->i[6] = max_doc > 0;
    float *out = malloc(sizeof(float) * B * T * nh * hd);
    bl_attention(out, att, q, k, v, L, ds, B, T, nh, nkv, hd); /* the forward's probabilities */
    free(out);
    c->run = run_attention_bw;
    c->tol = 1e-8;
}

/* attention_kv: q, kcache, vcache, out */
static int run_attention_kv(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    be->attention_kv(FP(3), FP(0), FP(1), FP(2), c->i[0], c->i[1], c->i[2], c->i[3], c->i[4]);
    return 0;
}
static void mk_attention_kv(Case *c, int n, int pos0, int nh, int nkv, int hd) {
    snprintf(c->label, sizeof c->label, "attention_kv n=%d pos0=%d nh=%d nkv=%d hd=%d", n, pos0, nh,
             nkv, hd);
    ftens(c, "q", IN, (size_t)n * nh * hd, -1, 1);
    ftens(c, "kcache", IN, (size_t)(pos0 + n) * nkv * hd, -1, 1);
    ftens(c, "vcache", IN, (size_t)(pos0 + n) * nkv * hd, -1, 1);
    ftens(c, "out", OUT, (size_t)n * nh * hd, 0, 0);
    c->i[0] = n, c->i[1] = pos0, c->i[2] = nh, c->i[3] = nkv, c->i[4] = hd;
    c->run = run_attention_kv;
    c->tol = 1e-9;
}

/* swiglu: gate, up, y ; backward: gate, up, dy, dgate, dup */
static int run_swiglu(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    if (c->i[3])
        be->swiglu_backward(FP(3), FP(4), FP(2), FP(0), FP(1), c->i[0], c->i[1], c->i[2]);
    else
        be->swiglu(FP(2), FP(0), FP(1), c->i[0], c->i[1], c->i[2]);
    return 0;
}
static void mk_swiglu(Case *c, int M, int H, int ld, int backward) {
    snprintf(c->label, sizeof c->label, "swiglu%s M=%d H=%d ld=%d", backward ? "_backward" : "", M,
             H, ld);
    ftens(c, "gate", IN, (size_t)M * ld, -4, 4);
    ftens(c, "up", IN, (size_t)M * ld, -2, 2);
    if (backward) {
        ftens(c, "dy", IN, (size_t)M * H, -1, 1);
        ftens(c, "dgate", OUT, (size_t)M * ld, 0, 0);
        ftens(c, "dup", OUT, (size_t)M * ld, 0, 0);
    } else {
        ftens(c, "y", OUT, (size_t)M * H, 0, 0);
    }
    c->i[0] = M, c->i[1] = H, c->i[2] = ld, c->i[3] = backward;
    c->run = run_swiglu;
    c->tol = 1e-10;
}

/* embed: table, ids, y */
static int run_embed(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    be->embed(FP(2), FP(0), IP(1), c->i[0], c->i[2]);
    return 0;
}
static void mk_embed(Case *c, int M, int V, int D, int w16) {
    snprintf(c->label, sizeof c->label, "embed M=%d V=%d D=%d%s", M, V, D,
             w16 ? " table=bf16-handle" : "");
    ftens(c, "table", w16 ? WEIGHT : IN, (size_t)V * D, -1, 1);
    int *ids = tens(c, "ids", I32, IN, M);
    for (int m = 0; m < M; m++) ids[m] = irand(V < 4 ? V : V / 4); /* repeated rows */
    ftens(c, "y", OUT, (size_t)M * D, 0, 0);
    c->i[0] = M, c->i[1] = V, c->i[2] = D;
    c->run = run_embed;
    c->tol = w16 ? 1e-5 : 1e-12; /* bf16 table: one rounding per value */
}

/* add: x, y ; copy2d: src, dst */
static int run_glue(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    if (c->i[0] == 0) be->add(FP(1), FP(0), (size_t)c->i[1]);
    else be->copy2d(FP(1), c->i[4], FP(0), c->i[3], c->i[1], c->i[2]);
    return 0;
}
static void mk_add(Case *c, int n) {
    snprintf(c->label, sizeof c->label, "add n=%d", n);
    ftens(c, "x", IN, n, -1, 1);
    ftens(c, "y", INOUT, n, -1, 1);
    c->i[0] = 0, c->i[1] = n;
    c->run = run_glue;
    c->tol = 0.0;
}
static void mk_copy2d(Case *c, int rows, int cols, int ld_src, int ld_dst) {
    snprintf(c->label, sizeof c->label, "copy2d rows=%d cols=%d ld %d -> %d", rows, cols, ld_src,
             ld_dst);
    ftens(c, "src", IN, (size_t)rows * ld_src, -1, 1);
    ftens(c, "dst", OUT, (size_t)rows * ld_dst, 0, 0); /* the gaps stay poisoned on both */
    c->i[0] = 1, c->i[1] = rows, c->i[2] = cols, c->i[3] = ld_src, c->i[4] = ld_dst;
    c->run = run_glue;
    c->tol = 0.0;
}

/* actq: x, xq, scale; f[0] = λ of the blend (1: actq itself) */
static int run_actq(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s;
    return be->actq(FP(1), FP(2), FP(0), c->i[0], c->i[1], c->i[2], c->f[0], e);
}
static void mk_actq(Case *c, int M, int D, int bits, float lambda) {
    snprintf(c->label, sizeof c->label, "actq M=%d D=%d bits=%d lambda=%.9g", M, D, bits,
             (double)lambda);
    float *x = ftens(c, "x", IN, (size_t)M * D, -3, 3);
    /* exact ties: x·s = k + ½ on the row holding 1.0·Q/Q */
    if (M > 1 && D > 2) {
        x[D] = 127.0f / 127.0f * 1.0f; /* absmax 1 → s = Q */
        for (int i = 1; i < D; i++) x[D + i] = frand(-1, 1);
        x[D + 1] = 2.5f / (bits == 4 ? 7.0f : 127.0f);
    }
    ftens(c, "xq", OUT, (size_t)M * D, 0, 0);
    ftens(c, "scale", OUT, M, 0, 0);
    c->i[0] = M, c->i[1] = D, c->i[2] = bits;
    c->f[0] = lambda;
    c->run = run_actq;
    /* the same float operations and roundf on both; the blend's products and
     * sum each rounded on its own (no FMA on either side) */
    c->tol = 0.0;
}

/* bitlinear_weff: w, dense, lora_b, lora_a, weff */
static BlWeffSpec weff_spec(const Case *c, void **d) {
    return (BlWeffSpec){.w = FP(0), .dense = c->i[3] ? FP(1) : NULL, .lora_b = FP(2),
                        .lora_a = FP(3), .rank = c->i[2], .out = c->i[0], .in = c->i[1],
                        .lambda = c->f[0]};
}
static int run_weff(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    BlWeffSpec w = weff_spec(c, d);
    be->bitlinear_weff(FP(4), &w);
    return 0;
}
static void weff_inputs(Case *c, int out, int in, int R, int dense, int w16) {
    ftens(c, "w", w16 ? WEIGHT : IN, (size_t)out * in, -1, 1);
    ftens(c, "dense", IN, dense ? (size_t)out * in : 1, -0.1f, 0.1f);
    ftens(c, "lora_b", IN, R ? (size_t)out * R : 1, -0.05f, 0.05f);
    ftens(c, "lora_a", IN, R ? (size_t)R * in : 1, -0.5f, 0.5f);
    c->i[0] = out, c->i[1] = in, c->i[2] = R, c->i[3] = dense;
}
static void mk_weff(Case *c, int out, int in, int R, int dense, float lambda, int w16) {
    snprintf(c->label, sizeof c->label, "bitlinear_weff %dx%d rank=%d%s lambda=%g%s", out, in, R,
             dense ? " +dense" : "", (double)lambda, w16 ? " w=bf16-handle" : "");
    weff_inputs(c, out, in, R, dense, w16);
    ftens(c, "weff", OUT, (size_t)out * in, 0, 0);
    c->f[0] = lambda;
    c->run = run_weff;
    /* fp32 merge; a rounding difference can flip an element sitting exactly on
     * the ternary threshold, which the bound would flag (see kernels/README.md) */
    c->tol = w16 ? 1e-5 : 1e-9;
}

/* ternary_matmul: w, dense, lora_b, lora_a, x, bias, y, [weff, xq scratch] */
static int run_ternary(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s;
    BlWeffSpec w = weff_spec(c, d);
    return be->ternary_matmul(FP(6), FP(4), &w, c->i[5] ? FP(5) : NULL, c->i[4], c->i[6], e);
}
/* the bf16 path of the same layer: Weff (λ = 1) → actq → matmul */
static int run_ternary_bf16_path(const Case *c, const BlBackend *be, void **d, double *s,
                                 BlError *e) {
    (void)s;
    BlWeffSpec w = weff_spec(c, d);
    int M = c->i[4], in = c->i[1];
    be->bitlinear_weff(FP(7), &w);
    if (be->actq(FP(8), NULL, FP(4), M, in, c->i[6], 1.0f, e)) return -1;
    be->matmul(FP(6), FP(8), FP(7), c->i[5] ? FP(5) : NULL, M, c->i[0], in);
    return 0;
}
/* the same on the own __dp4a kernel (a cuda_only case: the module is loaded) */
static int run_ternary_own_kernel(const Case *c, const BlBackend *be, void **d, double *s,
                                  BlError *e) {
    const BlCudaModule *m = bl_cuda_module(e);
    if (!m) return -1;
    m->set_int8_engine(1);
    int rc = run_ternary(c, be, d, s, e);
    m->set_int8_engine(0);
    return rc;
}
static void mk_ternary(Case *c, int M, int out, int in, int R, int bits, int bias, int variant) {
    static const char *const what[] = {"vs cpu", "int8 path vs bf16 path", "own dp4a vs cuBLASLt"};
    snprintf(c->label, sizeof c->label, "ternary_matmul M=%d %dx%d rank=%d A%d%s %s", M, out, in, R,
             bits, bias ? " bias" : "", what[variant]);
    weff_inputs(c, out, in, R, 0, 0);
    ftens(c, "x", IN, (size_t)M * in, -2, 2);
    ftens(c, "bias", IN, out, -1, 1);
    ftens(c, "y", OUT, (size_t)M * out, 0, 0);
    ftens(c, "weff", SCRATCH, (size_t)out * in, 0, 0);
    ftens(c, "xq", SCRATCH, (size_t)M * in, 0, 0);
    c->i[4] = M, c->i[5] = bias, c->i[6] = bits;
    c->f[0] = 1.0f;
    c->run = run_ternary;
    c->tol = 1e-9;
    if (variant == 1) { /* integer result vs bf16-rounded operands: bf16 rounding */
        c->ref = run_ternary_bf16_path;
        c->tol = 5e-4;
    }
    if (variant == 2) { /* two integer GEMMs: bit-identical */
        c->run = run_ternary_own_kernel;
        c->ref = run_ternary;
        c->tol = 0.0;
        c->cuda_only = true;
    }
}

/* token losses: logits s, [t | t_ids, t_logp], tokens, mask, dlogits */
static void loss_rows(Case *c, int B, int T, int V, int masked) {
    int *tok = tens(c, "tokens", I32, IN, (size_t)B * T);
    uint8_t *mask = tens(c, "mask", U8, IN, (size_t)B * T);
    for (int i = 0; i < B * T; i++) {
        tok[i] = irand(V);
        mask[i] = masked ? urand() < 0.75 : 1;
    }
    if (B * T > 3) tok[2] = -1; /* "no target" */
    /* row 0 (predicting the valid tok[1]) always counts: with every row
     * masked a loss is 0 on any backend, and the self-check's broken ce_loss
     * (loss·1.001) would go uncaught for such a seed */
    mask[0] = 1;
    c->i[0] = B, c->i[1] = T, c->i[2] = V, c->i[3] = masked;
}
static BlLossRows rows_of(const Case *c, void **d, int tok_idx) {
    return (BlLossRows){.tokens = IP(tok_idx), .mask = c->i[3] ? (const uint8_t *)d[tok_idx + 1] : NULL,
                        .B = c->i[0], .T = c->i[1], .V = c->i[2]};
}

/* ce: logits, tokens, mask, dlogits */
static int run_ce(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)e;
    BlLossRows r = rows_of(c, d, 1);
    s[0] = be->ce_loss(c->i[4] ? FP(3) : NULL, 0.7f, FP(0), &r);
    return 0;
}
static void mk_ce(Case *c, int B, int T, int V, int masked, int grad) {
    snprintf(c->label, sizeof c->label, "ce_loss B=%d T=%d V=%d%s%s", B, T, V,
             masked ? " mask" : "", grad ? " +grad" : "");
    ftens(c, "logits", IN, (size_t)B * T * V, -4, 4);
    loss_rows(c, B, T, V, masked);
    ftens(c, "dlogits", INOUT, (size_t)B * T * V, -0.01f, 0.01f);
    c->i[4] = grad;
    c->nscal = 1;
    c->run = run_ce;
    c->tol = 1e-9;
    c->stol = 1e-6;
}

/* kl: s, t, tokens, mask, dlogits */
static int run_kl(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)e;
    BlLossRows r = rows_of(c, d, 2);
    s[0] = be->kl_loss(FP(4), 0.6f, FP(0), FP(1), &r, c->f[0]);
    return 0;
}
static void mk_kl(Case *c, int B, int T, int V, int masked, float tau) {
    snprintf(c->label, sizeof c->label, "kl_loss B=%d T=%d V=%d tau=%g%s", B, T, V, (double)tau,
             masked ? " mask" : "");
    ftens(c, "s", IN, (size_t)B * T * V, -4, 4);
    ftens(c, "t", IN, (size_t)B * T * V, -4, 4);
    loss_rows(c, B, T, V, masked);
    ftens(c, "dlogits", INOUT, (size_t)B * T * V, -0.01f, 0.01f);
    c->f[0] = tau;
    c->nscal = 1;
    c->run = run_kl;
    c->tol = 1e-9;
    c->stol = 1e-6;
}

/* topk_logprobs: t, ids, logp */
static int run_topk_lp(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    be->topk_logprobs(IP(1), FP(2), FP(0), c->i[0], c->i[1], c->i[2], c->f[0]);
    return 0;
}
static void mk_topk_lp(Case *c, int n, int V, int K, float tau) {
    snprintf(c->label, sizeof c->label, "topk_logprobs n=%d V=%d K=%d tau=%g (ties)", n, V, K,
             (double)tau);
    float *t = ftens(c, "t", IN, (size_t)n * V, -3, 3);
    for (size_t i = 0; i < (size_t)n * V; i++) t[i] = roundf(t[i] * 4.0f) / 4.0f; /* many ties */
    tens(c, "ids", I32, OUT, (size_t)n * K);
    ftens(c, "logp", OUT, (size_t)n * K, 0, 0);
    c->i[0] = n, c->i[1] = V, c->i[2] = K;
    c->f[0] = tau;
    c->run = run_topk_lp;
    c->tol = 1e-10;
}

/* topk_kl: s, t_ids, t_logp, tokens, mask, dlogits */
static int run_topk_kl(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)e;
    BlLossRows r = rows_of(c, d, 3);
    s[0] = be->topk_kl_loss(FP(5), 0.8f, FP(0), IP(1), FP(2), c->i[4], &r, c->f[0]);
    return 0;
}
static void mk_topk_kl(Case *c, int B, int T, int V, int K, float tau, int masked, int dup) {
    snprintf(c->label, sizeof c->label, "topk_kl_loss B=%d T=%d V=%d K=%d tau=%g%s%s", B, T, V, K,
             (double)tau, masked ? " mask" : "", dup ? " duplicate-ids(NaN)" : "");
    int n = B * T;
    ftens(c, "s", IN, (size_t)n * V, -4, 4);
    int *ids = tens(c, "t_ids", I32, IN, (size_t)n * K);
    float *lp = ftens(c, "t_logp", IN, (size_t)n * K, 0, 0);
    float *t = malloc(sizeof(float) * n * V);
    for (int i = 0; i < n * V; i++) t[i] = frand(-4, 4);
    bl_topk_logprobs(ids, lp, t, n, V, K, tau); /* a real teacher side */
    free(t);
    if (dup && K > 1) ids[1] = ids[0];
    loss_rows(c, B, T, V, masked);
    ftens(c, "dlogits", INOUT, (size_t)n * V, -0.01f, 0.01f);
    c->i[4] = K;
    c->f[0] = tau;
    c->nscal = 1;
    c->run = run_topk_kl;
    c->tol = 1e-9;
    c->stol = 1e-6;
}

/* hidden: hs[L], ht[L], dhs[L], mask */
static int run_hidden(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)e;
    int L = c->i[0];
    float *hs[4], *ht[4], *dhs[4];
    for (int l = 0; l < L; l++) hs[l] = FP(l), ht[l] = FP(L + l), dhs[l] = FP(2 * L + l);
    s[0] = be->hidden_loss(dhs, 0.9f, 0.3f, (const float *const *)hs, (const float *const *)ht,
                           c->i[3] ? c->layer_w : NULL, L,
                           c->i[4] ? (const uint8_t *)d[3 * L] : NULL, c->i[1], c->i[2], &s[1]);
    return 0;
}
static void mk_hidden(Case *c, int L, int M, int D, int masked, int weighted) {
    snprintf(c->label, sizeof c->label, "hidden_loss layers=%d M=%d D=%d%s%s", L, M, D,
             masked ? " mask" : "", weighted ? " layer_w" : "");
    for (int l = 0; l < L; l++) ftens(c, "hs", IN, (size_t)M * D, -1, 1);
    for (int l = 0; l < L; l++) ftens(c, "ht", IN, (size_t)M * D, -1, 1);
    for (int l = 0; l < L; l++) ftens(c, "dhs", INOUT, (size_t)M * D, -0.01f, 0.01f);
    uint8_t *mask = tens(c, "mask", U8, IN, M);
    for (int m = 0; m < M; m++) mask[m] = masked ? urand() < 0.7 : 1;
    for (int l = 0; l < L; l++) c->layer_w[l] = frand(0.2f, 2.0f);
    c->i[0] = L, c->i[1] = M, c->i[2] = D, c->i[3] = weighted, c->i[4] = masked;
    c->nscal = 2;
    c->run = run_hidden;
    c->tol = 1e-9;
    c->stol = 1e-9;
}

/* relation_kl: s (logits in, gradient out), t, sel, lo */
static int run_relation(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)e;
    s[0] = be->relation_kl(FP(0), FP(1), c->i[0], c->i[1], (const uint8_t *)d[2],
                           c->i[2] ? IP(3) : NULL, c->f[0]);
    return 0;
}
static void mk_relation(Case *c, int n, int T, int packed) {
    snprintf(c->label, sizeof c->label, "relation_kl n=%d T=%d%s", n, T,
             packed ? " packed windows" : "");
    ftens(c, "s", INOUT, (size_t)n * T * T, -3, 3);
    ftens(c, "t", IN, (size_t)n * T * T, -3, 3);
    uint8_t *sel = tens(c, "sel", U8, IN, T);
    int *lo = tens(c, "lo", I32, IN, T);
    for (int i = 0, start = 0; i < T; i++) {
        sel[i] = urand() < 0.7;
        if (i > 0 && urand() < 0.25) start = i; /* documents of random lengths */
        lo[i] = start;
    }
    c->i[0] = n, c->i[1] = T, c->i[2] = packed;
    c->f[0] = frand(0.2f, 2.0f);
    c->nscal = 1;
    c->run = run_relation;
    c->tol = 1e-9;
    c->stol = 1e-9;
}

/* adamw: p, g, m, v */
static const BlAdamWConfig adamw_cfg = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                                        .weight_decay = 0.01f};
static int run_adamw(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    be->adamw_step(FP(0), FP(1), FP(2), FP(3), (size_t)c->i[0], c->i[1], &adamw_cfg);
    return 0;
}
static void mk_adamw(Case *c, int n, int t) {
    snprintf(c->label, sizeof c->label, "adamw_step n=%d t=%d", n, t);
    ftens(c, "p", INOUT, n, -1, 1);
    ftens(c, "g", IN, n, -1, 1);
    ftens(c, "m", INOUT, n, -0.1f, 0.1f);
    ftens(c, "v", INOUT, n, 0.0f, 0.01f);
    c->i[0] = n, c->i[1] = t;
    c->run = run_adamw;
    c->tol = 1e-14; /* meant to be bit-identical (kernels/adamw.cuh) */
}

/* adamw_check: p, g, m, v (compared bit for bit afterwards: nothing may be
 * written); the answer as scalar 0, which must also be the one the case was
 * built for (i[2]) */
enum { ADAMW_FINITE, ADAMW_G2_OVERFLOW, ADAMW_P_OVERFLOW, ADAMW_M_NAN };
static int run_adamw_check(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    bool ok = be->adamw_check(FP(0), FP(1), FP(2), FP(3), (size_t)c->i[0], c->i[1], &adamw_cfg);
    s[0] = ok ? 1.0 : 0.0;
    if (ok != (c->i[2] == ADAMW_FINITE))
        return bl_fail(e, "adamw_check on %s says %s; the case is built to be %s", be->name,
                       ok ? "finite" : "non-finite", ok ? "non-finite" : "finite");
    return 0;
}
static void mk_adamw_check(Case *c, int n, int t, int kind) {
    static const char *const what[] = {"finite", "g^2 overflows v", "p=FLT_MAX overflows",
                                       "NaN in m"};
    int k = irand(n); /* the element made to fail, anywhere: any block, any lane */
    snprintf(c->label, sizeof c->label, "adamw_check n=%d t=%d %s%s", n, t, what[kind],
             kind == ADAMW_FINITE ? "" : " (one element)");
    float *p = ftens(c, "p", INOUT, n, -1, 1);
    float *g = ftens(c, "g", INOUT, n, -1, 1);
    float *m = ftens(c, "m", INOUT, n, -0.1f, 0.1f);
    float *v = ftens(c, "v", INOUT, n, 0.0f, 0.01f);
    if (kind == ADAMW_G2_OVERFLOW) { /* (1−β2)·g·g = 5e38 > FLT_MAX: v = Inf, m and p finite */
        g[k] = urand() < 0.5 ? 1e20f : -1e20f;
    } else if (kind == ADAMW_P_OVERFLOW) {
        /* v stays 0 (g² underflows), so the step is lr/bc1 · m / ε ≈ −1e35·m̂:
         * with m = −1e30 it adds ~1e35 to p = FLT_MAX (decay takes off only
         * ~3e33): p = +Inf, m and v finite */
        p[k] = FLT_MAX, g[k] = -1e-30f, m[k] = -1e30f, v[k] = 0.0f;
    } else if (kind == ADAMW_M_NAN) {
        m[k] = NAN;
    }
    if (kind != ADAMW_FINITE) { /* the element fails where the case says, and only there */
        float q = p[k], mk = m[k], vk = v[k];
        BlAdamWState st = {.m = &mk, .v = &vk, .n = 1, .t = t - 1};
        bl_adamw_step(&q, &g[k], &st, &adamw_cfg);
        bool fp = isfinite(q), fm = isfinite(mk), fv = isfinite(vk);
        CHECK(kind == ADAMW_G2_OVERFLOW ? fp && fm && !fv
              : kind == ADAMW_P_OVERFLOW ? !fp && fm && fv
                                         : !fm, /* NaN in m: m NaN (p follows) */
              "adamw_check case \"%s\": p %g, m %g, v %g after the step", what[kind],
              (double)q, (double)mk, (double)vk);
    }
    c->i[0] = n, c->i[1] = t, c->i[2] = kind;
    c->nscal = 1;
    c->run = run_adamw_check;
    c->tol = 0.0;
    c->stol = 0.0;
}

/* guards: sumsq / scale on x */
static int run_guard(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)e;
    size_t n = (size_t)c->i[1];
    if (c->i[0] == 0) s[0] = be->sumsq(FP(0), n);
    else be->scale(FP(0), n, 0.37f);
    return 0;
}
static void mk_guard(Case *c, int which, int n) {
    static const char *const names[] = {"sumsq", "scale"};
    snprintf(c->label, sizeof c->label, "%s n=%d", names[which], n);
    ftens(c, "x", which == 1 ? INOUT : IN, n, -1, 1);
    c->i[0] = which, c->i[1] = n;
    c->nscal = which == 1 ? 0 : 1;
    c->run = run_guard;
    c->tol = 0.0;
    c->stol = which == 0 ? 1e-12 : 0.0;
}

/* sumsq_segments: x [Σ sizes], sums [n] (the host doubles, uploaded as
 * floats so the tensor comparison sees every one; the first and last also as
 * double scalars); segment sizes i[1..n], one of them empty */
static int run_segments(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    int n = c->i[0];
    size_t off[8];
    double out[8];
    float f[8];
    off[0] = 0;
    for (int k = 0; k < n; k++) off[k + 1] = off[k] + (size_t)c->i[1 + k];
    be->sumsq_segments(out, FP(0), off, n);
    for (int k = 0; k < n; k++) f[k] = (float)out[k];
    s[0] = out[0];
    s[1] = out[n - 1];
    return be->upload(FP(1), f, sizeof(float) * n, e);
}
static void mk_segments(Case *c, int n, const int *sizes) {
    size_t total = 0;
    int at = snprintf(c->label, sizeof c->label, "sumsq_segments");
    c->i[0] = n;
    for (int k = 0; k < n; k++) {
        c->i[1 + k] = sizes[k];
        total += (size_t)sizes[k];
        at += snprintf(c->label + at, sizeof c->label - at, " %d", sizes[k]);
    }
    ftens(c, "x", IN, total, -1, 1);
    ftens(c, "sums", OUT, (size_t)n, 0, 0);
    c->nscal = 2;
    c->run = run_segments;
    c->tol = 1e-12;
    c->stol = 1e-12;
}

/* zero: the first i[0] of x's i[1] floats; the rest must stay */
static int run_zero(const Case *c, const BlBackend *be, void **d, double *s, BlError *e) {
    (void)s, (void)e;
    be->zero(FP(0), sizeof(float) * (size_t)c->i[0]);
    return 0;
}
static void mk_zero(Case *c, int part, int n) {
    snprintf(c->label, sizeof c->label, "zero %d of %d", part, n);
    ftens(c, "x", INOUT, (size_t)n, -1, 1);
    c->i[0] = part, c->i[1] = n;
    c->run = run_zero;
    c->tol = 0.0;
}

// ----------------------------------------------------------------------------
// the table

#define MAXCASES 160
static Case cases[MAXCASES];
static int ncases;

static Case *new_case(const char *op) {
    Case *c = &cases[ncases++];
    memset(c, 0, sizeof *c);
    c->op = op;
    return c;
}

static void build_cases(bool perf) {
    ncases = 0;
    if (perf) { /* SmolLM2-135M-sized ops, for timing */
        static const int lens4[4] = {256, 256, 256, 256};
        mk_matmul(new_case("matmul"), 512, 1536, 576, 0, 1);
        mk_matmul_bw(new_case("matmul_backward"), 512, 1536, 576, 0);
        mk_rmsnorm(new_case("rmsnorm"), 512, 576);
        mk_rope(new_case("rope"), 512, 9, 64, 0, 0, 10000.0f);
        mk_attention(new_case("attention"), 4, 256, 9, 3, 64, lens4, 1, 0);
        mk_attention_bw(new_case("attention_backward"), 4, 256, 9, 3, 64, lens4, 0);
        mk_swiglu(new_case("swiglu"), 512, 1536, 1536, 0);
        mk_weff(new_case("bitlinear_weff"), 1536, 576, 32, 0, 1.0f, 0);
        mk_ternary(new_case("ternary_matmul"), 512, 1536, 576, 32, 8, 0, 0);
        mk_ce(new_case("ce_loss"), 2, 128, 49152, 0, 1);
        mk_kl(new_case("kl_loss"), 2, 128, 49152, 0, 2.0f);
        mk_topk_lp(new_case("topk_logprobs"), 256, 49152, 32, 1.3f);
        mk_adamw(new_case("adamw_step"), 1 << 22, 3);
        mk_adamw_check(new_case("adamw_check"), 1 << 22, 3, ADAMW_FINITE);
        mk_guard(new_case("sumsq"), 0, 1 << 22);
        return;
    }
    static const int MS[] = {1, 3, 17, 64};
    static const int KS[][2] = {{7, 33}, {33, 7}, {64, 576}, {576, 64}};
    for (int a = 0; a < 4; a++) {
        mk_matmul(new_case("matmul"), MS[a], KS[a][0], KS[a][1], a & 1, 0);
        mk_matmul_bw(new_case("matmul_backward"), MS[a], KS[a][0], KS[a][1], 0);
    }
    mk_matmul(new_case("matmul"), 17, 96, 576, 1, 1);
    mk_matmul_bw(new_case("matmul_backward"), 5, 33, 64, 1);
    for (int t = 0; t < 4; t++) mk_gemm(new_case("gemm"), 17, 9 + t, 33, t & 1, t >> 1);
    for (int a = 0; a < 4; a++) {
        mk_rmsnorm(new_case("rmsnorm"), MS[a], KS[a][1]);
        mk_rmsnorm_bw(new_case("rmsnorm_backward"), MS[a], KS[a][1], a == 2);
    }
    mk_rmsnorm_bw(new_case("rmsnorm_backward"), 3, 1000, 1);
    for (int il = 0; il < 2; il++)
        for (int bw = 0; bw < 2; bw++) {
            mk_rope(new_case(bw ? "rope_backward" : "rope"), 17, 3, 64, il, bw, 10000.0f);
            mk_rope(new_case(bw ? "rope_backward" : "rope"), 5, 2, 7, il, bw, 1e6f);
        }
    static const int L1[] = {1}, L2[] = {17, 9}, L3[] = {33, 0, 20}, L4[] = {64};
    mk_attention(new_case("attention"), 1, 1, 1, 1, 7, L1, 1, 0);
    mk_attention(new_case("attention"), 2, 17, 4, 2, 16, L2, 1, 0);
    mk_attention(new_case("attention"), 3, 33, 9, 3, 64, L3, 1, 0);
    mk_attention(new_case("attention"), 1, 64, 2, 1, 33, L4, 0, 0);
    mk_attention_bw(new_case("attention_backward"), 1, 1, 1, 1, 7, L1, 0);
    mk_attention_bw(new_case("attention_backward"), 2, 17, 4, 2, 16, L2, 0);
    mk_attention_bw(new_case("attention_backward"), 3, 33, 9, 3, 64, L3, 0);
    /* packed rows (several documents a row, length-1 ones, padded tails) */
    mk_attention(new_case("attention"), 2, 17, 4, 2, 16, L2, 1, 5);
    mk_attention(new_case("attention"), 3, 33, 9, 3, 64, L3, 1, 9);
    mk_attention(new_case("attention"), 1, 64, 2, 1, 33, L4, 0, 20);
    mk_attention_bw(new_case("attention_backward"), 2, 17, 4, 2, 16, L2, 5);
    mk_attention_bw(new_case("attention_backward"), 3, 33, 9, 3, 64, L3, 9);
    mk_attention_kv(new_case("attention_kv"), 1, 0, 2, 1, 16);
    mk_attention_kv(new_case("attention_kv"), 1, 37, 9, 3, 64);
    mk_attention_kv(new_case("attention_kv"), 5, 12, 4, 4, 7);
    for (int bw = 0; bw < 2; bw++) {
        mk_swiglu(new_case(bw ? "swiglu_backward" : "swiglu"), 3, 33, 33, bw);
        mk_swiglu(new_case(bw ? "swiglu_backward" : "swiglu"), 17, 64, 128, bw);
    }
    mk_embed(new_case("embed"), 17, 50, 33, 0);
    mk_embed(new_case("embed"), 1, 7, 576, 0);
    mk_embed(new_case("embed"), 64, 300, 64, 1);
    mk_add(new_case("add"), 1001);
    mk_copy2d(new_case("copy2d"), 17, 33, 97, 40);
    for (int bits = 4; bits <= 16; bits += 4) {
        if (bits == 12) continue;
        mk_actq(new_case("actq"), 17, 33, bits, 1.0f);
        mk_actq(new_case("actq"), 3, 576, bits, 1.0f);
        /* the λ blend of lambda_acts, at a random λ in (0, 1) */
        mk_actq(new_case("actq"), 17, 33, bits, frand(0.01f, 0.99f));
        mk_actq(new_case("actq"), 5, 576, bits, frand(0.01f, 0.99f));
    }
    mk_weff(new_case("bitlinear_weff"), 7, 33, 0, 0, 1.0f, 0);
    mk_weff(new_case("bitlinear_weff"), 33, 17, 8, 1, 0.5f, 0);
    mk_weff(new_case("bitlinear_weff"), 64, 576, 40, 0, 1.0f, 0);
    mk_weff(new_case("bitlinear_weff"), 96, 64, 16, 0, 0.0f, 1);
    mk_ternary(new_case("ternary_matmul"), 3, 7, 33, 0, 8, 1, 0);
    mk_ternary(new_case("ternary_matmul"), 17, 64, 576, 16, 8, 0, 0);
    mk_ternary(new_case("ternary_matmul"), 5, 33, 17, 8, 4, 1, 0);
    mk_ternary(new_case("ternary_matmul"), 17, 64, 576, 16, 8, 1, 1);
    mk_ternary(new_case("ternary_matmul"), 64, 96, 64, 0, 4, 0, 1);
    mk_ternary(new_case("ternary_matmul"), 17, 64, 576, 16, 8, 0, 2);
    mk_ternary(new_case("ternary_matmul"), 5, 33, 17, 8, 4, 0, 2);
    mk_ce(new_case("ce_loss"), 2, 5, 33, 0, 1);
    mk_ce(new_case("ce_loss"), 3, 7, 1000, 1, 1);
    mk_ce(new_case("ce_loss"), 1, 4, 7, 1, 0);
    mk_kl(new_case("kl_loss"), 2, 5, 33, 0, 1.0f);
    mk_kl(new_case("kl_loss"), 3, 7, 1000, 1, 2.0f);
    mk_topk_lp(new_case("topk_logprobs"), 5, 33, 1, 1.0f);
    mk_topk_lp(new_case("topk_logprobs"), 7, 1000, 33, 1.3f);
    mk_topk_lp(new_case("topk_logprobs"), 3, 17, 17, 2.0f);
    mk_topk_kl(new_case("topk_kl_loss"), 2, 5, 33, 5, 1.0f, 0, 0);
    mk_topk_kl(new_case("topk_kl_loss"), 3, 7, 1000, 33, 1.3f, 1, 0);
    mk_topk_kl(new_case("topk_kl_loss"), 1, 4, 9, 9, 2.0f, 0, 0);
    mk_topk_kl(new_case("topk_kl_loss"), 2, 5, 33, 5, 1.0f, 0, 1);
    mk_hidden(new_case("hidden_loss"), 3, 17, 33, 1, 1);
    mk_hidden(new_case("hidden_loss"), 2, 5, 576, 0, 0);
    mk_relation(new_case("relation_kl"), 3, 17, 0);
    mk_relation(new_case("relation_kl"), 4, 300, 1);
    mk_relation(new_case("relation_kl"), 1, 1, 0);
    mk_adamw(new_case("adamw_step"), 1001, 1);
    mk_adamw(new_case("adamw_step"), 4097, 7);
    mk_adamw_check(new_case("adamw_check"), 1, 1, ADAMW_FINITE);
    mk_adamw_check(new_case("adamw_check"), 4097, 7, ADAMW_FINITE);
    mk_adamw_check(new_case("adamw_check"), 100003, 1, ADAMW_FINITE);
    for (int kind = ADAMW_G2_OVERFLOW; kind <= ADAMW_M_NAN; kind++) {
        mk_adamw_check(new_case("adamw_check"), 1, 1, kind);
        mk_adamw_check(new_case("adamw_check"), 100003, 1 + 3 * kind, kind);
    }
    mk_guard(new_case("sumsq"), 0, 100003);
    mk_guard(new_case("scale"), 1, 1001);
    static const int SEG1[] = {1}, SEG5[] = {4097, 0, 33, 100003, 7};
    mk_segments(new_case("sumsq_segments"), 1, SEG1);
    mk_segments(new_case("sumsq_segments"), 5, SEG5);
    mk_zero(new_case("zero"), 1000, 1001);
    mk_zero(new_case("zero"), 0, 7);
}

static void free_cases(void) {
    for (int i = 0; i < ncases; i++) free_case(&cases[i]);
}

/* every case matching `only` (NULL: all); returns the failures */
static int run_all(const BlBackend *ref, const BlBackend *test, const char *only, int *checked) {
    int fails = 0;
    *checked = 0;
    for (int i = 0; i < ncases; i++) {
        Case *c = &cases[i];
        if (only && strcmp(only, c->op) != 0) continue;
        if (c->cuda_only && strcmp(test->name, "cuda") != 0) continue;
        (*checked)++;
        fails += !check_case(c, ref, test);
    }
    return fails;
}

// ----------------------------------------------------------------------------
// perf mode

static int run_perf(const BlBackend *be, const char *only) {
    printf("perf on %s: time per run, inputs as in the case label\n", be->name);
    for (int i = 0; i < ncases; i++) {
        Case *c = &cases[i];
        if (only && strcmp(only, c->op) != 0) continue;
        if (c->cuda_only && strcmp(be->name, "cuda") != 0) continue;
        void *outs[MAXT];
        double scal[MAXS], secs;
        BlError err = {{0}};
        int reps = 20;
        /* one warm-up run (scratch growth, cuBLAS heuristics), then reps */
        if (exec_case(c, be, c->run, outs, scal, 1, NULL, &err) == 0) {
            for (int k = 0; k < c->nt; k++) free(outs[k]);
            if (exec_case(c, be, c->run, outs, scal, reps, &secs, &err) == 0) {
                for (int k = 0; k < c->nt; k++) free(outs[k]);
                printf("  %-64s %10.1f us/run\n", c->label, secs / reps * 1e6);
                continue;
            }
        }
        printf("  %-64s FAILED: %s\n", c->label, err.msg);
        return 1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// self-check: the machinery on the CPU, and a broken backend it must catch

static void broken_rmsnorm(float *y, float *rstd, const float *x, const float *g, int M, int D,
                           float eps) {
    bl_rmsnorm(y, rstd, x, g, M - 1, D, eps); /* forgets the last row */
    if (M == 1) y[D - 1] = NAN;
}
static void broken_matmul(float *y, const float *x, const float *w, const float *b, int M, int N,
                          int K) {
    bl_matmul(y, x, w, b, M, N, K);
    for (int i = 0; i < M * N; i++) y[i] *= 1.1f; /* a 10% error: nmse 1e-2 */
}
static bool broken_adamw_check(const float *p, const float *g, const float *m, const float *v,
                               size_t n, long t, const BlAdamWConfig *c) {
    /* the right answer, by stepping in place: the check must write nothing */
    float *pw = (float *)p, *mw = (float *)m, *vw = (float *)v;
    bl_backend_cpu()->adamw_step(pw, g, mw, vw, n, t, c);
    bool ok = true;
    for (size_t i = 0; i < n; i++) ok &= isfinite(p[i]) && isfinite(m[i]) && isfinite(v[i]);
    return ok;
}
static int broken_actq(float *xq, float *scale, const float *x, int M, int D, int bits,
                       float lambda, BlError *err) {
    int rc = bl_actq_blend(xq, scale, x, M, D, bits, lambda, err);
    xq[0] = nextafterf(xq[0], INFINITY); /* one ulp: the exact check must see it */
    return rc;
}
static double broken_ce(float *dl, float gw, const float *z, const BlLossRows *r) {
    return bl_ce_loss(dl, gw, z, r) * (1.0 + 1e-3);
}
static void broken_topk(int *ids, float *logp, const float *t, int n, int V, int K, float tau) {
    bl_topk_logprobs(ids, logp, t, n, V, K, tau);
    if (K > 1) { /* swap the first two picks: a tie-order bug */
        int a = ids[0];
        ids[0] = ids[1];
        ids[1] = a;
    }
}

/* bl_bitlinear_weff on a real LoRA stack (two adapters, one frozen, dense)
 * equals the backend's entry on the concatenated stack */
static void check_weff_contract(const BlBackend *be) {
    int out = 24, in = 40;
    BlLoraStack st;
    BlError err;
    bl_lora_init(&st, out, in);
    CHECK(bl_lora_add_adapter(&st, 4, 8.0f, 11, &err) == 0, "%s", err.msg);
    CHECK(bl_lora_add_adapter(&st, 6, 3.0f, 12, &err) == 0, "%s", err.msg);
    CHECK(bl_lora_enable_dense(&st, &err) == 0, "%s", err.msg);
    int R = 10;
    float *w = malloc(sizeof(float) * out * in), *lb = malloc(sizeof(float) * out * R);
    float *la = malloc(sizeof(float) * R * in), *want = malloc(sizeof(float) * out * in);
    float *got = malloc(sizeof(float) * out * in);
    for (int i = 0; i < out * in; i++) w[i] = frand(-1, 1), st.dense[i] = frand(-0.1f, 0.1f);
    int r0 = 0;
    for (int a = 0; a < st.n; a++) {
        BlLoraAdapter *ad = &st.ad[a];
        for (int i = 0; i < out * ad->r; i++) ad->B[i] = frand(-0.2f, 0.2f);
        for (int o = 0; o < out; o++)
            for (int r = 0; r < ad->r; r++) lb[o * R + r0 + r] = ad->scale * ad->B[o * ad->r + r];
        memcpy(la + (size_t)r0 * in, ad->A, sizeof(float) * ad->r * in);
        r0 += ad->r;
    }
    BlBitLinear L = {.w = w, .out = out, .in = in, .lora = &st, .lambda = 0.5f, .act_bits = 8};
    bl_bitlinear_weff(want, &L);
    BlWeffSpec spec = {.w = w, .dense = st.dense, .lora_b = lb, .lora_a = la, .rank = R,
                       .out = out, .in = in, .lambda = 0.5f};
    be->bitlinear_weff(got, &spec);
    size_t bad;
    double e = nmse(got, want, (size_t)out * in, &bad);
    CHECK(bad == 0 && e < 1e-10, "concatenated LoRA stack: nmse %.3e vs bl_bitlinear_weff", e);
    printf("  %s  %-58s nmse %.2e\n", e < 1e-10 ? "OK  " : "FAIL",
           "bitlinear_weff(concatenated stack) == bl_bitlinear_weff", e);
    free(w), free(lb), free(la), free(want), free(got);
    bl_lora_free(&st);
}

/* bl_adamw_check (the CPU backend's adamw_check) agrees with "run the step
 * on a copy and look for a non-finite value", and writes nothing: random
 * small tensors, random configurations and step numbers, elements sprinkled
 * with edge values (NaN, ±Inf, ±FLT_MAX, ±0, subnormals, overflowing
 * gradients, negative v) */
static float adamw_edge_value(float lo, float hi) {
    static const float edge[] = {0.0f,     -0.0f,     NAN,     INFINITY, -INFINITY, FLT_MAX,
                                 -FLT_MAX, 1e20f,     -1e20f,  1e30f,    -1e30f,    1e-30f,
                                 -1e-30f,  FLT_MIN,   1e-42f,  -1e-42f,  3e19f,     -1.0f};
    if (urand() < 0.02) return edge[irand((int)(sizeof edge / sizeof edge[0]))];
    return frand(lo, hi);
}

static void check_adamw_check_contract(const BlBackend *be) {
    static const float lrs[] = {1e-3f, 0.1f, 1e32f}, wds[] = {0.0f, 0.01f, 1e30f};
    static const float b1s[] = {0.9f, 0.0f}, b2s[] = {0.95f, 0.999f}, epss[] = {1e-8f, 0.0f};
    static const long ts[] = {1, 2, 7, 1000};
    enum { TRIALS = 4000, NMAX = 40 };
    int agree = 0, finite = 0, trials = 0;
    for (int trial = 0; trial < TRIALS; trial++) {
        size_t n = (size_t)(trial % 7 == 0 ? 0 : 1 + irand(NMAX));
        BlAdamWConfig c = {.lr = lrs[irand(3)], .beta1 = b1s[irand(2)], .beta2 = b2s[irand(2)],
                           .eps = epss[irand(2)], .weight_decay = wds[irand(3)]};
        if (urand() < 0.5) c.lr = 1e-3f, c.weight_decay = 0.01f; /* mostly a real one */
        long t = ts[irand(4)];
        float in[4][NMAX] = {{0}}, work[4][NMAX];
        for (size_t i = 0; i < n; i++) {
            in[0][i] = adamw_edge_value(-1, 1);
            in[1][i] = adamw_edge_value(-1, 1);
            in[2][i] = adamw_edge_value(-0.1f, 0.1f);
            in[3][i] = adamw_edge_value(0.0f, 0.01f);
        }
        memcpy(work, in, sizeof in);
        bool got = bl_adamw_check(work[0], work[1], work[2], work[3], n, t, &c);
        bool got_be = be->adamw_check(work[0], work[1], work[2], work[3], n, t, &c);
        BlAdamWState st = {.m = work[2], .v = work[3], .n = n, .t = t - 1};
        bool got_state = bl_adamw_step_finite(work[0], work[1], &st, &c);
        CHECK(memcmp(work, in, sizeof in) == 0, "adamw_check wrote to its inputs (trial %d)", trial);
        /* the reference: the step itself, on a copy, through the backend */
        be->adamw_step(work[0], work[1], work[2], work[3], n, t, &c);
        bool want = true;
        for (size_t i = 0; i < n; i++)
            want &= isfinite(work[0][i]) && isfinite(work[2][i]) && isfinite(work[3][i]);
        /* and bl_adamw_step on a state (t counted up to the same step number) */
        memcpy(work, in, sizeof in);
        bl_adamw_step(work[0], work[1], &st, &c);
        bool want_state = st.t == t;
        for (size_t i = 0; i < n; i++)
            want_state &= isfinite(work[0][i]) && isfinite(work[2][i]) && isfinite(work[3][i]);
        bool ok = got == want && got_be == want && got_state == want && want_state == want;
        CHECK(ok, "trial %d (n=%zu t=%ld lr=%g wd=%g b1=%g b2=%g eps=%g): check %d, backend %d, "
              "step_finite %d, the step itself %d (on a state %d)", trial, n, t, (double)c.lr,
              (double)c.weight_decay, (double)c.beta1, (double)c.beta2, (double)c.eps, got,
              got_be, got_state, want, want_state);
        agree += ok;
        finite += want;
        trials++;
    }
    /* both answers must be well represented for the comparison to mean much */
    CHECK(finite > trials / 5 && trials - finite > trials / 5, "adamw_check contract: %d of %d "
          "random cases finite: a lopsided sample", finite, trials);
    printf("  %s  %-58s %d/%d agree (%d finite)\n", agree == trials ? "OK  " : "FAIL",
           "adamw_check == step on a copy + isfinite (random, edges)", agree, trials, finite);
}

static int self_check(const char *only) {
    const BlBackend *cpu = bl_backend_cpu();
    int checked;
    printf("self-check 1/3: every case, cpu against cpu\n");
    int fails = run_all(cpu, cpu, only, &checked);
    CHECK(fails == 0, "%d of %d cases failed cpu against cpu", fails, checked);
    CHECK(checked > 0, "no case matched");

    printf("self-check 2/3: a broken backend; every case of these ops must FAIL\n");
    BlBackend broken = *cpu;
    broken.name = "broken";
    broken.rmsnorm = broken_rmsnorm;
    broken.matmul = broken_matmul;
    broken.actq = broken_actq;
    broken.ce_loss = broken_ce;
    broken.topk_logprobs = broken_topk;
    broken.adamw_check = broken_adamw_check;
    static const char *const ops[] = {"rmsnorm", "matmul", "actq", "ce_loss", "topk_logprobs",
                                      "adamw_check"};
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        if (only && strcmp(only, ops[o]) != 0) continue;
        int caught = 0, n = 0;
        for (int i = 0; i < ncases; i++) {
            Case *c = &cases[i];
            if (strcmp(c->op, ops[o]) != 0) continue;
            if (!strcmp(ops[o], "topk_logprobs") && c->i[2] < 2) continue; /* K = 1: no order */
            n++;
            caught += !check_case(c, cpu, &broken);
        }
        CHECK(n > 0 && caught == n, "%s: the harness caught %d of %d broken runs", ops[o], caught,
              n);
    }

    printf("self-check 3/3: contracts of the cpu entries\n");
    if (!only || !strcmp(only, "bitlinear_weff")) check_weff_contract(cpu);
    if (!only || !strcmp(only, "adamw_check")) check_adamw_check_contract(cpu);
    return failures ? 1 : 0;
}

// ----------------------------------------------------------------------------
// main

int main(int argc, char **argv) {
    const char *only = NULL;
    bool perf = false, self = false;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--perf")) perf = true;
        else if (!strcmp(argv[i], "--self-check")) self = true;
        else {
            fprintf(stderr, "usage: %s [-o OP] [--seed N] [--perf] [--self-check]\n", argv[0]);
            return 2;
        }
    }
    rng_state = seed;
    printf("test_backend_ops: seed %llu (--seed to repeat)\n", (unsigned long long)seed);
    build_cases(perf);
    int rc;
    if (self) {
        rc = perf ? run_perf(bl_backend_cpu(), only) : self_check(only);
    } else {
        BlError err = {{0}};
        BlCudaStatus st = bl_backend_cuda_status(&err);
        if (st == BL_CUDA_NOT_BUILT || st == BL_CUDA_NO_DEVICE) {
            printf("skipped: %s\n", err.msg);
            free_cases();
            return 77;
        }
        const BlBackend *cuda = st == BL_CUDA_READY ? bl_backend_cuda(&err) : NULL;
        if (!cuda) {
            fprintf(stderr, "cuda backend: %s\n", err.msg);
            free_cases();
            return 1;
        }
        if (perf) {
            rc = run_perf(cuda, only);
        } else {
            int checked, fails = run_all(bl_backend_cpu(), cuda, only, &checked);
            printf("%d/%d cases passed\n", checked - fails, checked);
            rc = fails || checked == 0;
        }
    }
    free_cases();
    return rc;
}
