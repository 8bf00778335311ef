/* context.cuh - device discovery, the backend's stream and handles, memory,
 * and the bf16 weight registry (C-callable; implementation in context.cu).
 *
 * Frozen weights live on the device in bf16 (dequantised once at load, then
 * rounded): bl_cuda_weights_upload returns such a tensor as a `float *`
 * handle, registered so that matmul, embed and the BitLinear kernels know to
 * read bf16 there. A handle must never be read as fp32 or downloaded. */
#ifndef BITLAB_KERNELS_CONTEXT_CUH
#define BITLAB_KERNELS_CONTEXT_CUH

#include <stdbool.h>
#include <stddef.h>


#ifdef __cplusplus
extern "C" {
#endif

/* C headers of src/: C linkage inside C++ */
#include "core/error.h"

/* Devices visible to this process: 0 (and return 0) when there is no device
 * or no usable driver (cudaErrorNoDevice, cudaErrorInsufficientDriver); -1
 * with err set for any other failure. */
int bl_cuda_device_count(int *n, BlError *err);

/* Selects `device` and creates the stream and the cuBLAS/cuBLASLt handles;
 * idempotent for the same device. Fails with "no CUDA device" when there is
 * none, and when the process already holds another device (one device per
 * process: the stream, handles, scratch and weights live on it). */
int bl_cuda_init(int device, BlError *err);
/* the device bl_cuda_init selected, -1 before */
int bl_cuda_device(void);
/* Frees scratch and handles (registered weights must be freed first). */
void bl_cuda_shutdown(void);
/* "NVIDIA H100 80GB HBM3 (sm_90, device 1)" after init, else "" */
const char *bl_cuda_device_name(void);

/* zero-filled device memory */
void *bl_cuda_malloc(size_t bytes, BlError *err);
void bl_cuda_free(void *p);
int bl_cuda_upload(void *dst, const void *host_src, size_t bytes, BlError *err);
int bl_cuda_download(void *host_dst, const void *src, size_t bytes, BlError *err);
/* Waits for the stream; reports (and clears) the first recorded failure. */
int bl_cuda_sync(BlError *err);

/* bytes held through bl_cuda_malloc (weights included) and the scratch
 * slots, their high-water mark (restarted at live with reset_peak), and the
 * driver's cudaMemGetInfo (0, 0 before init) */
void bl_cuda_mem_stats(size_t *live, size_t *peak, size_t *dev_free, size_t *dev_total,
                       bool reset_peak);

/* n fp32 host values → a new registered bf16 device tensor (round to
 * nearest even); the handle is typed float * for the backend's vtable. */
float *bl_cuda_weights_upload(const float *host, size_t n, BlError *err);
void bl_cuda_weights_free(float *w);
/* true when p points into a registered bf16 tensor */
bool bl_cuda_is_bf16(const void *p);

/* The ternary GEMM's engine: 0 = cuBLASLt int8 (own kernel when cuBLASLt
 * has no algorithm for the shape), 1 = always the own kernel (tests). */
void bl_cuda_set_int8_engine(int engine);

#ifdef __cplusplus
}
#endif

#endif
