/* ternary_gemm.c - bl_int8_gemm and the pieces around it (ternary_gemm.h):
 * the kernel choice, the int8 activations, the packed ternary weights, the
 * plain C micro-kernel and the threaded driver. The SIMD micro-kernels live
 * in ternary_gemm_avx512.c and ternary_gemm_avx2.c. */
#include "ops/ternary_gemm.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ops/parallel.h"
#include "ops/quant.h"
#include "ops/ternary_gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

// ----------------------------------------------------------------------------
// which kernel

static const char *const KERNEL_NAMES[BL_INT8_KERNELS] = {"c", "avx2vnni", "avx512vnni"};

const char *bl_int8_kernel_name(BlInt8Kernel k) {
    return (unsigned)k < BL_INT8_KERNELS ? KERNEL_NAMES[k] : "?";
}

#if defined(__x86_64__) || defined(__i386__)
/* CPUID and XCR0 by hand rather than __builtin_cpu_supports, which clang 14
 * (the fuzz build) does not know "avxvnni" by: the instructions, and the OS
 * saving the ymm (XCR0 bits 1-2) and zmm/mask state (bits 5-7) */
static unsigned detect_kernels(void) {
    unsigned a, b, c, d, mask = 1u << BL_INT8_C;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return mask; /* OSXSAVE */
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    (void)xhi;
    bool ymm_os = (xlo & 0x6u) == 0x6u, zmm_os = (xlo & 0xe6u) == 0xe6u;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return mask;
    unsigned max_sub = a;
    bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512bw = b & (1u << 30);
    bool avx512vnni = c & (1u << 11), avxvnni = false;
    if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) avxvnni = a & (1u << 4);
    if (ymm_os && avx2 && avxvnni) mask |= 1u << BL_INT8_AVX2VNNI;
    if (zmm_os && avx512f && avx512bw && avx512vnni) mask |= 1u << BL_INT8_AVX512VNNI;
    return mask;
}
static const BlTgTileFn TILE_FN[BL_INT8_KERNELS] = {bl_tg_tile_c, bl_tg_tile_avx2vnni,
                                                    bl_tg_tile_avx512vnni};
#else
static unsigned detect_kernels(void) { return 1u << BL_INT8_C; }
static const BlTgTileFn TILE_FN[BL_INT8_KERNELS] = {bl_tg_tile_c, NULL, NULL};
#endif

/* cached: CPUID traps to the hypervisor in a VM; a race computes it twice */
static _Atomic unsigned kernel_mask;

bool bl_int8_kernel_supported(BlInt8Kernel k) {
    unsigned m = atomic_load(&kernel_mask);
    if (!m) atomic_store(&kernel_mask, m = detect_kernels());
    return (unsigned)k < BL_INT8_KERNELS && (m >> k & 1u);
}

int bl_int8_kernel_select(BlInt8Kernel *k, BlError *err) {
    const char *s = getenv("BITLAB_INT8_KERNEL");
    if (s && *s) {
        for (int i = 0; i < BL_INT8_KERNELS; i++)
            if (!strcmp(s, KERNEL_NAMES[i])) {
                if (!bl_int8_kernel_supported((BlInt8Kernel)i))
                    return bl_fail(err, "BITLAB_INT8_KERNEL=%s: this CPU cannot execute it", s);
                *k = (BlInt8Kernel)i;
                return 0;
            }
        return bl_fail(err, "BITLAB_INT8_KERNEL=%s: not one of c, avx2vnni, avx512vnni", s);
    }
    *k = bl_int8_kernel_supported(BL_INT8_AVX512VNNI) ? BL_INT8_AVX512VNNI
         : bl_int8_kernel_supported(BL_INT8_AVX2VNNI) ? BL_INT8_AVX2VNNI
                                                       : BL_INT8_C;
    return 0;
}

// ----------------------------------------------------------------------------
// buffers: one 64-byte aligned block per struct, laid out here

static size_t up64(size_t n) { return (n + 63) / 64 * 64; }
static int round_up(int n, int k) { return (n + k - 1) / k * k; }

static size_t acts_bytes(int M, int K) {
    size_t Mp = (size_t)round_up(M, BL_TG_MR), Kp = (size_t)round_up(K, 4);
    return up64(Mp * Kp) + up64(sizeof(int32_t) * Mp) + up64(sizeof(float) * (size_t)M);
}

static void acts_layout(BlActsI8 *a, int M, int K, void *mem) {
    a->M = M, a->K = K, a->Mp = round_up(M, BL_TG_MR), a->Kp = round_up(K, 4);
    char *p = mem;
    a->q = (int8_t *)p;
    p += up64((size_t)a->Mp * a->Kp);
    a->rowsum = (int32_t *)(void *)p;
    p += up64(sizeof(int32_t) * a->Mp);
    a->scale = (float *)(void *)p;
}

static size_t packed_bytes(int N, int K) {
    return (size_t)round_up(N, BL_TG_NB) * (size_t)round_up(K, 4);
}

static void packed_layout(BlTernaryPacked *p, int N, int K, void *mem) {
    p->N = N, p->K = K, p->Np = round_up(N, BL_TG_NB), p->Kp = round_up(K, 4);
    p->w = mem;
    p->scale = 0.0f;
}

static void *alloc64(size_t n, BlError *err) {
    void *p = aligned_alloc(64, up64(n ? n : 1));
    if (!p) bl_fail(err, "out of memory (%zu bytes)", n);
    return p;
}

int bl_acts_i8_alloc(BlActsI8 *a, int M, int K, BlError *err) {
    memset(a, 0, sizeof *a);
    void *mem = alloc64(acts_bytes(M, K), err);
    if (!mem) return -1;
    acts_layout(a, M, K, mem);
    return 0;
}

void bl_acts_i8_free(BlActsI8 *a) {
    free(a->q); /* the block starts with q */
    memset(a, 0, sizeof *a);
}

int bl_ternary_packed_alloc(BlTernaryPacked *p, int N, int K, BlError *err) {
    memset(p, 0, sizeof *p);
    void *mem = alloc64(packed_bytes(N, K), err);
    if (!mem) return -1;
    packed_layout(p, N, K, mem);
    return 0;
}

void bl_ternary_packed_free(BlTernaryPacked *p) {
    free(p->w);
    memset(p, 0, sizeof *p);
}

// ----------------------------------------------------------------------------
// activations: bl_actq's arithmetic (quant.c), stopping at the integer level

typedef struct {
    BlActsI8 *a;
    const float *x;
    int Q;
} ActqJob;

static void actq_rows(void *ctx, long m0, long m1) {
    const ActqJob *j = ctx;
    BlActsI8 *a = j->a;
    int K = a->K;
    float lo = (float)(-j->Q - 1), hi = (float)j->Q;
    for (long m = m0; m < m1; m++) {
        const float *xr = j->x + (size_t)m * K;
        int8_t *qr = a->q + (size_t)m * a->Kp;
        float s = (float)j->Q / fmaxf(bl_absmax(xr, K), BL_QUANT_EPS);
        int32_t sum = 0;
        for (int i = 0; i < K; i++) {
            int v = (int)bl_round_clamp(xr[i] * s, lo, hi);
            qr[i] = (int8_t)v;
            sum += v;
        }
        memset(qr + K, 0, (size_t)(a->Kp - K));
        a->scale[m] = s;
        a->rowsum[m] = sum;
    }
}

int bl_actq_i8(BlActsI8 *a, const float *x, int bits, BlError *err) {
    if (bits != 8 && bits != 4)
        return bl_fail(err, "int8 activations: width %d bits is not 8 or 4", bits);
    ActqJob j = {.a = a, .x = x, .Q = bl_actq_levels(bits)};
    bl_parallel_for(a->M, (long)a->M * a->K * 4, actq_rows, &j);
    /* the padding rows of the last micro-tile: zero levels, zero sums */
    memset(a->q + (size_t)a->M * a->Kp, 0, (size_t)(a->Mp - a->M) * a->Kp);
    for (int m = a->M; m < a->Mp; m++) a->rowsum[m] = 0;
    return 0;
}

// ----------------------------------------------------------------------------
// weights: bl_wq_int8's ternary (quant.c), packed

typedef struct {
    BlTernaryPacked *p;
    const float *w;
    float s;
} PackJob;

/* quant.c's ternary(), plus 1: clamp(round(w·s), −1, 1) + 1 */
static inline int ternary1(float w, float s) {
    float v = w * s;
    return 1 + (v >= 0.5f) - (v <= -0.5f);
}

/* A block in chunks of CHUNK k: the ternary bytes of its 64 rows, row-major
 * (a loop gcc vectorises), then moved to the packed layout 4 bytes at a
 * time; a chunk's rows stay in L1 between the two. */
enum { CHUNK = 256 };

static void pack_blocks(void *ctx, long b0, long b1) {
    const PackJob *j = ctx;
    const BlTernaryPacked *p = j->p;
    int K = p->K, G = p->Kp / 4;
    float s = j->s;
    uint32_t rows[BL_TG_NB][CHUNK / 4]; /* written as bytes, moved as words */
    for (long b = b0; b < b1; b++) {
        uint8_t *blk = p->w + (size_t)b * G * 4 * BL_TG_NB;
        int nr = p->N - (int)b * BL_TG_NB; /* real rows in this block */
        nr = nr < BL_TG_NB ? nr : BL_TG_NB;
        for (int k0 = 0; k0 < p->Kp; k0 += CHUNK) {
            int kn = p->Kp - k0 < CHUNK ? p->Kp - k0 : CHUNK; /* a multiple of 4 */
            int kr = K - k0 < kn ? K - k0 : kn;                /* of them inside K */
            for (int c = 0; c < BL_TG_NB; c++) {
                uint8_t *r = (uint8_t *)rows[c];
                if (c >= nr) {
                    memset(r, 0, (size_t)kn);
                    continue;
                }
                const float *wr = j->w + ((size_t)b * BL_TG_NB + c) * K + k0;
                for (int k = 0; k < kr; k++) r[k] = (uint8_t)ternary1(wr[k], s);
                memset(r + kr, 0, (size_t)(kn - kr));
            }
            uint32_t *dst = (uint32_t *)(void *)blk + (size_t)(k0 / 4) * BL_TG_NB;
            for (int g = 0; g < kn / 4; g++, dst += BL_TG_NB)
                for (int c = 0; c < BL_TG_NB; c++) dst[c] = rows[c][g];
        }
    }
}

void bl_ternary_pack(BlTernaryPacked *p, const float *w, float s) {
    PackJob j = {.p = p, .w = w, .s = s};
    p->scale = s;
    bl_parallel_for(p->Np / BL_TG_NB, (long)p->Np * p->Kp * 2, pack_blocks, &j);
}

// ----------------------------------------------------------------------------
// the plain C micro-kernel: the same tile, the same sums and the same
// epilogue arithmetic as the SIMD ones

void bl_tg_tile_c(const BlTgTile *t) {
    int32_t c[BL_TG_MR][BL_TG_NB];
    for (int r = 0; r < BL_TG_MR; r++)
        for (int j = 0; j < BL_TG_NB; j++) c[r][j] = -t->rowsum[r];
    for (int g = 0; g < t->groups; g++) {
        const uint8_t *w = t->w + (size_t)g * 4 * BL_TG_NB;
        for (int r = 0; r < BL_TG_MR; r++) {
            const int8_t *a = t->q + (size_t)r * t->ldq + 4 * g;
            for (int j = 0; j < BL_TG_NB; j++)
                c[r][j] += w[4 * j] * a[0] + w[4 * j + 1] * a[1] + w[4 * j + 2] * a[2] +
                           w[4 * j + 3] * a[3];
        }
    }
    for (int r = 0; r < t->rows; r++)
        for (int j = 0; j < t->cols; j++) {
            size_t o = (size_t)r * t->ldc + j;
            if (!t->y) {
                t->acc[o] = c[r][j];
                continue;
            }
            float v = (float)c[r][j] / t->div[r];
            t->y[o] = t->bias ? v + t->bias[j] : v;
        }
}

// ----------------------------------------------------------------------------
// the driver: one item per (column block, micro-tile of rows), column block
// major so that a thread's consecutive tiles share the weight block; the
// sums are integers, so how the items fall to threads changes no bit

typedef struct {
    BlTgTileFn fn;
    const BlActsI8 *a;
    const BlTernaryPacked *w;
    int32_t *acc;
    float *y;
    const float *bias;
    int tiles_m;
} GemmJob;

static void gemm_items(void *ctx, long i0, long i1) {
    const GemmJob *j = ctx;
    const BlActsI8 *a = j->a;
    const BlTernaryPacked *w = j->w;
    int G = w->Kp / 4;
    for (long i = i0; i < i1; i++) {
        int cb = (int)(i / j->tiles_m), m0 = (int)(i % j->tiles_m) * BL_TG_MR;
        int n0 = cb * BL_TG_NB, rows = a->M - m0, cols = w->N - n0;
        float div[BL_TG_MR];
        BlTgTile t = {.q = a->q + (size_t)m0 * a->Kp,
                      .ldq = a->Kp,
                      .rowsum = a->rowsum + m0,
                      .w = w->w + (size_t)cb * G * 4 * BL_TG_NB,
                      .groups = G,
                      .rows = rows < BL_TG_MR ? rows : BL_TG_MR,
                      .cols = cols < BL_TG_NB ? cols : BL_TG_NB,
                      .ldc = w->N,
                      .acc = j->acc ? j->acc + (size_t)m0 * w->N + n0 : NULL,
                      .y = j->y ? j->y + (size_t)m0 * w->N + n0 : NULL,
                      .div = div,
                      .bias = j->bias ? j->bias + n0 : NULL};
        if (j->y)
            for (int r = 0; r < t.rows; r++) div[r] = a->scale[m0 + r] * w->scale;
        j->fn(&t);
    }
}

static int run_gemm(BlInt8Kernel k, int32_t *acc, float *y, const float *bias, const BlActsI8 *a,
                    const BlTernaryPacked *w, BlError *err) {
    if (!bl_int8_kernel_supported(k))
        return bl_fail(err, "int8 gemm: this CPU cannot execute the %s kernel",
                       bl_int8_kernel_name(k));
    if (a->K != w->K)
        return bl_fail(err, "int8 gemm: activations have K = %d, weights K = %d", a->K, w->K);
    if (a->M <= 0 || w->N <= 0) return 0;
    GemmJob j = {.fn = TILE_FN[k], .a = a, .w = w, .acc = acc, .y = y, .bias = bias,
                 .tiles_m = a->Mp / BL_TG_MR};
    long tiles = (long)(w->Np / BL_TG_NB) * j.tiles_m;
    bl_parallel_for(tiles, tiles * BL_TG_MR * BL_TG_NB * (long)w->Kp, gemm_items, &j);
    return 0;
}

int bl_int8_gemm(BlInt8Kernel k, int32_t *acc, const BlActsI8 *a, const BlTernaryPacked *w,
                 BlError *err) {
    return run_gemm(k, acc, NULL, NULL, a, w, err);
}

int bl_int8_gemm_scaled(BlInt8Kernel k, float *y, const float *bias, const BlActsI8 *a,
                        const BlTernaryPacked *w, BlError *err) {
    return run_gemm(k, NULL, y, bias, a, w, err);
}

// ----------------------------------------------------------------------------
// the whole product, in scratch kept between calls: one block for the
// merged weight (when there is anything to merge), the activations and the
// packed weights, grown as needed; a call that finds it in use (another
// thread's product) allocates its own for the call

static struct {
    pthread_mutex_t mu;
    void *mem;
    size_t cap;
} scratch = {.mu = PTHREAD_MUTEX_INITIALIZER};

int bl_ternary_linear(float *y, const float *x, const BlMergeSpec *w, const float *bias, int M,
                      int bits, BlError *err) {
    if (bits != 8 && bits != 4)
        return bl_fail(err, "ternary linear: activation width %d is not 8 or 4", bits);
    BlInt8Kernel k;
    if (bl_int8_kernel_select(&k, err)) return -1;
    int N = w->out, K = w->in;
    if (M <= 0 || N <= 0) return 0;
    bool merge = w->rank > 0 || w->dense;
    size_t n = (size_t)N * K, fl = merge ? up64(sizeof(float) * n) : 0;
    size_t act = up64(acts_bytes(M, K)), need = fl + act + packed_bytes(N, K);
    void *mem, *own = NULL;
    bool shared = pthread_mutex_trylock(&scratch.mu) == 0;
    if (shared && scratch.cap < need) {
        free(scratch.mem);
        scratch.mem = alloc64(need, err);
        scratch.cap = scratch.mem ? need : 0;
    }
    mem = shared ? scratch.mem : (own = alloc64(need, err));
    int rc = -1;
    if (mem) {
        float *merged = merge ? mem : NULL;
        float s = merge ? bl_weff_merge(merged, w) : bl_wq_scale(w->w, n);
        BlActsI8 a;
        BlTernaryPacked p;
        acts_layout(&a, M, K, (char *)mem + fl);
        packed_layout(&p, N, K, (char *)mem + fl + act);
        bl_actq_i8(&a, x, bits, err);
        bl_ternary_pack(&p, merge ? merged : w->w, s);
        rc = run_gemm(k, NULL, y, bias, &a, &p, err);
    }
    if (shared) pthread_mutex_unlock(&scratch.mu);
    free(own);
    return rc;
}
