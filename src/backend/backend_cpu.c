/* backend_cpu.c - the CPU backend: host memory and the reference ops of
 * nn/ops.h (forward: ops_forward.c, backward: ops_backward.c), nothing
 * queued, so sync() has nothing to wait for. */
#include "backend/backend.h"

#include <stdlib.h>
#include <string.h>

#include "nn/ops.h"
#include "nn/ops_decode.h"

static void *cpu_alloc(size_t bytes, BlError *err) { return bl_calloc(1, bytes, err); }

static void cpu_free(void *p) { free(p); }

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
    .embed_backward = bl_embed_backward,
    .attention_kv = bl_attention_kv,
    .add = cpu_add,
    .copy2d = cpu_copy2d,
};

const BlBackend *bl_backend_cpu(void) { return &cpu_backend; }
