/* cmd_bench_ternary.c - `bitlab bench ternary`: the λ = 1 student linear,
 * its fp32 path (actq + Weff + matmul) against the exact integer path
 * (ternary_matmul: ops/ternary_gemm.h on the CPU), over one layer's block
 * linears and (--forward) the whole student forward. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/device_model.h"
#include "cli/cli.h"
#include "eval/student_eval.h"
#include "nn/forward.h"
#include "ops/parallel.h"
#include "train/trainer.h"

// ----------------------------------------------------------------------------
// bench ternary: the λ = 1 student linear, its fp32 path against the integer
// path, over one layer's block linears and (--forward) the whole student

static const CliOpt TERNARY_OPTS[] = {CLI_STR_OPT("model"),
                                      CLI_INT_OPT("tokens", 1, 1 << 16),
                                      CLI_INT_OPT("n", 1, 1 << 16),
                                      CLI_INT_OPT("k", 1, 1 << 16),
                                      CLI_INT_OPT("rank", 0, 4096),
                                      CLI_INT_OPT("bits", 4, 8),
                                      CLI_INT_OPT("iters", 1, 1000),
                                      CLI_FLAG_OPT("forward"),
                                      CLI_STR_OPT("device"),
                                      CLI_END};

const CliSpec cli_bench_ternary_spec = {
    .name = "bench ternary",
    .synopsis = "bitlab bench ternary [--model PATH] [--tokens M] [--n N --k K] [--rank R]\n"
                "                     [--bits 8|4] [--iters N] [--forward] [--device cpu|cuda|auto]",
    .summary = "the lambda-1 student linear: its fp32 path (actq + Weff + matmul) against the\n"
               "integer path (ternary_matmul): seconds per layer and the ratio; one JSON line",
    .details = "Times the seven block linears of one layer (SmolLM2-135M's shapes, or those of\n"
               "--model) on M = --tokens rows (512), with random weights and a LoRA stack of\n"
               "rank --rank (16, as bench step's student; 0: none) merged on every call; or one\n"
               "N x K product (--n, --k). --forward (needs --model) also times the whole\n"
               "student forward (every layer and the LM head) of one --tokens sequence: the\n"
               "integer path, the fp32 path with Weff formed per call (as in training), and\n"
               "the fp32 path with every Weff formed once (eval's cache). Median of --iters\n"
               "(5) after one warm-up.",
    .opts = TERNARY_OPTS,
};

/* The fp32 path behind a ternary_matmul signature: the reference the integer
 * path replaced (actq, Weff at λ = 1, one fp32 GEMM), on fp32_be's ops, in
 * scratch kept for the run (the trainer keeps its own in an arena too). */
static struct {
    const BlBackend *be;
    float *xq, *weff;
    size_t n_xq, n_weff;
} fp32_s;

static float *fp32_grow(float **p, size_t *have, size_t n, BlError *err) {
    if (*have >= n) return *p;
    if (*p) fp32_s.be->free(*p);
    *p = fp32_s.be->alloc(sizeof(float) * n, err);
    *have = *p ? n : 0;
    return *p;
}

static int fp32_ternary_matmul(float *y, const float *x, const BlWeffSpec *w, const float *bias,
                               int M, int bits, BlError *err) {
    const BlBackend *be = fp32_s.be;
    if (!fp32_grow(&fp32_s.xq, &fp32_s.n_xq, (size_t)M * w->in, err) ||
        !fp32_grow(&fp32_s.weff, &fp32_s.n_weff, (size_t)w->out * w->in, err) ||
        be->actq(fp32_s.xq, NULL, x, M, w->in, bits, 1.0f, err))
        return -1;
    be->bitlinear_weff(fp32_s.weff, w);
    be->matmul(y, fp32_s.xq, fp32_s.weff, bias, M, w->out, w->in);
    return 0;
}

static void fp32_release(void) {
    if (fp32_s.xq) fp32_s.be->free(fp32_s.xq);
    if (fp32_s.weff) fp32_s.be->free(fp32_s.weff);
    fp32_s.xq = fp32_s.weff = NULL;
    fp32_s.n_xq = fp32_s.n_weff = 0;
}

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_seconds(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t bench_rng = 0x853c49e6748fea9bull;
static float bench_frand(float scale) { /* uniform in [-scale, scale) */
    bench_rng = bench_rng * 6364136223846793005ull + 1442695040888963407ull;
    return scale * ((float)(bench_rng >> 40) * 0x1.0p-23f - 1.0f);
}

/* n random values in [-scale, scale) in backend memory (weights: through
 * weights_upload, as the device student holds them) */
static float *bench_tensor(const BlBackend *be, size_t n, float scale, bool weight, BlError *err) {
    float *h = bl_malloc(sizeof(float) * n, err), *d = NULL;
    if (!h) return NULL;
    for (size_t i = 0; i < n; i++) h[i] = bench_frand(scale);
    if (weight) {
        d = be->weights_upload(h, n, err);
    } else if ((d = be->alloc(sizeof(float) * n, err)) && be->upload(d, h, sizeof(float) * n, err)) {
        be->free(d);
        d = NULL;
    }
    free(h);
    return d;
}

enum { TERNARY_LINEARS = 7 };
typedef struct {
    int out, in;
    float *w, *lora_b, *lora_a;
} BenchLinear;

/* one pass over the linears through fn; seconds */
typedef int (*TernaryFn)(float *y, const float *x, const BlWeffSpec *w, const float *bias, int M,
                         int bits, BlError *err);
static double time_linears(TernaryFn fn, const BlBackend *be, const BenchLinear *L, int n,
                           int rank, float *y, const float *x, int M, int bits, BlError *err) {
    double t0 = bench_now();
    for (int i = 0; i < n; i++) {
        BlWeffSpec w = {.w = L[i].w, .lora_b = L[i].lora_b, .lora_a = L[i].lora_a,
                        .rank = rank, .out = L[i].out, .in = L[i].in, .lambda = 1.0f};
        if (fn(y, x, &w, NULL, M, bits, err)) return -1.0;
    }
    return be->sync(err) ? -1.0 : bench_now() - t0;
}

/* median seconds of iters passes after one warm-up, fp32 and integer path
 * alternating so that both see the same machine */
static int time_both(const BlBackend *be, const BenchLinear *L, int n, int rank, float *y,
                     const float *x, int M, int bits, int iters, double *fp32_s_out,
                     double *int8_s_out, BlError *err) {
    double tf[1000], ti[1000];
    for (int it = 0; it <= iters; it++) {
        double f = time_linears(fp32_ternary_matmul, be, L, n, rank, y, x, M, bits, err);
        double i8 = f < 0 ? -1.0 : time_linears(be->ternary_matmul, be, L, n, rank, y, x, M, bits, err);
        if (f < 0 || i8 < 0) return -1;
        if (it > 0) tf[it - 1] = f, ti[it - 1] = i8;
    }
    qsort(tf, iters, sizeof(double), cmp_seconds);
    qsort(ti, iters, sizeof(double), cmp_seconds);
    *fp32_s_out = tf[iters / 2];
    *int8_s_out = ti[iters / 2];
    return 0;
}

/* max |a − b| / max |b| of the two paths' outputs of the last linear */
static int paths_differ(const BlBackend *be, const BenchLinear *L, int rank, const float *x,
                        float *y, int M, int bits, double *rel, BlError *err) {
    size_t n = (size_t)M * L->out;
    float *a = bl_malloc(sizeof(float) * n, err), *b = a ? bl_malloc(sizeof(float) * n, err) : NULL;
    BlWeffSpec w = {.w = L->w, .lora_b = L->lora_b, .lora_a = L->lora_a, .rank = rank,
                    .out = L->out, .in = L->in, .lambda = 1.0f};
    int rc = -1;
    if (b && fp32_ternary_matmul(y, x, &w, NULL, M, bits, err) == 0 &&
        be->download(a, y, sizeof(float) * n, err) == 0 &&
        be->ternary_matmul(y, x, &w, NULL, M, bits, err) == 0 &&
        be->download(b, y, sizeof(float) * n, err) == 0) {
        double d = 0.0, m = 0.0;
        for (size_t i = 0; i < n; i++) {
            d = fmax(d, fabs((double)a[i] - b[i]));
            m = fmax(m, fabs((double)a[i]));
        }
        *rel = d / fmax(m, 1e-30);
        rc = 0;
    }
    free(a);
    free(b);
    return rc;
}

/* The whole student forward of one sequence of M tokens, the three ways;
 * seconds (median) into sec[3]: integer path, fp32 per call, fp32 cached. */
static int bench_student_forward(const BlBackend *be, const BlModel *m, int M, int rank, int bits,
                                 int iters, double sec[3], BlError *err) {
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = bits};
    BlStudent st;
    if (bl_build_student(&st, m, &sc, err)) return -1;
    int V = m->cfg.vocab_size, rc = -1;
    int *ids = bl_malloc(sizeof(int) * M, err);
    float *logits = ids ? bl_malloc(sizeof(float) * (size_t)M * V, err) : NULL;
    if (!logits || (rank > 0 && bl_student_add_adapter(&st, rank, 2.0f * rank, 1, err))) goto done;
    for (int i = 0; i < M; i++) ids[i] = (int)((bench_frand(0.5f) + 0.5f) * (V - 1));
    BlBackend fp32_be = *be;
    fp32_be.ternary_matmul = fp32_ternary_matmul;
    const BlBackend *bes[3] = {be, &fp32_be, be};
    size_t cache[3] = {0, 0, BL_STUDENT_WEFF_CACHE_MAX};
    BlStudentMode mode = {.lambda = 1.0f, .act_bits = bits};
    for (int v = 0; v < 3; v++) {
        BlEvalRunner *r;
        double t[1000];
        if (bl_eval_runner_open(&r, bes[v], m, &st, mode, cache[v], err)) goto done;
        for (int it = 0; it <= iters; it++) {
            double t0 = bench_now();
            if (bl_eval_runner_logits(r, true, ids, M, logits, err)) {
                bl_eval_runner_close(r);
                goto done;
            }
            if (it > 0) t[it - 1] = bench_now() - t0;
        }
        bl_eval_runner_close(r);
        qsort(t, iters, sizeof(double), cmp_seconds);
        sec[v] = t[iters / 2];
    }
    rc = 0;
done:
    free(ids);
    free(logits);
    bl_free_student(&st);
    return rc;
}

int cli_bench_ternary(const CliArgs *a) {
    int M = cli_int(a, "--tokens", 512), rank = cli_int(a, "--rank", 16);
    int bits = cli_int(a, "--bits", 8), iters = cli_int(a, "--iters", 5);
    bool one = cli_has(a, "--n") || cli_has(a, "--k"), forward = cli_flag(a, "--forward");
    if (bits != 8 && bits != 4) return cli_usage_error(a, "--bits expects 8 or 4, got %d", bits);
    if (one && !(cli_has(a, "--n") && cli_has(a, "--k")))
        return cli_usage_error(a, "--n and --k go together");
    if (forward && !cli_has(a, "--model"))
        return cli_usage_error(a, "--forward needs --model PATH");
    const BlBackend *be = cli_backend(a, "cpu");
    if (!be) return 2;
    BlModel *m = NULL;
    if (cli_has(a, "--model") && !(m = cli_load_model(a))) return 1;
    /* SmolLM2-135M unless the model says otherwise */
    int D = 576, KV = 192, H = 1536;
    if (m) D = m->cfg.dim, KV = m->cfg.n_kv_heads * m->cfg.head_dim, H = m->cfg.hidden_dim;
    int QD = m ? m->cfg.n_heads * m->cfg.head_dim : D;
    /* q, k, v, o, gate, up, down */
    const int shape[TERNARY_LINEARS][2] = {{QD, D}, {KV, D}, {KV, D}, {D, QD},
                                           {H, D},  {H, D},  {D, H}};
    BenchLinear L[TERNARY_LINEARS];
    int n = one ? 1 : TERNARY_LINEARS;
    for (int i = 0; i < TERNARY_LINEARS; i++)
        L[i] = (BenchLinear){.out = one ? cli_int(a, "--n", 1) : shape[i][0],
                             .in = one ? cli_int(a, "--k", 1) : shape[i][1]};
    BlError err = {{0}};
    int maxin = 0, maxout = 0, rc = -1;
    double macs = 0.0;
    for (int i = 0; i < n; i++) {
        maxin = L[i].in > maxin ? L[i].in : maxin;
        maxout = L[i].out > maxout ? L[i].out : maxout;
        macs += (double)M * L[i].out * L[i].in;
    }
    fp32_s.be = be;
    float *x = bench_tensor(be, (size_t)M * maxin, 2.0f, false, &err);
    float *y = x ? be->alloc(sizeof(float) * (size_t)M * maxout, &err) : NULL;
    for (int i = 0; y && i < n; i++) {
        /* |W| ~ U(0, 0.05), B·A adds about 1% of it */
        float sw = 0.05f, sa = 1.0f / sqrtf((float)L[i].in);
        if (!(L[i].w = bench_tensor(be, (size_t)L[i].out * L[i].in, sw, true, &err)) ||
            (rank > 0 && (!(L[i].lora_b = bench_tensor(be, (size_t)L[i].out * rank, 5e-4f, false, &err)) ||
                          !(L[i].lora_a = bench_tensor(be, (size_t)rank * L[i].in, sa, false, &err)))))
            goto done;
    }
    double f32 = 0, i8 = 0, rel = 0, fwd[3] = {0, 0, 0};
    if (!y || time_both(be, L, n, rank, y, x, M, bits, iters, &f32, &i8, &err) ||
        paths_differ(be, &L[n - 1], rank, x, y, M, bits, &rel, &err))
        goto done;
    fp32_release();
    if (forward && bench_student_forward(be, m, M, rank, bits, iters, fwd, &err)) goto done;
    printf("{\"bench\": \"ternary\", \"backend\": \"%s\", \"threads\": %d, \"tokens\": %d, "
           "\"bits\": %d, \"rank\": %d, \"linears\": %d, \"macs\": %.4g, "
           "\"fp32_s_per_layer\": %.6f, \"int8_s_per_layer\": %.6f, \"speedup\": %.3f, "
           "\"int8_gmacs\": %.1f, \"max_rel_diff\": %.3g",
           be->name, bl_parallel_threads(), M, bits, rank, n, macs, f32, i8, f32 / i8,
           macs / i8 * 1e-9, rel);
    if (forward)
        printf(", \"forward_int8_s\": %.4f, \"forward_fp32_s\": %.4f, "
               "\"forward_fp32_cached_s\": %.4f, \"forward_speedup\": %.3f",
               fwd[0], fwd[1], fwd[2], fwd[1] / fwd[0]);
    printf("}\n");
    rc = 0;
done:
    if (rc) fprintf(stderr, "bitlab bench: %s\n", err.msg);
    fp32_release();
    for (int i = 0; i < n; i++) {
        if (L[i].w) be->weights_free(L[i].w);
        if (L[i].lora_b) be->free(L[i].lora_b);
        if (L[i].lora_a) be->free(L[i].lora_a);
    }
    if (x) be->free(x);
    if (y) be->free(y);
    if (m) bl_model_free(m);
    return rc ? 1 : 0;
}

