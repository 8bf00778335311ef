/* backend_cpu.c - the CPU backend: host memory and the reference ops of
 * ops/ops.h (forward: ops_forward.c, backward: ops_backward.c) and of train/
 * (quant, bitlinear, loss, adamw), nothing queued, so sync() has nothing to
 * wait for. The few entries that are not a train/ function as it is are thin
 * adapters to one, written here so the CUDA twins have a single reference. */
#include "backend/backend.h"

#include <cblas.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ops/gemm.h"
#include "ops/ops.h"
#include "ops/ops_decode.h"
#include "ops/quant.h"
#include "ops/ternary_gemm.h"
#include "ops/weff.h"

// ----------------------------------------------------------------------------
// memory, counted (glibc's malloc_usable_size: the backend's free() is given
// no size) so that a benchmark can report the backend's high-water mark

static _Atomic size_t mem_live, mem_peak;

static void mem_note_alloc(void *p) {
    if (!p) return;
    size_t live = atomic_fetch_add(&mem_live, malloc_usable_size(p)) + malloc_usable_size(p);
    size_t peak = atomic_load(&mem_peak);
    while (live > peak && !atomic_compare_exchange_weak(&mem_peak, &peak, live)) {
    }
}

static void mem_note_free(void *p) {
    if (p) atomic_fetch_sub(&mem_live, malloc_usable_size(p));
}

static void *cpu_alloc(size_t bytes, BlError *err) {
    void *p = bl_calloc(1, bytes, err);
    mem_note_alloc(p);
    return p;
}

static void cpu_free(void *p) {
    mem_note_free(p);
    free(p);
}

static void cpu_mem_stats(BlMemStats *out, bool reset_peak) {
    out->live = atomic_load(&mem_live);
    out->peak = atomic_load(&mem_peak);
    out->device_free = out->device_total = 0;
    if (reset_peak) atomic_store(&mem_peak, out->live);
}

static const char *cpu_device_name(void) { return "cpu"; }

static int cpu_copy(void *dst, const void *src, size_t bytes, BlError *err) {
    (void)err;
    if (bytes) memcpy(dst, src, bytes);
    return 0;
}

static int cpu_sync(BlError *err) {
    (void)err;
    return 0;
}

static void cpu_add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void cpu_copy2d(float *dst, int ld_dst, const float *src, int ld_src, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * ld_dst, src + (size_t)r * ld_src, (size_t)cols * sizeof(float));
}

// ----------------------------------------------------------------------------
// the student and trainer entries

/* the stack as one product: W + B_cat·A_cat + dense, then the λ mix
 * (ops/weff.h) */
static BlMergeSpec merge_spec(const BlWeffSpec *w) {
    return (BlMergeSpec){.w = w->w, .dense = w->dense, .lora_b = w->lora_b,
                         .lora_a = w->lora_a, .rank = w->rank, .out = w->out, .in = w->in};
}

static void cpu_bitlinear_weff(float *weff, const BlWeffSpec *w) {
    BlMergeSpec m = merge_spec(w);
    bl_weff_build(weff, &m, w->lambda);
}

/* The integer path (ops/ternary_gemm.h): the merged weight's ternary and the
 * int8 activations, summed exactly in int32 and scaled once, as the CUDA
 * twin does; the fp32 path (bitlinear_weff, actq, matmul) rounds its
 * products instead. */
static int cpu_ternary_matmul(float *y, const float *x, const BlWeffSpec *w, const float *bias,
                              int M, int bits, BlError *err) {
    if (bits != 8 && bits != 4)
        return bl_fail(err, "ternary matmul: activation width %d is not 8 or 4", bits);
    if (w->lambda != 1.0f)
        return bl_fail(err, "ternary matmul: lambda is %g; the integer path needs lambda = 1",
                       (double)w->lambda);
    if (M <= 0 || w->out <= 0 || w->in <= 0) return 0;
    BlMergeSpec m = merge_spec(w);
    return bl_ternary_linear(y, x, &m, bias, M, bits, err);
}

static void cpu_adamw_step(float *p, const float *g, float *m, float *v, size_t n, long t,
                           const BlAdamWConfig *c) {
    BlAdamWState s = {.m = m, .v = v, .n = n, .t = t - 1}; /* bl_adamw_step counts it up */
    bl_adamw_step(p, g, &s, c);
}

static double cpu_sumsq(const float *x, size_t n) {
    BlParamRef r = {.p = NULL, .g = (float *)x, .n = n};
    double norm = bl_grad_norm(&r, 1);
    return norm * norm;
}

static void cpu_scale(float *x, size_t n, float f) {
    for (size_t i = 0; i < n; i++) x[i] *= f;
}

static void cpu_sumsq_segments(double *out, const float *x, const size_t *off, int n) {
    for (int i = 0; i < n; i++) out[i] = cpu_sumsq(x + off[i], off[i + 1] - off[i]);
}

static void cpu_zero(void *x, size_t bytes) {
    if (bytes) memset(x, 0, bytes);
}

static float *cpu_weights_upload(const float *host, size_t n, BlError *err) {
    float *w = bl_malloc(sizeof(float) * (n ? n : 1), err);
    if (w && n) memcpy(w, host, sizeof(float) * n);
    mem_note_alloc(w);
    return w;
}

static void cpu_weights_free(float *w) { cpu_free(w); }

static const BlBackend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .sync = cpu_sync,
    .matmul = bl_matmul,
    .matmul_backward = bl_matmul_backward,
    .rmsnorm = bl_rmsnorm,
    .rmsnorm_backward = bl_rmsnorm_backward,
    .rope = bl_rope,
    .rope_backward = bl_rope_backward,
    .attention = bl_attention,
    .attention_backward = bl_attention_backward,
    .swiglu = bl_swiglu,
    .swiglu_backward = bl_swiglu_backward,
    .embed = bl_embed,
    .attention_kv = bl_attention_kv,
    .add = cpu_add,
    .copy2d = cpu_copy2d,
    .gemm = bl_gemm,
    .actq = bl_actq_blend,
    .bitlinear_weff = cpu_bitlinear_weff,
    .ternary_matmul = cpu_ternary_matmul,
    .ce_loss = bl_ce_loss,
    .kl_loss = bl_kl_loss,
    .topk_logprobs = bl_topk_logprobs,
    .topk_kl_loss = bl_topk_kl_loss,
    .hidden_loss = bl_hidden_loss,
    .relation_kl = bl_relation_kl,
    .adamw_step = cpu_adamw_step,
    .adamw_check = bl_adamw_check,
    .sumsq = cpu_sumsq,
    .scale = cpu_scale,
    .sumsq_segments = cpu_sumsq_segments,
    .zero = cpu_zero,
    .mem_stats = cpu_mem_stats,
    .device_name = cpu_device_name,
    .weights_upload = cpu_weights_upload,
    .weights_free = cpu_weights_free,
};

const BlBackend *bl_backend_cpu(void) { return &cpu_backend; }
