/* plan.c - the memory plan of a distillation run (see plan.h). Every CPU
 * size below mirrors an allocation in src/train and src/nn; the comments
 * name the buffer so a change there is easy to follow here (and
 * tests/c/test_plan.c fails until it is). */
#include "plan/plan.h"

#include <string.h>

#include "ops/loss.h"
#include "train/student.h"

#define MAX2(a, b) ((a) > (b) ? (a) : (b))

static const struct { const char *key, *label; } CATS[BL_PLAN_CATS] = {
    [BL_PLAN_WEIGHTS] = {"weights", "frozen weights (teacher = student)"},
    [BL_PLAN_ADAPTERS_FROZEN] = {"adapters_frozen", "older LoRA adapters (frozen)"},
    [BL_PLAN_TRAINABLE] = {"trainable", "trainable: newest adapter, dense dW, norms"},
    [BL_PLAN_GRADS] = {"grads", "gradients"},
    [BL_PLAN_OPTIMIZER] = {"optimizer", "AdamW moments (m, v)"},
    [BL_PLAN_ACTIVATIONS] = {"activations", "saved activations (student forward)"},
    [BL_PLAN_TEACHER_STATE] = {"teacher_state", "teacher forward state"},
    [BL_PLAN_TEACHER_LOGITS] = {"teacher_logits", "teacher logits [B*T, V]"},
    [BL_PLAN_TEACHER_HIDDEN] = {"teacher_hidden", "teacher hidden states [L, B*T, dim]"},
    [BL_PLAN_LOSS_CHUNKS] = {"loss_chunks", "loss chunks: [2, T, V] logits + grad"},
    [BL_PLAN_BLOCK_SCRATCH] = {"block_scratch", "one block's scratch (fwd + bwd)"},
    [BL_PLAN_WEFF] = {"weff", "Weff of the largest linear"},
    [BL_PLAN_LORA_SCRATCH] = {"lora_scratch", "LoRA backward scratch"},
    [BL_PLAN_BOOKKEEPING] = {"bookkeeping", "bookkeeping (param lists, positions)"},
    [BL_PLAN_BASELINE] = {"baseline", "process: binary, libs, OpenBLAS"},
    [BL_PLAN_TOKENIZER] = {"tokenizer", "tokenizer"},
    [BL_PLAN_CUDA_CONTEXT] = {"cuda_context", "CUDA context (estimate)"},
    [BL_PLAN_CUBLAS] = {"cublas_workspace", "cuBLAS workspace"},
};

const char *bl_plan_category_key(BlPlanCategory c) {
    return (unsigned)c < BL_PLAN_CATS ? CATS[c].key : "unknown";
}

const char *bl_plan_category_label(BlPlanCategory c) {
    return (unsigned)c < BL_PLAN_CATS ? CATS[c].label : "unknown";
}

// ----------------------------------------------------------------------------
// shapes

/* The block linears of one layer, [out, in], as model.c lays them out. */
typedef struct {
    size_t out[BL_LIN_KINDS], in[BL_LIN_KINDS];
    int n;
} Linears;

static void block_linears(const BlConfig *c, Linears *ls) {
    size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t o[BL_LIN_KINDS], i[BL_LIN_KINDS];
    int n = 0;
    if (c->fused_qkv) {
        o[n] = qd + 2 * kvd, i[n++] = D;
    } else {
        o[n] = qd, i[n++] = D;
        o[n] = kvd, i[n++] = D;
        o[n] = kvd, i[n++] = D;
    }
    o[n] = D, i[n++] = qd;
    if (c->fused_gate_up) {
        o[n] = 2 * H, i[n++] = D;
    } else {
        o[n] = H, i[n++] = D;
        o[n] = H, i[n++] = D;
    }
    o[n] = D, i[n++] = H;
    memcpy(ls->out, o, sizeof o);
    memcpy(ls->in, i, sizeof i);
    ls->n = n;
}

/* Element widths of one side: the CPU keeps everything fp32; the GPU design
 * stores weights and activation-like buffers in bf16. */
typedef struct {
    size_t weight, act; /* bytes per element */
} Widths;

static const Widths CPU_W = {4, 4}, GPU_W = {2, 2};

// ----------------------------------------------------------------------------
// one side

static void plan_side(BlPlanSide *s, const BlConfig *c, const BlPlanRun *r, const BlPlanHost *h,
                      bool gpu) {
    const Widths w = gpu ? GPU_W : CPU_W;
    const size_t F = sizeof(float), I = sizeof(int);
    size_t L = (size_t)c->n_layers, D = (size_t)c->dim, H = (size_t)c->hidden_dim;
    size_t V = (size_t)c->vocab_size, nh = (size_t)c->n_heads;
    size_t qd = nh * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t B = (size_t)r->B, T = (size_t)r->T, M = B * T;
    size_t K = r->topk > 0 ? (size_t)r->topk : 1; /* the trainer sizes top-K buffers with K = 1 when off */
    size_t k = (size_t)r->adapters, rank = (size_t)r->rank;
    memset(s, 0, sizeof *s);

    Linears ls;
    block_linears(c, &ls);
    size_t pairs = 0, dense = 0, ins = 0, wmax = 0; /* per layer: Σ(in+out), Σ out·in, Σ in */
    for (int i = 0; i < ls.n; i++) {
        pairs += ls.in[i] + ls.out[i];
        dense += ls.out[i] * ls.in[i];
        ins += ls.in[i];
        wmax = MAX2(wmax, ls.out[i] * ls.in[i]);
    }
    size_t *b = s->bytes;

    /* model.c: one arena of every weight (bl_config_param_count floats) */
    b[BL_PLAN_WEIGHTS] = (size_t)bl_config_param_count(c) * w.weight;

    /* student.c / lora.c, fp32 on both sides: older adapters keep A and B;
     * the newest has dA, dB; a dense ΔW and its gradient; SubLN weights
     * [in] per linear; the post-attention norm [L, dim]. AdamW: m and v. */
    b[BL_PLAN_ADAPTERS_FROZEN] = F * (k > 1 ? (k - 1) * rank * pairs * L : 0);
    size_t trainable = (k >= 1 ? rank * pairs * L : 0) + (r->dense ? dense * L : 0) +
                       (r->subln ? ins * L : 0) + (r->post_attn_norm ? L * D : 0);
    b[BL_PLAN_TRAINABLE] = F * trainable;
    b[BL_PLAN_GRADS] = F * trainable;
    b[BL_PLAN_OPTIMIZER] = 2 * F * trainable;

    /* train_forward.c bl_build_train_state, the saved buffers: xs, q, k, v,
     * att, ao, xmid, gu, opre, xf (activations) and the RMSNorm statistics
     * rstd1, rstd2, rstd_pa, rstd_sub, rstd_f (fp32 on the GPU too) */
    size_t acts = (L + 1) * M * D + L * M * qd + 2 * L * M * kvd + L * M * nh * T + L * M * qd +
                  L * M * D + L * M * 2 * H + (r->post_attn_norm ? L * M * D : 0) + M * D;
    size_t stats = 2 * L * M + (r->post_attn_norm ? L * M : 0) +
                   (r->subln ? L * BL_LIN_KINDS * M : 0) + M;
    b[BL_PLAN_ACTIVATIONS] = w.act * acts + F * stats;

    /* ... and its scratch: xn, xq, y, act, dx, dx2, dxn, dxf, dgu, dact, dq,
     * dk, dv, dao, dp; weff; the LoRA scratch grown by the first forward to
     * M·r (at least one float) */
    size_t maxin = MAX2(MAX2(D, qd), H), maxout = MAX2(D, qd + 2 * kvd);
    size_t scratch = M * D + M * maxin + M * maxout + M * H + M * D + M * maxin + M * D + M * D +
                     M * 2 * H + M * H + M * qd + 2 * M * kvd + M * qd + T * T;
    b[BL_PLAN_BLOCK_SCRATCH] = w.act * scratch;
    b[BL_PLAN_WEFF] = w.weight * wmax;
    b[BL_PLAN_LORA_SCRATCH] = F * MAX2((size_t)1, k >= 1 ? M * rank : 0);

    /* forward.c bl_build_forward_state (keep_att): ids, pos, lens, host_ids;
     * x, xn, h, q, k, v, ao, gu, act, qkv (Phi-3), att; logits apart. Then
     * step.c: the teacher cache key (tokens, lens) and the hidden pointers. */
    size_t tfloats = M * (3 * D + 2 * qd + 2 * kvd + 3 * H) +
                     (c->fused_qkv ? M * (qd + 2 * kvd) : 0) + B * nh * T * T;
    b[BL_PLAN_TEACHER_STATE] = I * (2 * M + B + M) + w.act * tfloats + I * (M + B) +
                               sizeof(float *) * L;
    b[BL_PLAN_TEACHER_LOGITS] = F * M * V;
    b[BL_PLAN_TEACHER_HIDDEN] = w.act * L * M * D;

    /* step.c bl_build_trainer: slogits, dlogits [2, T, V]; topk_ids,
     * topk_logp [2, T, K]; targets [M]; tok_mask, hid_mask [M] bytes */
    b[BL_PLAN_LOSS_CHUNKS] = F * (4 * T * V + 2 * T * K) + I * (2 * T * K + M) + 2 * M;

    for (int i = 0; i < BL_PLAN_TRAINER_CATS; i++) s->trainer += b[i];

    if (!gpu) {
        /* host-side structs no figure of bl_trainer_memory counts */
        size_t n_params = (size_t)ls.n * L * ((k >= 1 ? 2 : 0) + r->dense + r->subln) +
                          (r->post_attn_norm ? L : 0);
        b[BL_PLAN_BOOKKEEPING] =
            L * BL_LIN_KINDS * sizeof(BlStudentLinear) + (size_t)ls.n * L * k * sizeof(BlLoraAdapter) +
            (n_params + 1) * (sizeof(BlParamRef) + sizeof(BlAdamWState) + 2 * sizeof(int)) +
            I * (M + B) + sizeof(double) * L + L * sizeof(BlLayer) + sizeof(BlModel);
        b[BL_PLAN_BASELINE] = h->baseline;
        b[BL_PLAN_TOKENIZER] = h->tokenizer;
        /* with one sequence the second half of each [2, T, V] chunk is never
         * written, so its pages never become resident */
        s->untouched = B == 1 ? 2 * F * T * V : 0;
        s->load_peak = h->baseline + h->load_meta + b[BL_PLAN_WEIGHTS] + h->weight_files +
                       h->tokenizer;
    } else {
        b[BL_PLAN_CUDA_CONTEXT] = BL_PLAN_CUDA_CONTEXT_BYTES;
        b[BL_PLAN_CUBLAS] = BL_PLAN_CUBLAS_BYTES;
    }
    size_t all = 0;
    for (int i = 0; i < BL_PLAN_CATS; i++) all += b[i];
    s->train_peak = all - s->untouched;
    s->peak = MAX2(s->train_peak, s->load_peak);
}

// ----------------------------------------------------------------------------
// the plan

static int check_run(const BlConfig *c, const BlPlanRun *r, BlError *err) {
    if (r->B < 1 || r->T < 1)
        return bl_fail(err, "plan: batch %d x seq %d must be positive", r->B, r->T);
    if (r->adapters < 0) return bl_fail(err, "plan: adapters %d must be >= 0", r->adapters);
    if (r->adapters > 0 && r->rank < 1)
        return bl_fail(err, "plan: LoRA rank %d must be positive", r->rank);
    if (r->act_bits != 4 && r->act_bits != 8 && r->act_bits != 16)
        return bl_fail(err, "plan: activation width %d bits is not one of 4, 8, 16", r->act_bits);
    int kmax = c->vocab_size < BL_TOPK_MAX ? c->vocab_size : BL_TOPK_MAX;
    if (r->topk < 0 || r->topk > kmax)
        return bl_fail(err, "plan: top-K %d is outside 0..%d (0: no top-K loss)", r->topk, kmax);
    /* the largest products must fit in size_t: the attention probabilities
     * [L, B·T, heads, T], the logits [B·T, V] and the weights */
    double M = (double)r->B * r->T;
    double att = (double)c->n_layers * M * c->n_heads * r->T * 4.0;
    double logits = M * c->vocab_size * 4.0, weights = (double)bl_config_param_count(c) * 4.0;
    if (att > 1e18 || logits > 1e18 || weights > 1e18)
        return bl_fail(err, "plan: batch %d x seq %d on this model needs more than 10^18 bytes",
                       r->B, r->T);
    return 0;
}

int bl_plan_compute(BlPlan *p, const BlConfig *cfg, const BlPlanRun *run, const BlPlanHost *host,
                    BlError *err) {
    memset(p, 0, sizeof *p);
    if (check_run(cfg, run, err)) return -1;
    p->cfg = *cfg;
    p->run = *run;
    p->host = *host;
    p->params = bl_config_param_count(cfg);
    Linears ls;
    block_linears(cfg, &ls);
    p->n_linears = ls.n * cfg->n_layers;
    plan_side(&p->cpu, cfg, run, host, false);
    plan_side(&p->gpu, cfg, run, host, true);
    /* (a): a second copy of the weights, resident for the whole run */
    size_t copy_cpu = p->cpu.train_peak + p->cpu.bytes[BL_PLAN_WEIGHTS];
    p->cpu_copy_peak = MAX2(copy_cpu, p->cpu.load_peak);
    p->gpu_copy_peak = p->gpu.train_peak + p->gpu.bytes[BL_PLAN_WEIGHTS];
    /* (b): the same run with a dense ΔW and no adapters */
    BlPlanRun dense = *run;
    dense.adapters = 0;
    dense.dense = true;
    plan_side(&p->cpu_dense, cfg, &dense, host, false);
    plan_side(&p->gpu_dense, cfg, &dense, host, true);
    return 0;
}

void bl_plan_trainer_memory(const BlPlan *p, BlTrainerMemory *out) {
    const size_t *b = p->cpu.bytes;
    memset(out, 0, sizeof *out);
    out->student.frozen_weights = b[BL_PLAN_WEIGHTS];
    out->student.adapters_frozen = b[BL_PLAN_ADAPTERS_FROZEN];
    out->student.adapters_trainable = b[BL_PLAN_TRAINABLE];
    out->student.grads = b[BL_PLAN_GRADS];
    out->student.optimizer = b[BL_PLAN_OPTIMIZER];
    out->activations = b[BL_PLAN_ACTIVATIONS];
    out->scratch = b[BL_PLAN_TEACHER_STATE] + b[BL_PLAN_TEACHER_LOGITS] +
                   b[BL_PLAN_TEACHER_HIDDEN] + b[BL_PLAN_LOSS_CHUNKS] + b[BL_PLAN_BLOCK_SCRATCH] +
                   b[BL_PLAN_WEFF] + b[BL_PLAN_LORA_SCRATCH];
}
