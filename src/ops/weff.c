/* weff.c - the merged and effective weights of weff.h. */
#include "ops/weff.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "ops/parallel.h"
#include "ops/quant.h"

/* Rows per block: a whole number of absmean blocks when that stays within
 * ALIGNED_MAX floats (then the block sums come out of the merge pass);
 * otherwise about ROW_FLOATS floats' worth of rows, and the sums in a pass of
 * their own. */
enum { ALIGNED_MAX = 1 << 18, ROW_FLOATS = 1 << 14 };

static size_t gcd(size_t a, size_t b) {
    while (b) {
        size_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

typedef struct {
    float *out;
    const BlMergeSpec *m;
    int rows;      /* per block */
    double *sums;  /* per absmean block, or NULL when not aligned */
} MergeJob;

static void merge_blocks(void *ctx, long b0, long b1) {
    const MergeJob *j = ctx;
    const BlMergeSpec *m = j->m;
    size_t in = (size_t)m->in, n = (size_t)m->out * in;
    for (long b = b0; b < b1; b++) {
        int o0 = (int)(b * j->rows), o1 = o0 + j->rows < m->out ? o0 + j->rows : m->out;
        size_t e0 = (size_t)o0 * in, e1 = (size_t)o1 * in;
        float *dst = j->out + e0;
        if (j->out != m->w) memcpy(dst, m->w + e0, sizeof(float) * (e1 - e0));
        if (m->rank > 0) /* the pool runs this block: one thread's sgemm */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, o1 - o0, m->in, m->rank, 1.0f,
                        m->lora_b + (size_t)o0 * m->rank, m->rank, m->lora_a, m->in, 1.0f, dst,
                        m->in);
        if (m->dense)
            for (size_t i = e0; i < e1; i++) j->out[i] += m->dense[i];
        if (!j->sums) continue;
        for (size_t a = e0; a < e1; a += BL_ABSMEAN_BLOCK) {
            size_t len = n - a < BL_ABSMEAN_BLOCK ? n - a : BL_ABSMEAN_BLOCK;
            j->sums[a / BL_ABSMEAN_BLOCK] = bl_abs_sum_block(j->out + a, len);
        }
    }
}

float bl_weff_merge(float *merged, const BlMergeSpec *m) {
    size_t in = (size_t)m->in, n = (size_t)m->out * in;
    if (n == 0) return bl_wq_scale(merged, 0);
    size_t aligned = BL_ABSMEAN_BLOCK / gcd(BL_ABSMEAN_BLOCK, in); /* rows */
    size_t nb = (n + BL_ABSMEAN_BLOCK - 1) / BL_ABSMEAN_BLOCK;
    double *sums = aligned * in <= ALIGNED_MAX ? malloc(sizeof(double) * nb) : NULL;
    int rows = sums ? (int)aligned : (int)(ROW_FLOATS / in > 0 ? ROW_FLOATS / in : 1);
    MergeJob j = {.out = merged, .m = m, .rows = rows, .sums = sums};
    long blocks = (m->out + rows - 1) / rows;
    bl_parallel_for(blocks, (long)n * (2 + m->rank), merge_blocks, &j);
    float s = sums ? bl_wq_scale_of(sums, nb, n) : bl_wq_scale(merged, n);
    free(sums);
    return s;
}

void bl_weff_build(float *weff, const BlMergeSpec *m, float lambda) {
    float s = bl_weff_merge(weff, m);
    bl_weff_scaled(weff, weff, (size_t)m->out * m->in, lambda, s);
}
