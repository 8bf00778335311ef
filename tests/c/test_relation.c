/* test_relation.c - the attention-relation loss (train/relation_loss.h, the
 * op bl_relation_kl of ops/loss.h) on the CPU backend:
 *
 *  1. the op against the definition computed here in plain double loops
 *     (windowed row softmaxes of both matrices, KL(R_t ‖ R_s) summed over
 *     the selected rows, dKL/ds = R_s − R_t in the window, 0 elsewhere), on
 *     random logits, random selections and packed windows;
 *  2. finite differences of the whole relation loss (bl_relation_loss: the
 *     GEMMs, the op, the GEMMs back) w.r.t. random entries of the student's
 *     q, k and v (GQA: q has twice the heads of k, v), packed and not;
 *  3. windows: in a packed row the relation never crosses documents:
 *     changing a state of one document leaves the loss restricted to the
 *     other document's rows and their gradient bit for bit the same, while
 *     without doc_start the change does reach the later document (teeth);
 *  4. teacher == student: rel is exactly 0 and so is every gradient;
 *  5. the trainer: a packed micro-batch's rel and gradients equal the same
 *     documents one per row (a relation that crossed documents, or
 *     positions that did not restart, would differ); rel > 0 reaches the
 *     total; cached teacher outputs give the same rel; w_rel without a
 *     relation layer, with a teacher provider, and a layer out of range are
 *     refused naming the option.
 *
 * Bounds. 1: both sides do the softmaxes and KL in double from the same
 * float inputs; the op's row sums are over at most T terms, so values agree
 * to T·DBL_EPSILON relative to the terms' magnitude Σ p·(|log p| + |log q|)
 * (taken as 1e3·T·DBL_EPSILON of it: the logs and exps round too), and each gradient entry is a double rounded once to float:
 * |Δ| ≤ FLT_EPSILON·|g| + tiny. 2: the central difference with step h has
 * truncation error h²/6·|f'''| and rounding error ≈ ε_f·n·|L|/h, n = hd
 * products a score (float GEMMs); with h = 1e-2 and O(1) inputs both are
 * ≤ ~1e-4 relative to max|g|: bound 2e-3·max|g| + the rounding term.
 * 5: as test_packed_step, n·ε with n the longest float reduction. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "check.h"
#include "ops/loss.h"
#include "rand.h"
#include "tiny_model.h"
#include "train/relation_loss.h"
#include "train/trainer.h"

// ----------------------------------------------------------------------------
// 1. the op against the definition

/* KL of one row and its gradient from the definition, in double */
static double ref_row(const float *s, const float *t, int a, int i, double g, double *grad, int T,
                      double *mag) {
    double zs = 0.0, zt = 0.0, ms = -INFINITY, mt = -INFINITY;
    for (int j = a; j <= i; j++) ms = fmax(ms, s[j]), mt = fmax(mt, t[j]);
    for (int j = a; j <= i; j++) zs += exp(s[j] - ms), zt += exp(t[j] - mt);
    double kl = 0.0;
    for (int j = 0; j < T; j++) grad[j] = 0.0;
    for (int j = a; j <= i; j++) {
        double p = exp(t[j] - mt) / zt, q = exp(s[j] - ms) / zs;
        kl += p * log(p / q);
        *mag += p * (fabs(log(p)) + fabs(log(q))); /* what the sum's rounding scales with */
        grad[j] = g * (q - p);
    }
    return kl;
}

/* random windows: lo[i] = the start of row i's document (documents of
 * random lengths), or NULL */
static void random_docs(int *lo, int T) {
    int start = 0;
    for (int i = 0; i < T; i++) {
        if (i > 0 && urand() < 0.3) start = i;
        lo[i] = start;
    }
}

static void test_op(int n, int T, bool packed, float scale) {
    size_t N = (size_t)n * T * T;
    float *s = malloc(sizeof(float) * N), *t = malloc(sizeof(float) * N),
          *s0 = malloc(sizeof(float) * N);
    double *grad = malloc(sizeof(double) * T);
    uint8_t sel[64];
    int lo[64];
    for (size_t i = 0; i < N; i++) s0[i] = s[i] = frand(-scale, scale), t[i] = frand(-scale, scale);
    for (int i = 0; i < T; i++) sel[i] = urand() < 0.7;
    sel[T - 1] = 1;
    if (packed) random_docs(lo, T);
    float g = frand(0.3f, 2.0f);
    double got = bl_relation_kl(s, t, n, T, sel, packed ? lo : NULL, g), want = 0.0, worst = 0.0,
           mag = 0.0;
    for (int m = 0; m < n; m++)
        for (int i = 0; i < T; i++) {
            const float *sr = s0 + ((size_t)m * T + i) * T, *tr = t + ((size_t)m * T + i) * T;
            const float *gr = s + ((size_t)m * T + i) * T;
            if (sel[i]) want += ref_row(sr, tr, packed ? lo[i] : 0, i, g, grad, T, &mag);
            else
                for (int j = 0; j < T; j++) grad[j] = 0.0;
            for (int j = 0; j < T; j++) {
                double d = fabs(gr[j] - grad[j]);
                worst = fmax(worst, d);
                CHECK(d <= FLT_EPSILON * fabs(grad[j]) + 1e-30, "op n=%d T=%d: grad [%d,%d,%d] %.9g vs %.9g",
                      n, T, m, i, j, gr[j], grad[j]);
            }
        }
    CHECK(want > 0.0, "op: the reference KL is %g", want);
    /* relative to the terms' magnitude, not to the KL: a small KL is a
     * sum of terms that cancel */
    CHECK(fabs(got - want) <= 1e3 * T * DBL_EPSILON * mag, "op n=%d T=%d%s: %.17g vs %.17g", n, T,
          packed ? " packed" : "", got, want);
    printf("  op n=%d T=%d%s: KL %.6g (ref %.6g), worst gradient |Δ| %.2e\n", n, T,
           packed ? " packed" : "", got, want, worst);
    free(s);
    free(t);
    free(s0);
    free(grad);
}

// ----------------------------------------------------------------------------
// the whole loss on random states

enum { RB = 2, RT = 9, HD = 4, NH = 4, NKV = 2 };

typedef struct {
    float *s[3], *t[3], *ds[3];
    int heads[3], ld[3];
    uint8_t sel[RB * RT];
    int lo[RB * RT];
    float *scratch;
} States;

static void states_new(States *x) {
    memset(x, 0, sizeof *x);
    for (int k = 0; k < 3; k++) {
        x->heads[k] = k == 0 ? NH : NKV;
        x->ld[k] = x->heads[k] * HD;
        size_t n = (size_t)RB * RT * x->ld[k];
        x->s[k] = malloc(sizeof(float) * n);
        x->t[k] = malloc(sizeof(float) * n);
        x->ds[k] = calloc(n, sizeof(float));
        for (size_t i = 0; i < n; i++) x->s[k][i] = frand(-1, 1), x->t[k][i] = frand(-1, 1);
    }
    for (int i = 0; i < RB * RT; i++) x->sel[i] = (i % RT) + 1 < RT && urand() < 0.8;
    for (int b = 0; b < RB; b++) random_docs(x->lo + b * RT, RT);
    x->scratch = malloc(sizeof(float) * bl_relation_scratch_floats(NH, RT));
}

static void states_free(States *x) {
    for (int k = 0; k < 3; k++) free(x->s[k]), free(x->t[k]), free(x->ds[k]);
    free(x->scratch);
}

static double loss_of(States *x, bool packed, bool grad, const uint8_t *sel) {
    BlRelationInput in[3];
    for (int k = 0; k < 3; k++) {
        if (grad) memset(x->ds[k], 0, sizeof(float) * RB * RT * x->ld[k]);
        in[k] = (BlRelationInput){.s = x->s[k], .t = x->t[k], .ds = grad ? x->ds[k] : NULL,
                                  .heads = x->heads[k], .ld = x->ld[k]};
    }
    return bl_relation_loss(bl_backend_cpu(), in, RB, RT, HD, sel, sel, packed ? x->lo : NULL,
                            1.0f, x->scratch);
}

// ----------------------------------------------------------------------------
// 2. finite differences

static void test_fd(bool packed) {
    States x;
    states_new(&x);
    double L = loss_of(&x, packed, true, x.sel);
    CHECK(L > 0.0 && isfinite(L), "fd: rel = %g", L);
    static const char *const names[3] = {"q", "k", "v"};
    const float h = 1e-2f;
    for (int k = 0; k < 3; k++) {
        size_t n = (size_t)RB * RT * x.ld[k];
        double gmax = 0.0, worst = 0.0;
        for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(x.ds[k][i]));
        CHECK(gmax > 0.0, "fd %s: no gradient", names[k]);
        float *keep = malloc(sizeof(float) * n);
        memcpy(keep, x.ds[k], sizeof(float) * n);
        for (int trial = 0; trial < 24; trial++) {
            size_t i = (size_t)irand((int)n);
            float v = x.s[k][i];
            x.s[k][i] = v + h;
            double lp = loss_of(&x, packed, false, x.sel);
            x.s[k][i] = v - h;
            double lm = loss_of(&x, packed, false, x.sel);
            x.s[k][i] = v;
            double fd = (lp - lm) / (2.0 * h), an = keep[i];
            double tol = 2e-3 * gmax + 4.0 * HD * FLT_EPSILON * fabs(L) / h;
            worst = fmax(worst, fabs(fd - an) / gmax);
            CHECK(fabs(fd - an) <= tol, "fd %s%s [%zu]: finite difference %.6g, gradient %.6g",
                  names[k], packed ? " packed" : "", i, fd, an);
        }
        printf("  fd %s%s: 24 entries, worst |fd − grad| / max|grad| %.2e\n", names[k],
               packed ? " packed" : "", worst);
        free(keep);
    }
    states_free(&x);
}

// ----------------------------------------------------------------------------
// 3. windows stay within documents

static void test_windows(void) {
    States x;
    states_new(&x);
    /* row 0: documents [0, 4) and [4, RT) */
    for (int i = 0; i < RT; i++) x.lo[i] = i < 4 ? 0 : 4;
    for (int i = 0; i < RT; i++) x.sel[i] = i + 1 < RT && i != 3;
    uint8_t doc1[RB * RT] = {0}, doc2[RB * RT] = {0};
    for (int i = 0; i < RT; i++) (i < 4 ? doc1 : doc2)[i] = x.sel[i];
    size_t nq = (size_t)RB * RT * x.ld[0];
    float *g0 = malloc(sizeof(float) * nq);
    for (int pass = 0; pass < 2; pass++) {
        bool packed = pass == 0;
        /* document 2's rows (of a state in document 1), then document 1's
         * rows (of a state in document 2) */
        for (int dir = 0; dir < 2; dir++) {
            const uint8_t *rows = dir == 0 ? doc2 : doc1;
            int tok = dir == 0 ? 1 : 6, c = 2;
            double l0 = loss_of(&x, packed, true, rows);
            memcpy(g0, x.ds[0], sizeof(float) * nq);
            float v = x.s[0][tok * x.ld[0] + c], vk = x.s[1][tok * x.ld[1] + c];
            x.s[0][tok * x.ld[0] + c] += 0.5f;
            x.s[1][tok * x.ld[1] + c] -= 0.5f;
            double l1 = loss_of(&x, packed, true, rows);
            x.s[0][tok * x.ld[0] + c] = v;
            x.s[1][tok * x.ld[1] + c] = vk;
            /* the rows of the document being read, their q gradient */
            int r0 = dir == 0 ? 4 : 0, r1 = dir == 0 ? RT : 4;
            bool same = l0 == l1 &&
                        memcmp(g0 + r0 * x.ld[0], x.ds[0] + r0 * x.ld[0],
                               sizeof(float) * (r1 - r0) * x.ld[0]) == 0;
            if (packed)
                CHECK(same, "windows: document %d's relation changed with a state of document %d "
                      "(%.17g vs %.17g)", 2 - dir, dir + 1, l0, l1);
            else if (dir == 0)
                CHECK(!same, "windows: without doc_start a state of document 1 should reach "
                      "document 2's relation");
            CHECK(l0 > 0.0, "windows: rel of document %d is %g", 2 - dir, l0);
        }
    }
    free(g0);
    states_free(&x);
}

// ----------------------------------------------------------------------------
// 4. teacher == student

static void test_identical(void) {
    States x;
    states_new(&x);
    for (int k = 0; k < 3; k++)
        memcpy(x.t[k], x.s[k], sizeof(float) * RB * RT * x.ld[k]);
    for (int pass = 0; pass < 2; pass++) {
        double L = loss_of(&x, pass == 0, true, x.sel);
        CHECK(L == 0.0, "teacher == student: rel = %g", L);
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < RB * RT * x.ld[k]; i++)
                if (x.ds[k][i] != 0.0f) {
                    CHECK(0, "teacher == student: gradient %d[%d] = %g", k, i, x.ds[k][i]);
                    break;
                }
    }
    states_free(&x);
}

// ----------------------------------------------------------------------------
// 5. the trainer

enum { T = 10, BP = 2, MAX_DOCS = 6, DIM = 32, LAYERS = 2, HEADS = 4, HIDDEN = 48, VOCAB = 61 };

static BlStudent make_student(const BlModel *m) {
    BlStudent st;
    BlError err = {{0}};
    /* activations unquantised: packed and one-per-row rows reach the same
     * values by different float summation orders, and an 8-bit activation
     * rounding that flips between them would be a jump no n·ε tolerance
     * covers (it does, about once in 40 seeds); the relation loss's windows
     * are what this compares */
    BlStudentConfig sc = {.lambda = 0.5f, .act_bits = 16};
    tiny_rng = 0x5e1a;
    CHECK(bl_build_student(&st, m, &sc, &err) == 0 && tiny_perturb_student(&st, &err) == 0,
          "student: %s", err.msg);
    return st;
}

static BlTrainerShape shape_of(int B, int layer) {
    return (BlTrainerShape){.batch = B, .seq = T, .hidden = false, .teacher_cache = true,
                            .relation = true, .relation_layer = layer};
}

static BlStepParams params_of(const BlStudent *st, float w_ce) {
    BlLossConfig lc = {.w_ce = w_ce, .w_rel = 1.0f, .tau = 1.0f};
    BlOptConfig oc = {.adamw = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f}};
    return bl_step_params(st, &lc, &oc);
}

static int fake_fetch(void *ctx, const int *tokens, const int *lens, int B, int T_, int *ids,
                      float *logp, float *other, float *const *hidden, BlError *err) {
    (void)ctx, (void)tokens, (void)lens, (void)B, (void)T_, (void)ids, (void)logp, (void)other,
        (void)hidden;
    return bl_fail(err, "not reached");
}

static void test_trainer(const BlModel *m) {
    BlError err = {{0}};
    const BlBackend *cpu = bl_backend_cpu();
    /* row 0: documents of 4 and 6 tokens; row 1: 3 and 5 tokens, 2 padding */
    static const int docs[4][3] = {{0, 0, 4}, {0, 4, 6}, {1, 0, 3}, {1, 3, 5}};
    int ptok[BP * T], plens[BP] = {10, 8}, pds[BP * T];
    int utok[4 * T], ulens[4];
    for (int i = 0; i < BP * T; i++) ptok[i] = irand(VOCAB), pds[i] = 0;
    for (int d = 0; d < 4; d++) {
        ulens[d] = docs[d][2];
        for (int t = 0; t < T; t++) {
            int src = docs[d][0] * T + docs[d][1] + t;
            utok[d * T + t] = t < docs[d][2] ? ptok[src] : -1;
            if (t < docs[d][2]) pds[src] = docs[d][1];
        }
    }
    BlStudent sp = make_student(m), su = make_student(m);
    BlTrainer tp, tu;
    BlTrainerShape shp = shape_of(BP, 1), shu = shape_of(4, 1);
    CHECK(bl_build_trainer(&tp, cpu, &sp, &shp, &err) == 0, "packed trainer: %s", err.msg);
    CHECK(bl_build_trainer(&tu, cpu, &su, &shu, &err) == 0, "unpacked trainer: %s", err.msg);
    BlStepParams prm = params_of(&sp, 0.0f);
    BlMicroBatch packed = {ptok, plens, NULL, pds, BP, T}, rows = {utok, ulens, NULL, NULL, 4, T};
    BlStepResult rp = {0}, ru = {0};
    CHECK(bl_trainer_accumulate(&tp, &packed, 1.0f, &prm, &rp, &err) == 0, "packed: %s", err.msg);
    CHECK(bl_trainer_accumulate(&tu, &rows, 1.0f, &prm, &ru, &err) == 0, "rows: %s", err.msg);
    CHECK(bl_trainer_download_grads(&tp, &err) == 0 && bl_trainer_download_grads(&tu, &err) == 0,
          "grads: %s", err.msg);
    double tol = 4.0 * T * (HIDDEN > VOCAB ? HIDDEN : VOCAB) * FLT_EPSILON;
    CHECK(ru.rel > 0.0 && isfinite(ru.rel), "trainer: rel = %g", ru.rel);
    CHECK(fabs(rp.rel - ru.rel) <= tol * ru.rel, "packed rel %.9g vs one per row %.9g", rp.rel,
          ru.rel);
    CHECK(fabs(ru.total - ru.rel) <= 1e-12 * ru.rel, "w_rel = 1 alone: total %.9g, rel %.9g",
          ru.total, ru.rel);
    int nonzero = 0;
    for (int i = 0; i < sp.n_params; i++) {
        const float *gp = sp.params[i].g, *gu = su.params[i].g;
        double scale = 0.0, d = 0.0;
        for (size_t j = 0; j < sp.params[i].n; j++)
            scale = fmax(scale, fabs(gu[j])), d = fmax(d, fabs((double)gp[j] - gu[j]));
        nonzero += scale > 0.0;
        CHECK(d <= tol * scale, "tensor %d: packed gradient off by %.3g (max |g| %.3g)", i, d,
              scale);
    }
    /* the loss reaches layers 0..1 only through layer 1's q, k, v: some
     * tensors (layer 1's o, MLP) get nothing, layer 0's and 1's q, k, v do */
    CHECK(nonzero > 0, "trainer: the relation loss gave no gradient");
    printf("  trainer: packed rel %.6g vs one per row %.6g, %d tensors with a gradient\n", rp.rel,
           ru.rel, nonzero);

    /* cached: the same micro-batch again gives the same rel */
    BlStepResult rc = {0};
    bl_trainer_zero_grads(&tu);
    CHECK(bl_trainer_accumulate(&tu, &rows, 1.0f, &prm, &rc, &err) == 0, "cached: %s", err.msg);
    CHECK(rc.teacher == BL_TEACHER_CACHED && rc.rel == ru.rel,
          "cached teacher: source %s, rel %.17g vs %.17g", bl_teacher_source_name(rc.teacher),
          rc.rel, ru.rel);
    /* with CE: total = CE + rel */
    BlStepParams p2 = params_of(&su, 1.0f);
    BlStepResult r2 = {0};
    CHECK(bl_trainer_accumulate(&tu, &rows, 1.0f, &p2, &r2, &err) == 0, "ce + rel: %s", err.msg);
    CHECK(fabs(r2.total - (r2.ce + r2.rel)) <= 1e-12 * r2.total && r2.rel == ru.rel,
          "ce + rel: total %.9g, ce %.9g, rel %.9g", r2.total, r2.ce, r2.rel);
    bl_trainer_zero_grads(&tu);

    /* a teacher provider holds no q, k, v */
    BlTeacherProvider pv = {.fetch = fake_fetch, .K = 4, .tau = 1.0f, .what = "trace x.trace"};
    BlTrainerShape shk = shape_of(4, 0);
    shk.topk = 4;
    BlTrainer tk;
    BlStudent sk = make_student(m);
    CHECK(bl_build_trainer(&tk, cpu, &sk, &shk, &err) == 0, "top-K trainer: %s", err.msg);
    CHECK(bl_trainer_set_teacher(&tk, &pv, &err) == 0, "provider: %s", err.msg);
    BlStepParams pk = params_of(&sk, 0.0f);
    pk.loss.w_topk = 1.0f;
    CHECK(bl_trainer_check_params(&tk, &pk, &err) != 0 && strstr(err.msg, "rel") &&
              strstr(err.msg, "trace x.trace"),
          "provider with w_rel: '%s'", err.msg);
    bl_free_trainer(&tk);
    bl_free_student(&sk);

    /* w_rel without a relation layer; a layer out of range */
    BlTrainerShape sn = {.batch = 1, .seq = T};
    BlTrainer tn;
    CHECK(bl_build_trainer(&tn, cpu, &su, &sn, &err) == 0, "plain trainer: %s", err.msg);
    CHECK(tn.buf.bytes[BL_BUF_REL_SCRATCH] == 0 && tn.a.rel_tq == NULL,
          "a shape without relation allocates relation buffers");
    CHECK(bl_trainer_check_params(&tn, &prm, &err) != 0 && strstr(err.msg, "rel") &&
              strstr(err.msg, "relation_layer"),
          "w_rel without relation_layer: '%s'", err.msg);
    BlStepParams neg = prm;
    neg.loss.w_rel = -1.0f;
    CHECK(bl_trainer_check_params(&tu, &neg, &err) != 0 && strstr(err.msg, "rel"),
          "w_rel < 0: '%s'", err.msg);
    bl_free_trainer(&tn);
    BlTrainerShape so = shape_of(1, LAYERS);
    CHECK(bl_build_trainer(&tn, cpu, &su, &so, &err) != 0 && strstr(err.msg, "relation_layer"),
          "relation_layer %d of %d layers: '%s'", LAYERS, LAYERS, err.msg);
    so.relation_layer = -1;
    CHECK(bl_build_trainer(&tn, cpu, &su, &so, &err) != 0 && strstr(err.msg, "relation_layer"),
          "relation_layer -1: '%s'", err.msg);

    bl_free_trainer(&tp);
    bl_free_trainer(&tu);
    bl_free_student(&sp);
    bl_free_student(&su);
}

int main(void) {
    rand_seed_fresh("test_relation");
    test_op(3, 7, false, 3.0f);
    test_op(2, 33, true, 4.0f);
    test_op(1, 2, false, 1.0f);
    test_fd(false);
    test_fd(true);
    test_windows();
    test_identical();
    BlModel *m = tiny_model(BL_ARCH_LLAMA, DIM, LAYERS, HEADS, HIDDEN, VOCAB, 0x5e1b);
    test_trainer(m);
    tiny_free(m);
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    else printf("test_relation: ok\n");
    return failures ? 1 : 0;
}
