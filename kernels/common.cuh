// common.cuh - what every kernel file shares (device side only, never
// included from C): the backend context (one stream, the cuBLAS/cuBLASLt
// handles, growable scratch), the error macros that record file:line into
// the sticky error reported at the next sync, block reductions, and the
// rounding helpers that must match ops/quant.c bit for bit.
#ifndef BITLAB_KERNELS_COMMON_CUH
#define BITLAB_KERNELS_COMMON_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda_ops.h"

// ----------------------------------------------------------------------------
// context

// Scratch slots: each op family uses its own so that two live temporaries
// never share memory within one op.
enum BlCudaSlot {
    BL_WS_X16,      // activations converted to bf16
    BL_WS_W16,      // fp32 weights converted to bf16
    BL_WS_DY16,     // output gradients converted to bf16
    BL_WS_ATT,      // attention backward: dS [B, nh, T, T]
    BL_WS_I8A,      // int8 activations (ternary GEMM)
    BL_WS_I8W,      // int8 ternary weights
    BL_WS_I32,      // int32 GEMM output / partial sums
    BL_WS_RED,      // reduction partials (float/double)
    BL_WS_LT,       // cuBLASLt workspace
    BL_WS_SLOTS
};

cudaStream_t bl_cuda_stream_(void);
cublasHandle_t bl_cublas_(void);
cublasLtHandle_t bl_cublaslt_(void);
int bl_cuda_int8_engine_(void);
// Scratch of at least `bytes` in slot (grown by sync + free + malloc, so
// pointers from earlier calls become invalid); NULL with the error recorded.
void *bl_cuda_scratch_(int slot, size_t bytes);

// Records the first failure (file:line, what, the CUDA error string) for the
// next bl_cuda_sync; returns 0 on success, -1 on failure.
int bl_cuda_note_(cudaError_t e, const char *file, int line, const char *what);
int bl_cublas_note_(cublasStatus_t s, const char *file, int line, const char *what);
int bl_cuda_fail_(const char *file, int line, const char *msg);

#define BL_CUDA_CHECK(call) bl_cuda_note_((call), __FILE__, __LINE__, #call)
#define BL_CUBLAS_CHECK(call) bl_cublas_note_((call), __FILE__, __LINE__, #call)
// A launch: BL_LAUNCH(grid, block, smem, stream, kernel)(args...) is
// kernel<<<grid, block, smem, stream>>>(args...) under nvcc; compiled as host
// C++ against tests/cuda_emu/cuda_emu.h it runs the kernel on the emulated
// device. The kernel comes last so that a template's commas need no parentheses.
#ifdef BITLAB_CUDA_EMU
#define BL_LAUNCH(grid, block, smem, stream, ...) BL_EMU_LAUNCH(grid, block, smem, stream, __VA_ARGS__)
// dynamic shared memory (the launch's smem bytes)
#define BL_DYNAMIC_SHARED(type, name) type *const name = (type *)::bl_emu::dynamic_shared()
#else
#define BL_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define BL_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif
// after every launch: launch-configuration errors surface here, faults at sync
#define BL_LAUNCHED(name) bl_cuda_note_(cudaGetLastError(), __FILE__, __LINE__, "launch " name)
#define BL_FAIL(msg) bl_cuda_fail_(__FILE__, __LINE__, (msg))

static inline unsigned bl_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    // grid-stride loops cover the rest: 2^20 blocks saturate any GPU
    return (unsigned)(b < 1 ? 1 : (b > (1u << 20) ? (1u << 20) : b));
}

// ----------------------------------------------------------------------------
// reductions (blockDim.x a multiple of 32, at most 1024)

__device__ __forceinline__ float bl_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double bl_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float bl_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum, the result in every thread. `sh` holds 32 floats; the
// trailing __syncthreads lets the caller reuse sh immediately.
__device__ __forceinline__ float bl_block_sum(float v, float *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = bl_warp_sum(v);
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    v = bl_warp_sum(v);
    __syncthreads();
    return v;
}

__device__ __forceinline__ double bl_block_sum_d(double v, double *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = bl_warp_sum_d(v);
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0;
    v = bl_warp_sum_d(v);
    __syncthreads();
    return v;
}

__device__ __forceinline__ float bl_block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = bl_warp_max(v);
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    v = bl_warp_max(v);
    __syncthreads();
    return v;
}

// ----------------------------------------------------------------------------
// the quantisers' rounding, exactly as ops/quant.c

// clamp(roundf(w·s), −1, 1): half away from zero means |w·s| >= ½
__device__ __forceinline__ float bl_ternary(float w, float s) {
    float v = __fmul_rn(w, s);
    return (float)(v >= 0.5f) - (float)(v <= -0.5f);
}

// v clamped to [lo, hi] (NaN to lo), rounded half away from zero with the
// CPU's very operations: truncation through int, then ±1 when |v − t| ≥ ½.
// (roundf would give −0 for v in (−½, 0) where the CPU gives +0.)
__device__ __forceinline__ float bl_round_clamp(float v, float lo, float hi) {
    v = v > lo ? v : lo;
    v = v < hi ? v : hi;
    float t = (float)(int)v;
    return t + (fabsf(v - t) >= 0.5f ? copysignf(1.0f, v) : 0.0f);
}

// 1/τ-scaled softmax exponent; CPU uses bl_expf (~1 ulp), expf is ~2 ulp
__device__ __forceinline__ float bl_exp(float x) { return expf(x); }

#endif
