/* shard.c - reading (mapped, validated) and writing pre-tokenised corpus
 * shards (layout in shard.h). */
#include "data/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sha256.h"
#include "io/atomic_file.h"

// ----------------------------------------------------------------------------
// little-endian fields

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p) {
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void wr64(unsigned char *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

/* Where the offset table starts: after the ids, padded to 8 bytes. */
static uint64_t table_at(uint64_t n_tokens, int width) {
    return (BL_SHARD_HEADER_BYTES + n_tokens * (uint64_t)width + 7) & ~(uint64_t)7;
}

// ----------------------------------------------------------------------------
// the tokenizer's identity

void bl_shard_tokenizer_id(const BlTokenizer *t, unsigned char id[32]) {
    BlSha256 s;
    bl_sha256_init(&s);
    int n = bl_tokenizer_vocab_size(t);
    unsigned char b[4];
    wr32(b, (uint32_t)n);
    bl_sha256_update(&s, b, 4);
    for (int i = 0; i < n; i++) {
        char *text = NULL;
        BlError err;
        /* an id that decodes to nothing (or fails) still counts, as length 0 */
        size_t len = bl_tokenizer_decode(t, &i, 1, false, &text, &err) == 0 ? strlen(text) : 0;
        wr32(b, (uint32_t)len);
        bl_sha256_update(&s, b, 4);
        bl_sha256_update(&s, text, len);
        free(text);
    }
    bl_sha256_final(&s, id, NULL);
}

// ----------------------------------------------------------------------------
// reading

int bl_shard_parse(const unsigned char *data, size_t size, const char *name,
                   const unsigned char *expect_id, uint32_t expect_vocab, BlShardView *v,
                   BlError *err) {
    memset(v, 0, sizeof *v);
    if (size < BL_SHARD_HEADER_BYTES)
        return bl_fail(err, "%s: truncated shard (%zu bytes, the header alone is %u)", name, size,
                       BL_SHARD_HEADER_BYTES);
    if (memcmp(data, BL_SHARD_MAGIC, 8) != 0)
        return bl_fail(err, "%s: not a bitlab token shard (bad magic)", name);
    uint32_t version = rd32(data + 8);
    if (version != BL_SHARD_VERSION)
        return bl_fail(err, "%s: shard version %u, this bitlab reads version %u", name, version,
                       BL_SHARD_VERSION);
    uint32_t width = rd32(data + 12);
    if (width != 2 && width != 4) return bl_fail(err, "%s: token width %u is not 2 or 4", name, width);
    v->width = (int)width;
    v->n_tokens = rd64(data + 16);
    v->n_docs = rd64(data + 24);
    v->vocab_size = rd32(data + 32);
    memcpy(v->tokenizer_id, data + 40, 32);
    if (v->vocab_size == 0 || (width == 2 && v->vocab_size > 65536))
        return bl_fail(err, "%s: vocabulary size %u does not fit the token width %u", name,
                       v->vocab_size, width);
    if (expect_vocab && v->vocab_size != expect_vocab)
        return bl_fail(err, "%s: written for a vocabulary of %u tokens, the model has %u "
                            "(re-tokenise with this model)", name, v->vocab_size, expect_vocab);
    if (expect_id && memcmp(v->tokenizer_id, expect_id, 32) != 0)
        return bl_fail(err, "%s: written with another tokenizer than the model's (re-tokenise "
                            "with this model)", name);
    /* the sizes, without overflow: each count below 2^40 keeps every product in range */
    if (v->n_docs == 0 || v->n_docs > v->n_tokens || v->n_tokens >> 40)
        return bl_fail(err, "%s: %llu documents of %llu tokens is not a shard", name,
                       (unsigned long long)v->n_docs, (unsigned long long)v->n_tokens);
    uint64_t at = table_at(v->n_tokens, v->width);
    uint64_t want = at + 8 * (v->n_docs + 1);
    if ((uint64_t)size != want)
        return bl_fail(err, "%s: %s shard: %zu bytes where its header implies %llu", name,
                       (uint64_t)size < want ? "truncated" : "oversized", size,
                       (unsigned long long)want);
    v->ids = data + BL_SHARD_HEADER_BYTES;
    v->doc_offsets = data + at;
    uint64_t prev = rd64(v->doc_offsets);
    if (prev != 0) return bl_fail(err, "%s: the first document offset is not 0", name);
    for (uint64_t d = 1; d <= v->n_docs; d++) {
        uint64_t o = rd64(v->doc_offsets + 8 * d);
        if (o <= prev || o > v->n_tokens)
            return bl_fail(err, "%s: document offset %llu (%llu) is not above the one before "
                                "and at most the token count", name, (unsigned long long)d,
                           (unsigned long long)o);
        prev = o;
    }
    if (prev != v->n_tokens)
        return bl_fail(err, "%s: the documents end at %llu, the shard holds %llu tokens", name,
                       (unsigned long long)prev, (unsigned long long)v->n_tokens);
    return 0;
}

uint32_t bl_shard_token(const BlShardView *v, uint64_t i) {
    const unsigned char *p = v->ids + i * (uint64_t)v->width;
    return v->width == 2 ? (uint32_t)p[0] | (uint32_t)p[1] << 8 : rd32(p);
}

void bl_shard_doc(const BlShardView *v, uint64_t d, uint64_t *begin, uint64_t *end) {
    *begin = rd64(v->doc_offsets + 8 * d);
    *end = rd64(v->doc_offsets + 8 * (d + 1));
}

int bl_shard_open(BlShardFile *f, const char *path, const unsigned char *expect_id,
                  uint32_t expect_vocab, BlError *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return bl_fail(err, "%s: cannot open (%s)", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return bl_fail(err, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (map == MAP_FAILED) return bl_fail(err, "%s: cannot map (%s)", path, strerror(errno));
    if (bl_shard_parse(map, size, path, expect_id, expect_vocab, &f->view, err)) {
        if (map) munmap(map, size);
        return -1;
    }
    f->map = map;
    f->map_size = size;
    return 0;
}

void bl_shard_close(BlShardFile *f) {
    if (f->map) munmap(f->map, f->map_size);
    memset(f, 0, sizeof *f);
}

// ----------------------------------------------------------------------------
// writing

int bl_shard_writer_init(BlShardWriter *w, const char *dir, const BlTokenizer *t,
                         uint64_t shard_tokens, BlError *err) {
    memset(w, 0, sizeof *w);
    if (shard_tokens == 0) return bl_fail(err, "shards: a shard of 0 tokens");
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return bl_fail(err, "%s: cannot create the folder (%s)", dir, strerror(errno));
    w->dir = strdup(dir);
    if (!w->dir) return bl_fail(err, "shards: out of memory");
    w->shard_tokens = shard_tokens;
    w->vocab_size = (uint32_t)bl_tokenizer_vocab_size(t);
    w->width = w->vocab_size <= 65536 ? 2 : 4;
    bl_shard_tokenizer_id(t, w->tokenizer_id);
    return 0;
}

void bl_shard_writer_free(BlShardWriter *w) {
    free(w->dir);
    free(w->ids);
    free(w->offsets);
    memset(w, 0, sizeof *w);
}

static int grow(void **p, uint64_t *cap, uint64_t need, size_t elem, BlError *err) {
    if (need <= *cap) return 0;
    uint64_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)(c * elem));
    if (!q) return bl_fail(err, "shards: out of memory for %llu entries", (unsigned long long)c);
    *p = q;
    *cap = c;
    return 0;
}

/* Writes the documents held as the next shard file, atomically. */
static int flush_shard(BlShardWriter *w, BlError *err) {
    if (w->n_docs == 0) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/shard-%05d.bin", w->dir, w->n_written);
    unsigned char h[BL_SHARD_HEADER_BYTES] = {0};
    memcpy(h, BL_SHARD_MAGIC, 8);
    wr32(h + 8, BL_SHARD_VERSION);
    wr32(h + 12, (uint32_t)w->width);
    wr64(h + 16, w->n_ids);
    wr64(h + 24, w->n_docs);
    wr32(h + 32, w->vocab_size);
    memcpy(h + 40, w->tokenizer_id, 32);
    BlAtomicFile a;
    if (bl_atomic_open(&a, path, err)) return -1;
    bl_atomic_write(&a, h, sizeof h);
    unsigned char buf[8192];
    size_t k = 0;
    for (uint64_t i = 0; i < w->n_ids; i++) {
        if (w->width == 2) {
            buf[k++] = (unsigned char)w->ids[i];
            buf[k++] = (unsigned char)(w->ids[i] >> 8);
        } else {
            wr32(buf + k, w->ids[i]);
            k += 4;
        }
        if (k == sizeof buf) bl_atomic_write(&a, buf, k), k = 0;
    }
    uint64_t pad = table_at(w->n_ids, w->width) - (BL_SHARD_HEADER_BYTES + w->n_ids * w->width);
    memset(buf + k, 0, (size_t)pad);
    bl_atomic_write(&a, buf, k + (size_t)pad);
    for (uint64_t d = 0; d <= w->n_docs; d++) {
        wr64(buf, d < w->n_docs ? w->offsets[d] : w->n_ids);
        bl_atomic_write(&a, buf, 8);
    }
    if (bl_atomic_commit(&a, err)) return -1;
    w->n_written++;
    w->tokens_written += w->n_ids;
    w->docs_written += w->n_docs;
    w->n_ids = w->n_docs = w->doc_open = 0;
    return 0;
}

int bl_shard_writer_add(BlShardWriter *w, const int *ids, size_t n, int doc_end, BlError *err) {
    if (grow((void **)&w->ids, &w->cap_ids, w->n_ids + n, sizeof *w->ids, err)) return -1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= w->vocab_size)
            return bl_fail(err, "shards: token %d is outside the vocabulary", ids[i]);
        w->ids[w->n_ids++] = (uint32_t)ids[i];
    }
    if (!doc_end || w->n_ids == w->doc_open) return 0;
    if (grow((void **)&w->offsets, &w->cap_docs, w->n_docs + 1, sizeof *w->offsets, err)) return -1;
    w->offsets[w->n_docs++] = w->doc_open;
    w->doc_open = w->n_ids;
    return w->n_ids >= w->shard_tokens ? flush_shard(w, err) : 0;
}

int bl_shard_writer_finish(BlShardWriter *w, BlError *err) {
    int rc = w->n_ids != w->doc_open ? bl_fail(err, "shards: the last document was not closed")
                                      : flush_shard(w, err);
    if (rc == 0 && w->n_written == 0) rc = bl_fail(err, "shards: no documents to write");
    return rc;
}
