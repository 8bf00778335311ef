/* corpus.h - a training corpus streamed from disk and packed into full rows.
 *
 * Sources: plain-text files, directories (recursive, sorted, filtered to
 * .txt / .md / .jsonl, hidden names skipped) and glob(3) patterns; or a folder
 * of pre-tokenised shards (data/shard.h). A .txt / .md file (or any file
 * named explicitly that is not .jsonl) is one document; a .jsonl line is one
 * document: its "text" string, or its "messages" rendered with the model's
 * chat template (every token a target). A document's tokens are the
 * tokenizer's encoding with its special tokens (BOS), then EOS unless the
 * encoding already ends with it.
 *
 * Reading is bounded: a text file is read in pieces of about piece_bytes,
 * cut before a paragraph break ("\n\n"; else a line break, a space, a UTF-8
 * boundary) and tokenised piece by piece (the pieces after the first without
 * special tokens), so a document of any size streams. A background thread
 * tokenises ahead into a queue of at most queue_tokens tokens.
 *
 * Packing: documents are laid end to end in rows of T tokens, no padding; a
 * document longer than what is left of a row continues at the start of the
 * next (a new segment there). Each token carries doc_start, the index in its
 * row where its segment starts, and the row mask selects row t when token
 * t+1 is in the same segment (data/dataset.h's convention: t predicts t+1).
 * Epochs wrap, so every row is full (lens = T).
 *
 * Order: files (or shards) are visited in a permutation drawn per epoch from
 * the seed (seed 0 = sorted order), documents within a file in file order.
 *
 * Position: the consumer's, between batches. seek(position) makes the
 * batches that follow exactly those that followed when it was taken, and
 * carries what had been served by then, so the statistics of a resumed run
 * count from the run's start, not from the resume. */
#ifndef BITLAB_CORPUS_H
#define BITLAB_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "model/model.h"

typedef struct {
    long epoch;
    long file;         /* index into the epoch's file order */
    uint64_t offset;   /* text: byte offset of the piece; shards: document index */
    long line;         /* .jsonl: the line number at offset (for error messages) */
    uint64_t consumed; /* tokens of that piece already served */
    /* served before this position (BlCorpusStats's fields of the same names) */
    long documents, rows;
    uint64_t tokens, slots;
} BlCorpusPos;

typedef struct {
    const BlModel *model;
    const char *const *paths; /* files, directories, globs; or NULL with shards */
    int n_paths;
    const char *shards;       /* a folder of shard-*.bin, instead of paths */
    uint64_t seed;
    size_t piece_bytes;       /* 0: 1 MiB */
    size_t queue_tokens;      /* 0: 256 Ki tokens */
} BlCorpusOptions;

typedef struct {
    int files;
    long epoch;              /* of the next token served */
    long documents;          /* documents whose first token was served */
    uint64_t tokens;         /* tokens served (padding excluded) */
    long rows;
    uint64_t slots;          /* row positions served */
    uint64_t bytes_read;     /* by the reader (it runs ahead of what was served) */
    uint64_t tokens_read;    /* tokenised (or read from shards) by the reader */
    double tokens_per_s;     /* the reader's throughput over its busy time */
    double stall_seconds;    /* time batches waited on the reader */
} BlCorpusStats;

typedef struct BlCorpus BlCorpus;

/* Resolves the sources (an error names a missing path, a pattern matching
 * nothing, a folder without corpus files, a bad shard) and starts the reader. */
int bl_corpus_open(BlCorpus **out, const BlCorpusOptions *o, BlError *err);
void bl_corpus_free(BlCorpus *c);

/* The next B rows of T tokens: tokens, lens [B], mask [B·T] and doc_start
 * [B·T]; advances the position. A read or
 * tokenisation failure (file:line) is reported by the batch that reaches it. */
int bl_corpus_next_batch(BlCorpus *c, int B, int T, int *tokens, int *lens, uint8_t *mask,
                         int *doc_start, BlError *err);

/* One piece as read (for `bitlab tokenize --corpus`): its tokens, whether it
 * starts / ends its document, and the epoch it belongs to. *ids stays valid
 * until the next call. */
typedef struct {
    const int *ids;
    size_t n;
    int doc_begin, doc_end;
    long epoch;
} BlCorpusPiece;
int bl_corpus_next_piece(BlCorpus *c, BlCorpusPiece *p, BlError *err);

void bl_corpus_position(const BlCorpus *c, BlCorpusPos *p);
/* Refuses a position outside the corpus (a file index beyond its files). */
int bl_corpus_seek(BlCorpus *c, const BlCorpusPos *p, BlError *err);

void bl_corpus_stats(BlCorpus *c, BlCorpusStats *s);
int bl_corpus_n_files(const BlCorpus *c);
const char *bl_corpus_file(const BlCorpus *c, int i); /* in sorted order */
int bl_corpus_is_shards(const BlCorpus *c);

#endif
