/* backend_cuda.c - the CUDA backend's vtable: the kernels of kernels/
 * (cuda_ops.h) behind the BlBackend interface, fp32 at the interface and
 * bf16 inside where kernels/README.md says. Compiled only into the shared
 * module libbitlab_cuda.so (never into libbitlab): its one exported symbol,
 * bl_cuda_module_entry, hands the table of cuda_module.h to the loader
 * (backend_cuda_loader.c). */
#include "backend/backend.h"
#include "backend/cuda_module.h"
#include "cuda_ops.h"
#include "nccl.cuh"

_Static_assert(BL_NCCL_ID_BYTES == BL_CUDA_NCCL_ID_BYTES, "NCCL's unique id size");

static BlCudaWeff to_cuda_weff(const BlWeffSpec *w) {
    return (BlCudaWeff){.w = w->w, .dense = w->dense, .lora_b = w->lora_b, .lora_a = w->lora_a,
                        .rank = w->rank, .out = w->out, .in = w->in, .lambda = w->lambda};
}

static void cuda_bitlinear_weff(float *weff, const BlWeffSpec *w) {
    BlCudaWeff c = to_cuda_weff(w);
    bl_cuda_bitlinear_weff(weff, &c);
}

static int cuda_ternary_matmul(float *y, const float *x, const BlWeffSpec *w, const float *bias,
                               int M, int bits, BlError *err) {
    BlCudaWeff c = to_cuda_weff(w);
    return bl_cuda_ternary_matmul(y, x, &c, bias, M, bits, err);
}

static void cuda_mem_stats(BlMemStats *out, bool reset_peak) {
    bl_cuda_mem_stats(&out->live, &out->peak, &out->device_free, &out->device_total, reset_peak);
}

static const BlBackend cuda_backend = {
    .name = "cuda",
    .alloc = bl_cuda_malloc,
    .free = bl_cuda_free,
    .upload = bl_cuda_upload,
    .download = bl_cuda_download,
    .sync = bl_cuda_sync,
    .matmul = bl_cuda_matmul,
    .matmul_backward = bl_cuda_matmul_backward,
    .rmsnorm = bl_cuda_rmsnorm,
    .rmsnorm_backward = bl_cuda_rmsnorm_backward,
    .rope = bl_cuda_rope,
    .rope_backward = bl_cuda_rope_backward,
    .attention = bl_cuda_attention,
    .attention_backward = bl_cuda_attention_backward,
    .swiglu = bl_cuda_swiglu,
    .swiglu_backward = bl_cuda_swiglu_backward,
    .embed = bl_cuda_embed,
    .attention_kv = bl_cuda_attention_kv,
    .add = bl_cuda_add,
    .copy2d = bl_cuda_copy2d,
    .gemm = bl_cuda_gemm,
    .actq = bl_cuda_actq,
    .bitlinear_weff = cuda_bitlinear_weff,
    .ternary_matmul = cuda_ternary_matmul,
    .ce_loss = bl_cuda_ce_loss,
    .kl_loss = bl_cuda_kl_loss,
    .topk_logprobs = bl_cuda_topk_logprobs,
    .topk_kl_loss = bl_cuda_topk_kl_loss,
    .hidden_loss = bl_cuda_hidden_loss,
    .relation_kl = bl_cuda_relation_kl,
    .adamw_step = bl_cuda_adamw_step,
    .adamw_check = bl_cuda_adamw_check,
    .sumsq = bl_cuda_sumsq,
    .scale = bl_cuda_scale,
    .sumsq_segments = bl_cuda_sumsq_segments,
    .zero = bl_cuda_zero,
    .mem_stats = cuda_mem_stats,
    .device_name = bl_cuda_device_name,
    .weights_upload = bl_cuda_weights_upload,
    .weights_free = bl_cuda_weights_free,
};

static const BlBackend *cuda_open(int device, BlError *err) {
    return bl_cuda_init(device, err) == 0 ? &cuda_backend : NULL;
}

static const BlCudaModule cuda_module = {
    .abi = BL_CUDA_MODULE_ABI,
    .version = BITLAB_VERSION,
    .backend_size = sizeof(BlBackend),
    .device_count = bl_cuda_device_count,
    .backend = cuda_open,
    .set_int8_engine = bl_cuda_set_int8_engine,
    .nccl_load = bl_cuda_nccl_load,
    .nccl_unique_id = bl_cuda_nccl_unique_id,
    .nccl_init = bl_cuda_nccl_init,
    .nccl_sum = bl_cuda_nccl_sum,
    .nccl_free = bl_cuda_nccl_free,
};

/* the module's only exported symbol (it is built with hidden visibility) */
__attribute__((visibility("default"))) const BlCudaModule *bl_cuda_module_entry(void);

const BlCudaModule *bl_cuda_module_entry(void) { return &cuda_module; }
