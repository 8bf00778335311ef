/* weff.h - the student's effective weight of one BitLinear, built in one pass
 * over the matrix plus the ternarising pass (the scale needs the whole merged
 * matrix first):
 *   merged = W + B_cat·A_cat + dense,  Weff = (1−λ)·merged + λ·wq(merged)
 * where B_cat[out, rank]·A_cat[rank, in] is the LoRA stack as one product
 * (the α/r scales folded into B_cat). Row blocks are merged on the worker
 * pool and their |·| sums taken while they are in cache, in the blocks of
 * bl_wq_scale, so the scale is the same bits as bl_wq_scale(merged). */
#ifndef BITLAB_WEFF_H
#define BITLAB_WEFF_H

typedef struct {
    const float *w, *dense;       /* [out, in]; dense may be NULL */
    const float *lora_b, *lora_a; /* [out, rank], [rank, in]; rank 0: none */
    int rank, out, in;
} BlMergeSpec;

/* merged → out (may be w itself); returns bl_wq_scale(merged) */
float bl_weff_merge(float *merged, const BlMergeSpec *m);
/* Weff → weff (may be w itself) */
void bl_weff_build(float *weff, const BlMergeSpec *m, float lambda);

#endif
