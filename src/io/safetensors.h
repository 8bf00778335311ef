/* safetensors.h - read-only reader for Hugging Face safetensors checkpoints,
 * a single memory-mapped file or a set of shards named by
 * model.safetensors.index.json.
 *
 * Every tensor's dtype, shape and data_offsets are validated at open time, so
 * lookups never fail on a set that opened. Conversion to fp32 supports F32,
 * F16 and BF16; other known dtypes open fine (so a checkpoint carrying, say,
 * an I64 buffer still loads) but refuse conversion with an error naming the
 * tensor and its dtype. */
#ifndef BITLAB_SAFETENSORS_H
#define BITLAB_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define BL_ST_MAX_DIMS 8

typedef struct {
    char *name;
    char dtype[8];          /* as written in the header: "F32", "BF16", ... */
    size_t elem_size;       /* bytes per element */
    int n_dims;
    uint64_t shape[BL_ST_MAX_DIMS];
    uint64_t n_elements;
    const void *data;       /* inside the mapping of its file */
    size_t nbytes;
    int file;               /* index into BlSafetensors.files */
} BlStTensor;

typedef struct {
    char *path;
    void *map;
    size_t size;
} BlStFile;

typedef struct BlSafetensors {
    BlStFile *files;
    int n_files;
    BlStTensor *tensors;
    size_t n_tensors;
} BlSafetensors;

/* Opens one .safetensors file. Errors name the file and the tensor/field. */
int bl_st_open(BlSafetensors **out, const char *path, BlError *err);
/* Opens every shard listed in a model.safetensors.index.json (shard paths
 * are relative to the index's folder) and checks that each tensor in its
 * weight_map is present in the named shard. */
int bl_st_open_index(BlSafetensors **out, const char *index_path, BlError *err);
void bl_st_close(BlSafetensors *st);

const BlStTensor *bl_st_tensor(const BlSafetensors *st, const char *name);
/* The file a tensor lives in, for error messages. */
const char *bl_st_tensor_path(const BlSafetensors *st, const BlStTensor *t);
/* Converts all n_elements of t to fp32 into dst. */
int bl_st_to_f32(const BlSafetensors *st, const BlStTensor *t, float *dst, BlError *err);

#endif
