// cuda_emu.h - kernels/*.cu as host C++: force-included (g++ -x c++ -include
// cuda_emu.h) ahead of every kernel file of the emulated CUDA module
// (libbitlab_cuda_emu.so, see README.md beside this file).
//
// The real CUDA headers give the types (dim3, cudaError_t, cuBLAS handles,
// __nv_bfloat16 with its host conversions); this header maps the device-side
// language onto the emulator of emu_runtime.cpp: the qualifiers away,
// __shared__ to statics (one block runs at a time), the built-in indices to
// the running fiber's, the launch macro BL_LAUNCH of common.cuh to
// bl_emu::launch, and the warp/atomic/rounding intrinsics the kernels use.
#ifndef BITLAB_CUDA_EMU_H
#define BITLAB_CUDA_EMU_H

#define BITLAB_CUDA_EMU 1

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <atomic>
#include <tuple>
#include <type_traits>
#include <utility>

// ----------------------------------------------------------------------------
// qualifiers

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#undef __restrict__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
// Static shared memory: a static (one block runs at a time). Outside
// AddressSanitizer builds they all live in one section that the emulator
// fills with 0xff bytes (NaN, -1) before every block, so that a read of
// shared memory no thread of this block wrote shows; ASan does not put
// redzones around globals in named sections, so there they stay plain
// statics (out-of-bounds shared accesses caught instead).
#if defined(__SANITIZE_ADDRESS__)
#define __shared__ static
#else
#define __shared__ static __attribute__((section("bl_emu_shared"), aligned(16)))
#endif

// ----------------------------------------------------------------------------
// the emulator's side (emu_runtime.cpp)

namespace bl_emu {

// the running thread's coordinates (functions: not instrumented by TSan,
// which would otherwise see the scheduler's writes race with every read)
uint3 thread_idx();
uint3 block_idx();
dim3 block_dim();
dim3 grid_dim();
void *dynamic_shared();

void syncthreads();
// a warp rendezvous of the lanes in mask: every lane contributes `bits`
// (bytes of its value); after it each lane reads lane `src` (mode SHFL) or
// the reduction over the mask (modes MAX/MIN/ADD of 32-bit integers)
enum WarpOp { SHFL_XOR, SHFL_DOWN, REDUCE_MAX_U, REDUCE_MIN_U, REDUCE_ADD_U, REDUCE_MAX_I,
              REDUCE_MIN_I, REDUCE_ADD_I };
uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t bits, int arg, int width);

typedef void (*BodyFn)(void *closure);
// runs body(closure) in every thread of grid × block; a failure (launch
// limits, divergent barriers, ...) is reported with `name` and becomes the
// next cudaGetLastError / synchronisation error
void run(const char *name, const void *kernel, dim3 grid, dim3 block, size_t smem,
         cudaStream_t stream, BodyFn body, void *closure);

template <typename F, typename... P>
struct Launch {
    const char *name;
    F *kernel;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    // the parameters converted at the call, as with <<<>>> (NULL to a pointer)
    void operator()(std::decay_t<P>... a) const {
        // each thread gets its own copy of the parameters, as on a device
        struct Closure {
            F *k;
            std::tuple<std::decay_t<P>...> args;
        } c{kernel, std::tuple<std::decay_t<P>...>(a...)};
        run(name, (const void *)kernel, grid, block, smem, stream,
            [](void *p) {
                Closure *cl = (Closure *)p;
                std::tuple<std::decay_t<P>...> mine = cl->args;
                std::apply(cl->k, mine);
            },
            &c);
    }
};

template <typename... P>
Launch<void(P...), P...> launch(const char *name, void (*kernel)(P...), dim3 grid, dim3 block,
                                size_t smem, cudaStream_t stream) {
    return Launch<void(P...), P...>{name, kernel, grid, block, smem, stream};
}

template <typename T>
inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    return b;
}
template <typename T>
inline T from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof v);
    return v;
}

}  // namespace bl_emu

// the launch macro of kernels/common.cuh lands here
#define BL_EMU_LAUNCH(grid, block, smem, stream, ...) \
    ::bl_emu::launch(#__VA_ARGS__, __VA_ARGS__, (grid), (block), (smem), (stream))

#define threadIdx (::bl_emu::thread_idx())
#define blockIdx (::bl_emu::block_idx())
#define blockDim (::bl_emu::block_dim())
#define gridDim (::bl_emu::grid_dim())
#define warpSize 32

// ----------------------------------------------------------------------------
// intrinsics

inline void __syncthreads() { bl_emu::syncthreads(); }

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return bl_emu::from_bits<T>(
        bl_emu::warp_exchange(bl_emu::SHFL_XOR, mask, bl_emu::to_bits(v), lane_mask, width));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return bl_emu::from_bits<T>(
        bl_emu::warp_exchange(bl_emu::SHFL_DOWN, mask, bl_emu::to_bits(v), (int)delta, width));
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned v) {
    return (unsigned)bl_emu::warp_exchange(bl_emu::REDUCE_MAX_U, mask, v, 0, 32);
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned v) {
    return (unsigned)bl_emu::warp_exchange(bl_emu::REDUCE_MIN_U, mask, v, 0, 32);
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned v) {
    return (unsigned)bl_emu::warp_exchange(bl_emu::REDUCE_ADD_U, mask, v, 0, 32);
}
inline int __reduce_max_sync(unsigned mask, int v) {
    return (int)(uint32_t)bl_emu::warp_exchange(bl_emu::REDUCE_MAX_I, mask, (uint32_t)v, 0, 32);
}
inline int __reduce_min_sync(unsigned mask, int v) {
    return (int)(uint32_t)bl_emu::warp_exchange(bl_emu::REDUCE_MIN_I, mask, (uint32_t)v, 0, 32);
}
inline int __reduce_add_sync(unsigned mask, int v) {
    return (int)(uint32_t)bl_emu::warp_exchange(bl_emu::REDUCE_ADD_I, mask, (uint32_t)v, 0, 32);
}

// atomics: relaxed read-modify-write, as on the device
template <typename T>
inline T atomicAdd(T *p, T v) {
    return std::atomic_ref<T>(*p).fetch_add(v, std::memory_order_relaxed);
}
template <typename T>
inline T atomicExch(T *p, T v) {
    return std::atomic_ref<T>(*p).exchange(v, std::memory_order_relaxed);
}
template <typename T>
inline T atomicOr(T *p, T v) {
    return std::atomic_ref<T>(*p).fetch_or(v, std::memory_order_relaxed);
}
template <typename T>
inline T atomicMax(T *p, T v) {
    std::atomic_ref<T> a(*p);
    T old = a.load(std::memory_order_relaxed);
    while (old < v && !a.compare_exchange_weak(old, v, std::memory_order_relaxed)) {
    }
    return old;
}

// min/max as CUDA's overloads (C++'s std:: ones want equal types)
#define BL_EMU_MINMAX(T)                                   \
    inline T min(T a, T b) { return a < b ? a : b; }       \
    inline T max(T a, T b) { return a > b ? a : b; }
BL_EMU_MINMAX(int)
BL_EMU_MINMAX(unsigned)
BL_EMU_MINMAX(long)
BL_EMU_MINMAX(unsigned long)
BL_EMU_MINMAX(long long)
BL_EMU_MINMAX(unsigned long long)
#undef BL_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// four signed byte products added to c
inline int __dp4a(int a, int b, int c) {
    for (int i = 0; i < 4; i++)
        c += (int)(int8_t)(uint8_t)((unsigned)a >> (8 * i)) *
             (int)(int8_t)(uint8_t)((unsigned)b >> (8 * i));
    return c;
}

// IEEE single operations without contraction (the emulated module is built
// with -ffp-contract=off, so a plain expression is one rounded operation)
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __expf(float a) { return expf(a); }
inline float __logf(float a) { return logf(a); }
inline void __sincosf(float a, float *s, float *c) { sincosf(a, s, c); }
inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
inline unsigned __float_as_uint(float f) { return bl_emu::from_bits<unsigned>(bl_emu::to_bits(f)); }
inline float __uint_as_float(unsigned u) { return bl_emu::from_bits<float>(bl_emu::to_bits(u)); }
inline int __float_as_int(float f) { return bl_emu::from_bits<int>(bl_emu::to_bits(f)); }
inline float __int_as_float(int i) { return bl_emu::from_bits<float>(bl_emu::to_bits(i)); }

#endif
