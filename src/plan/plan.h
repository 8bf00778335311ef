/* plan.h - the memory a distillation run will need, from the model's
 * hyper-parameters alone: no weight is loaded or dequantised.
 *
 * CPU: byte for byte what the trainer (train/trainer.h) allocates on the CPU
 * backend — the host student (bl_build_student, bl_student_add_adapter), the
 * trainer's buffers as its one table gives them (bl_trainer_buffers, which
 * the trainer itself allocates from) and the teacher's forward state
 * (bl_forward_state_bytes) — split into categories whose trainer part sums to
 * bl_trainer_memory's figures by construction (tests/c/test_plan.c and
 * tests/py/test_plan.py hold them equal); then the student in backend memory
 * (device_student.h: on the CPU a second copy of the trainable tensors,
 * gradients and moments, and the concatenated LoRA stacks), which
 * bl_trainer_memory does not count, and what the process holds around the
 * trainer (BlPlanHost, measured by plan_host.h): the baseline, the
 * tokenizer, and the weight file mapped while loading.
 *
 * GPU: a DESIGN ESTIMATE (not measured) for the CUDA backend: the same table
 * with the chunking a device gets (bl_trainer_default_chunk), frozen weights
 * in bf16; adapters, gradients and AdamW moments in fp32; saved activations,
 * the teacher's forward state and hidden states and the block scratch in
 * bf16 (GEMMs accumulate in fp32; RMSNorm statistics stay fp32); logits in
 * fp32; one bf16 Weff scratch; the newest adapter's copy in the LoRA cat;
 * plus a CUDA context and a cuBLAS workspace.
 *
 * Two alternatives are planned beside the run: (a) the student keeping its
 * own copy of the weights, (b) a dense trainable ΔW (full-size gradient and
 * AdamW moments) in place of the LoRA stack. */
#ifndef BITLAB_PLAN_H
#define BITLAB_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "model/config.h"
#include "train/trainer.h"

/* The run being planned, as bl_build_student / bl_build_trainer see it
 * (zeros: the defaults of `bitlab plan`). */
typedef struct {
    int B, T;           /* micro-batch capacity: B sequences of T tokens */
    int rank;           /* LoRA rank r */
    int adapters;       /* k adapters on every block linear; the newest trains (0: none) */
    bool dense;         /* a trainable dense ΔW on every block linear as well */
    bool subln;         /* RMSNorm weight inside every BitLinear */
    bool post_attn_norm;
    int act_bits;       /* 4, 8 or 16: changes no buffer, checked for the record */
    int topk;           /* K of a top-K KL term, 0 = none (BlTrainerShape.topk) */
    /* the trainer keeps no teacher hidden states (BlTrainerShape.hidden
     * false: no cos / mag loss); false, the default, keeps them */
    bool no_teacher_hidden;
    int loss_chunk_seqs; /* BlTrainerShape.loss_chunk_seqs; 0: the backend's choice */
    int micro;          /* micro-batches of B per process and step (0 or 1: one) */
    int ranks;          /* processes of a data-parallel run (0 or 1: one) */
} BlPlanRun;

typedef enum {
    /* the trainer's memory: these sum to bl_trainer_memory's figures */
    BL_PLAN_WEIGHTS,         /* frozen weights, shared by teacher and student */
    BL_PLAN_ADAPTERS_FROZEN, /* the older adapters' A, B */
    BL_PLAN_TRAINABLE,       /* newest A, B, dense ΔW, norm weights */
    BL_PLAN_GRADS,
    BL_PLAN_OPTIMIZER,       /* AdamW m and v */
    BL_PLAN_ACTIVATIONS,     /* saved by the student forward for the backward */
    BL_PLAN_TEACHER_STATE,   /* the teacher forward's buffers but its logits */
    BL_PLAN_TEACHER_LOGITS,  /* [chunk·T, V]: the trainer forms a loss chunk's at a time */
    BL_PLAN_TEACHER_HIDDEN,  /* [n_layers, B·T, dim] */
    BL_PLAN_LOSS_CHUNKS,     /* [chunk·T, V] student logits + gradient, [B·T, K] top-K, targets, masks */
    BL_PLAN_BLOCK_SCRATCH,   /* one block's forward and backward scratch, Weff aside */
    BL_PLAN_WEFF,            /* Weff of the largest linear, materialised one at a time */
    BL_PLAN_LORA_SCRATCH,    /* M·r for the LoRA backward */
    BL_PLAN_TRAINER_CATS,
    /* around the trainer */
    BL_PLAN_DEVICE_STUDENT = BL_PLAN_TRAINER_CATS, /* the student in backend memory: CPU its
                              * LoRA cat, values, gradients, moments (a second copy);
                              * GPU the newest adapter's copy in the cat */
    BL_PLAN_GRAD_ACCUM,      /* the step's gradient accumulator (micro > 1) and, on the
                              * CPU, the host copy a multi-process step reduces (a GPU
                              * run's NCCL sums its arena in place) */
    BL_PLAN_BOOKKEEPING,     /* CPU: parameter lists, staging, pointers */
    BL_PLAN_BASELINE,        /* CPU: binary, libraries, startup heap, OpenBLAS buffers (measured) */
    BL_PLAN_TOKENIZER,       /* CPU: the tokenizer's heap (measured) */
    BL_PLAN_CUDA_CONTEXT,    /* GPU: context, module images (estimate) */
    BL_PLAN_CUBLAS,          /* GPU: cuBLAS workspace */
    BL_PLAN_CATS
} BlPlanCategory;

/* What the process holds besides the trainer (plan_host.h measures it). */
typedef struct {
    size_t baseline;     /* resident before the model loads, OpenBLAS buffers included */
    bool baseline_measured; /* measured in this process (else given by the caller) */
    size_t tokenizer;    /* heap of the built tokenizer */
    size_t load_meta;    /* heap of the parsed GGUF metadata, held while loading */
    size_t weight_files; /* bytes of the weight file(s), mapped while loading */
    bool weight_files_assumed; /* no weight file beside the config: 2 bytes per parameter */
} BlPlanHost;

/* The GPU design's fixed costs. */
#define BL_PLAN_CUDA_CONTEXT_BYTES ((size_t)512 << 20) /* context + kernels, lazy loading */
#define BL_PLAN_CUBLAS_BYTES ((size_t)32 << 20)        /* NVIDIA's recommended workspace on Hopper */

/* One device's plan of one run. */
typedef struct {
    size_t bytes[BL_PLAN_CATS]; /* 0 where a category does not apply */
    size_t trainer;    /* Σ of the trainer categories */
    size_t untouched;  /* allocated but never written by a step (not resident) */
    size_t train_peak; /* everything held during a step, minus untouched */
    size_t load_peak;  /* CPU: while the weights load (weights + mapped file + ...); GPU 0 */
    size_t peak;       /* max(train_peak, load_peak) */
} BlPlanSide;

typedef struct {
    BlConfig cfg;
    BlPlanRun run;
    BlPlanHost host;
    long long params;
    int n_linears;     /* block linears (each gets the adapters) */
    BlPlanSide cpu, gpu;
    /* (a) the student with its own copy of the weights (fp32 on CPU, bf16 on GPU) */
    size_t cpu_copy_peak, gpu_copy_peak;
    /* (b) a dense trainable ΔW on every block linear instead of the adapters */
    BlPlanSide cpu_dense, gpu_dense;
} BlPlan;

/* cfg must have passed bl_config_check (its arch flags set). Fails naming
 * the field for a run the trainer would refuse. */
int bl_plan_compute(BlPlan *p, const BlConfig *cfg, const BlPlanRun *run, const BlPlanHost *host,
                    BlError *err);

/* The plan's CPU trainer figures in bl_trainer_memory's categories. */
void bl_plan_trainer_memory(const BlPlan *p, BlTrainerMemory *out);

/* "weights", "grads", ... (JSON keys) and a one-line human label. */
const char *bl_plan_category_key(BlPlanCategory c);
const char *bl_plan_category_label(BlPlanCategory c);

#endif
