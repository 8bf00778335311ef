// embed.cu - embedding rows from an fp32 or bf16 table (see embed.cuh).
#include "common.cuh"

template <typename T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__global__ void embed_kernel(float *y, const T *table, const int *ids, int M, int D) {
    size_t n = (size_t)M * D;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < n;
         t += (size_t)gridDim.x * blockDim.x) {
        size_t m = t / D, i = t % D;
        y[t] = to_f32(table[(size_t)ids[m] * D + i]);
    }
}

extern "C" void bl_cuda_embed(float *y, const float *table, const int *ids, int M, int D) {
    size_t n = (size_t)M * D;
    if (M <= 0 || D <= 0) return;
    if (bl_cuda_is_bf16(table))
        BL_LAUNCH(bl_blocks(n, 256), 256, 0, bl_cuda_stream_(), embed_kernel<__nv_bfloat16>)(
            y, (const __nv_bfloat16 *)table, ids, M, D);
    else
        BL_LAUNCH(bl_blocks(n, 256), 256, 0, bl_cuda_stream_(), embed_kernel<float>)(y, table, ids, M, D);
    BL_LAUNCHED("embed");
}
