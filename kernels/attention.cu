// attention.cu - fused causal GQA attention (one block per query row and
// head), its backward in two passes (dS and dQ per query row, then dK and dV
// per key row), and the KV-cache variant (see attention.cuh).
#include "common.cuh"

// Where one block's query row lives. Batch mode (lens != NULL): sequence b,
// row t, keys s0..t of the same sequence (s0 = doc_start[b·T + t], the
// first row of t's document, or 0 without doc_start), valid when t <
// lens[b]. KV mode: row i of the new queries at position pos0 + i, keys
// 0..pos0 + i of the cache (s0 = 0).
struct RowGeom {
    size_t qrow, krow0;  // row index of the query, of its first key
    int key0;            // that key's index within the sequence (s0)
    int nkeys;
    bool valid;
};

__device__ __forceinline__ RowGeom row_geom(const int *lens, const int *doc_start, int T,
                                            int pos0) {
    RowGeom g;
    int b = blockIdx.z, t = blockIdx.x;
    if (lens) {
        int L = min(lens[b], T);
        g.qrow = (size_t)b * T + t;
        g.valid = t < L;
        g.key0 = g.valid && doc_start ? doc_start[g.qrow] : 0;
        g.krow0 = (size_t)b * T + g.key0;
        g.nkeys = t - g.key0 + 1;
    } else {
        g.qrow = t;
        g.krow0 = 0;
        g.key0 = 0;
        g.nkeys = pos0 + t + 1;
        g.valid = true;
    }
    return g;
}

// smem: sc[nk_max] scores, then qs[hd]
__global__ void attention_kernel(float *out, float *att, const float *q, const float *k,
                                 const float *v, const int *lens, const int *doc_start, int T,
                                 int nh, int nkv, int hd, int pos0, int att_ld) {
    BL_DYNAMIC_SHARED(float, smem);
    __shared__ float red[32];
    int h = blockIdx.y, g = h / (nh / nkv);
    size_t qd = (size_t)nh * hd, kvd = (size_t)nkv * hd;
    RowGeom G = row_geom(lens, doc_start, T, pos0);
    float *o = out + G.qrow * qd + (size_t)h * hd;
    float *arow = att ? att + (((size_t)blockIdx.z * nh + h) * att_ld + blockIdx.x) * att_ld : NULL;
    if (!G.valid) {  // padding: zero output, zero probabilities
        for (int i = threadIdx.x; i < hd; i += blockDim.x) o[i] = 0.0f;
        if (arow)
            for (int s = threadIdx.x; s < att_ld; s += blockDim.x) arow[s] = 0.0f;
        return;
    }
    int n = G.nkeys;
    float *sc = smem, *qs = smem + n;
    const float *qr = q + G.qrow * qd + (size_t)h * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) qs[i] = qr[i];
    __syncthreads();
    float scale = 1.0f / sqrtf((float)hd);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int s = warp; s < n; s += nwarps) {  // one warp per key
        const float *kr = k + (G.krow0 + s) * kvd + (size_t)g * hd;
        float d = 0.0f;
        for (int i = lane; i < hd; i += 32) d += qs[i] * kr[i];
        d = bl_warp_sum(d);
        if (lane == 0) sc[s] = scale * d;
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int s = threadIdx.x; s < n; s += blockDim.x) mx = fmaxf(mx, sc[s]);
    mx = bl_block_max(mx, red);
    float sum = 0.0f;
    for (int s = threadIdx.x; s < n; s += blockDim.x) {
        float e = bl_exp(sc[s] - mx);
        sc[s] = e;
        sum += e;
    }
    sum = bl_block_sum(sum, red);  // ends with a barrier: sc is complete
    float inv = 1.0f / sum;
    for (int s = threadIdx.x; s < n; s += blockDim.x) sc[s] *= inv;
    __syncthreads();  // sc complete: the rows below read other threads' entries
    if (arow)  // at the keys' indices within the sequence, zero outside the document
        for (int s = threadIdx.x; s < att_ld; s += blockDim.x)
            arow[s] = s >= G.key0 && s < G.key0 + n ? sc[s - G.key0] : 0.0f;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        const float *vc = v + G.krow0 * kvd + (size_t)g * hd + i;
        float acc = 0.0f;
        for (int s = 0; s < n; s++) acc += sc[s] * vc[(size_t)s * kvd];
        o[i] = acc;
    }
}

static unsigned head_threads(int hd) {
    unsigned t = (unsigned)((hd + 31) / 32 * 32);
    return t < 64 ? 64 : (t > 256 ? 256 : t);
}

// Dynamic shared memory beyond the default 48 KiB needs an opt-in per kernel.
static int smem_opt_in(const void *kernel, size_t bytes) {
    if (bytes <= 48 * 1024) return 0;
    int dev = 0, max_optin = 0;
    if (BL_CUDA_CHECK(cudaGetDevice(&dev)) ||
        BL_CUDA_CHECK(cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)))
        return -1;
    if (bytes > (size_t)max_optin)
        return BL_FAIL("attention: the sequence is too long for one block's shared memory");
    return BL_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

extern "C" void bl_cuda_attention(float *out, float *att, const float *q, const float *k,
                                  const float *v, const int *lens, const int *doc_start, int B,
                                  int T, int nh, int nkv, int hd) {
    if (B <= 0 || T <= 0 || nh <= 0 || nkv <= 0 || hd <= 0) return;
    if (nh % nkv) {
        BL_FAIL("attention: n_heads is not a multiple of n_kv_heads");
        return;
    }
    size_t smem = ((size_t)T + hd) * sizeof(float);
    if (smem_opt_in((const void *)attention_kernel, smem)) return;
    dim3 grid(T, nh, B);
    BL_LAUNCH(grid, head_threads(hd), smem, bl_cuda_stream_(), attention_kernel)(
        out, att, q, k, v, lens, doc_start, T, nh, nkv, hd, 0, T);
    BL_LAUNCHED("attention");
}

extern "C" void bl_cuda_attention_kv(float *out, const float *q, const float *kcache,
                                     const float *vcache, int n, int pos0, int nh, int nkv, int hd) {
    if (n <= 0 || nh <= 0 || nkv <= 0 || hd <= 0) return;
    if (nh % nkv) {
        BL_FAIL("attention_kv: n_heads is not a multiple of n_kv_heads");
        return;
    }
    size_t smem = ((size_t)pos0 + n + hd) * sizeof(float);
    if (smem_opt_in((const void *)attention_kernel, smem)) return;
    dim3 grid(n, nh, 1);
    BL_LAUNCH(grid, head_threads(hd), smem, bl_cuda_stream_(), attention_kernel)(
        out, NULL, q, kcache, vcache, NULL, NULL, n, nh, nkv, hd, pos0, 0);
    BL_LAUNCHED("attention_kv");
}

// ----------------------------------------------------------------------------
// backward

// Pass 1, one block per (query row t, head): dP_s = dout_t·v_s, dS_s =
// P_s·(dP_s − Σ P·dP)/√hd into ds[b, h, t, s] (s0 ≤ s ≤ t, s0 the first row
// of t's document), dq_t = Σ_s dS_s·k_s.
// smem: dps[T] then dos[hd]
__global__ void attention_ds_kernel(float *dq, float *ds, const float *dout, const float *att,
                                    const float *k, const float *v, const int *lens,
                                    const int *doc_start, int T, int nh, int nkv, int hd) {
    BL_DYNAMIC_SHARED(float, smem);
    __shared__ float red[32];
    int b = blockIdx.z, h = blockIdx.y, t = blockIdx.x, g = h / (nh / nkv);
    size_t qd = (size_t)nh * hd, kvd = (size_t)nkv * hd, row = (size_t)b * T + t;
    int L = min(lens[b], T);
    float *dqr = dq ? dq + row * qd + (size_t)h * hd : NULL;
    if (t >= L) {
        if (dqr)
            for (int i = threadIdx.x; i < hd; i += blockDim.x) dqr[i] = 0.0f;
        return;
    }
    int s0 = doc_start ? doc_start[row] : 0, n = t - s0 + 1;
    float *dps = smem, *dos = smem + T;
    const float *dor = dout + row * qd + (size_t)h * hd;
    const float *p = att + (((size_t)b * nh + h) * T + t) * T + s0;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) dos[i] = dor[i];
    __syncthreads();
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int s = warp; s < n; s += nwarps) {
        const float *vr = v + ((size_t)b * T + s0 + s) * kvd + (size_t)g * hd;
        float d = 0.0f;
        for (int i = lane; i < hd; i += 32) d += dos[i] * vr[i];
        d = bl_warp_sum(d);
        if (lane == 0) dps[s] = d;
    }
    __syncthreads();
    float pdp = 0.0f;
    for (int s = threadIdx.x; s < n; s += blockDim.x) pdp += p[s] * dps[s];
    pdp = bl_block_sum(pdp, red);
    float scale = 1.0f / sqrtf((float)hd);
    float *dsr = ds + (((size_t)b * nh + h) * T + t) * T + s0;
    for (int s = threadIdx.x; s < n; s += blockDim.x) {
        float d = p[s] * (dps[s] - pdp) * scale;
        dps[s] = d;
        dsr[s] = d;
    }
    __syncthreads();
    if (!dqr) return;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        const float *kc = k + ((size_t)b * T + s0) * kvd + (size_t)g * hd + i;
        float acc = 0.0f;
        for (int s = 0; s < n; s++) acc += dps[s] * kc[(size_t)s * kvd];
        dqr[i] = acc;
    }
}

// Pass 2, one block per (key row s, kv head g), threads over hd:
// dk_s = Σ_{h∈g} Σ_{t=s}^{e−1} dS[h,t,s]·q_t,  dv_s = Σ_{h∈g} Σ_t P[h,t,s]·dout_t,
// e the end of s's document (L without doc_start): later queries never saw s.
__global__ void attention_dkv_kernel(float *dk, float *dv, const float *ds, const float *att,
                                     const float *q, const float *dout, const int *lens,
                                     const int *doc_start, int T, int nh, int nkv, int hd) {
    int b = blockIdx.z, g = blockIdx.y, s = blockIdx.x, group = nh / nkv;
    size_t qd = (size_t)nh * hd, kvd = (size_t)nkv * hd, row = (size_t)b * T + s;
    int L = min(lens[b], T), e = L;
    if (doc_start && s < L)
        for (e = s + 1; e < L && doc_start[(size_t)b * T + e] == doc_start[row];) e++;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float ak = 0.0f, av = 0.0f;
        if (s < L) {
            for (int h = g * group; h < (g + 1) * group; h++) {
                size_t base = ((size_t)b * nh + h) * T;
                for (int t = s; t < e; t++) {
                    size_t at = (base + t) * T + s, r = ((size_t)b * T + t) * qd + (size_t)h * hd + i;
                    if (dk) ak += ds[at] * q[r];
                    if (dv) av += att[at] * dout[r];
                }
            }
        }
        if (dk) dk[row * kvd + (size_t)g * hd + i] = ak;
        if (dv) dv[row * kvd + (size_t)g * hd + i] = av;
    }
}

extern "C" void bl_cuda_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                           const float *att, const float *q, const float *k,
                                           const float *v, const int *lens,
                                           const int *doc_start, int B, int T, int nh, int nkv,
                                           int hd) {
    if (B <= 0 || T <= 0 || nh <= 0 || nkv <= 0 || hd <= 0 || (!dq && !dk && !dv)) return;
    if (nh % nkv) {
        BL_FAIL("attention_backward: n_heads is not a multiple of n_kv_heads");
        return;
    }
    float *ds = NULL;
    if (dq || dk) {
        ds = (float *)bl_cuda_scratch_(BL_WS_ATT, (size_t)B * nh * T * T * sizeof(float));
        if (!ds) return;
        size_t smem = ((size_t)T + hd) * sizeof(float);
        if (smem_opt_in((const void *)attention_ds_kernel, smem)) return;
        BL_LAUNCH(dim3(T, nh, B), head_threads(hd), smem, bl_cuda_stream_(), attention_ds_kernel)(
            dq, ds, dout, att, k, v, lens, doc_start, T, nh, nkv, hd);
        if (BL_LAUNCHED("attention_ds")) return;
    }
    if (dk || dv) {
        unsigned threads = (unsigned)((hd + 31) / 32 * 32);
        BL_LAUNCH(dim3(T, nkv, B), threads > 256 ? 256 : threads, 0, bl_cuda_stream_(), attention_dkv_kernel)(
            dk, dv, ds, att, q, dout, lens, doc_start, T, nh, nkv, hd);
        BL_LAUNCHED("attention_dkv");
    }
}
