/* fwd_tool.c - drives the forward and the greedy decoder for
 * tests/py/test_forward_parity.py and bench/bench_forward.py.
 *
 *   fwd_tool forward MODEL B T IDS LENS LOGITS HIDDEN
 *       IDS: int32 [B*T], LENS: int32 [B] (raw little-endian files). Writes
 *       LOGITS float32 [B*T, vocab] and HIDDEN float32 [n_layers, B*T, dim]
 *       ("-" skips either).
 *   fwd_tool generate MODEL PROMPT MAX_NEW [nostop]
 *       PROMPT: int32 ids. Prints the greedy tokens, space-separated; nostop
 *       ignores the model's stop tokens.
 *   fwd_tool bench MODEL B T REPS
 *       Prints {"tokens_per_s", "gemm_gflops", "seconds"} as JSON.
 * Prints "error: ..." and exits 1 on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "nn/forward.h"
#include "nn/generate.h"

static void *read_raw(const char *path, size_t want, BlError *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return bl_fail(err, "cannot open %s", path), NULL;
    void *p = bl_malloc(want, err);
    if (p && fread(p, 1, want, f) != want) {
        bl_fail(err, "%s: expected %zu bytes", path, want);
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

static int write_raw(const char *path, const void *p, size_t n, BlError *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return bl_fail(err, "cannot create %s", path);
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : bl_fail(err, "writing %s failed", path);
}

static int run_forward(BlModel *m, char **argv, BlError *err) {
    int B = atoi(argv[0]), T = atoi(argv[1]), rc = -1;
    const char *logits_path = argv[4], *hidden_path = argv[5];
    size_t M = (size_t)B * T, D = m->cfg.dim, L = m->cfg.n_layers, V = m->cfg.vocab_size;
    int *ids = read_raw(argv[2], M * sizeof(int), err);
    int *lens = ids ? read_raw(argv[3], (size_t)B * sizeof(int), err) : NULL;
    float *logits = strcmp(logits_path, "-") ? bl_malloc(M * V * sizeof(float), err) : NULL;
    float *hid = strcmp(hidden_path, "-") ? bl_malloc(L * M * D * sizeof(float), err) : NULL;
    float **hidden = hid ? bl_malloc(L * sizeof(float *), err) : NULL;
    for (size_t l = 0; hidden && l < L; l++) hidden[l] = hid + l * M * D;
    BlForwardState s;
    if (lens && bl_build_forward_state(&s, m, bl_backend_cpu(), B, T, true, err) == 0) {
        rc = bl_forward(&s, ids, lens, NULL, B, T, logits, hidden, err);
        bl_free_forward_state(&s);
    }
    if (rc == 0 && logits) rc = write_raw(logits_path, logits, M * V * sizeof(float), err);
    if (rc == 0 && hid) rc = write_raw(hidden_path, hid, L * M * D * sizeof(float), err);
    free(ids);
    free(lens);
    free(logits);
    free(hid);
    free(hidden);
    return rc;
}

static int run_generate(BlModel *m, int argc, char **argv, BlError *err) {
    FILE *f = fopen(argv[0], "rb");
    if (!f) return bl_fail(err, "cannot open %s", argv[0]);
    fseek(f, 0, SEEK_END);
    int n = (int)(ftell(f) / (long)sizeof(int));
    fclose(f);
    int max_new = atoi(argv[1]), n_out = 0;
    if (argc > 2 && !strcmp(argv[2], "nostop")) m->n_stop_tokens = 0;
    int *prompt = read_raw(argv[0], (size_t)n * sizeof(int), err);
    int *out = prompt ? bl_malloc((size_t)(max_new > 0 ? max_new : 1) * sizeof(int), err) : NULL;
    int rc = out ? bl_generate_greedy(m, bl_backend_cpu(), prompt, n, max_new, NULL, NULL, out,
                                      &n_out, err)
                 : -1;
    for (int i = 0; rc == 0 && i < n_out; i++) printf(i ? " %d" : "%d", out[i]);
    if (rc == 0) printf("\n");
    free(prompt);
    free(out);
    return rc;
}

static int run_bench(BlModel *m, char **argv, BlError *err) {
    BlForwardBench r;
    if (bl_bench_forward(m, bl_backend_cpu(), atoi(argv[0]), atoi(argv[1]), atoi(argv[2]), &r, err))
        return -1;
    printf("{\"tokens_per_s\": %.3f, \"gemm_gflops\": %.3f, \"seconds\": %.6f}\n", r.tokens_per_s,
           r.gemm_gflops, r.seconds);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: fwd_tool forward|generate|bench MODEL ...\n");
        return 2;
    }
    const char *mode = argv[1];
    int need = !strcmp(mode, "forward") ? 9 : !strcmp(mode, "generate") ? 5 : !strcmp(mode, "bench") ? 6 : 0;
    if (!need || argc < need) {
        fprintf(stderr, "usage: fwd_tool forward|generate|bench MODEL ... (see the source)\n");
        return 2;
    }
    BlError err = {{0}};
    BlModel *m = NULL;
    int rc = bl_model_load(&m, argv[2], &err);
    if (rc == 0) {
        if (!strcmp(mode, "forward")) rc = run_forward(m, argv + 3, &err);
        else if (!strcmp(mode, "generate")) rc = run_generate(m, argc - 3, argv + 3, &err);
        else rc = run_bench(m, argv + 3, &err);
        bl_model_free(m);
    }
    if (rc) {
        printf("error: %s\n", err.msg);
        return 1;
    }
    return 0;
}
