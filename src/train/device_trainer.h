/* device_trainer.h - the self-distillation step of train/step.h with every op
 * through a BlBackend, so that it runs on the CUDA backend (kernels/) as well
 * as on the CPU one. llm.c style: train/step.c, train_forward.c and
 * train_backward.c stay the readable CPU reference; this is its twin that
 * runs anywhere, and tests/c/test_device_step.c holds the two together (on
 * the CPU backend) while tests/c/test_cuda_step.c compares CUDA against it.
 *
 * The step, as bl_distill_step: teacher forward (logits and every block's
 * output) → student forward (every block linear a BitLinear: SubLN, actq,
 * Weff = (1−λ)(W+ΔW) + λ·wq(W+ΔW), optional post-attention norm) → CE, KL(τ),
 * Top-K KL and hidden cosine (+ magnitude) with the mask and lens rules of
 * step.h → backward into the newest adapter, dense ΔW and norm weights →
 * per-tensor, per-block and global gradient norms, the non-finite skip,
 * global clipping → AdamW. Teacher cache: one slot, as step.h's.
 *
 * What lives in backend memory: the frozen weights (a BlDeviceModel, bf16 on
 * CUDA), per BitLinear its whole LoRA stack as one low-rank product
 * lora_b·lora_a for be->bitlinear_weff (frozen adapters included; α/r folded
 * into the A rows), the trainable tensors with their gradients and AdamW
 * moments (four arenas laid out in BlStudent.params order, so the clip, the
 * zeroing and AdamW are a few calls over one range), the saved activations
 * and the teacher's logits and hidden states. The host keeps the
 * configuration and the per-tensor AdamW step counts.
 *
 * The host BlStudent stays the source of truth for checkpoints and eval:
 * build uploads it, bl_device_trainer_download copies the trained tensors
 * and the optimizer state back into it, and bl_device_trainer_upload re-reads
 * it after the host changed it (a rotation, a resumed checkpoint). λ and the
 * activation width are read from student->cfg at every step (schedules).
 *
 * Numerically this is the reference step up to the order of float
 * operations: the stack's ΔW is one GEMM over the concatenated factors, the
 * attention backward is be->attention_backward, and token losses run over
 * chunks of sequences. Not served: given / traced teacher outputs
 * (BlTeacherProvider), which stay with the CPU trainer. */
#ifndef BITLAB_DEVICE_TRAINER_H
#define BITLAB_DEVICE_TRAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "backend/device_model.h"
#include "core/error.h"
#include "nn/forward.h"
#include "train/step.h"
#include "train/student.h"
#include "train/teacher_cache.h"

typedef struct {
    /* λ = 1 with 8- or 4-bit activations: the student forward's linears run
     * be->ternary_matmul (CUDA: int8 × ternary int8 → int32) instead of
     * Weff + actq + matmul; other steps take the ordinary path */
    bool ternary_fast_path;
    /* sequences per logits chunk of the token losses; 0: as many as keep
     * the student's chunk logits within 256 MiB */
    int loss_chunk_seqs;
} BlDeviceTrainerOptions;

/* One student BitLinear in backend memory (pointers into the arenas). */
typedef struct {
    int out, in;
    const float *w, *b;     /* the device model's frozen weight and bias */
    int rank;               /* Σ r_i of the stack (0: no adapter) */
    float *lora_b;          /* [out, rank]: every B_i side by side */
    float *lora_a;          /* [rank, in]: every (α_i/r_i)·A_i stacked */
    int r, r0;              /* the newest adapter's rank and its first column / row in the cat */
    float scale;            /* its α/r */
    float *A, *B, *dA, *dB; /* the newest's factors (trainable) and their gradients */
    float *dense, *ddense;  /* dense ΔW and its gradient, or NULL */
    float *subln, *dsubln;  /* SubLN weight [in] and its gradient, or NULL */
} BlDevLinear;

/* One trainable tensor: a range of the four arenas. */
typedef struct {
    size_t off, n;
    long t;                 /* AdamW steps taken (BlAdamWState.t) */
    int layer, kind;        /* as BlStudent.param_layer / param_kind */
    float *host;            /* the BlStudent tensor it mirrors */
} BlDevParam;

/* Saved activations and scratch, in backend memory (as BlTrainState). */
typedef struct {
    int *targets;                     /* [M] tokens, −1 at padding (loss rows) */
    uint8_t *tok_mask, *hid_mask;     /* [M] */
    float *xs, *rstd1, *rstd2, *q, *k, *v, *att, *ao, *xmid, *gu;
    float *opre, *rstd_pa, *rstd_sub; /* post-attention norm / SubLN, or NULL */
    float *xf, *rstd_f;
    float *xn, *xq, *y, *act, *weff, *lscratch;
    float *dx, *dx2, *dxn, *dxf, *dgu, *dact, *dq, *dk, *dv, *dao;
    float *slogits, *dlogits;         /* [chunk·T, V] */
    int *topk_ids;                    /* [chunk·T, K] */
    float *topk_logp;
    float *t_hidden;                  /* [n_layers, M, dim] the teacher's block outputs */
    size_t bytes_saved, bytes_scratch;
} BlDevActs;

typedef struct BlDeviceTrainer {
    const BlBackend *be;
    BlStudent *student;     /* not owned: the host mirror */
    BlDeviceModel dm;       /* the frozen weights in backend memory */
    size_t weight_bytes;    /* what uploading them took (0 on the CPU: shared with the host) */
    const BlModel *m;       /* &dm.model */
    BlLossConfig loss;
    BlOptConfig opt;
    BlDeviceTrainerOptions o;
    int B, T, chunk;        /* capacity; sequences per logits chunk */
    int K;                  /* top-K buffers' K (1 without the top-K loss) */
    /* the student, as uploaded */
    bool subln, post_attn_norm;
    BlDevLinear *lin;       /* [n_layers · BL_LIN_KINDS]; out == 0 where absent */
    float **post_norm, **dpost_norm; /* [n_layers] → [dim] arena slices, or NULL */
    float *cat;             /* every linear's lora_b and lora_a */
    int n_params;
    BlDevParam *params;
    size_t *seg;            /* [n_params + 1] param offsets, for sumsq_segments */
    double *seg_sq;         /* [n_params] */
    size_t n_floats;        /* arena length */
    float *p, *g, *mom1, *mom2; /* the arenas: values, gradients, AdamW m and v */
    int rmax;               /* largest newest-adapter rank (LoRA backward scratch) */
    /* the step */
    BlForwardState teacher; /* the teacher's state; its ids/pos/lens serve the student too */
    BlDevActs a;
    int cur_B, cur_T;       /* the micro-batch of the last forward */
    int *h_ids, *h_pos, *h_targets; /* [M] host staging */
    uint8_t *h_tok, *h_hid;
    int *h_lens;            /* [B] */
    double *block_gn;       /* [n_layers] */
    long steps, skipped;
    bool teacher_cache;     /* reuse the teacher's outputs when a micro-batch repeats */
    BlBatchKey cache;       /* the micro-batch they hold */
} BlDeviceTrainer;

/* Uploads the model (once) and the student; B, T is the micro-batch
 * capacity. The loss and optimizer configurations are step.h's. */
int bl_device_trainer_build(BlDeviceTrainer *tr, const BlBackend *be, BlStudent *st, int B, int T,
                            const BlLossConfig *loss, const BlOptConfig *opt,
                            const BlDeviceTrainerOptions *o, BlError *err);
void bl_device_trainer_free(BlDeviceTrainer *tr);

/* Re-reads the host student (adapters, norm weights, optimizer state) after
 * the host changed it, e.g. bl_student_rotate. */
int bl_device_trainer_upload(BlDeviceTrainer *tr, BlError *err);
/* Copies the trainable tensors, AdamW moments and step counts into the host
 * student (for checkpoints, eval, generation). Fails when the host student's
 * parameter list changed since the upload. */
int bl_device_trainer_download(BlDeviceTrainer *tr, BlError *err);

/* As bl_trainer_accumulate / bl_trainer_update / bl_distill_step (step.h). */
int bl_device_trainer_accumulate(BlDeviceTrainer *tr, const int *tokens, const int *lens,
                                 const uint8_t *mask, int B, int T, float weight,
                                 BlStepResult *acc, BlError *err);
int bl_device_trainer_update(BlDeviceTrainer *tr, BlStepResult *res, BlError *err);
int bl_device_distill_step(BlDeviceTrainer *tr, const int *tokens, const int *lens,
                           const uint8_t *mask, int n_micro, int B, int T, BlStepResult *res,
                           BlError *err);

/* Model FLOPs of one step on a micro-batch of B full sequences of T tokens:
 * 2·M·N·K of every GEMM (teacher forward, student forward, the student's
 * input gradients: W is frozen, so no weight-gradient GEMM), the LoRA
 * factors' products and gradients, Weff's low-rank product (forward and
 * backward), and causal attention (QKᵀ and PV, ×2 in the backward). */
double bl_device_trainer_flops(const BlDeviceTrainer *tr, int B, int T);

/* ---- internal: shared by device_trainer*.c ------------------------------ */

BlDevLinear *bl_dev_linear(const BlDeviceTrainer *tr, int l, BlLinearKind kind);
int bl_dev_student_upload(BlDeviceTrainer *tr, BlError *err);
void bl_dev_student_free(BlDeviceTrainer *tr);
/* the host student's parameter list is the uploaded one (same tensors) */
bool bl_dev_student_current(const BlDeviceTrainer *tr);
/* after AdamW: the newest adapter's factors back into its linear's cat */
void bl_dev_student_refresh_cat(BlDeviceTrainer *tr);
/* the student's forward of the micro-batch whose ids/pos/lens the teacher
 * state holds; its backward from a.dxf, calling hidden_grad per layer */
int bl_dev_forward(BlDeviceTrainer *tr, int B, int T, BlError *err);
typedef void (*BlDevHiddenGradFn)(void *ctx, int l, float *dh);
void bl_dev_backward(BlDeviceTrainer *tr, BlDevHiddenGradFn hidden_grad, void *ctx);

/* ---- benchmark ------------------------------------------------------------ */

typedef struct {
    int B, T, steps;
    double step_s_median, step_s_min;
    double tokens_per_s;    /* B·T / median step */
    double flops_per_step;  /* bl_device_trainer_flops */
    double last_total;      /* the loss of the last step (sanity) */
    BlMemStats mem;         /* the backend's memory after the steps, peak over the run */
    size_t weight_bytes;    /* the frozen weights in backend memory (0 on the CPU: shared) */
} BlDeviceStepBench;

/* bl_bench_step's settings (λ = 1, A8, one LoRA r=16 α=32, CE + KL(τ=2) +
 * hidden cosine, AdamW(1e-4, 0.9, 0.95, 1e-8, 0.01), clip 1, pseudo-random
 * full-length batches) on the device trainer over be. */
int bl_device_bench_step(const BlModel *m, const BlBackend *be, int B, int T, int warmup,
                         int steps, const BlDeviceTrainerOptions *o, BlDeviceStepBench *out,
                         BlError *err);

#endif
