/* fuzz_shard.c - libFuzzer harness: the input is a token shard
 * (data/shard.h), parsed as it is; then again with its document count set to
 * what the input's size leaves room for (when the header is whole and its
 * token count fits), so that mutations reach the offset table and the ids
 * instead of dying at the size check. Every document of a shard that parses
 * is read, token by token. */
#include <stdlib.h>
#include <string.h>

#include "data/shard.h"

static void read_all(const BlShardView *v) {
    volatile uint32_t sink = 0;
    for (uint64_t d = 0; d < v->n_docs; d++) {
        uint64_t b, e;
        bl_shard_doc(v, d, &b, &e);
        for (uint64_t i = b; i < e; i++) sink += bl_shard_token(v, i);
    }
    (void)sink;
}

static void parse(const unsigned char *data, size_t size) {
    BlShardView v;
    BlError err;
    if (bl_shard_parse(data, size, "fuzz", NULL, 0, &v, &err) == 0) read_all(&v);
}

static uint64_t rd64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    parse(data, size);
    if (size < BL_SHARD_HEADER_BYTES || size > (1u << 20)) return 0;
    uint32_t width = data[12] == 4 ? 4 : 2;
    uint64_t n_tok = rd64(data + 16);
    uint64_t at = (BL_SHARD_HEADER_BYTES + n_tok * width + 7) & ~(uint64_t)7;
    if (n_tok > size || at + 16 > size) return 0;
    unsigned char *copy = malloc(size);
    if (!copy) return 0;
    memcpy(copy, data, size);
    uint64_t n_docs = (size - at) / 8 - 1;
    for (int i = 0; i < 8; i++) copy[24 + i] = (unsigned char)(n_docs >> (8 * i));
    parse(copy, (size_t)(at + 8 * (n_docs + 1)));
    free(copy);
    return 0;
}
