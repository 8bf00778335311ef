/* fuzz_seeds.c - writes the seed corpora that need bitlab itself: valid
 * checkpoints of students of fuzz_model.h's model (several option sets and
 * adapter stacks) into OUT/checkpoint/, and teacher traces of that model on
 * a few token sequences (no hidden states, f32, f16) into OUT/trace/.
 *
 *     fuzz_seeds OUT        (the folders must exist; scripts/fuzz.sh) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "fuzz_model.h"
#include "train/checkpoint.h"
#include "trace/trace.h"

static void check(int rc, const BlError *err, const char *what) {
    if (rc == 0) return;
    fprintf(stderr, "fuzz_seeds: %s: %s\n", what, err->msg);
    exit(1);
}

static void checkpoint(const BlModel *m, const char *out, const char *name, BlStudentConfig cfg,
                       const int *ranks, int n_ranks, const char *json) {
    BlError err;
    BlStudent st;
    check(bl_build_student(&st, m, &cfg, &err), &err, name);
    for (int i = 0; i < n_ranks; i++)
        check(bl_student_add_adapter(&st, ranks[i], 2.0f * ranks[i], 7 + i, &err), &err, name);
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint/%s.ckpt", out, name);
    check(bl_checkpoint_save(path, &st, NULL, json, &err), &err, path);
    bl_free_student(&st);
}

static void trace(const BlModel *m, const char *out, const char *name, BlTraceHidden hidden, int K) {
    BlError err;
    BlDataset d = {.model = m}; /* as bl_dataset_init leaves it; the model has no tokenizer */
    static const int seqs[][6] = {{1, 5, 9, 2, 0, 0}, {3, 3, 3, 0, 0, 0}, {39, 0, 17, 22, 8, 4}};
    static const int lens[] = {4, 3, 6};
    for (int i = 0; i < 3; i++) check(bl_dataset_add_tokens(&d, seqs[i], NULL, lens[i], &err), &err, "dataset");
    BlTraceConfig c = {.K = K, .tau = 1.3f, .seq = 5, .batch = 2, .hidden = hidden};
    char path[4096];
    snprintf(path, sizeof path, "%s/trace/%s.trace", out, name);
    BlTraceSummary s;
    check(bl_trace_write(m, &d, &c, path, &s, &err), &err, path);
    bl_dataset_free(&d);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds OUT\n");
        return 2;
    }
    const char *out = argv[1];
    BlModel *m = fz_model();
    static const int r1[] = {2}, r3[] = {2, 1, 3};
    checkpoint(m, out, "plain", (BlStudentConfig){.lambda = 1.0f, .act_bits = 8}, NULL, 0, NULL);
    checkpoint(m, out, "one", (BlStudentConfig){.lambda = 0.5f, .act_bits = 8}, r1, 1,
               "{\"step\":3,\"knobs\":{\"lr\":0.001},\"rng\":\"12345\"}");
    checkpoint(m, out, "all", (BlStudentConfig){.lambda = 1.0f, .act_bits = 4, .subln = true,
               .post_attn_norm = true, .dense = true}, r3, 3, "{}");
    /* the trace names the model by a file's sha256: the first checkpoint's */
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s/checkpoint/plain.ckpt", out);
    m->path = mpath;
    trace(m, out, "topk", BL_TRACE_HIDDEN_NONE, 3);
    trace(m, out, "hidden32", BL_TRACE_HIDDEN_F32, 2);
    trace(m, out, "hidden16", BL_TRACE_HIDDEN_F16, 1);
    m->path = NULL;
    tiny_free(m);
    return 0;
}
