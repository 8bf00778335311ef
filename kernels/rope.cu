// rope.cu - rotary embedding: one thread per (row, head, pair); the backward
// is the same rotation by −angle (see rope.cuh).
#include "common.cuh"

__global__ void rope_kernel(float *x, const int *pos, int M, int n_heads, int head_dim,
                            float theta, bool interleaved, float sign) {
    int half = head_dim / 2;
    size_t n = (size_t)M * n_heads * half;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < n;
         t += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(t % half);
        size_t mh = t / half;  // row·n_heads + head
        int m = (int)(mh / n_heads);
        // the angle in double as on the CPU: pos·θ^(−2i/hd) reaches thousands of
        // radians; reduced to [−π, π] in double (2π in two parts, so the
        // reduction is exact to ~1e-16 for any position), then sin and cos in
        // float: no double-precision sincos, whose slow path for large
        // arguments needs a local-memory stack (ptxas -warn-lmem-usage)
        double ang = pos[m] * pow((double)theta, -2.0 * i / head_dim);
        double k = rint(ang * 0.15915494309189535);  // 1/(2π)
        double r = fma(-k, 6.283185307179586, ang);
        r = fma(-k, 2.4492935982947064e-16, r);
        float sf, cf;
        __sincosf((float)r, &sf, &cf);  // |r| ≤ π: abs error ≤ 2^-21.4
        float c = cf, s = sign * sf;
        float *xh = x + mh * head_dim;
        int i0 = interleaved ? 2 * i : i, i1 = interleaved ? 2 * i + 1 : i + half;
        float a = xh[i0], b = xh[i1];
        xh[i0] = a * c - b * s;
        xh[i1] = a * s + b * c;
    }
}

static void rope(float *x, const int *pos, int M, int n_heads, int head_dim, float theta,
                 bool interleaved, float sign) {
    size_t n = (size_t)M * n_heads * (head_dim / 2);
    if (n == 0) return;
    BL_LAUNCH(bl_blocks(n, 256), 256, 0, bl_cuda_stream_(), rope_kernel)(x, pos, M, n_heads, head_dim,
                                                                  theta, interleaved, sign);
    BL_LAUNCHED("rope");
}

extern "C" void bl_cuda_rope(float *x, const int *pos, int M, int n_heads, int head_dim,
                             float theta, bool interleaved) {
    rope(x, pos, M, n_heads, head_dim, theta, interleaved, 1.0f);
}

extern "C" void bl_cuda_rope_backward(float *dx, const int *pos, int M, int n_heads, int head_dim,
                                      float theta, bool interleaved) {
    rope(dx, pos, M, n_heads, head_dim, theta, interleaved, -1.0f);
}
