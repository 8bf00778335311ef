/* plan.c - the memory plan of a distillation run (see plan.h). The
 * trainer's buffers are its own table (train/trainer.h bl_trainer_buffers)
 * and the teacher's forward state nn/forward.h's bl_forward_state_bytes, so
 * they equal bl_trainer_memory by construction; the student's tensors and
 * the rest mirror an allocation in src/train and src/nn, the comments naming
 * it so a change there is easy to follow here (tests/c/test_plan.c fails
 * until it is). */
#include "plan/plan.h"

#include <string.h>

#include "backend/backend.h"
#include "nn/forward.h"
#include "ops/loss.h"
#include "train/device_student.h"
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
    [BL_PLAN_LOSS_CHUNKS] = {"loss_chunks", "loss chunks: logits + grad, top-K, targets"},
    [BL_PLAN_BLOCK_SCRATCH] = {"block_scratch", "one block's scratch (fwd + bwd)"},
    [BL_PLAN_WEFF] = {"weff", "Weff of the largest linear"},
    [BL_PLAN_LORA_SCRATCH] = {"lora_scratch", "LoRA backward scratch"},
    [BL_PLAN_DEVICE_STUDENT] = {"device_student", "student in backend memory (see notes)"},
    [BL_PLAN_GRAD_ACCUM] = {"grad_accum", "step's gradient sum (micro-batches, ranks)"},
    [BL_PLAN_BOOKKEEPING] = {"bookkeeping", "bookkeeping (param lists, staging)"},
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

/* The category of each of the trainer's buffers (trainer.h's table), and
 * whether the GPU design keeps it in bf16 (activation-like values: saved
 * activations, the block scratch, the teacher's hidden states, Weff) or as
 * the trainer allocates it (RMSNorm statistics, token ids and masks, logits
 * and their top-K, the LoRA scratch: fp32 / int / bytes). */
static const struct { unsigned char cat, bf16; } BUFS[BL_BUF_COUNT] = {
    [BL_BUF_TARGETS] = {BL_PLAN_LOSS_CHUNKS, 0},     [BL_BUF_TOK_MASK] = {BL_PLAN_LOSS_CHUNKS, 0},
    [BL_BUF_HID_MASK] = {BL_PLAN_LOSS_CHUNKS, 0},    [BL_BUF_XS] = {BL_PLAN_ACTIVATIONS, 1},
    [BL_BUF_RSTD1] = {BL_PLAN_ACTIVATIONS, 0},       [BL_BUF_RSTD2] = {BL_PLAN_ACTIVATIONS, 0},
    [BL_BUF_Q] = {BL_PLAN_ACTIVATIONS, 1},           [BL_BUF_K] = {BL_PLAN_ACTIVATIONS, 1},
    [BL_BUF_V] = {BL_PLAN_ACTIVATIONS, 1},           [BL_BUF_ATT] = {BL_PLAN_ACTIVATIONS, 1},
    [BL_BUF_AO] = {BL_PLAN_ACTIVATIONS, 1},          [BL_BUF_XMID] = {BL_PLAN_ACTIVATIONS, 1},
    [BL_BUF_GU] = {BL_PLAN_ACTIVATIONS, 1},          [BL_BUF_OPRE] = {BL_PLAN_ACTIVATIONS, 1},
    [BL_BUF_RSTD_PA] = {BL_PLAN_ACTIVATIONS, 0},     [BL_BUF_RSTD_SUB] = {BL_PLAN_ACTIVATIONS, 0},
    [BL_BUF_XF] = {BL_PLAN_ACTIVATIONS, 1},          [BL_BUF_RSTD_F] = {BL_PLAN_ACTIVATIONS, 0},
    [BL_BUF_XN] = {BL_PLAN_BLOCK_SCRATCH, 1},        [BL_BUF_XQ] = {BL_PLAN_BLOCK_SCRATCH, 1},
    [BL_BUF_Y] = {BL_PLAN_BLOCK_SCRATCH, 1},         [BL_BUF_ACT] = {BL_PLAN_BLOCK_SCRATCH, 1},
    [BL_BUF_WEFF] = {BL_PLAN_WEFF, 1},               [BL_BUF_LSCRATCH] = {BL_PLAN_LORA_SCRATCH, 0},
    [BL_BUF_DX] = {BL_PLAN_BLOCK_SCRATCH, 1},        [BL_BUF_DX2] = {BL_PLAN_BLOCK_SCRATCH, 1},
    [BL_BUF_DXN] = {BL_PLAN_BLOCK_SCRATCH, 1},       [BL_BUF_DXF] = {BL_PLAN_BLOCK_SCRATCH, 1},
    [BL_BUF_DGU] = {BL_PLAN_BLOCK_SCRATCH, 1},       [BL_BUF_DACT] = {BL_PLAN_BLOCK_SCRATCH, 1},
    [BL_BUF_DQ] = {BL_PLAN_BLOCK_SCRATCH, 1},        [BL_BUF_DK] = {BL_PLAN_BLOCK_SCRATCH, 1},
    [BL_BUF_DV] = {BL_PLAN_BLOCK_SCRATCH, 1},        [BL_BUF_DAO] = {BL_PLAN_BLOCK_SCRATCH, 1},
    [BL_BUF_SLOGITS] = {BL_PLAN_LOSS_CHUNKS, 0},     [BL_BUF_DLOGITS] = {BL_PLAN_LOSS_CHUNKS, 0},
    [BL_BUF_TOPK_IDS] = {BL_PLAN_LOSS_CHUNKS, 0},    [BL_BUF_TOPK_LOGP] = {BL_PLAN_LOSS_CHUNKS, 0},
    [BL_BUF_T_HIDDEN] = {BL_PLAN_TEACHER_HIDDEN, 1},
    /* the relation loss (a shape with relation): the teacher's q, k, v of
     * its layer are teacher states like its hidden states; the relation
     * logits are a loss's scratch, fp32 */
    [BL_BUF_REL_TQ] = {BL_PLAN_TEACHER_HIDDEN, 1},   [BL_BUF_REL_TK] = {BL_PLAN_TEACHER_HIDDEN, 1},
    [BL_BUF_REL_TV] = {BL_PLAN_TEACHER_HIDDEN, 1},   [BL_BUF_REL_SCRATCH] = {BL_PLAN_LOSS_CHUNKS, 0},
};
/* a buffer the table gains needs its category above (unset it would count
 * as frozen weights, and test_plan would fail on the trainer's figures) */
_Static_assert(BL_BUF_COUNT == 43, "plan.c: map the trainer's new buffer to a category in BUFS");

/* The shape the run's trainer is built with. */
static BlTrainerShape run_shape(const BlPlanRun *r) {
    return (BlTrainerShape){.batch = r->B, .seq = r->T, .topk = r->topk,
                            .hidden = !r->no_teacher_hidden,
                            .loss_chunk_seqs = r->loss_chunk_seqs};
}

// ----------------------------------------------------------------------------
// one side

static void plan_side(BlPlanSide *s, const BlConfig *c, const BlPlanRun *r, const BlPlanHost *h,
                      bool gpu) {
    /* the GPU design's element widths: weights and activation-like buffers
     * bf16 (half of the fp32 the CPU keeps), the rest as the trainer has it */
    const size_t wbytes = gpu ? 2 : 4;
    const size_t F = sizeof(float), I = sizeof(int);
    size_t L = (size_t)c->n_layers, D = (size_t)c->dim;
    size_t V = (size_t)c->vocab_size;
    size_t B = (size_t)r->B, T = (size_t)r->T, M = B * T;
    size_t k = (size_t)r->adapters, rank = (size_t)r->rank;
    memset(s, 0, sizeof *s);

    Linears ls;
    block_linears(c, &ls);
    size_t pairs = 0, dense = 0, ins = 0; /* per layer: Σ(in+out), Σ out·in, Σ in */
    for (int i = 0; i < ls.n; i++) {
        pairs += ls.in[i] + ls.out[i];
        dense += ls.out[i] * ls.in[i];
        ins += ls.in[i];
    }
    size_t *b = s->bytes;

    /* model.c: one arena of every weight (bl_config_param_count floats) */
    b[BL_PLAN_WEIGHTS] = (size_t)bl_config_param_count(c) * wbytes;

    /* student.c / lora.c (bl_student_memory), fp32 on both sides: older
     * adapters keep A and B; the newest has dA, dB; a dense ΔW and its
     * gradient; SubLN weights [in] per linear; the post-attention norm
     * [L, dim]. AdamW: m and v. */
    b[BL_PLAN_ADAPTERS_FROZEN] = F * (k > 1 ? (k - 1) * rank * pairs * L : 0);
    size_t trainable = (k >= 1 ? rank * pairs * L : 0) + (r->dense ? dense * L : 0) +
                       (r->subln ? ins * L : 0) + (r->post_attn_norm ? L * D : 0);
    b[BL_PLAN_TRAINABLE] = F * trainable;
    b[BL_PLAN_GRADS] = F * trainable;
    b[BL_PLAN_OPTIMIZER] = 2 * F * trainable;

    /* the trainer's buffers: its one table (trainer.h bl_trainer_buffers),
     * each buffer in its category. The CPU chunks the token losses by one
     * sequence and recomputes the attention probabilities, a device chunks
     * by as many as keep the chunk's logits in 256 MiB and saves them
     * (bl_trainer_default_chunk, bl_trainer_attention_probs; only the
     * backend's name matters to them). */
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = r->act_bits, .subln = r->subln,
                          .post_attn_norm = r->post_attn_norm, .dense = r->dense};
    BlTrainerShape sh = run_shape(r);
    static const BlBackend device_like = {.name = "cuda"};
    const BlBackend *like = gpu ? &device_like : bl_backend_cpu();
    int chunk = bl_trainer_default_chunk(like, c, &sh);
    sh.attention_probs = bl_trainer_attention_probs(like, &sh);
    BlTrainerBuffers tb;
    bl_trainer_buffers(&tb, c, &sc, &sh, chunk, k >= 1 ? r->rank : 0);
    for (int i = 0; i < BL_BUF_COUNT; i++)
        /* a saved activation that the shape recomputes (the attention
         * probabilities) is one layer's scratch instead */
        b[BUFS[i].cat == BL_PLAN_ACTIVATIONS && !tb.saved[i] ? BL_PLAN_BLOCK_SCRATCH : BUFS[i].cat] +=
            gpu && BUFS[i].bf16 ? tb.bytes[i] / 2 : tb.bytes[i];

    /* forward.c bl_build_forward_state_rows (keep_att; bl_forward_state_bytes):
     * the teacher's state, its logits [chunk·T, V] apart; on the GPU its float
     * buffers bf16 but the logits, its ids, positions and lens (and the
     * host's copy of the ids) as they are */
    size_t lrows = (size_t)chunk * r->T; /* the trainer's: a chunk's rows (train/trainer.c) */
    size_t state = bl_forward_state_bytes(c, r->B, r->T, true, (int)lrows), logits = F * lrows * V;
    size_t ints = I * (3 * M + B);
    b[BL_PLAN_TEACHER_LOGITS] = logits;
    b[BL_PLAN_TEACHER_STATE] = gpu ? ints + (state - logits - ints) / 2 : state - logits;

    for (int i = 0; i < BL_PLAN_TRAINER_CATS; i++) s->trainer += b[i];

    /* device_student.c: the student in backend memory, every linear's LoRA
     * stack concatenated (the cat, at least one float) and the arenas of
     * values, gradients and AdamW moments (at least one float each). On the
     * CPU that is a second copy beside the host student's; on the GPU the
     * trainer categories above are those arenas and the cat's older
     * adapters, so only the newest adapter's copy in the cat is added. */
    size_t cat = k >= 1 ? k * rank * pairs * L : 0;
    b[BL_PLAN_DEVICE_STUDENT] =
        gpu ? F * MAX2((size_t)1, k >= 1 ? rank * pairs * L : 0)
            : F * (MAX2((size_t)1, cat) + 4 * MAX2((size_t)1, trainable));

    /* trainer_step.c: with several micro-batches a second gradient arena
     * (each micro-batch's gradient is formed alone, then added in order), and
     * for a step shared by processes on the host path its host copy; the
     * GPUs' NCCL sums their arenas in place */
    size_t arena = bl_trainer_grad_arena_bytes(trainable);
    b[BL_PLAN_GRAD_ACCUM] = (r->micro > 1 ? arena : 0) + (!gpu && r->ranks > 1 ? arena : 0);

    if (!gpu) {
        /* host-side structs and staging no figure of bl_trainer_memory
         * counts: the student's linears, adapters and parameter lists; the
         * device student's linears, parameters and offsets; the trainer's
         * micro-batch staging (ids, positions, targets, two masks, lens), per
         * tensor Σg² and step-count backups, per-layer norms, the teacher
         * cache key; the model's layer table */
        size_t n_params = (size_t)ls.n * L * ((k >= 1 ? 2 : 0) + r->dense + r->subln) +
                          (r->post_attn_norm ? L : 0);
        b[BL_PLAN_BOOKKEEPING] =
            L * BL_LIN_KINDS * sizeof(BlStudentLinear) + (size_t)ls.n * L * k * sizeof(BlLoraAdapter) +
            (n_params + 1) * (sizeof(BlParamRef) + sizeof(BlAdamWState) + 2 * sizeof(int)) +
            L * BL_LIN_KINDS * sizeof(BlDevLinear) + (n_params + 1) * (sizeof(BlDevParam) + sizeof(size_t)) +
            (r->post_attn_norm ? 2 * L * sizeof(float *) : 0) +
            I * (3 * M + B) + 2 * M + MAX2(n_params, (size_t)1) * (sizeof(double) + sizeof(long)) +
            sizeof(double) * L + I * (M + B) + L * sizeof(BlLayer) + sizeof(BlModel);
        b[BL_PLAN_BASELINE] = h->baseline;
        b[BL_PLAN_TOKENIZER] = h->tokenizer;
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
    if (r->micro < 0 || r->ranks < 0)
        return bl_fail(err, "plan: %d micro-batches on %d processes (0 or 1: one)", r->micro,
                       r->ranks);
    if (r->loss_chunk_seqs < 0)
        return bl_fail(err, "plan: loss chunk of %d sequences (0: the backend's choice)",
                       r->loss_chunk_seqs);
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
    out->device_student = b[BL_PLAN_DEVICE_STUDENT];
    out->grad_accum = b[BL_PLAN_GRAD_ACCUM];
    out->activations = b[BL_PLAN_ACTIVATIONS];
    out->scratch = b[BL_PLAN_TEACHER_STATE] + b[BL_PLAN_TEACHER_LOGITS] +
                   b[BL_PLAN_TEACHER_HIDDEN] + b[BL_PLAN_LOSS_CHUNKS] + b[BL_PLAN_BLOCK_SCRATCH] +
                   b[BL_PLAN_WEFF] + b[BL_PLAN_LORA_SCRATCH];
}
