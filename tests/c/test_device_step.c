/* test_device_step.c - the trainer (train/trainer.h) on the CPU backend
 * against the reference step (tests/c/ref/ref_step.h, bl_ref_accumulate /
 * bl_ref_update) on the same tiny model, student and batches: every loss,
 * every trainable tensor's gradient (bl_trainer_download_grads), the global
 * / per-block / per-kind gradient norms, the skip flag, then the updated
 * tensors, AdamW moments and step counts after bl_trainer_download, over
 * three steps (the second repeats the first batch: the teacher cache).
 *
 * Cases: llama (interleaved RoPE), qwen2 (q/k/v bias), phi3 (fused qkv and
 * gate_up), all GQA (n_kv = n_heads/2); right-padded batches with a
 * zero-loss sequence and random masks; λ ∈ {0, 0.5, 1}; A8, A4 and A16; two
 * adapters in every stack (both with random B, so dA trains too) and a
 * rotation between steps; SubLN, post-attention norm, dense ΔW; every loss
 * (CE, KL, top-K KL, hidden cosine + magnitude with layer weights);
 * gradient accumulation over two micro-batches; one-sequence logits chunks;
 * the ternary fast path; a NaN in the student (both skip the update); the
 * teacher's outputs given (top-K and hidden states precomputed: the first
 * step through bl_trainer_accumulate_given, the others through a
 * BlTeacherProvider, as a teacher trace serves them); packed rows (several
 * documents a row, against a trainer reference only: test_cuda_step). λ and the activation
 * width reach the trainer through BlStepParams only: its student's own cfg
 * holds other values (the reference reads its student's cfg).
 * Bounds: 1e-5 relative for losses, norms and gradients (both run the same
 * CPU functions except the concatenated LoRA product and the attention
 * backward, so they differ by float32 summation order, which depends on the
 * BLAS kernel of the machine). The tensors after AdamW are compared element
 * by element against 1e-4 of the tensor's scale plus what AdamW makes of the
 * measured gradient difference: the update lr·m̂/(√v̂ + ε) moves by at most
 * 2·lr·|Δg|/(√v̂ + ε) when g moves by Δg (and never by more than 2·lr), so an
 * element whose gradient is near ε, where any float32 order difference is a
 * large relative difference, is allowed exactly the change it can cause.
 *
 * test_cuda_step.c includes this file (DEVICE_STEP_NO_MAIN) and runs the
 * same cases with the CUDA backend against the trainer on the CPU backend
 * (or the CPU backend with bf16 operands) and bf16 bounds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "check.h"
#include "cpu_bf16.h"
#include "tiny_model.h"
#include "ops/loss.h"
#include "ref_step.h"
#include "train/trainer.h"

enum { SB = 3, ST = 9 };

typedef struct {
    const char *name;
    BlArch arch;
    float lambda;
    int bits;
    bool subln, post_norm, dense;
    BlRefLossConfig loss;   /* the reference's mix, with the top-K K */
    bool masked, layer_w;
    int chunk, n_micro;
    bool fast, rotate, nan;
    /* the teacher's outputs given instead of computed: GIVEN_HIDDEN with
     * its hidden states, GIVEN_TOPK top-K only */
    int given;
    /* packed rows (make_doc_start): the reference is then a trainer on
     * ref_backend, as ref_step.c knows no documents */
    bool packed;
} StepCase;

enum { GIVEN_NONE, GIVEN_HIDDEN, GIVEN_TOPK };

/* Bounds of a comparison: scalars relative; tensors by max |a−b| relative to
 * max |b| (maxrel) and by normalised squared error (nmse); 0 skips one. */
typedef struct {
    double scal, maxrel, nmse;   /* losses, norms; gradients */
    double pmaxrel, pnmse;       /* tensors after AdamW, and its moments */
    double update_nmse;          /* the AdamW update p_after − p_before */
    /* the bounds are for one step's rounding: from step s on, both sides also
     * start from parameters the earlier steps' roundings moved apart, so the
     * relative bounds grow s-fold (nmse s²-fold); off: the same every step */
    bool drift_per_step;
} Bounds;

static uint64_t case_rng;
static float case_frand(void) { /* [−1, 1) */
    case_rng = case_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(case_rng >> 11) * 0x1.0p-52 - 1.0);
}

// ----------------------------------------------------------------------------
// comparisons

/* the worst differences of the case being run, for its summary line */
static double worst_scal, worst_grad, worst_param;

/* Per trainable tensor of the case being run: the largest |Δg| of each
 * element over the steps so far (clip-scaled), and the parameter difference
 * AdamW may have built from it (see the bounds above). */
typedef struct {
    float *dg, *allow;
    size_t n;
} Allowance;
static Allowance *allowance;
static int n_allowance;

static void free_allowance(void) {
    for (int i = 0; i < n_allowance; i++) {
        free(allowance[i].dg);
        free(allowance[i].allow);
    }
    free(allowance);
    allowance = NULL;
    n_allowance = 0;
}

/* fresh zeros for a student's tensors (a new case, or after a rotation) */
static void reset_allowance(const BlStudent *s) {
    free_allowance();
    allowance = calloc((size_t)s->n_params, sizeof *allowance);
    n_allowance = s->n_params;
    for (int i = 0; i < s->n_params; i++) {
        allowance[i].n = s->params[i].n;
        allowance[i].dg = calloc(s->params[i].n, sizeof(float));
        allowance[i].allow = calloc(s->params[i].n, sizeof(float));
    }
}

static bool scal_close(double got, double want, double rel) {
    if (isnan(got) || isnan(want)) return isnan(got) && isnan(want);
    double e = fabs(got - want) / fmax(fabs(want), 1e-4);
    worst_scal = fmax(worst_scal, e);
    return e <= rel;
}

/* NaN in both counts as equal, in one only as a failure */
static bool tens_close(const float *got, const float *want, size_t n, const Bounds *b,
                       double *maxrel_out, double *nmse_out) {
    double maxd = 0.0, maxw = 0.0, num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(want[i])) {
            if (isnan(got[i]) != isnan(want[i])) return false;
            continue;
        }
        double d = fabs((double)got[i] - want[i]);
        maxd = fmax(maxd, d);
        maxw = fmax(maxw, fabs(want[i]));
        num += d * d;
        den += (double)want[i] * want[i];
    }
    *maxrel_out = maxd / fmax(maxw, 1e-12);
    *nmse_out = num / fmax(den, 1e-30);
    if (maxd == 0.0) return true;
    return (b->maxrel == 0.0 || *maxrel_out <= b->maxrel) && (b->nmse == 0.0 || *nmse_out <= b->nmse);
}


/* What a run compares against: the reference step (tests/c/ref/ref_step.c,
 * NULL) or the trainer on another backend; and whether the model's matrices
 * are rounded to bf16 first (both sides then hold the same W). */
static const BlBackend *ref_backend;
static bool bf16_weights;

// ----------------------------------------------------------------------------
// the student both trainers start from

static BlRefLossConfig make_loss(float ce, float kl, float topk, float cos, float mag) {
    return (BlRefLossConfig){.w_ce = ce, .w_kl = kl, .w_topk = topk, .w_cos = cos, .w_mag = mag,
                             .tau = 1.7f, .topk = 5};
}

/* The trainer's side of a case's loss mix: the weights and τ (K is the
 * shape's), and the shape: top-K buffers only with a top-K loss, the
 * teacher's hidden states only with a hidden loss. */
static BlLossConfig trainer_loss(const BlRefLossConfig *r) {
    return (BlLossConfig){.w_ce = r->w_ce, .w_kl = r->w_kl, .w_topk = r->w_topk,
                          .w_cos = r->w_cos, .w_mag = r->w_mag, .tau = r->tau,
                          .layer_w = r->layer_w};
}

static BlTrainerShape case_shape(const StepCase *k, const BlRefLossConfig *r) {
    return (BlTrainerShape){.batch = SB, .seq = ST, .topk = r->w_topk != 0.0f ? r->topk : 0,
                            .hidden = r->w_cos != 0.0f || r->w_mag != 0.0f,
                            .teacher_cache = true, .ternary_fast_path = k->fast,
                            .loss_chunk_seqs = k->chunk};
}

/* Two adapters on every linear (r 4 then 2, α/r = 2), both with random B;
 * SubLN / post-norm weights random around 1; dense ΔW random. The same
 * seed gives the same student. */
static int make_student(BlStudent *s, const BlModel *m, const StepCase *k, uint64_t seed,
                        BlError *err) {
    BlStudentConfig sc = {.lambda = k->lambda, .act_bits = k->bits, .subln = k->subln,
                          .post_attn_norm = k->post_norm, .dense = k->dense};
    if (bl_build_student(s, m, &sc, err) || bl_student_add_adapter(s, 4, 8.0f, seed, err))
        return -1;
    case_rng = seed;
    const BlConfig *c = &m->cfg;
    for (int pass = 0; pass < 2; pass++) {
        for (int l = 0; l < c->n_layers; l++)
            for (int kd = 0; kd < BL_LIN_KINDS; kd++) {
                if (!bl_student_has(s, l, kd)) continue;
                BlStudentLinear *sl = bl_student_linear(s, l, kd);
                BlLoraAdapter *a = &sl->lora.ad[sl->lora.n - 1];
                for (int i = 0; i < sl->lora.out * a->r; i++) a->B[i] = 0.05f * case_frand();
                if (pass == 0 && sl->lora.dense)
                    for (int i = 0; i < sl->lora.out * sl->lora.in; i++)
                        sl->lora.dense[i] = 0.01f * case_frand();
                if (pass == 0 && sl->subln)
                    for (int i = 0; i < sl->lora.in; i++) sl->subln[i] = 1.0f + 0.2f * case_frand();
            }
        if (pass == 0 && bl_student_add_adapter(s, 2, 4.0f, seed + 1000, err)) return -1;
    }
    if (s->post_norm)
        for (int i = 0; i < c->n_layers * c->dim; i++) s->post_norm[i] = 1.0f + 0.2f * case_frand();
    return 0;
}

static void make_batch(int *tokens, int *lens, uint8_t *mask, int V, uint64_t seed) {
    case_rng = seed;
    static const int L[SB] = {ST, 6, 1}; /* full, padded, no token rows at all */
    for (int b = 0; b < SB; b++) {
        lens[b] = L[b];
        for (int t = 0; t < ST; t++) {
            int i = b * ST + t;
            tokens[i] = t < L[b] ? (int)((case_frand() + 1.0f) * 0.5f * V) % V : -7;
            mask[i] = case_frand() > -0.6f; /* about 80% ones */
        }
    }
}

/* Packed rows over make_batch's lens: documents of 1..4 tokens back to back
 * (length-1 ones included), junk past lens[b]. */
static void make_doc_start(int *doc_start, const int *lens, uint64_t seed) {
    case_rng = seed;
    for (int b = 0; b < SB; b++) {
        int t = 0;
        while (t < lens[b]) {
            int n = 1 + (int)((case_frand() + 1.0f) * 2.0f) % 4;
            for (int i = t; i < t + n && i < lens[b]; i++) doc_start[b * ST + i] = t;
            t += n;
        }
        for (t = lens[b]; t < ST; t++) doc_start[b * ST + t] = -3;
    }
}

// ----------------------------------------------------------------------------
// one case

static void compare_results(const char *what, const BlStepResult *got, const BlStepResult *want,
                            int n_layers, const Bounds *b) {
    const double g[] = {got->ce, got->kl, got->topk, got->cos, got->mag, got->total};
    const double w[] = {want->ce, want->kl, want->topk, want->cos, want->mag, want->total};
    static const char *const names[] = {"ce", "kl", "topk", "cos", "mag", "total"};
    for (int i = 0; i < 6; i++)
        CHECK(scal_close(g[i], w[i], b->scal), "%s: %s %.9g vs reference %.9g", what, names[i],
              g[i], w[i]);
    CHECK(got->teacher == want->teacher, "%s: teacher %s vs reference %s", what,
          bl_teacher_source_name(got->teacher), bl_teacher_source_name(want->teacher));
    if (!got->block_grad_norm) return; /* accumulate only */
    CHECK(got->skipped == want->skipped, "%s: skipped %d vs reference %d", what, got->skipped,
          want->skipped);
    if (want->skipped) return;
    CHECK(scal_close(got->grad_norm, want->grad_norm, b->scal), "%s: grad norm %.9g vs %.9g",
          what, got->grad_norm, want->grad_norm);
    for (int l = 0; l < n_layers; l++)
        CHECK(scal_close(got->block_grad_norm[l], want->block_grad_norm[l], b->scal),
              "%s: block %d grad norm %.9g vs %.9g", what, l, got->block_grad_norm[l],
              want->block_grad_norm[l]);
    for (int k = 0; k < BL_GRAD_KINDS; k++)
        CHECK(scal_close(got->kind_grad_norm[k], want->kind_grad_norm[k], b->scal),
              "%s: kind %d grad norm %.9g vs %.9g", what, k, got->kind_grad_norm[k],
              want->kind_grad_norm[k]);
}

/* --verbose: where a tensor's difference sits: the worst element with its
 * neighbours, and the share of Σ(a−b)² in its 3 worst elements (a few
 * elements: a quantiser flip; spread: systematic) */
static bool verbose;

static void describe(const char *what, const char *tensor, const float *got, const float *want,
                     size_t n) {
    double num = 0.0, den = 0.0, top[3] = {0};
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(want[i])) continue;
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
        if (fabs(d) > fabs((double)got[worst] - want[worst])) worst = i;
        double e = d * d;
        for (int t = 0; t < 3; t++)
            if (e > top[t]) {
                double x = top[t];
                top[t] = e;
                e = x;
            }
    }
    if (num == 0.0) return;
    printf("    %s %s: nmse %.3g, 3 worst hold %.0f%% of the error; [%zu]:", what, tensor,
           num / fmax(den, 1e-30), 100.0 * (top[0] + top[1] + top[2]) / num, worst);
    for (size_t i = worst > 2 ? worst - 2 : 0; i < n && i <= worst + 2; i++)
        printf(" %s%.4g/%.4g", i == worst ? "*" : "", got[i], want[i]);
    printf("\n");
}

/* every trainable tensor's gradient: the trainer's (downloaded into its host
 * student) against the reference's */
static void compare_grads(const char *what, BlTrainer *dev, const BlStudent *ref,
                          const Bounds *b) {
    BlError err = {{0}};
    BlStudent *st = dev->student;
    CHECK(bl_trainer_download_grads(dev, &err) == 0, "%s: download_grads: %s", what, err.msg);
    CHECK(st->n_params == ref->n_params, "%s: %d vs %d tensors", what, st->n_params,
          ref->n_params);
    for (int i = 0; i < st->n_params && i < ref->n_params; i++) {
        const BlDevParam *p = &dev->ds.params[i];
        const float *got = st->params[i].g;
        double mr, nm;
        bool close = tens_close(got, ref->params[i].g, p->n, b, &mr, &nm);
        worst_grad = fmax(worst_grad, mr);
        if (i < n_allowance && allowance[i].n == p->n)
            for (size_t j = 0; j < p->n; j++)
                allowance[i].dg[j] = fmaxf(allowance[i].dg[j], fabsf(got[j] - ref->params[i].g[j]));
        CHECK(close,
              "%s: gradient of tensor %d (layer %d kind %d, %zu values): max rel %.3g, nmse %.3g",
              what, i, p->layer, p->kind, p->n, mr, nm);
        if (verbose) {
            char t[64];
            snprintf(t, sizeof t, "grad %d (l%d k%d)", i, p->layer, p->kind);
            describe(what, t, got, ref->params[i].g, p->n);
        }
    }
}

/* Updated values element by element: |got − want| ≤ pmaxrel·max|want| plus
 * the allowance AdamW built from the measured gradient differences (this
 * step's added first: clip-scaled |Δg| through 2·lr/(√v̂ + ε), at most 2·lr). */
static bool params_close(const float *got, const float *want, size_t n, Allowance *al,
                         const BlAdamWState *opt, const BlOptConfig *oc, double clip_scale,
                         double pmaxrel, double *maxrel_out) {
    const BlAdamWConfig *a = &oc->adamw;
    double bc2 = 1.0 - pow(a->beta2, (double)opt->t), scale = 0.0, worst = 0.0;
    for (size_t j = 0; j < n; j++) scale = fmax(scale, fabs(want[j]));
    bool ok = true;
    for (size_t j = 0; j < n; j++) {
        if (isnan(got[j]) || isnan(want[j])) {
            ok = ok && isnan(got[j]) && isnan(want[j]);
            continue;
        }
        if (opt->t > 0) {
            double vhat = sqrt(opt->v[j] / bc2) + a->eps;
            al->allow[j] += (float)fmin(2.0 * a->lr, 2.0 * a->lr * clip_scale * al->dg[j] / vhat);
        }
        double d = fabs((double)got[j] - want[j]);
        worst = fmax(worst, d / fmax(scale, 1e-12));
        ok = ok && d <= pmaxrel * scale + al->allow[j];
    }
    *maxrel_out = worst;
    return ok;
}

/* after download: values, moments and step counts against the reference */
static void compare_students(const char *what, const BlStudent *got, const BlStudent *want,
                             float *const *before, const BlOptConfig *oc, double clip_scale,
                             const Bounds *b) {
    CHECK(got->n_params == want->n_params, "%s: %d vs %d tensors", what, got->n_params,
          want->n_params);
    Bounds pb = {.maxrel = b->pmaxrel, .nmse = b->pnmse};
    for (int i = 0; i < got->n_params && i < want->n_params; i++) {
        size_t n = want->params[i].n;
        double mr = 0.0, nm = 0.0;
        /* pmaxrel 0 (the bf16 bounds of test_cuda_step): the tensor's nmse only */
        bool close = b->pmaxrel == 0.0
                         ? tens_close(got->params[i].p, want->params[i].p, n, &pb, &mr, &nm)
                         : i < n_allowance &&
                               params_close(got->params[i].p, want->params[i].p, n,
                                            &allowance[i], &want->opt[i], oc, clip_scale,
                                            b->pmaxrel, &mr);
        worst_param = fmax(worst_param, mr);
        CHECK(close, "%s: tensor %d: max rel %.3g beyond 1e-4 + what AdamW makes of the gradient "
              "difference", what, i, mr);
        CHECK(tens_close(got->opt[i].m, want->opt[i].m, n, &pb, &mr, &nm),
              "%s: tensor %d AdamW m: max rel %.3g, nmse %.3g", what, i, mr, nm);
        CHECK(tens_close(got->opt[i].v, want->opt[i].v, n, &pb, &mr, &nm),
              "%s: tensor %d AdamW v: max rel %.3g, nmse %.3g", what, i, mr, nm);
        if (verbose) {
            char t[64];
            snprintf(t, sizeof t, "m %d", i);
            describe(what, t, got->opt[i].m, want->opt[i].m, n);
        }
        CHECK(got->opt[i].t == want->opt[i].t, "%s: tensor %d step %ld vs %ld", what, i,
              got->opt[i].t, want->opt[i].t);
        if (before && b->update_nmse > 0.0) { /* the update itself, where it is tiny */
            float *ug = malloc(sizeof(float) * n), *uw = malloc(sizeof(float) * n);
            for (size_t j = 0; j < n; j++) {
                ug[j] = got->params[i].p[j] - before[i][j];
                uw[j] = want->params[i].p[j] - before[i][j];
            }
            Bounds ub = {.nmse = b->update_nmse};
            CHECK(tens_close(ug, uw, n, &ub, &mr, &nm), "%s: tensor %d update: nmse %.3g", what,
                  i, nm);
            free(ug);
            free(uw);
        }
    }
}

static float **snapshot(const BlStudent *s) {
    float **p = calloc((size_t)s->n_params + 1, sizeof(float *));
    for (int i = 0; i < s->n_params; i++) {
        p[i] = malloc(sizeof(float) * s->params[i].n);
        memcpy(p[i], s->params[i].p, sizeof(float) * s->params[i].n);
    }
    return p;
}

static void free_snapshot(float **p, int n) {
    for (int i = 0; i < n; i++) free(p[i]);
    free(p);
}

// ----------------------------------------------------------------------------
// given teacher outputs: precomputed on the host, served as a trace would

/* Per batch of a case: the teacher's top-K (ids, log-probabilities at τ) and
 * block outputs, from the model's own forward (nn/forward.h) on the CPU. At
 * padded rows (never read) distinct ids and zeros. */
typedef struct {
    int n, K, L, D;
    float tau;
    bool has_hidden;
    const int *tokens;        /* [n, SB·ST] the batches */
    int *ids;                 /* [n, SB·ST, K] */
    float *logp;              /* [n, SB·ST, K] */
    float *hidden;            /* [n, L, SB·ST, D] */
    const float **hid_ptrs;   /* [n, L] into hidden */
    int fetches;
} GivenSet;

static void free_given_set(GivenSet *g) {
    free(g->ids);
    free(g->logp);
    free(g->hidden);
    free(g->hid_ptrs);
    memset(g, 0, sizeof *g);
}

static int make_given_set(GivenSet *g, const BlModel *m, const int *tokens, const int *lens, int n,
                          int K, float tau, bool hidden, BlError *err) {
    const BlConfig *c = &m->cfg;
    size_t M = (size_t)SB * ST, V = (size_t)c->vocab_size, D = (size_t)c->dim;
    int L = c->n_layers;
    *g = (GivenSet){.n = n, .K = K, .L = L, .D = (int)D, .tau = tau, .has_hidden = hidden,
                    .tokens = tokens};
    g->ids = malloc(sizeof(int) * n * M * K);
    g->logp = malloc(sizeof(float) * n * M * K);
    g->hidden = calloc((size_t)n * L * M * D, sizeof(float));
    g->hid_ptrs = malloc(sizeof(float *) * n * L);
    float *logits = malloc(sizeof(float) * M * V);
    BlForwardState fs;
    int rc = bl_build_forward_state(&fs, m, bl_backend_cpu(), SB, ST, false, err);
    for (int i = 0; rc == 0 && i < n; i++) {
        float *hid[L];
        for (int l = 0; l < L; l++) {
            hid[l] = g->hidden + ((size_t)i * L + l) * M * D;
            g->hid_ptrs[(size_t)i * L + l] = hid[l];
        }
        rc = bl_forward(&fs, tokens + i * M, lens + i * SB, NULL, SB, ST, logits, hid, err);
        for (int b = 0; rc == 0 && b < SB; b++) {
            int nb = lens[i * SB + b];
            size_t r0 = (size_t)b * ST;
            int *ids = g->ids + (i * M + r0) * K;
            float *lp = g->logp + (i * M + r0) * K;
            if (nb > 0) bl_topk_logprobs(ids, lp, logits + r0 * V, nb, (int)V, K, tau);
            for (int t = nb; t < ST; t++) {
                for (int j = 0; j < K; j++) {
                    ids[(size_t)t * K + j] = j;
                    lp[(size_t)t * K + j] = -logf((float)K);
                }
                for (int l = 0; l < L; l++) memset(hid[l] + (r0 + t) * D, 0, sizeof(float) * D);
            }
        }
    }
    bl_free_forward_state(&fs);
    free(logits);
    return rc;
}

/* batch i of the set as a BlTeacherGiven */
static BlTeacherGiven given_of(const GivenSet *g, int i) {
    size_t M = (size_t)SB * ST;
    return (BlTeacherGiven){.K = g->K, .tau = g->tau, .topk_ids = g->ids + i * M * g->K,
                            .topk_logp = g->logp + i * M * g->K,
                            .hidden = g->has_hidden ? g->hid_ptrs + (size_t)i * g->L : NULL};
}

/* BlTeacherProvider.fetch: the batch whose tokens these are */
static int given_fetch(void *ctx, const int *tokens, const int *lens, int B, int T, int *ids,
                       float *logp, float *other, float *const *hidden, BlError *err) {
    (void)lens;
    GivenSet *g = ctx;
    size_t M = (size_t)SB * ST;
    if (B != SB || T != ST) return bl_fail(err, "given: a %d x %d batch", B, T);
    for (int i = 0; i < g->n; i++) {
        if (memcmp(tokens, g->tokens + i * M, sizeof(int) * M) != 0) continue;
        memcpy(ids, g->ids + i * M * g->K, sizeof(int) * M * g->K);
        memcpy(logp, g->logp + i * M * g->K, sizeof(float) * M * g->K);
        for (size_t r = 0; r < M; r++) other[r] = 0.0f; /* not read by the step */
        for (int l = 0; hidden && l < g->L; l++)
            memcpy(hidden[l], g->hid_ptrs[(size_t)i * g->L + l], sizeof(float) * M * g->D);
        g->fetches++;
        return 0;
    }
    return bl_fail(err, "given: a batch the set does not hold");
}

static BlTeacherProvider given_provider(GivenSet *g) {
    return (BlTeacherProvider){.fetch = given_fetch, .ctx = g, .K = g->K, .tau = g->tau,
                               .has_hidden = g->has_hidden, .what = "the test's given outputs"};
}

/* The trainer's student holds λ and the width of another case (the step
 * parameters carry the case's), so that a trainer reading them from its
 * student's cfg fails the comparison. */
static void scramble_cfg(BlStudent *s, const StepCase *k) {
    s->cfg.lambda = k->lambda == 0.25f ? 0.75f : 0.25f;
    s->cfg.act_bits = k->bits == 16 ? 8 : 16;
}

/* Three steps (batch 1, batch 1 again, batch 2) of the case on both trainers. */
static void run_case(const StepCase *k, const BlBackend *be, const Bounds *bounds) {
    BlError err = {{0}};
    worst_scal = worst_grad = worst_param = 0.0;
    BlModel *m = tiny_model(k->arch, 32, 2, 4, 48, 61, 0x5eed0 + k->arch);
    if (bf16_weights) bf16_round_model(m);
    BlStudent sref, sdev;
    float lw[2] = {0.25f, 1.5f};
    BlRefLossConfig rlc = k->loss;
    if (k->layer_w) rlc.layer_w = lw;
    BlOptConfig oc = {.adamw = {.lr = 2e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                                .weight_decay = 0.01f},
                      .max_grad_norm = 0.5f};
    BlTrainerShape shape = case_shape(k, &rlc);
    BlStepParams sp = {.loss = trainer_loss(&rlc), .opt = oc, .lambda = k->lambda,
                       .act_bits = k->bits};
    BlRefTrainer ref;
    BlTrainer dev, dref; /* dref: the reference on ref_backend, when set */
    memset(&ref, 0, sizeof ref);
    memset(&dev, 0, sizeof dev);
    memset(&dref, 0, sizeof dref);
    GivenSet gs = {0};
    int ok = make_student(&sref, m, k, 77, &err) == 0 && make_student(&sdev, m, k, 77, &err) == 0;
    CHECK(ok, "%s: student: %s", k->name, err.msg);
    if (!ok) return;
    scramble_cfg(&sdev, k);
    if (ref_backend) scramble_cfg(&sref, k);
    if (k->nan) { /* one NaN in the newest adapter: every gradient goes NaN */
        sref.params[0].p[1] = NAN;
        sdev.params[0].p[1] = NAN;
    }
    int nb = k->n_micro;
    ok = ref_backend ? bl_build_trainer(&dref, ref_backend, &sref, &shape, &err) == 0
                     : bl_ref_build_trainer(&ref, &sref, SB, ST, &rlc, &oc, &err) == 0;
    CHECK(ok, "%s: reference trainer: %s", k->name, err.msg);
    ok = ok && bl_build_trainer(&dev, be, &sdev, &shape, &err) == 0;
    CHECK(ok, "%s: trainer: %s", k->name, err.msg);
    ok = ok && bl_trainer_check_params(&dev, &sp, &err) == 0;
    CHECK(ok, "%s: step parameters: %s", k->name, err.msg);
    size_t M = (size_t)SB * ST;
    int *tokens = malloc(sizeof(int) * M * 2 * nb), lens[SB * 4];
    uint8_t *mask = malloc(M * 2 * nb);
    for (int i = 0; i < 2 * nb; i++)
        make_batch(tokens + i * M, lens + i * SB, mask + i * M, m->cfg.vocab_size, 1234 + i);
    if (ok && k->given) {
        ok = make_given_set(&gs, m, tokens, lens, 2 * nb, rlc.topk, rlc.tau,
                            k->given == GIVEN_HIDDEN, &err) == 0;
        CHECK(ok, "%s: given outputs: %s", k->name, err.msg);
    }
    int *doc_start = k->packed ? malloc(sizeof(int) * M * 2 * nb) : NULL;
    for (int i = 0; doc_start && i < 2 * nb; i++)
        make_doc_start(doc_start + i * M, lens + i * SB, 777 + i);
    if (k->packed && !ref_backend) {
        printf("  %-44s skipped: ref_step.c has no packed rows\n", k->name);
        ok = false;
    }
    BlTeacherProvider pv = given_provider(&gs);
    const Bounds *base_bounds = bounds;
    for (int step = 0; ok && step < 3; step++) {
        char what[160];
        snprintf(what, sizeof what, "%s step %d", k->name, step + 1);
        Bounds sb = *base_bounds;
        if (sb.drift_per_step) {
            double f = step + 1;
            sb.scal *= f;
            sb.maxrel *= f;
            sb.pmaxrel *= f;
            sb.nmse *= f * f;
            sb.pnmse *= f * f;
        }
        bounds = &sb;
        int set = step == 2 ? 1 : 0; /* steps 1 and 2 see the same batches */
        if (k->given && step == 1) { /* from now on through a provider, as a trace */
            ok = (ref_backend ? bl_trainer_set_teacher(&dref, &pv, &err)
                              : bl_ref_set_teacher(&ref, &pv, &err)) == 0;
            CHECK(ok, "%s: reference set_teacher: %s", what, err.msg);
            ok = ok && bl_trainer_set_teacher(&dev, &pv, &err) == 0 &&
                 bl_trainer_check_params(&dev, &sp, &err) == 0;
            CHECK(ok, "%s: set_teacher: %s", what, err.msg);
        }
        BlStepResult rr = {0}, rd = {0};
        for (int u = 0; ok && u < nb; u++) {
            size_t at = (size_t)(set * nb + u);
            const int *tk = tokens + at * M, *ln = lens + at * SB;
            const uint8_t *mk = k->masked ? mask + at * M : NULL;
            BlMicroBatch mb = {tk, ln, mk, doc_start ? doc_start + at * M : NULL, SB, ST};
            bool direct = k->given && step == 0; /* bl_*_accumulate_given */
            BlTeacherGiven g = {0};
            if (direct) g = given_of(&gs, (int)at);
            if (ref_backend)
                ok = (direct
                          ? bl_trainer_accumulate_given(&dref, &mb, 1.0f / nb, &g, &sp, &rr, &err)
                          : bl_trainer_accumulate(&dref, &mb, 1.0f / nb, &sp, &rr, &err)) == 0;
            else
                ok = (direct ? bl_ref_accumulate_given(&ref, tk, ln, mk, SB, ST, 1.0f / nb, &g,
                                                       &rr, &err)
                             : bl_ref_accumulate(&ref, tk, ln, mk, SB, ST, 1.0f / nb, &rr,
                                                 &err)) == 0;
            CHECK(ok, "%s: reference accumulate: %s", what, err.msg);
            ok = ok &&
                 (direct ? bl_trainer_accumulate_given(&dev, &mb, 1.0f / nb, &g, &sp, &rd, &err)
                         : bl_trainer_accumulate(&dev, &mb, 1.0f / nb, &sp, &rd, &err)) == 0;
            CHECK(ok, "%s: trainer accumulate: %s", what, err.msg);
        }
        if (!ok) break;
        compare_results(what, &rd, &rr, m->cfg.n_layers, bounds);
        if (k->given)
            CHECK(rd.teacher == BL_TEACHER_TRACE, "%s: teacher %s with given outputs", what,
                  bl_teacher_source_name(rd.teacher));
        else
            CHECK(rd.teacher == (step == 1 ? BL_TEACHER_CACHED : BL_TEACHER_COMPUTED) ||
                      (nb > 1 && rd.teacher == BL_TEACHER_COMPUTED),
                  "%s: teacher %s", what, bl_teacher_source_name(rd.teacher));
        if (step == 0) reset_allowance(&sref);
        if (ref_backend) /* the reference's gradients into the host student's */
            CHECK(bl_trainer_download_grads(&dref, &err) == 0, "%s: reference grads: %s", what,
                  err.msg);
        compare_grads(what, &dev, &sref, bounds);
        float **before = snapshot(&sref);
        if (ref_backend) {
            ok = bl_trainer_update(&dref, &sp, &rr, &err) == 0 &&
                 bl_trainer_download(&dref, &err) == 0;
            CHECK(ok, "%s: reference update: %s", what, err.msg);
        } else {
            bl_ref_update(&ref, &rr);
        }
        ok = ok && bl_trainer_update(&dev, &sp, &rd, &err) == 0;
        CHECK(ok, "%s: trainer update: %s", what, err.msg);
        compare_results(what, &rd, &rr, m->cfg.n_layers, bounds);
        CHECK(rd.skipped == k->nan, "%s: skipped %d, expected %d", what, rd.skipped, k->nan);
        CHECK(dev.steps == step + 1 && dev.skipped == (k->nan ? step + 1 : 0),
              "%s: trainer counts %ld steps, %ld skipped", what, dev.steps, dev.skipped);
        ok = ok && bl_trainer_download(&dev, &err) == 0;
        CHECK(ok, "%s: download: %s", what, err.msg);
        double clip = rr.grad_norm > oc.max_grad_norm ? oc.max_grad_norm / rr.grad_norm : 1.0;
        if (ok) compare_students(what, &sdev, &sref, before, &oc, clip, bounds);
        free_snapshot(before, sref.n_params);
        if (ok && k->rotate && step == 0) { /* freeze, push r = 3 (α/r = 2), fresh moments */
            ok = bl_student_rotate(&sref, 3, 6.0f, 4242, &err) == 0 &&
                 bl_student_rotate(&sdev, 3, 6.0f, 4242, &err) == 0 &&
                 bl_trainer_upload(&dev, &err) == 0 &&
                 (!ref_backend || bl_trainer_upload(&dref, &err) == 0);
            CHECK(ok, "%s: rotation: %s", what, err.msg);
            reset_allowance(&sref); /* the tensors are listed anew */
        }
    }
    if (k->given)
        CHECK(gs.fetches == 2 * 2 * nb, "%s: the provider served %d micro-batches, not %d",
              k->name, gs.fetches, 2 * 2 * nb);
    free_allowance();
    printf("  %-44s %s vs %s: worst rel. diff: losses/norms %.1e, grads %.1e, updated %.1e\n",
           k->name, be->name, ref_backend ? ref_backend->name : "ref_step.c", worst_scal,
           worst_grad, worst_param);
    free(tokens);
    free(mask);
    free(doc_start);
    free_given_set(&gs);
    if (dev.be) bl_free_trainer(&dev);
    if (ref_backend) {
        if (dref.be) bl_free_trainer(&dref);
    } else {
        bl_ref_free_trainer(&ref);
    }
    bl_free_student(&sref);
    bl_free_student(&sdev);
    tiny_free(m);
}

// ----------------------------------------------------------------------------
// the table

static const StepCase CASES[] = {
    {"llama l=1 A8 ce+kl+cos", BL_ARCH_LLAMA, 1.0f, 8, .loss = {1, 1, 0, 1, 0, 1.7f, 5, NULL},
     .masked = true},
    {"qwen2 l=0.5 A4 all losses, layer weights", BL_ARCH_QWEN2, 0.5f, 4,
     .loss = {1, 0.5f, 0.7f, 1, 0.3f, 1.7f, 5, NULL}, .masked = true, .layer_w = true},
    {"phi3 l=0 A8 ce+topk, 2 micro-batches", BL_ARCH_PHI3, 0.0f, 8,
     .loss = {1, 0, 1, 0, 0, 2.0f, 7, NULL}, .n_micro = 2},
    {"llama l=1 A8 rotation, 1-seq chunks", BL_ARCH_LLAMA, 1.0f, 8,
     .loss = {1, 1, 0, 0.5f, 0.2f, 1.3f, 5, NULL}, .masked = true, .chunk = 1, .rotate = true},
    {"qwen2 l=1 A8 SubLN + post-norm + dense", BL_ARCH_QWEN2, 1.0f, 8, .subln = true,
     .post_norm = true, .dense = true, .loss = {1, 1, 0, 1, 0, 1.7f, 5, NULL}, .masked = true},
    {"phi3 l=0.5 A16 SubLN, kl+cos", BL_ARCH_PHI3, 0.5f, 16, .subln = true,
     .loss = {0, 1, 0, 1, 0.5f, 1.0f, 5, NULL}},
    {"llama l=1 A4 ternary fast path + SubLN", BL_ARCH_LLAMA, 1.0f, 4, .subln = true,
     .loss = {1, 1, 0.5f, 1, 0, 1.7f, 3, NULL}, .masked = true, .fast = true},
    {"qwen2 l=1 A8 NaN in the student: skip", BL_ARCH_QWEN2, 1.0f, 8,
     .loss = {1, 1, 0, 1, 0, 1.7f, 5, NULL}, .nan = true},
    {"llama l=1 A8 given top-K + hidden (trace)", BL_ARCH_LLAMA, 1.0f, 8,
     .loss = {1, 0, 1, 1, 0.3f, 1.3f, 6, NULL}, .masked = true, .layer_w = true,
     .given = GIVEN_HIDDEN},
    {"qwen2 l=0.5 A4 given top-K only, 2 micro-batches", BL_ARCH_QWEN2, 0.5f, 4,
     .loss = {1, 0, 1, 0, 0, 1.3f, 4, NULL}, .chunk = 1, .n_micro = 2, .given = GIVEN_TOPK},
    {"qwen2 l=0.5 A8 packed rows, SubLN, 2 micro-batches", BL_ARCH_QWEN2, 0.5f, 8,
     .subln = true, .loss = {1, 1, 0.5f, 1, 0.3f, 1.7f, 5, NULL}, .masked = true, .n_micro = 2,
     .packed = true},
};

/* The emulated device's set (test_cuda_step --quick, ~25× slower than a
 * GPU per launch under a sanitizer): fewer cases, each carrying more of the
 * paths above, so that every one still runs: the three architectures, λ 0 /
 * 0.5 / 1, A4 / A8 / A16, every loss and layer weights, SubLN, post-norm,
 * dense, 2 micro-batches, 1-sequence chunks, rotation, fast path, NaN,
 * given teacher outputs (accumulate_given, then a provider), packed rows. */
static const StepCase QUICK_CASES[] = {
    {"qwen2 l=1 A8 everything but the fast path", BL_ARCH_QWEN2, 1.0f, 8, .subln = true,
     .post_norm = true, .dense = true, .loss = {1, 0.5f, 0.7f, 1, 0.3f, 1.7f, 5, NULL},
     .masked = true, .layer_w = true, .chunk = 1, .n_micro = 2, .rotate = true},
    {"llama l=1 A4 ternary fast path + SubLN", BL_ARCH_LLAMA, 1.0f, 4, .subln = true,
     .loss = {1, 1, 0.5f, 1, 0, 1.7f, 3, NULL}, .masked = true, .fast = true},
    {"phi3 l=0.5 A16 ce+topk+cos, 2 micro-batches", BL_ARCH_PHI3, 0.5f, 16,
     .loss = {1, 0, 1, 1, 0, 2.0f, 7, NULL}, .n_micro = 2},
    {"qwen2 l=0 A4 NaN in the student: skip", BL_ARCH_QWEN2, 0.0f, 4,
     .loss = {1, 1, 0, 1, 0, 1.7f, 5, NULL}, .nan = true},
    {"phi3 l=1 A8 given top-K + hidden (trace)", BL_ARCH_PHI3, 1.0f, 8,
     .loss = {1, 0, 1, 1, 0.3f, 1.3f, 6, NULL}, .masked = true, .given = GIVEN_HIDDEN},
    {"llama l=1 A8 packed rows, all live losses", BL_ARCH_LLAMA, 1.0f, 8,
     .loss = {1, 1, 0.5f, 1, 0.3f, 1.7f, 5, NULL}, .masked = true, .packed = true},
};

#ifndef DEVICE_STEP_NO_MAIN
static void run_cases(const BlBackend *be, const Bounds *b, const StepCase *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        StepCase k = cases[i];
        if (k.n_micro < 1) k.n_micro = 1;
        run_case(&k, be, b);
    }
}
#endif

// ----------------------------------------------------------------------------
// what the trainer refuses, with a message

static void check_refusals(const BlBackend *be) {
    BlModel *m = tiny_model(BL_ARCH_LLAMA, 32, 2, 4, 48, 61, 11);
    StepCase k = {.lambda = 1.0f, .bits = 8};
    BlStudent st;
    BlError err = {{0}};
    BlRefLossConfig rlc = make_loss(1, 1, 0, 1, 0);
    BlOptConfig oc = {.adamw = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f}};
    BlTrainer dev;
    CHECK(make_student(&st, m, &k, 5, &err) == 0, "%s", err.msg);
    BlTrainerShape shape = case_shape(&k, &rlc);
    CHECK(bl_build_trainer(&dev, be, &st, &shape, &err) == 0, "%s", err.msg);
    BlLossConfig lc = trainer_loss(&rlc);
    BlStepParams sp = bl_step_params(&st, &lc, &oc);
    CHECK(sp.lambda == st.cfg.lambda && sp.act_bits == st.cfg.act_bits &&
              sp.loss.w_kl == lc.w_kl && sp.opt.adamw.lr == oc.adamw.lr,
          "bl_step_params: lambda %g bits %d", sp.lambda, sp.act_bits);
    int tokens[SB * ST], lens[SB];
    uint8_t mask[SB * ST];
    make_batch(tokens, lens, mask, m->cfg.vocab_size, 9);
    BlStepResult r = {0};
    lens[1] = ST + 1;
    CHECK(bl_trainer_accumulate(&dev, &(BlMicroBatch){tokens, lens, NULL, NULL, SB, ST},
                                1.0f, &sp, &r, &err) != 0 &&
              strstr(err.msg, "lens[1]"),
          "bad lens: '%s'", err.msg);
    lens[1] = 6;
    tokens[3] = 61;
    CHECK(bl_trainer_accumulate(&dev, &(BlMicroBatch){tokens, lens, NULL, NULL, SB, ST},
                                1.0f, &sp, &r, &err) != 0 &&
              strstr(err.msg, "outside the vocab"),
          "bad token: '%s'", err.msg);
    tokens[3] = 0;
    CHECK(bl_trainer_accumulate(&dev, &(BlMicroBatch){tokens, lens, NULL, NULL, SB + 1, ST},
                                1.0f, &sp, &r, &err) != 0 &&
              strstr(err.msg, "exceeds"),
          "big batch: '%s'", err.msg);
    /* step parameters the trainer cannot serve, each naming its knob */
    struct { BlStepParams p; const char *needle; } bad[] = {
        {sp, "topk"}, {sp, "cos/mag"}, {sp, "lambda"}, {sp, "act_bits"}, {sp, "tau"}, {sp, "ce"},
    };
    bad[0].p.loss.w_topk = 1.0f; /* no top-K buffers (k = 0) */
    bad[1].p.loss.w_cos = 1.0f;  /* built without the teacher's hidden states */
    bad[2].p.lambda = 1.5f;
    bad[3].p.act_bits = 5;
    bad[4].p.loss.tau = 0.0f;
    bad[5].p.loss.w_ce = -1.0f;
    BlTrainer nohid;
    BlTrainerShape sh2 = shape;
    sh2.hidden = false;
    bool have_nohid = bl_build_trainer(&nohid, be, &st, &sh2, &err) == 0;
    CHECK(have_nohid, "trainer without hidden states: %s", err.msg);
    for (size_t i = 0; have_nohid && i < sizeof bad / sizeof bad[0]; i++) {
        BlTrainer *t = i == 1 ? &nohid : &dev;
        err.msg[0] = 0;
        CHECK(bl_trainer_check_params(t, &bad[i].p, &err) != 0 && strstr(err.msg, bad[i].needle),
              "bad step parameters %zu: expected a message naming '%s', got '%s'", i,
              bad[i].needle, err.msg);
        err.msg[0] = 0;
        CHECK(bl_trainer_accumulate(t, &(BlMicroBatch){tokens, lens, NULL, NULL, SB, ST},
                                    1.0f, &bad[i].p, &r, &err) !=
                      0 && strstr(err.msg, bad[i].needle),
              "accumulate with bad step parameters %zu: '%s'", i, err.msg);
    }
    if (have_nohid) bl_free_trainer(&nohid);
    /* a provider needs top-K buffers of its K */
    GivenSet gs = {.K = 3, .tau = 1.0f};
    BlTeacherProvider pv = given_provider(&gs);
    CHECK(bl_trainer_set_teacher(&dev, &pv, &err) != 0 && strstr(err.msg, "k="),
          "a provider on a trainer without top-K: '%s'", err.msg);
    CHECK(bl_trainer_set_teacher(&dev, NULL, &err) == 0, "back to the live teacher: %s", err.msg);
    CHECK(bl_student_rotate(&st, 2, 4.0f, 3, &err) == 0, "%s", err.msg);
    CHECK(bl_trainer_accumulate(&dev, &(BlMicroBatch){tokens, lens, NULL, NULL, SB, ST},
                                1.0f, &sp, &r, &err) != 0 &&
              strstr(err.msg, "bl_trainer_upload"),
          "stale student: '%s'", err.msg);
    CHECK(bl_trainer_download(&dev, &err) != 0 && strstr(err.msg, "upload it again"),
          "stale download: '%s'", err.msg);
    CHECK(bl_trainer_download_grads(&dev, &err) != 0 && strstr(err.msg, "changed since the upload"),
          "stale gradient download: '%s'", err.msg);
    CHECK(bl_trainer_upload(&dev, &err) == 0, "%s", err.msg);
    CHECK(bl_trainer_accumulate(&dev, &(BlMicroBatch){tokens, lens, NULL, NULL, SB, ST},
                                1.0f, &sp, &r, &err) == 0,
          "after upload: %s", err.msg);
    CHECK(isfinite(r.total) && r.total > 0.0, "loss %g", r.total);
    st.cfg.subln = true; /* a structural change needs a new trainer */
    CHECK(bl_trainer_upload(&dev, &err) != 0 && strstr(err.msg, "new trainer"),
          "SubLN switched on under a built trainer: '%s'", err.msg);
    st.cfg.subln = false;
    BlMemStats ms;
    be->mem_stats(&ms, false);
    CHECK(ms.live > 0 && ms.peak >= ms.live, "memory stats live %zu peak %zu", ms.live, ms.peak);
    bl_free_trainer(&dev);
    bl_free_student(&st);
    tiny_free(m);
}

#ifndef DEVICE_STEP_NO_MAIN
int main(void) {
    const BlBackend *cpu = bl_backend_cpu();
    /* updated tensors: AdamW divides by √v + ε, so an element whose gradient
     * is near ε carries the gradient's rounding difference into its update
     * amplified; the tensor as a whole stays within nmse 1e-10 */
    Bounds b = {.scal = 1e-5, .maxrel = 1e-5, .pmaxrel = 1e-4, .pnmse = 1e-10,
                .update_nmse = 1e-8};
    printf("the trainer on the CPU backend vs the reference step\n");
    run_cases(cpu, &b, CASES, sizeof CASES / sizeof CASES[0]);
    run_cases(cpu, &b, QUICK_CASES, sizeof QUICK_CASES / sizeof QUICK_CASES[0]);
    check_refusals(cpu);
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
#endif
