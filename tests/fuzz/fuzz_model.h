/* fuzz_model.h - the in-memory model the checkpoint and trace harnesses and
 * the seed writer (fuzz_seeds.c) share: a seeded random Llama of two layers,
 * dim 16, vocabulary 40 (tests/c/tiny_model.h), so the seeds match it. */
#ifndef BITLAB_FUZZ_MODEL_H
#define BITLAB_FUZZ_MODEL_H

#include "../c/tiny_model.h"

static inline BlModel *fz_model(void) {
    (void)tiny_free; /* for the harnesses that keep theirs for the process */
    return tiny_model(BL_ARCH_LLAMA, 16, 2, 2, 24, 40, 0xf022ull);
}

#endif
