/* trace_format.h - the byte layout of a teacher trace file (trace.h has the
 * description), shared by the writer and the reader. Not included outside
 * src/trace. */
#ifndef BITLAB_TRACE_FORMAT_H
#define BITLAB_TRACE_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "trace files are little-endian; this writer and reader copy host integers as they are"
#endif

#define TRACE_MAGIC "BLTRACE" /* 8 bytes with its NUL */
#define TRACE_HEADER_BYTES 320

enum { /* byte offsets in the header */
    TH_MAGIC = 0, TH_VERSION = 8, TH_HEADER_BYTES = 12, TH_K = 16, TH_TAU = 20, TH_SEQ = 24,
    TH_RECORDS = 28, TH_POSITIONS = 32, TH_ROWS = 40, TH_HIDDEN = 48, TH_N_LAYERS = 52,
    TH_DIM = 56, TH_VOCAB = 60, TH_N_HEADS = 64, TH_N_KV_HEADS = 68, TH_HIDDEN_DIM = 72,
    TH_MODEL_SHA = 80, TH_DATA_SHA = 144, TH_FILE_BYTES = 208, TH_CHECKSUM = 288
};

static inline void th_put32(unsigned char *h, int off, uint32_t v) { memcpy(h + off, &v, 4); }
static inline void th_put64(unsigned char *h, int off, uint64_t v) { memcpy(h + off, &v, 8); }
static inline uint32_t th_get32(const unsigned char *h, int off) {
    uint32_t v;
    memcpy(&v, h + off, 4);
    return v;
}
static inline uint64_t th_get64(const unsigned char *h, int off) {
    uint64_t v;
    memcpy(&v, h + off, 8);
    return v;
}

static inline size_t trace_pad8(size_t n) { return (n + 7) & ~(size_t)7; }

/* Bytes of the record table (u32 per record, padded to 8). */
static inline size_t trace_table_bytes(size_t records) { return trace_pad8(4 * records); }

/* Bytes of one record of n tokens (padded to 8). */
static inline size_t trace_record_bytes(size_t n, size_t K, size_t hidden_bytes_per_value,
                                        size_t n_layers, size_t dim) {
    size_t rows = n - 1;
    return trace_pad8(4 * n + rows * K * 8 + rows * 4 +
                      hidden_bytes_per_value * n_layers * n * dim);
}

#endif
