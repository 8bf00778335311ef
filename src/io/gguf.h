/* gguf.h - read-only GGUF v2/v3 reader over a memory-mapped file.
 *
 * Every metadata value of every kind and every tensor info is parsed and
 * bounds-checked at open time, so the accessors below never fail on a file
 * that opened successfully. Tensor data stays in the mapping; dequantize it
 * with io/quants.h. */
#ifndef BITLAB_GGUF_H
#define BITLAB_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef enum {
    BL_GGUF_UINT8 = 0, BL_GGUF_INT8 = 1, BL_GGUF_UINT16 = 2, BL_GGUF_INT16 = 3,
    BL_GGUF_UINT32 = 4, BL_GGUF_INT32 = 5, BL_GGUF_FLOAT32 = 6, BL_GGUF_BOOL = 7,
    BL_GGUF_STRING = 8, BL_GGUF_ARRAY = 9, BL_GGUF_UINT64 = 10, BL_GGUF_INT64 = 11,
    BL_GGUF_FLOAT64 = 12,
} BlGgufType;

typedef struct {
    const char *ptr; /* points into the mapping; NOT NUL-terminated */
    uint64_t len;
} BlGgufStr;

typedef struct {
    char *key;         /* NUL-terminated copy */
    BlGgufType type;
    union {
        uint64_t u;    /* UINT8..UINT64, BOOL */
        int64_t i;     /* INT8..INT64 */
        double f;      /* FLOAT32, FLOAT64 */
        BlGgufStr str; /* STRING */
        struct {
            BlGgufType type; /* element type (never ARRAY: nested arrays are rejected) */
            uint64_t n;
            const void *data;  /* raw little-endian elements in the mapping, for non-strings */
            BlGgufStr *strs;   /* parsed elements, for STRING arrays (else NULL) */
        } arr;
    } v;
} BlGgufKV;

typedef struct {
    char *name;        /* NUL-terminated copy */
    uint32_t n_dims;   /* 1..4 */
    uint64_t ne[4];    /* ggml order: ne[0] is the contiguous (row) dimension */
    uint32_t type;     /* ggml type id, see io/quants.h */
    uint64_t offset;   /* relative to the data section */
    const void *data;  /* = data section + offset, inside the mapping */
    size_t nbytes;
    uint64_t n_elements;
} BlGgufTensor;

typedef struct BlGguf {
    char *path;
    void *map;
    size_t size;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    BlGgufKV *kv;
    BlGgufTensor *tensors;
    uint64_t alignment;
    const uint8_t *data; /* start of the tensor data section */
} BlGguf;

/* Opens and validates the file (magic, version, every kv, tensor infos, that
 * each tensor lies inside the file, and that the tensor table describes the
 * data section exactly: tensors in table order from offset 0, each at the
 * previous one's end rounded up to the alignment, no overlaps, no unclaimed
 * bytes beyond the last tensor's alignment padding). Errors name the file and
 * the offending key / tensor / offset. */
int bl_gguf_open(BlGguf **out, const char *path, BlError *err);
void bl_gguf_close(BlGguf *g);

const BlGgufKV *bl_gguf_find(const BlGguf *g, const char *key);
const BlGgufTensor *bl_gguf_tensor(const BlGguf *g, const char *name);

/* Typed getters. Integer getters accept any integer kind whose value fits.
 * They return 0 on success, -1 if the key is missing or has the wrong kind
 * (err names the key and file). The *_or variants return a default when the
 * key is absent but still fail on a wrong kind. */
int bl_gguf_get_u64(const BlGguf *g, const char *key, uint64_t *out, BlError *err);
int bl_gguf_get_f64(const BlGguf *g, const char *key, double *out, BlError *err);
int bl_gguf_get_str(const BlGguf *g, const char *key, BlGgufStr *out, BlError *err);
int bl_gguf_get_u64_or(const BlGguf *g, const char *key, uint64_t dflt, uint64_t *out, BlError *err);
int bl_gguf_get_f64_or(const BlGguf *g, const char *key, double dflt, double *out, BlError *err);

/* Copies a GGUF string into a new NUL-terminated heap string. */
char *bl_gguf_strdup(BlGgufStr s, BlError *err);

const char *bl_gguf_type_name(BlGgufType t);

#endif
