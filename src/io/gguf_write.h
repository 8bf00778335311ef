/* gguf_write.h - a GGUF v3 writer: metadata of every kind (arrays of strings
 * included), tensors of any ggml type bitlab knows, data aligned to
 * general.alignment (32), the file written atomically (io/atomic_file.h).
 *
 * Usage: bl_gguf_writer_new, bl_gguf_set_* / bl_gguf_copy_kv for metadata
 * (setting a key again replaces its value in place, so copies can be
 * overridden), bl_gguf_add_tensor for tensors (in file order), then
 * bl_gguf_write and bl_gguf_writer_free. Metadata keeps insertion order.
 *
 * Layout written (all little-endian): "GGUF", u32 version 3, u64 tensor
 * count, u64 kv count, the kvs (string key, u32 type, value), the tensor
 * infos (string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset
 * relative to the data section), zero padding to the alignment, then each
 * tensor's bytes at its offset (offsets are multiples of the alignment). */
#ifndef BITLAB_GGUF_WRITE_H
#define BITLAB_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "io/gguf.h"

#define BL_GGUF_DEFAULT_ALIGNMENT 32

typedef struct BlGgufWriter BlGgufWriter;

/* A writer holding only general.alignment = 32. */
BlGgufWriter *bl_gguf_writer_new(BlError *err);
void bl_gguf_writer_free(BlGgufWriter *w);

int bl_gguf_set_u32(BlGgufWriter *w, const char *key, uint32_t v, BlError *err);
int bl_gguf_set_i32(BlGgufWriter *w, const char *key, int32_t v, BlError *err);
int bl_gguf_set_u64(BlGgufWriter *w, const char *key, uint64_t v, BlError *err);
int bl_gguf_set_f32(BlGgufWriter *w, const char *key, float v, BlError *err);
int bl_gguf_set_bool(BlGgufWriter *w, const char *key, bool v, BlError *err);
int bl_gguf_set_str(BlGgufWriter *w, const char *key, const char *v, BlError *err);
/* An array of n non-string, non-array elements of elem_type: data holds them
 * packed little-endian (e.g. int32_t[n] for INT32). */
int bl_gguf_set_array(BlGgufWriter *w, const char *key, BlGgufType elem_type, const void *data,
                      uint64_t n, BlError *err);
/* An array of n strings; lens[i] their byte lengths (lens NULL: strlen). */
int bl_gguf_set_str_array(BlGgufWriter *w, const char *key, const char *const *strs,
                          const uint64_t *lens, uint64_t n, BlError *err);
/* A key/value from a file opened with io/gguf.h, copied verbatim. */
int bl_gguf_copy_kv(BlGgufWriter *w, const BlGgufKV *kv, BlError *err);
bool bl_gguf_writer_has(const BlGgufWriter *w, const char *key);

/* A tensor of ggml `type` with ne[n_dims] (ggml order: ne[0] is the row
 * length, a multiple of the type's block size) and nbytes of data, which
 * must match the shape. With own = true the writer takes the malloc'd data
 * (and frees it, also on failure); otherwise data must stay valid until
 * bl_gguf_write. Names are unique and at most 63 bytes (ggml's limit). */
int bl_gguf_add_tensor(BlGgufWriter *w, const char *name, uint32_t type, int n_dims,
                       const uint64_t *ne, const void *data, size_t nbytes, bool own,
                       BlError *err);

/* Writes the file atomically (a temporary file renamed over path). */
int bl_gguf_write(BlGgufWriter *w, const char *path, BlError *err);

#endif
