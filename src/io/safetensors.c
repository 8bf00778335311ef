/* safetensors.c - memory-mapped safetensors reader (single file or shards).
 *
 * Layout: u64 little-endian header length N, N bytes of JSON mapping each
 * tensor name to {dtype, shape, data_offsets:[begin,end]} (offsets relative
 * to the byte after the header), then the data. "__metadata__" is ignored. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/quants.h"
#include "io/textfile.h"

/* JSON numbers are doubles: integers above 2^53 are not exact. */
#define BL_ST_MAX_INT 9007199254740992.0

static const struct { const char *name; size_t size; } DTYPES[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
    {"I16", 2}, {"I8", 1}, {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1},
    {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

static size_t dtype_size(const char *name) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (strcmp(name, DTYPES[i].name) == 0) return DTYPES[i].size;
    return 0;
}

// ----------------------------------------------------------------------------
// header parsing

static int json_u64(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double d = item->valuedouble;
    if (d < 0 || d > BL_ST_MAX_INT || d != (double)(uint64_t)d) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int parse_shape(BlStTensor *t, const cJSON *shape, const char *path, BlError *err) {
    if (!cJSON_IsArray(shape))
        return bl_fail(err, "%s: tensor '%s': \"shape\" is missing or not an array", path, t->name);
    int n = cJSON_GetArraySize(shape);
    if (n > BL_ST_MAX_DIMS)
        return bl_fail(err, "%s: tensor '%s': %d dimensions (at most %d supported)", path,
                       t->name, n, BL_ST_MAX_DIMS);
    t->n_dims = n;
    t->n_elements = 1;
    const cJSON *d;
    int i = 0;
    cJSON_ArrayForEach(d, shape) {
        if (json_u64(d, &t->shape[i]) != 0)
            return bl_fail(err, "%s: tensor '%s': shape[%d] is not a non-negative integer", path,
                           t->name, i);
        if (t->shape[i] && t->n_elements > UINT64_MAX / t->shape[i])
            return bl_fail(err, "%s: tensor '%s': shape overflows", path, t->name);
        t->n_elements *= t->shape[i];
        i++;
    }
    return 0;
}

/* Fills t from one header entry and checks its bytes lie in the data section. */
static int parse_entry(BlStTensor *t, const cJSON *e, const BlStFile *f, size_t data_start,
                       BlError *err) {
    const char *path = f->path;
    if (!cJSON_IsObject(e))
        return bl_fail(err, "%s: tensor '%s': header entry is not an object", path, t->name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dtype))
        return bl_fail(err, "%s: tensor '%s': \"dtype\" is missing or not a string", path, t->name);
    t->elem_size = dtype_size(dtype->valuestring);
    if (t->elem_size == 0)
        return bl_fail(err, "%s: tensor '%s': unknown dtype \"%.32s\"", path, t->name,
                       dtype->valuestring);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype->valuestring);
    if (parse_shape(t, cJSON_GetObjectItemCaseSensitive(e, "shape"), path, err) != 0) return -1;

    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        json_u64(cJSON_GetArrayItem(offs, 0), &begin) != 0 ||
        json_u64(cJSON_GetArrayItem(offs, 1), &end) != 0)
        return bl_fail(err, "%s: tensor '%s': \"data_offsets\" must be two non-negative integers",
                       path, t->name);
    uint64_t data_size = f->size - data_start;
    if (begin > end || end > data_size)
        return bl_fail(err, "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section "
                       "(%llu bytes)", path, t->name, (unsigned long long)begin,
                       (unsigned long long)end, (unsigned long long)data_size);
    if (t->n_elements > UINT64_MAX / t->elem_size || end - begin != t->n_elements * t->elem_size)
        return bl_fail(err, "%s: tensor '%s': data_offsets span %llu bytes but shape x %s needs "
                       "%llu", path, t->name, (unsigned long long)(end - begin), t->dtype,
                       (unsigned long long)(t->n_elements * t->elem_size));
    t->data = (const uint8_t *)f->map + data_start + begin;
    t->nbytes = (size_t)(end - begin);
    return 0;
}

static bool has_tensor(const BlSafetensors *st, const char *name) {
    return bl_st_tensor(st, name) != NULL;
}

typedef struct {
    uint64_t begin, end;
    size_t index;
} Span;

static int cmp_span(const void *a, const void *b) {
    const Span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* As the safetensors library requires: the tensors of a file tile its data
 * section exactly, without overlaps, holes or unclaimed bytes at the end. */
static int check_coverage(const BlSafetensors *st, size_t first, const BlStFile *f, size_t data_start,
                          BlError *err) {
    size_t n = st->n_tensors - first;
    Span *v = bl_calloc(n + 1, sizeof *v, err);
    if (!v) return -1;
    const uint8_t *base = (const uint8_t *)f->map + data_start;
    for (size_t i = 0; i < n; i++) {
        const BlStTensor *t = &st->tensors[first + i];
        v[i].begin = (uint64_t)((const uint8_t *)t->data - base);
        v[i].end = v[i].begin + t->nbytes;
        v[i].index = first + i;
    }
    qsort(v, n, sizeof *v, cmp_span);
    uint64_t end = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *name = st->tensors[v[i].index].name;
        if (v[i].begin < end)
            rc = bl_fail(err, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' (ending at %llu)",
                         f->path, name, (unsigned long long)v[i].begin, (unsigned long long)v[i].end,
                         st->tensors[v[i - 1].index].name, (unsigned long long)end);
        else if (v[i].begin > end)
            rc = bl_fail(err, "%s: tensor '%s': data_offsets start at %llu, leaving bytes [%llu, %llu) of the data "
                         "section unclaimed by any tensor", f->path, name, (unsigned long long)v[i].begin,
                         (unsigned long long)end, (unsigned long long)v[i].begin);
        end = v[i].end;
    }
    if (rc == 0 && end != f->size - data_start)
        rc = bl_fail(err, "%s: the header's tensors end at data offset %llu, the data section holds %llu bytes "
                     "(%llu bytes unclaimed by any tensor)", f->path, (unsigned long long)end,
                     (unsigned long long)(f->size - data_start),
                     (unsigned long long)(f->size - data_start - end));
    free(v);
    return rc;
}

static int parse_header(BlSafetensors *st, int file, const char *json, size_t len,
                        size_t data_start, BlError *err) {
    const BlStFile *f = &st->files[file];
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return bl_fail(err, "%s: header is not a valid JSON object", f->path);
    }
    size_t n = (size_t)cJSON_GetArraySize(root);
    BlStTensor *grown = realloc(st->tensors, (st->n_tensors + n + 1) * sizeof *grown);
    if (!grown) {
        cJSON_Delete(root);
        return bl_fail(err, "%s: out of memory for the tensor table", f->path);
    }
    st->tensors = grown;
    int rc = 0;
    size_t first = st->n_tensors;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        if (has_tensor(st, e->string)) {
            rc = bl_fail(err, "%s: tensor '%s' appears twice", f->path, e->string);
            break;
        }
        BlStTensor *t = &st->tensors[st->n_tensors];
        memset(t, 0, sizeof *t);
        t->file = file;
        t->name = strdup(e->string);
        if (!t->name) {
            rc = bl_fail(err, "%s: out of memory", f->path);
            break;
        }
        st->n_tensors++;
        if ((rc = parse_entry(t, e, f, data_start, err)) != 0) break;
    }
    cJSON_Delete(root);
    if (rc == 0) rc = check_coverage(st, first, f, data_start, err);
    return rc;
}

// ----------------------------------------------------------------------------
// files

static int map_file(BlStFile *f, const char *path, BlError *err) {
    f->path = strdup(path);
    if (!f->path) return bl_fail(err, "%s: out of memory", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return bl_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb) != 0) {
        rc = bl_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    } else if (sb.st_size < 8) {
        rc = bl_fail(err, "%s: %lld bytes is too small for a safetensors header length", path,
                     (long long)sb.st_size);
    } else {
        void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            rc = bl_fail(err, "%s: mmap failed: %s", path, strerror(errno));
        } else {
            f->map = map;
            f->size = (size_t)sb.st_size;
        }
    }
    close(fd);
    return rc;
}

/* Maps one file and appends its tensors. */
static int add_file(BlSafetensors *st, const char *path, BlError *err) {
    BlStFile *grown = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *grown);
    if (!grown) return bl_fail(err, "%s: out of memory", path);
    st->files = grown;
    int idx = st->n_files++;
    BlStFile *f = &st->files[idx];
    memset(f, 0, sizeof *f);
    if (map_file(f, path, err) != 0) return -1;

    const uint8_t *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > f->size - 8)
        return bl_fail(err, "%s: header length %llu exceeds the file size %zu (truncated?)", path,
                       (unsigned long long)hlen, f->size);
    return parse_header(st, idx, (const char *)p + 8, (size_t)hlen, 8 + (size_t)hlen, err);
}

int bl_st_open(BlSafetensors **out, const char *path, BlError *err) {
    *out = NULL;
    BlSafetensors *st = bl_calloc(1, sizeof *st, err);
    if (!st) return -1;
    if (add_file(st, path, err) != 0) {
        bl_st_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

// ----------------------------------------------------------------------------
// sharded checkpoints

static int file_index(const BlSafetensors *st, const char *path) {
    for (int i = 0; i < st->n_files; i++)
        if (strcmp(st->files[i].path, path) == 0) return i;
    return -1;
}

/* Opens the shard named by one weight_map entry (if not yet open) and checks
 * that the tensor really is in it. */
static int add_index_entry(BlSafetensors *st, const char *index_path, const char *dir,
                           const cJSON *entry, BlError *err) {
    if (!cJSON_IsString(entry) || entry->valuestring[0] == '/' ||
        strstr(entry->valuestring, ".."))
        return bl_fail(err, "%s: weight_map[\"%s\"] is not a shard file name in this folder",
                       index_path, entry->string);
    size_t n = strlen(dir) + strlen(entry->valuestring) + 2;
    char *shard = bl_malloc(n, err);
    if (!shard) return -1;
    snprintf(shard, n, "%s/%s", dir, entry->valuestring);
    int rc = 0;
    int fi = file_index(st, shard);
    if (fi < 0) {
        rc = add_file(st, shard, err);
        fi = st->n_files - 1;
    }
    if (rc == 0) {
        const BlStTensor *t = bl_st_tensor(st, entry->string);
        if (!t || t->file != fi)
            rc = bl_fail(err, "%s: weight_map puts tensor '%s' in %s, but that shard lacks it",
                         index_path, entry->string, entry->valuestring);
    }
    free(shard);
    return rc;
}

static char *dir_of(const char *path, BlError *err) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    size_t n = (size_t)(slash - path);
    char *dir = bl_malloc(n + 2, err);
    if (!dir) return NULL;
    memcpy(dir, path, n ? n : 1);
    dir[n ? n : 1] = '\0';
    return dir;
}

int bl_st_open_index(BlSafetensors **out, const char *index_path, BlError *err) {
    *out = NULL;
    cJSON *root = bl_json_read_file(index_path, err);
    if (!root) return -1;
    BlSafetensors *st = bl_calloc(1, sizeof *st, err);
    char *dir = st ? dir_of(index_path, err) : NULL;
    int rc = dir ? 0 : -1;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (rc == 0 && !cJSON_IsObject(map))
        rc = bl_fail(err, "%s: \"weight_map\" is missing or not an object", index_path);
    const cJSON *e;
    if (rc == 0) {
        cJSON_ArrayForEach(e, map) {
            if ((rc = add_index_entry(st, index_path, dir, e, err)) != 0) break;
        }
    }
    free(dir);
    cJSON_Delete(root);
    if (rc != 0) {
        bl_st_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

// ----------------------------------------------------------------------------
// access

void bl_st_close(BlSafetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].map) munmap(st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    free(st->files);
    free(st);
}

const BlStTensor *bl_st_tensor(const BlSafetensors *st, const char *name) {
    for (size_t i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *bl_st_tensor_path(const BlSafetensors *st, const BlStTensor *t) {
    return st->files[t->file].path;
}

int bl_st_to_f32(const BlSafetensors *st, const BlStTensor *t, float *dst, BlError *err) {
    const uint8_t *src = t->data;
    if (strcmp(t->dtype, "F32") == 0) {
        memcpy(dst, src, t->nbytes);
        return 0;
    }
    bool f16 = strcmp(t->dtype, "F16") == 0;
    if (!f16 && strcmp(t->dtype, "BF16") != 0)
        return bl_fail(err, "%s: tensor '%s': dtype %s is not supported (only F32, F16, BF16)",
                       bl_st_tensor_path(st, t), t->name, t->dtype);
    for (uint64_t i = 0; i < t->n_elements; i++) {
        uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
        dst[i] = f16 ? bl_fp16_to_fp32(h) : bl_bf16_to_fp32(h);
    }
    return 0;
}
