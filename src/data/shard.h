/* shard.h - pre-tokenised corpus shards: token ids of whole documents, each
 * ending with the tokenizer's EOS, written once by `bitlab tokenize --corpus`
 * and memory-mapped by every later read (bitlab.corpus{shards = DIR}).
 *
 * Layout of DIR/shard-NNNNN.bin (all integers little-endian):
 *     offset  size  field
 *          0     8  magic "BLSHARD\0"
 *          8     4  version (1)
 *         12     4  token width in bytes: 2 when the vocabulary fits in
 *                   uint16 ids (vocab_size <= 65536), else 4
 *         16     8  n_tokens
 *         24     8  n_docs (>= 1)
 *         32     4  vocab_size of the tokenizer
 *         36     4  reserved (0)
 *         40    32  tokenizer id: bl_shard_tokenizer_id (sha256 of its vocabulary)
 *         72     -  ids [n_tokens] of the token width
 *      then zero padding to a multiple of 8 bytes, then
 *                   uint64 doc_offsets [n_docs + 1]: document d is ids
 *                   [doc_offsets[d], doc_offsets[d+1]); the first is 0, the
 *                   last n_tokens, each at least one above the one before.
 * The file size must be exactly what the header implies. Files are written
 * atomically (io/atomic_file.h): a reader never sees half a shard. */
#ifndef BITLAB_SHARD_H
#define BITLAB_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

#define BL_SHARD_MAGIC "BLSHARD"  /* 8 bytes with its NUL */
#define BL_SHARD_VERSION 1u
#define BL_SHARD_HEADER_BYTES 72u

/* A shard's tokens as read from memory (a mapped file, or a fuzzer's input). */
typedef struct {
    int width;                 /* 2 or 4 */
    uint64_t n_tokens, n_docs;
    uint32_t vocab_size;
    unsigned char tokenizer_id[32];
    const unsigned char *ids;  /* n_tokens ids of width bytes */
    const unsigned char *doc_offsets; /* n_docs + 1 little-endian uint64 */
} BlShardView;

/* The tokenizer's identity: sha256 over its vocabulary size and, id by id,
 * the length-prefixed bytes each token decodes to (special tokens kept). Two
 * tokenizers with the same id for every piece share it; any other shard is
 * refused. */
void bl_shard_tokenizer_id(const BlTokenizer *t, unsigned char id[32]);

/* Checks data[size] against the layout above (magic, version, width, sizes,
 * every document offset) and fills v; errors name `name`. expect_id /
 * expect_vocab, when not NULL / 0, must match the header's. Ids are not
 * checked here (bl_shard_token is, per token, by its users). */
int bl_shard_parse(const unsigned char *data, size_t size, const char *name,
                   const unsigned char *expect_id, uint32_t expect_vocab, BlShardView *v,
                   BlError *err);
/* Token i / document d's range. */
uint32_t bl_shard_token(const BlShardView *v, uint64_t i);
void bl_shard_doc(const BlShardView *v, uint64_t d, uint64_t *begin, uint64_t *end);

/* A shard mapped from a file. */
typedef struct {
    BlShardView view;
    void *map;
    size_t map_size;
} BlShardFile;
int bl_shard_open(BlShardFile *f, const char *path, const unsigned char *expect_id,
                  uint32_t expect_vocab, BlError *err);
void bl_shard_close(BlShardFile *f);

/* Writing shards of about shard_tokens tokens each into DIR (created when
 * missing): documents are added whole, and a shard is written when the
 * documents it holds reach shard_tokens (so a shard ends at a document end). */
typedef struct {
    char *dir;
    uint64_t shard_tokens;
    int width;
    uint32_t vocab_size;
    unsigned char tokenizer_id[32];
    uint32_t *ids;             /* the shard being filled */
    uint64_t n_ids, cap_ids;
    uint64_t *offsets;         /* its document starts, then n_ids */
    uint64_t n_docs, cap_docs;
    uint64_t doc_open;         /* n_ids when the current document began */
    int n_written;             /* shards written so far */
    uint64_t tokens_written, docs_written;
} BlShardWriter;
int bl_shard_writer_init(BlShardWriter *w, const char *dir, const BlTokenizer *t,
                         uint64_t shard_tokens, BlError *err);
/* Appends ids to the current document; doc_end closes it. */
int bl_shard_writer_add(BlShardWriter *w, const int *ids, size_t n, int doc_end, BlError *err);
/* Writes the last shard (an open document is an error); w keeps its counts
 * until bl_shard_writer_free. */
int bl_shard_writer_finish(BlShardWriter *w, BlError *err);
void bl_shard_writer_free(BlShardWriter *w);

#endif
