/* trainer.h - the trainer: one self-distillation step with every op through
 * a BlBackend, so the same code runs on the CPU backend and on CUDA
 * (kernels/). The step:
 *
 *   teacher forward (logits and every block's output) → student forward
 *   (every block linear a BitLinear, device_student.h; optional SubLN and
 *   post-attention norm) → losses → backward into the newest adapter, dense
 *   ΔW and norm weights → per-tensor, per-block and global gradient norms,
 *   the non-finite skip, global clipping → AdamW under the update guard.
 *
 *   total = w_ce·CE + w_kl·KL(τ) + w_topk·TopK-KL(K, τ) + w_cos·(1 − cos) + w_mag·mag
 *           + w_rel·rel
 *
 * rel is BitDistill's attention-relation distillation (MiniLM-v2 style,
 * arXiv 2510.13998; train/relation_loss.h has the definition): at one layer
 * (BlTrainerShape.relation_layer), the mean over X in {q, k, v} (q and k
 * after RoPE: what the attention sees) of the KL between the teacher's and
 * the student's softmax-normalised X·Xᵀ/sqrt(hd) relations over each
 * selected row's causal window within its document, averaged over heads and
 * selected rows. The teacher's q, k, v of that layer are captured by the
 * live teacher forward (and kept with the teacher cache); its gradient joins
 * dq, dk, dv of that layer in the backward before RoPE's backward.
 *
 * What is fixed when the trainer is built (BlTrainerShape: the micro-batch
 * capacity, top-K capacity, whether the teacher's hidden states are kept)
 * is apart from what may change at every step (BlStepParams: lr and the
 * rest of AdamW, clipping, λ, activation width, loss weights, τ), which is
 * an argument of each step call and is never stored for a later call.
 *
 * The row rule (every loss, every path): row (b, t) is selected when t + 1 <
 * lens[b] (the next token exists), mask[b·T + t] != 0 (mask NULL selecting
 * every such row) and, in a packed batch, doc_start[b·T + t + 1] ==
 * doc_start[b·T + t] (the next token is in the same document: no loss
 * predicts a document's first token from the one before), whatever the mask
 * says. Token losses and hidden-state losses use the same rows: the hidden
 * state at t is what predicts token t + 1. A term
 * whose weight is 0 is not computed (reported as 0). Token losses run over
 * chunks of sequences (the student's logits of a chunk at a time).
 *
 * Packed batches (BlMicroBatch.doc_start): several documents a row; the
 * teacher and student forwards restart RoPE positions at each document
 * (pos = t − doc_start) and attention stays within it (bl_attention), so
 * with the row rule a packed row trains as its documents would, each a row
 * of its own. A teacher provider (trace) holds unpacked rows: packed batches
 * are refused there and need the live teacher.
 *
 * Gradient accumulation: bl_trainer_accumulate on each micro-batch (with
 * weight its share of the step's selected rows, bl_micro_batch_rows), then
 * bl_trainer_update; bl_trainer_step does both (several
 * micro-batches through a step accumulator, so that a step shared by
 * processes, bl_trainer_step_reduce, can equal it bit for bit). Given the
 * same inputs, backend and thread count the step is deterministic.
 *
 * The teacher's outputs of a micro-batch come from one of three places
 * (BlStepResult.teacher):
 *   computed  the teacher forward ran;
 *   cached    the micro-batch equals the one whose outputs the trainer still
 *             holds (same B, T, lens, tokens and doc_start at the valid
 *             positions; the mask is not part of the key), so they are
 *             reused. One slot;
 *   trace     precomputed outputs (a BlTeacherProvider, e.g. a teacher
 *             trace, or bl_trainer_accumulate_given): top-K ids and
 *             log-probabilities and optionally hidden states; no forward. The
 *             full KL cannot be served (no full logits), nor hidden terms
 *             without stored hidden states, nor another K or τ: refused with
 *             a message naming the knob.
 *
 * Backend memory: the device student (device_student.h), the saved
 * activations and scratch (one table, bl_trainer_buffers, which allocation,
 * the memory report and the planner all read). The host keeps the
 * configuration, the staging of a micro-batch and the AdamW step counts. */
#ifndef BITLAB_TRAINER_H
#define BITLAB_TRAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "core/error.h"
#include "nn/forward.h"
#include "ops/adamw.h"
#include "train/device_student.h"
#include "train/student.h"
#include "train/teacher_cache.h"

// ----------------------------------------------------------------------------
// what is fixed at build, what each step takes

/* The attention probabilities the backward needs: kept per layer from the
 * forward (B·nh·T² floats a layer), or recomputed per layer in the backward
 * from the saved q, k, v by one more attention forward into a single layer's
 * buffer (the same op on the same inputs: the same bits). */
typedef enum { BL_ATT_BACKEND_DEFAULT = 0, BL_ATT_SAVE, BL_ATT_RECOMPUTE } BlAttentionProbs;

typedef struct {
    int batch, seq;         /* micro-batch capacity B x T */
    int topk;               /* K of the top-K KL (1..BL_TOPK_MAX), 0: no top-K loss */
    bool hidden;            /* keep the teacher's hidden states: cos / mag losses possible */
    bool teacher_cache;     /* reuse the teacher's outputs when a micro-batch repeats */
    /* λ = 1 with 8- or 4-bit activations: the student forward's linears run
     * be->ternary_matmul (CUDA: int8 × ternary int8 → int32) instead of
     * Weff + actq + matmul; other steps take the ordinary path */
    bool ternary_fast_path;
    /* sequences per logits chunk of the token losses; 0: the backend's
     * choice (bl_trainer_default_chunk) */
    int loss_chunk_seqs;
    /* BL_ATT_BACKEND_DEFAULT: bl_trainer_attention_probs's choice */
    BlAttentionProbs attention_probs;
    /* the attention-relation loss (w_rel) possible: the teacher's q, k, v
     * of layer relation_layer (0-based, < n_layers) and the relation
     * scratch are allocated. A flag beside the layer so that a shape left
     * zero (every other field's default) keeps no such buffers. */
    bool relation;
    int relation_layer;
} BlTrainerShape;

/* The loss mix of a step. */
typedef struct {
    float w_ce, w_kl, w_topk, w_cos, w_mag;
    float w_rel;            /* the attention-relation loss: needs shape.relation */
    float tau;              /* temperature of both KLs */
    const float *layer_w;   /* [n_layers] hidden-loss weights, or NULL = all 1 */
} BlLossConfig;

typedef struct {
    BlAdamWConfig adamw;
    float max_grad_norm;    /* <= 0: no clipping */
} BlOptConfig;

/* Everything a step may change, passed to each step call. */
typedef struct {
    BlLossConfig loss;
    BlOptConfig opt;
    float lambda;           /* 0 = teacher precision … 1 = ternary */
    int act_bits;           /* 8, 4 or 16 (off) */
    /* λ blends the BitLinear inputs too, x + λ·(actq(x) − x) (the Hugging
     * Face 1.58-bit fine-tuning recipe; STE: d/dx = identity); false: actq(x)
     * at any λ. The step records it in the student (BlStudentConfig). */
    bool lambda_acts;
} BlStepParams;

/* The student's λ, activation width and lambda_acts, the loss mix and the
 * optimizer settings as one value (the usual way to start a BlStepParams). */
BlStepParams bl_step_params(const BlStudent *st, const BlLossConfig *loss,
                            const BlOptConfig *opt);

/* Where a step's teacher outputs came from; a step of several micro-batches
 * reports the costliest: computed over trace over cached. */
typedef enum {
    BL_TEACHER_NONE, BL_TEACHER_CACHED, BL_TEACHER_TRACE, BL_TEACHER_COMPUTED
} BlTeacherSource;

/* "none", "cached", "trace", "computed" */
const char *bl_teacher_source_name(BlTeacherSource s);

/* One micro-batch of B sequences of T tokens, host memory: tokens [B·T] (read
 * before lens[b]), lens [B] (0..T), mask [B·T] or NULL (the row rule), and
 * doc_start [B·T] or NULL: a packed batch, doc_start[b·T + t] the row index
 * of the first token of the document token t belongs to (t or the entry
 * before it: checked, naming the entry). */
typedef struct {
    const int *tokens, *lens;
    const uint8_t *mask;
    const int *doc_start;
    int B, T;
} BlMicroBatch;

/* The rows of mb the row rule selects (the rows every loss averages over).
 * Rows of a sequence whose lens[b] is outside 0..T count as none (the
 * accumulate refuses such a batch, naming the entry). */
long bl_micro_batch_rows(const BlMicroBatch *mb);

/* Precomputed teacher outputs of one micro-batch [B, T], rows r = b·T + t,
 * in host memory. */
typedef struct {
    int K;                  /* ids and log-probs per row */
    float tau;              /* the temperature logp were formed at */
    const int *topk_ids;    /* [B·T, K], read at the rows t + 1 < lens[b] */
    const float *topk_logp; /* [B·T, K] log softmax(z/τ) at the ids */
    const float *const *hidden; /* [n_layers] → [B·T, dim], read at rows t < lens[b];
                                 * NULL: none (then w_cos and w_mag must be 0) */
} BlTeacherGiven;

/* A source of precomputed teacher outputs (a teacher trace, trace.h). fetch
 * fills host buffers for the micro-batch: ids/logp [B·T, K], other [B·T],
 * and hidden[l] [B·T, dim] for every layer when hidden != NULL; it fails
 * (naming the row) when it does not hold a row. */
typedef struct {
    int (*fetch)(void *ctx, const int *tokens, const int *lens, int B, int T, int *ids,
                 float *logp, float *other, float *const *hidden, BlError *err);
    void *ctx;
    int K;
    float tau;
    bool has_hidden;
    const char *what;       /* names the source in messages, e.g. "trace run.trace" */
} BlTeacherProvider;

typedef struct {
    double ce, kl, topk, cos, mag, rel, total; /* rel: the relation loss (0 when w_rel = 0) */
    double grad_norm;                     /* global, before clipping */
    const double *block_grad_norm;        /* [n_layers], the trainer's, valid until its next update */
    double kind_grad_norm[BL_GRAD_KINDS]; /* per BlLinearKind, then the norm weights */
    bool skipped;                         /* non-finite gradient or update: nothing was updated */
    BlTeacherSource teacher;              /* where the teacher's outputs came from */
} BlStepResult;

// ----------------------------------------------------------------------------
// the buffers: one table

/* The trainer's backend buffers, by name: what allocation takes, what the
 * memory report and the planner (plan/) read. saved: kept from the forward
 * for the backward; else scratch. */
typedef enum {
    BL_BUF_TARGETS, BL_BUF_TOK_MASK, BL_BUF_HID_MASK,
    BL_BUF_XS, BL_BUF_RSTD1, BL_BUF_RSTD2, BL_BUF_Q, BL_BUF_K, BL_BUF_V, BL_BUF_ATT,
    BL_BUF_AO, BL_BUF_XMID, BL_BUF_GU, BL_BUF_OPRE, BL_BUF_RSTD_PA, BL_BUF_RSTD_SUB,
    BL_BUF_XF, BL_BUF_RSTD_F,
    BL_BUF_XN, BL_BUF_XQ, BL_BUF_Y, BL_BUF_ACT, BL_BUF_WEFF, BL_BUF_LSCRATCH,
    BL_BUF_DX, BL_BUF_DX2, BL_BUF_DXN, BL_BUF_DXF, BL_BUF_DGU, BL_BUF_DACT, BL_BUF_DQ,
    BL_BUF_DK, BL_BUF_DV, BL_BUF_DAO,
    BL_BUF_SLOGITS, BL_BUF_DLOGITS, BL_BUF_TOPK_IDS, BL_BUF_TOPK_LOGP, BL_BUF_T_HIDDEN,
    BL_BUF_REL_TQ, BL_BUF_REL_TK, BL_BUF_REL_TV, BL_BUF_REL_SCRATCH,
    BL_BUF_COUNT
} BlTrainerBuffer;

typedef struct {
    size_t bytes[BL_BUF_COUNT];
    bool saved[BL_BUF_COUNT];
    size_t saved_total, scratch_total;
} BlTrainerBuffers;

/* Sequences per token-loss chunk when the shape leaves it to the backend:
 * the CPU one (its rows split over the worker pool; a chunk's logits, their
 * gradient and the teacher's are 3·T·V floats), a device as many as keep the
 * chunk's logits within 256 MiB. */
int bl_trainer_default_chunk(const BlBackend *be, const BlConfig *c, const BlTrainerShape *sh);

/* The shape's attention_probs, or the backend's choice: the CPU recomputes
 * (memory is what it lacks; the extra attention forward is ~1% of a step),
 * a device saves. */
BlAttentionProbs bl_trainer_attention_probs(const BlBackend *be, const BlTrainerShape *sh);

/* The table for a model configuration, student configuration and shape
 * (from hyper-parameters alone, so the planner reads it too); rmax is the
 * largest newest-adapter rank (the LoRA backward scratch), chunk the
 * sequences per token-loss chunk; sh->attention_probs as resolved by
 * bl_trainer_attention_probs (BL_ATT_BACKEND_DEFAULT counts as saving). */
void bl_trainer_buffers(BlTrainerBuffers *out, const BlConfig *c, const BlStudentConfig *sc,
                        const BlTrainerShape *sh, int chunk, int rmax);

// ----------------------------------------------------------------------------
// the trainer

/* The saved activations and scratch, in backend memory. */
typedef struct {
    int *targets;                     /* [M] tokens, −1 at padding (loss rows) */
    uint8_t *tok_mask, *hid_mask;     /* [M] */
    float *xs, *rstd1, *rstd2, *q, *k, *v, *att, *ao, *xmid, *gu;
    float *opre, *rstd_pa, *rstd_sub; /* post-attention norm / SubLN, or NULL */
    float *xf, *rstd_f;
    float *xn, *xq, *y, *act, *weff, *lscratch;
    float *dx, *dx2, *dxn, *dxf, *dgu, *dact, *dq, *dk, *dv, *dao;
    float *slogits, *dlogits;         /* [chunk·T, V] */
    int *topk_ids;                    /* [M, K]: computed per chunk, or given for the micro-batch */
    float *topk_logp;
    float *t_hidden;                  /* [n_layers, M, dim] the teacher's block outputs, or NULL */
    /* shape.relation: the teacher's q, k (after RoPE), v of the relation
     * layer [M, qd], [M, kvd], [M, kvd], and bl_relation_loss's scratch */
    float *rel_tq, *rel_tk, *rel_tv, *rel_scratch;
} BlDevActs;

typedef struct BlTrainer {
    const BlBackend *be;
    BlStudent *student;     /* not owned: the host mirror */
    BlDeviceStudent ds;     /* the student and the frozen weights in backend memory */
    const BlModel *m;       /* &ds.dm.model */
    BlTrainerShape shape;
    int B, T, chunk, K;     /* capacity; sequences per logits chunk; top-K buffers' K (≥ 1) */
    BlTrainerBuffers buf;   /* what the activations took */
    BlDevActs a;
    BlForwardState teacher; /* the teacher's state; its ids/pos/lens/doc_start serve the
                             * student too */
    int cur_B, cur_T;       /* the micro-batch of the last forward */
    int *h_ids, *h_pos, *h_targets; /* [M] host staging */
    uint8_t *h_tok, *h_hid;
    int *h_lens;            /* [B] */
    double *seg_sq;         /* [n_params] Σg² per tensor */
    double *block_gn;       /* [n_layers] */
    long *t_backup;         /* [n_params] AdamW step counts before an update */
    long steps, skipped;
    bool host_stale;        /* an update landed since the host student was last written */
    BlBatchKey cache;       /* the micro-batch whose teacher outputs the buffers hold */
    /* precomputed teacher outputs: provider.fetch != NULL replaces the forward */
    BlTeacherProvider provider;
    int *g_ids;             /* [M, provider K] host buffers the provider fills */
    float *g_logp, *g_other, *g_hidden; /* [M, K], [M], [n_layers, M, dim] */
    /* the step's gradient accumulator (backend, n_micro > 1) and the host copy
     * a shared step reduces (trainer_step.c); acc_n / host_n floats, 0: none yet */
    float *g_acc, *g_host;
    size_t acc_n, host_n;
} BlTrainer;

/* Uploads the model (once) and the student onto be. */
int bl_build_trainer(BlTrainer *tr, const BlBackend *be, BlStudent *st, const BlTrainerShape *sh,
                     BlError *err);
void bl_free_trainer(BlTrainer *tr);

/* Re-reads the host student (adapters, norm weights, optimizer state) after
 * the host changed it, e.g. bl_student_rotate or a loaded checkpoint. */
int bl_trainer_upload(BlTrainer *tr, BlError *err);
/* Copies the trainable tensors, AdamW moments and step counts into the host
 * student (for checkpoints, export, evaluation on the host). */
int bl_trainer_download(BlTrainer *tr, BlError *err);
/* bl_trainer_download when an update landed since the host student was
 * last written (what a reader of the host student calls first). */
int bl_trainer_sync_host(BlTrainer *tr, BlError *err);
/* Copies the accumulated gradients into the host student's gradient
 * tensors (BlStudent.params[i].grad), e.g. for a parity test. */
int bl_trainer_download_grads(BlTrainer *tr, BlError *err);

/* From now on the teacher's outputs come from p (copied; p->ctx must outlive
 * the trainer's use of it), or from the live teacher again with p == NULL.
 * Refused when p->K differs from the shape's top-K K (when it has one) or
 * p has hidden states the shape has no room for. */
int bl_trainer_set_teacher(BlTrainer *tr, const BlTeacherProvider *p, BlError *err);

/* Refuses (naming the knob) step parameters the trainer cannot serve: a
 * top-K weight without top-K buffers, hidden terms without hidden states,
 * w_rel without shape.relation, the full KL, the relation loss (no q, k, v)
 * or another K or τ from a provider; a bad λ or width. Every accumulate
 * checks them too. */
int bl_trainer_check_params(const BlTrainer *tr, const BlStepParams *p, BlError *err);

/* Forward + losses + backward of one micro-batch; gradients accumulate with
 * the losses scaled by weight, and weight·(each loss) is added into acc.
 * Each loss is the mean over the micro-batch's selected rows, so the
 * weight bl_micro_batch_rows(mb) / (the step's selected rows) makes the
 * step's loss the mean over every row of the step, however it is split.
 * With a teacher provider a packed micro-batch is refused. */
int bl_trainer_accumulate(BlTrainer *tr, const BlMicroBatch *mb, float weight,
                          const BlStepParams *p, BlStepResult *acc, BlError *err);

/* The same with the teacher's outputs given (host memory; no forward), which
 * must be those of mb's rows as laid out (packed or not). */
int bl_trainer_accumulate_given(BlTrainer *tr, const BlMicroBatch *mb, float weight,
                                const BlTeacherGiven *given, const BlStepParams *p,
                                BlStepResult *acc, BlError *err);

/* Gradient norms into res, then: non-finite gradient → skip (count, zero
 * the gradients, weights and moments untouched); else clip, and AdamW when
 * every updated value stays finite (be->adamw_check), else skip. Records
 * p->lambda_acts in the student's cfg (what it was trained with). */
int bl_trainer_update(BlTrainer *tr, const BlStepParams *p, BlStepResult *res, BlError *err);

/* Drops the accumulated gradients without an update. */
void bl_trainer_zero_grads(BlTrainer *tr);

/* n_micro micro-batches of batch->B sequences each, back to back in
 * batch's arrays: tokens, mask and doc_start [n_micro·B·T] (mask and
 * doc_start may be NULL), lens [n_micro·B]; each weighted by its share of
 * the step's selected rows, so that the losses are means over the whole
 * batch's rows (a padded batch's short sequences weigh as few rows, not as
 * a micro-batch), as one micro-batch of n_micro·B sequences would give.
 *
 * With n_micro > 1 each micro-batch's gradient is formed in the zeroed
 * gradient arena and then added, in micro-batch order, into the step's
 * accumulator (a second arena of n_floats, allocated on first use and
 * reported as grad_accum): sum = ((m0 + m1) + m2) + …, each m_i rounded on
 * its own, and each micro-batch's losses likewise into the step's result.
 * That is what a multi-process step (bl_trainer_step_reduce) can reproduce
 * bit for bit; accumulating inside the backward's GEMMs (beta = 1) would
 * round fl(G + alpha·acc) instead. One micro-batch takes the plain path. */
int bl_trainer_step(BlTrainer *tr, const BlMicroBatch *batch, int n_micro, const BlStepParams *p,
                    BlStepResult *res, BlError *err);

/* A step shared by several processes (data parallel, src/dist through the
 * script layer): reduce sums, over every process, the gradient arena (a
 * host copy g[n]) and the step's loss scalars s[ns] (ce, kl, topk, cos,
 * mag, rel, total: every double loss of BlStepResult), leaving the same bits on each, so every process takes the
 * same update. rows_total counts the selected rows of the whole shared
 * step, every process's micro-batches (bl_micro_batch_rows of the global
 * batch): each micro-batch is weighted by its share of them, as one process
 * would weigh it, so the losses are normalised by the global row count. */
typedef struct {
    int (*reduce)(void *ctx, float *g, size_t n, double *s, int ns, BlError *err);
    /* NULL (the host path above), or the arena's sum over the processes in
     * place in backend memory (NCCL between GPUs, dist/device_comm.h): the
     * arena then never leaves the device (no host copy is allocated) and
     * reduce gets only the scalars (g NULL, n 0). Real NCCL's sum is not in
     * process order, so the step equals one process's up to rounding. */
    int (*sum_device)(void *ctx, float *g_backend, size_t n, BlError *err);
    void *ctx;
    long rows_total;
} BlStepReduce;

/* bl_trainer_step over this process's n_micro micro-batches of a step
 * shared through red (NULL: bl_trainer_step): the local sum (as above),
 * then red->reduce, then bl_trainer_update. When red->reduce adds the
 * processes' sums in process order, the step equals one process's step
 * over all the micro-batches bit for bit exactly when each process has one
 * micro-batch (((m0 + m1) + m2) … either way); with several per process it
 * is (m0 + m1) + (m2 + m3), equal up to rounding. */
int bl_trainer_step_reduce(BlTrainer *tr, const BlMicroBatch *batch, int n_micro,
                           const BlStepReduce *red, const BlStepParams *p, BlStepResult *res,
                           BlError *err);

typedef struct {
    BlStudentMemory student;  /* the host student */
    size_t device_student;    /* its copy in backend memory (bl_device_student_bytes):
                               * values, LoRA stacks, gradients, moments */
    size_t activations; /* saved by the student forward for the backward */
    size_t scratch;     /* the block scratch, the teacher's forward state and
                         * logits, its hidden states, the loss chunks */
    size_t grad_accum;  /* the step's gradient accumulator (several micro-batches) and
                         * the host copy a multi-process step reduces; 0 until used */
} BlTrainerMemory;

void bl_trainer_memory(const BlTrainer *tr, BlTrainerMemory *out);

/* The bytes of one of a shared step's gradient buffers (the accumulator,
 * the host copy; trainer_step.c) for an arena of n_floats: what the trainer
 * allocates and the planner counts (plan/plan.h, grad_accum). */
size_t bl_trainer_grad_arena_bytes(size_t n_floats);

/* Model FLOPs of one step on a micro-batch of B full sequences of T tokens:
 * 2·M·N·K of every GEMM (teacher forward, student forward, the student's
 * input gradients: W is frozen, so no weight-gradient GEMM), the LoRA
 * factors' products and gradients, Weff's low-rank product (forward and
 * backward), and causal attention (QKᵀ and PV, ×2 in the backward). The
 * attention-relation loss is not counted (it is optional per step: w_rel
 * may be 0 on a trainer that could serve it). */
double bl_trainer_flops(const BlTrainer *tr, int B, int T);

// ----------------------------------------------------------------------------
// internal: shared by trainer*.c

/* the student's forward of the micro-batch whose ids/pos/lens/doc_start the
 * teacher state holds; its backward from a.dxf, calling hidden_grad per layer
 * (dh = dL/d(block output)) and, when not NULL, attn_grad per layer after
 * the attention backward with dL/dq, dL/dk (both before RoPE's backward:
 * w.r.t. the post-RoPE q, k the forward saved) and dL/dv to add into */
int bl_trainer_forward(BlTrainer *tr, int B, int T, const BlStepParams *p, BlError *err);
typedef void (*BlHiddenGradFn)(void *ctx, int l, float *dh);
typedef void (*BlAttnGradFn)(void *ctx, int l, float *dq, float *dk, float *dv);
void bl_trainer_backward(BlTrainer *tr, const BlStepParams *p, BlHiddenGradFn hidden_grad,
                         BlAttnGradFn attn_grad, void *ctx);

// ----------------------------------------------------------------------------
// benchmark

typedef struct {
    int B, T, steps;
    double step_s_median, step_s_min;
    double tokens_per_s;    /* B·T / median step */
    double flops_per_step;  /* bl_trainer_flops */
    double last_total;      /* the loss of the last step (sanity) */
    double minor_faults;    /* page faults per timed step (getrusage): 0 when buffers are reused */
    BlMemStats mem;         /* the backend's memory after the steps, peak over the run */
    size_t weight_bytes;    /* the frozen weights in backend memory (0 on the CPU: shared) */
    BlTrainerMemory tmem;   /* the trainer's own figures */
} BlStepBench;

/* The benchmark step: λ = 1, 8-bit activations, one LoRA r=16 α=32 on every
 * BitLinear, CE + KL(τ=2) + hidden cosine, AdamW(1e-4, 0.9, 0.95, 1e-8,
 * 0.01), clip 1, pseudo-random full-length batches; warmup + steps steps on
 * be. shape->batch/seq give B x T (the rest of the shape as given). */
int bl_bench_step(const BlModel *m, const BlBackend *be, const BlTrainerShape *shape, int warmup,
                  int steps, BlStepBench *out, BlError *err);

#endif
