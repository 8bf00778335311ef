/* trace.h - teacher traces: the frozen teacher's top-K log-probabilities
 * (and optionally every block's hidden states) for every example of a
 * dataset, computed once and written to a file, so that training with the
 * top-K KL (+ CE, + hidden cosine / magnitude) never runs the teacher.
 *
 * What is stored, per example (a "record", in the dataset's insertion
 * order), for its first n = min(len, seq) tokens:
 *   tokens[n]                       the example's token ids
 *   ids[n−1, K], logp[n−1, K]       for each row t < n−1 (the rows that have
 *                                   a next token, i.e. every row a token loss
 *                                   can select): the K largest teacher logits'
 *                                   ids (descending, ties to the lower id) and
 *                                   log softmax(z/τ) at those ids — exactly
 *                                   bl_topk_logprobs of the step's live path
 *   other[n−1]                      1 − Σ_k exp(logp_k) (double, clamped at 0):
 *                                   the teacher's "other" mass at τ
 *   hidden[n_layers, n, dim]        block outputs (f32 or f16), optional
 *
 * Temperature: a trace is made for ONE τ. The top-K + "other" KL at τ needs
 * p_o(τ) = 1 − Σ_k softmax(z/τ)_k, which depends on the whole vocabulary
 * at that τ; K logits plus the τ = 1 logsumexp cannot give it for another τ.
 * So logp are stored at the trace's τ and a step at any other τ is refused.
 * Neither can a trace feed the full-vocabulary KL (w_kl > 0): refused too.
 *
 * File layout (little-endian; every section 4-byte aligned, records 8):
 *   header, 320 bytes:
 *     0   magic "BLTRACE\0"        8   u32 version (1)    12  u32 header bytes (320)
 *     16  u32 K                    20  f32 τ              24  u32 seq (examples cut to it)
 *     28  u32 records              32  u64 positions Σn   40  u64 rows Σ(n−1)
 *     48  u32 hidden (0 none, 1 f32, 2 f16)               52  u32 n_layers
 *     56  u32 dim   60 u32 vocab   64 u32 n_heads   68 u32 n_kv_heads   72 u32 hidden_dim
 *     76  u32 0
 *     80  64 ASCII hex: sha256 of the model (bl_sha256_path: the GGUF file's bytes,
 *         or a Hugging Face folder's config.json + *.safetensors)
 *     144 64 ASCII hex: sha256 of the data (bl_trace_data_sha256)
 *     208 u64 file bytes           216 zeros to 288
 *     288 32 bytes: sha256 of the whole file with these 32 bytes zero
 *   u32 n[records], zero-padded to 8 bytes
 *   records in order, each: i32 tokens[n], i32 ids[(n−1)·K], f32 logp[(n−1)·K],
 *     f32 other[n−1], hidden [n_layers][n][dim] (f32 or IEEE f16) when stored,
 *     zero-padded to 8 bytes.
 *
 * How the trainer finds a batch row's record: by content. A row of n tokens
 * (cut to the batch length T) matches the record whose first min(n_rec, T)
 * tokens are exactly those n tokens; its first n−1 top-K rows and n hidden
 * rows are the teacher's outputs for the row (the model is causal). So any
 * batch order, shuffle seed or hand-made batch works, a batch length up to
 * the trace's seq works, and a row the trace does not hold is refused.
 *
 * Exactness: the trace runs the teacher in its own batches (batch examples
 * in insertion order, each batch as long as its longest example). A step
 * whose micro-batch is one of those batches sees bit for bit what the live
 * teacher would give; in another arrangement the BLAS may round a row
 * differently (its kernels depend on the matrix shape), ~1e-7 relative. */
#ifndef BITLAB_TRACE_H
#define BITLAB_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "core/error.h"
#include "data/dataset.h"
#include "model/model.h"
#include "train/trainer.h"

#define BL_TRACE_VERSION 1

typedef enum { BL_TRACE_HIDDEN_NONE, BL_TRACE_HIDDEN_F32, BL_TRACE_HIDDEN_F16 } BlTraceHidden;

/* "none", "f32", "f16" */
const char *bl_trace_hidden_name(BlTraceHidden h);

// ----------------------------------------------------------------------------
// making a trace

typedef struct {
    int K;               /* 1..min(vocab, BL_TOPK_MAX) */
    float tau;           /* > 0 */
    int seq;             /* examples are cut to their first seq tokens; >= 2 */
    int batch;           /* sequences per teacher forward; >= 1 */
    BlTraceHidden hidden;
    /* the teacher's backend (NULL: the CPU). A device gets its own copy of
     * the weights (bl_device_model_build; CUDA: bf16), so its trace holds
     * that teacher's outputs, not the CPU's bit for bit. */
    const BlBackend *be;
    /* called after each batch (may be NULL) */
    void (*progress)(void *ctx, int done, int total);
    void *progress_ctx;
} BlTraceConfig;

typedef struct {
    int records;
    long long positions, rows;
    size_t bytes;
    double seconds;
    char model_sha256[65], data_sha256[65];
} BlTraceSummary;

/* Runs the teacher (m, on c->be) over every example of d in insertion order
 * and writes the trace to path (atomically: path.tmp, then renamed). */
int bl_trace_write(const BlModel *m, const BlDataset *d, const BlTraceConfig *c, const char *path,
                   BlTraceSummary *out, BlError *err);

/* The data identity: sha256 over u32 count, then per example (insertion
 * order, full length) u32 len and i32 ids[len], little-endian. */
void bl_trace_data_sha256(const BlDataset *d, char hex[65]);

// ----------------------------------------------------------------------------
// reading a trace

typedef struct BlTrace {
    char *path;
    int K, seq, records;
    float tau;
    BlTraceHidden hidden;
    int n_layers, dim, vocab, n_heads, n_kv_heads, hidden_dim;
    long long positions, rows;
    char model_sha256[65], data_sha256[65];
    const unsigned char *map; /* the whole file, read-only */
    size_t bytes;
    int *len;                 /* [records] n of each record */
    size_t *off;              /* [records] byte offset of each record */
} BlTrace;

/* One record's arrays, pointing into the mapping. */
typedef struct {
    int n;
    const int32_t *tokens; /* [n] */
    const int32_t *ids;    /* [(n−1)·K] */
    const float *logp;     /* [(n−1)·K] */
    const float *other;    /* [n−1] */
    const void *hidden;    /* [n_layers][n][dim] f32 or f16 (uint16_t), NULL when not stored */
} BlTraceRecord;

/* Maps the file and checks it: magic, version, sizes (a truncated file is
 * named as such), the checksum, token and id ranges. */
int bl_trace_open(BlTrace **out, const char *path, BlError *err);
void bl_trace_close(BlTrace *t);
void bl_trace_record(const BlTrace *t, int i, BlTraceRecord *r);

/* Refusals naming what differs: the model's dims, vocabulary or sha256 (of
 * m->path); the data's sha256 (example count and lengths in the message). */
int bl_trace_check_model(const BlTrace *t, const BlModel *m, BlError *err);
int bl_trace_check_data(const BlTrace *t, const BlDataset *d, BlError *err);

// ----------------------------------------------------------------------------
// the trainer's teacher from a trace

typedef struct BlTraceReader BlTraceReader;

/* A reader finds batch rows in t (which must outlive it) and serves them
 * as the trainer's teacher (step.h: BlTeacherProvider). */
int bl_trace_reader_new(BlTraceReader **out, const BlTrace *t, BlError *err);
void bl_trace_reader_free(BlTraceReader *r);
void bl_trace_provider(BlTraceReader *r, BlTeacherProvider *p);

#endif
