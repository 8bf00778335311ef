/* device_student.h - the student in a backend's memory: the frozen weights
 * (a BlDeviceModel: bf16 on CUDA, the host's own on the CPU), per BitLinear
 * its whole LoRA stack as one low-rank product lora_b·lora_a (frozen
 * adapters included, α/r folded into the A rows), and the trainable tensors
 * in one arena laid out in BlStudent.params order, with, for a trainer,
 * their gradients and AdamW moments in three more arenas of the same layout
 * (so clipping, zeroing and AdamW are a few calls over one range).
 *
 * The host BlStudent stays the source of truth for checkpoints and export:
 * build uploads it, download copies the trained tensors and the optimizer
 * state back, and upload re-reads it after the host changed it (a rotation,
 * a resumed checkpoint).
 *
 * And the BitLinear itself, the one definition every student forward uses
 * (the trainer's, evaluation's, generation's):
 *   y = actq(n(x))·Weffᵀ + b,   Weff = (1−λ)·(W+ΔW) + λ·wq(W+ΔW),
 * n an optional SubLN RMSNorm; gradients by the straight-through estimator
 * (see trainer_forward.c). λ and the activation width are arguments of each
 * call: the student's own cfg values are what a caller passes by default. */
#ifndef BITLAB_DEVICE_STUDENT_H
#define BITLAB_DEVICE_STUDENT_H

#include <stdbool.h>
#include <stddef.h>

#include "backend/backend.h"
#include "backend/device_model.h"
#include "core/error.h"
#include "train/student.h"

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

/* One trainable tensor: a range of the arenas. */
typedef struct {
    size_t off, n;
    long t;                 /* AdamW steps taken (BlAdamWState.t) */
    int layer, kind;        /* as BlStudent.param_layer / param_kind */
    float *host;            /* the BlStudent tensor it mirrors */
} BlDevParam;

typedef struct BlDeviceStudent {
    const BlBackend *be;
    BlStudent *student;     /* not owned: the host mirror */
    BlDeviceModel dm;       /* the frozen weights in backend memory */
    const BlModel *m;       /* &dm.model */
    size_t weight_bytes;    /* what uploading them took (0 on the CPU: shared with the host) */
    bool trainable;         /* gradients and moments allocated */
    bool subln, post_attn_norm; /* as uploaded */
    BlDevLinear *lin;       /* [n_layers · BL_LIN_KINDS]; out == 0 where absent */
    float **post_norm, **dpost_norm; /* [n_layers] → [dim] arena slices, or NULL */
    float *cat;             /* every linear's lora_b and lora_a */
    int n_params;
    BlDevParam *params;
    size_t *seg;            /* [n_params + 1] param offsets, for sumsq_segments */
    size_t n_floats;        /* arena length */
    float *p, *g, *mom1, *mom2; /* values, gradients, AdamW m and v (g, mom*: trainable only) */
    int rmax;               /* largest newest-adapter rank (LoRA backward scratch) */
} BlDeviceStudent;

/* Uploads the model's weights (once) and the student; trainable adds the
 * gradient and moment arenas. */
int bl_build_device_student(BlDeviceStudent *ds, const BlBackend *be, BlStudent *st,
                            bool trainable, BlError *err);
void bl_free_device_student(BlDeviceStudent *ds);

/* Re-reads the host student (adapters, norm weights, optimizer state). */
int bl_device_student_upload(BlDeviceStudent *ds, BlError *err);
/* Copies the trainable tensors (and, trainable, the AdamW moments and step
 * counts) into the host student. Fails when the host student's parameter
 * list changed since the upload. */
int bl_device_student_download(BlDeviceStudent *ds, BlError *err);
/* The host student's parameter list is the uploaded one (same tensors). */
bool bl_device_student_current(const BlDeviceStudent *ds);
/* After AdamW: the newest adapter's factors back into its linear's cat. */
void bl_device_student_refresh_cat(BlDeviceStudent *ds);

BlDevLinear *bl_dev_linear(const BlDeviceStudent *ds, int l, BlLinearKind kind);

/* Bytes of backend memory the student's arenas take (values, cat, and with
 * trainable the gradients and moments): what bl_build_device_student
 * allocates besides the weights. */
size_t bl_device_student_bytes(const BlDeviceStudent *ds);

// ----------------------------------------------------------------------------
// the BitLinear

/* The λ = 1 integer path applies: ternary weights and 8- or 4-bit
 * activations (be->ternary_matmul). The activation blend of lambda_acts is
 * the identity at λ = 1 (bl_act_lambda), so it never keeps this path off. */
bool bl_bitlinear_fast_path(float lambda, int act_bits);

/* The λ of the BitLinear input blend x + λ·(actq(x) − x): the step's λ when
 * λ applies to the activations as well as the weights (lambda_acts, the
 * Hugging Face 1.58-bit fine-tuning recipe), else 1 (actq alone). */
static inline float bl_act_lambda(float lambda, bool lambda_acts) {
    return lambda_acts ? lambda : 1.0f;
}

/* xq[M, in] = n(x) + act_lambda·(actq(n(x)) − n(x)) (be->actq; n: SubLN
 * when the linear has one, its 1/rms into rstd when rstd != NULL;
 * act_lambda = 1: actq(n(x))). act_bits must be 4, 8 or 16 (checked by
 * callers at the step or evaluation boundary). */
void bl_bitlinear_input(const BlBackend *be, const BlDevLinear *L, float *xq, float *rstd,
                        const float *x, int M, int act_bits, float act_lambda, float eps);

/* Weff of L at λ into weff[out·in]. */
void bl_bitlinear_weff_of(const BlBackend *be, const BlDevLinear *L, float *weff, float lambda);

/* y[M, out] = xq·Weffᵀ + b, xq = bl_bitlinear_input at
 * bl_act_lambda(lambda, lambda_acts) (actq(n(x)) unless lambda_acts). xq is
 * scratch of M·in floats holding the quantised input afterwards (when
 * have_xq it already holds it: linears without SubLN that share x quantise
 * it once); weff is scratch of out·in floats (NULL when weff_ready points
 * at L's Weff already formed, e.g. cached by a decoder); rstd receives SubLN's 1/rms (may be NULL). With
 * fast (bl_bitlinear_fast_path) the integer path runs instead. */
int bl_bitlinear_apply(const BlBackend *be, const BlDevLinear *L, const float *x, float *y, int M,
                       float lambda, int act_bits, bool lambda_acts, float eps, bool fast,
                       bool have_xq, float *xq, float *rstd, float *weff, const float *weff_ready,
                       BlError *err);

#endif
