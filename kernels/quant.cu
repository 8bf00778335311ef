// quant.cu - per-token activation quantiser and the fused BitLinear weight
// (LoRA merge + absmean + ternarise + λ mix), see quant.cuh.
#include "quant_internal.cuh"

// ----------------------------------------------------------------------------
// actq

// max |x| of the row as the largest sign-cleared bit pattern, like the CPU
// (which orders like the values for non-NaN floats)
__device__ float row_absmax(const float *xr, int D, unsigned *sh) {
    unsigned m = 0;
    for (int i = threadIdx.x; i < D; i += blockDim.x) m = max(m, __float_as_uint(xr[i]) & 0x7fffffffu);
    m = __reduce_max_sync(0xffffffffu, m);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) sh[w] = m;
    __syncthreads();
    m = lane < nw ? sh[lane] : 0u;
    m = __reduce_max_sync(0xffffffffu, m);
    __syncthreads();
    return __uint_as_float(m);
}

// lambda < 1: (1−λ)·x + λ·actq(x), every operation rounded on its own (no
// FMA contraction) as the CPU's C11 arithmetic does
__global__ void actq_kernel(float *xq, float *scale, const float *x, int D, int Q, float lambda) {
    __shared__ unsigned sh[32];
    size_t row = blockIdx.x;
    const float *xr = x + row * D;
    float *yr = xq + row * D;
    float s = (float)Q / fmaxf(row_absmax(xr, D, sh), 1e-5f);
    float lo = (float)(-Q - 1), hi = (float)Q, keep = 1.0f - lambda;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float q = bl_round_clamp(__fmul_rn(xr[i], s), lo, hi) / s;
        yr[i] = lambda == 1.0f ? q : __fadd_rn(__fmul_rn(keep, xr[i]), __fmul_rn(lambda, q));
    }
    if (scale && threadIdx.x == 0) scale[row] = s;
}

__global__ void actq_int8_kernel(int8_t *q, int ldq, float *scale, const float *x, int D, int Q) {
    __shared__ unsigned sh[32];
    size_t row = blockIdx.x;
    const float *xr = x + row * D;
    float s = (float)Q / fmaxf(row_absmax(xr, D, sh), 1e-5f);
    float lo = (float)(-Q - 1), hi = (float)Q;
    for (int i = threadIdx.x; i < D; i += blockDim.x)
        q[row * ldq + i] = (int8_t)bl_round_clamp(__fmul_rn(xr[i], s), lo, hi);
    if (threadIdx.x == 0) scale[row] = s;
}

__global__ void fill_kernel(float *x, int n, float v) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] = v;
}

static unsigned row_threads(int D) {
    unsigned t = (unsigned)((D + 31) / 32 * 32);
    return t < 32 ? 32 : (t > 256 ? 256 : t);
}

extern "C" int bl_cuda_actq(float *xq, float *scale, const float *x, int M, int D, int bits,
                            float lambda, BlError *err) {
    int Q = bits == 8 ? 127 : bits == 4 ? 7 : bits == 16 ? 0 : -1;
    if (Q < 0) return bl_fail(err, "activation width %d bits is not one of 4, 8, 16", bits);
    if (M <= 0 || D <= 0) return 0;
    if (Q == 0) {  // off: a copy, scale 1
        if (xq != x)
            BL_CUDA_CHECK(cudaMemcpyAsync(xq, x, sizeof(float) * M * D, cudaMemcpyDeviceToDevice,
                                          bl_cuda_stream_()));
        if (scale) {
            BL_LAUNCH(bl_blocks((size_t)M, 256), 256, 0, bl_cuda_stream_(), fill_kernel)(scale, M, 1.0f);
            BL_LAUNCHED("actq_scale_fill");
        }
        return 0;
    }
    BL_LAUNCH(M, row_threads(D), 0, bl_cuda_stream_(), actq_kernel)(xq, scale, x, D, Q, lambda);
    BL_LAUNCHED("actq");
    return 0;
}

int bl_cuda_actq_int8_(int8_t *q, int ldq, float *scale, const float *x, int M, int D, int Q) {
    if (M <= 0 || D <= 0) return 0;
    BL_LAUNCH(M, row_threads(D), 0, bl_cuda_stream_(), actq_int8_kernel)(q, ldq, scale, x, D, Q);
    return BL_LAUNCHED("actq_int8");
}

// ----------------------------------------------------------------------------
// the fused BitLinear weight

enum { TILE = 32, TROWS = 8, PER = TILE / TROWS };  // 32×32 tile, 256 threads, 4 outputs each

enum WeffMode { WEFF_ABSSUM, WEFF_WRITE_F32, WEFF_WRITE_I8 };

__device__ __forceinline__ float load_w(const float *w, size_t i) { return w[i]; }
__device__ __forceinline__ float load_w(const __nv_bfloat16 *w, size_t i) {
    return __bfloat162float(w[i]);
}

// mode ABSSUM: partial[block] = Σ_tile |W+ΔW|; WRITE_F32: weff; WRITE_I8: q (stride ldq).
template <typename WT, int MODE>
__global__ void weff_kernel(float *weff, int8_t *q, int ldq, float *partial, const float *s_dev,
                            const WT *w, const float *dense, const float *lb, const float *la,
                            int R, int out, int in, float lambda) {
    __shared__ float Bs[TILE][TILE + 1], As[TILE][TILE + 1];
    __shared__ float red[32];
    int tx = threadIdx.x, ty = threadIdx.y;
    int i = blockIdx.x * TILE + tx;
    int o0 = blockIdx.y * TILE;
    float acc[PER] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int r0 = 0; r0 < R; r0 += TILE) {  // ΔW tile = B_cat[o0.., r0..]·A_cat[r0.., i0..]
        for (int j = 0; j < PER; j++) {
            int ol = ty + TROWS * j, o = o0 + ol, r = r0 + tx;
            Bs[ol][tx] = (o < out && r < R) ? lb[(size_t)o * R + r] : 0.0f;
            int rl = ty + TROWS * j, rr = r0 + rl;
            As[rl][tx] = (rr < R && i < in) ? la[(size_t)rr * in + i] : 0.0f;
        }
        __syncthreads();
        for (int k = 0; k < TILE; k++)
            for (int j = 0; j < PER; j++) acc[j] += Bs[ty + TROWS * j][k] * As[k][tx];
        __syncthreads();
    }
    float s = MODE == WEFF_ABSSUM ? 0.0f : *s_dev, keep = 1.0f - lambda, abssum = 0.0f;
    for (int j = 0; j < PER; j++) {
        int o = o0 + ty + TROWS * j;
        if (o >= out || i >= in) continue;
        size_t e = (size_t)o * in + i;
        float m = load_w(w, e) + acc[j];
        if (dense) m += dense[e];
        if (MODE == WEFF_ABSSUM) abssum += fabsf(m);
        else if (MODE == WEFF_WRITE_F32) weff[e] = keep * m + lambda * (bl_ternary(m, s) / s);
        else q[(size_t)o * ldq + i] = (int8_t)bl_ternary(m, s);
    }
    if (MODE == WEFF_ABSSUM) {
        // the block is 32×8: a flat thread index for the block sum
        float v = abssum;
        int lane = (ty * TILE + tx) & 31, wid = (ty * TILE + tx) >> 5;
        v = bl_warp_sum(v);
        if (lane == 0) red[wid] = v;
        __syncthreads();
        if (ty == 0 && tx < 32) {
            v = tx < (TILE * TROWS) / 32 ? red[tx] : 0.0f;
            v = bl_warp_sum(v);
            if (tx == 0) partial[blockIdx.y * gridDim.x + blockIdx.x] = v;
        }
    }
}

// s = 1 / max(mean|W+ΔW|, 1e-5) from the tiles' partial sums, added in double
__global__ void weff_scale_kernel(float *s_dev, const float *partial, int n_partial, double count) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < n_partial; i += blockDim.x) acc += partial[i];
    acc = bl_block_sum_d(acc, sh);
    if (threadIdx.x == 0) {
        float mean = count > 0 ? (float)(acc / count) : 0.0f;
        *s_dev = 1.0f / fmaxf(mean, 1e-5f);
    }
}

template <typename WT>
static int weff_run(float *weff, int8_t *q, int ldq, float *s_out, const BlCudaWeff *sp) {
    dim3 block(TILE, TROWS), grid((sp->in + TILE - 1) / TILE, (sp->out + TILE - 1) / TILE);
    int nb = (int)(grid.x * grid.y);
    // partials then the scale, in one scratch slot
    float *partial = (float *)bl_cuda_scratch_(BL_WS_RED, sizeof(float) * ((size_t)nb + 1));
    if (!partial) return -1;
    float *s_dev = s_out ? s_out : partial + nb;
    const WT *w = (const WT *)sp->w;
    const float *lb = sp->rank > 0 ? sp->lora_b : NULL, *la = sp->rank > 0 ? sp->lora_a : NULL;
    int R = sp->rank > 0 ? sp->rank : 0;
    cudaStream_t st = bl_cuda_stream_();
    BL_LAUNCH(grid, block, 0, st, weff_kernel<WT, WEFF_ABSSUM>)(NULL, NULL, 0, partial, NULL, w, sp->dense,
                                                         lb, la, R, sp->out, sp->in, sp->lambda);
    if (BL_LAUNCHED("weff_abssum")) return -1;
    BL_LAUNCH(1, 256, 0, st, weff_scale_kernel)(s_dev, partial, nb, (double)sp->out * sp->in);
    if (BL_LAUNCHED("weff_scale")) return -1;
    if (q)
        BL_LAUNCH(grid, block, 0, st, weff_kernel<WT, WEFF_WRITE_I8>)(NULL, q, ldq, NULL, s_dev, w,
                                                               sp->dense, lb, la, R, sp->out,
                                                               sp->in, sp->lambda);
    else
        BL_LAUNCH(grid, block, 0, st, weff_kernel<WT, WEFF_WRITE_F32>)(weff, NULL, 0, NULL, s_dev, w,
                                                                sp->dense, lb, la, R, sp->out,
                                                                sp->in, sp->lambda);
    return BL_LAUNCHED("weff_write");
}

static int weff_dispatch(float *weff, int8_t *q, int ldq, float *s_out, const BlCudaWeff *sp) {
    if (sp->out <= 0 || sp->in <= 0) return 0;
    if (bl_cuda_is_bf16(sp->w)) return weff_run<__nv_bfloat16>(weff, q, ldq, s_out, sp);
    return weff_run<float>(weff, q, ldq, s_out, sp);
}

extern "C" void bl_cuda_bitlinear_weff(float *weff, const BlCudaWeff *spec) {
    weff_dispatch(weff, NULL, 0, NULL, spec);
}

int bl_cuda_weff_int8_(int8_t *q, int ldq, float *s_dev, const BlCudaWeff *spec) {
    return weff_dispatch(NULL, q, ldq, s_dev, spec);
}
