/* sample_tool.c - N draws of bl_sample_token on one logit vector, for
 * tests/py/test_sample.py's comparison against an independent numpy sampler.
 *
 * sample_tool TEMPERATURE TOP_P N SEED < logits (whitespace-separated floats)
 * prints the count of each token id, one line, space-separated. Draw i uses
 * bl_sample_uniform(SEED, 0, i), the stream bl_sample gives request 0. */
#include <stdio.h>
#include <stdlib.h>

#include "nn/sample.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: sample_tool TEMPERATURE TOP_P N SEED < logits\n");
        return 2;
    }
    float temperature = strtof(argv[1], NULL), top_p = strtof(argv[2], NULL);
    long n = strtol(argv[3], NULL, 10);
    uint64_t seed = strtoull(argv[4], NULL, 10);
    float *logits = NULL;
    int vocab = 0, cap = 0;
    float x;
    while (scanf("%f", &x) == 1) {
        if (vocab == cap) {
            cap = cap ? 2 * cap : 64;
            float *grown = realloc(logits, sizeof(float) * (size_t)cap);
            if (!grown) return 1;
            logits = grown;
        }
        logits[vocab++] = x;
    }
    long *counts = calloc((size_t)(vocab ? vocab : 1), sizeof *counts);
    void *scratch = malloc(bl_sample_scratch_bytes(vocab));
    if (vocab == 0 || !counts || !scratch) {
        fprintf(stderr, "sample_tool: no logits on stdin (or out of memory)\n");
        return 1;
    }
    for (long i = 0; i < n; i++)
        counts[bl_sample_token(logits, vocab, temperature, top_p,
                               bl_sample_uniform(seed, 0, (int)i), scratch)]++;
    for (int v = 0; v < vocab; v++) printf(v ? " %ld" : "%ld", counts[v]);
    printf("\n");
    free(logits);
    free(counts);
    free(scratch);
    return 0;
}
