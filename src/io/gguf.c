/* gguf.c - GGUF v2/v3 reader: maps the file, then parses and validates the
 * header, every metadata value and every tensor info against the file size.
 *
 * All reads go through a bounds-checked cursor and all size arithmetic is done
 * in uint64 with explicit overflow checks, so a hostile or truncated file gives
 * a clear error instead of a wild read. Messages from the parser name the
 * offending key / tensor / offset; bl_gguf_open prefixes them with the path. */
#include "io/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/quants.h"

#define GGUF_DEFAULT_ALIGNMENT 32
/* smallest encodings, used to reject counts that cannot fit in the file:
 * kv = key length + type + 1-byte value; tensor info = name length + n_dims
 * + one dimension + type + offset */
#define MIN_KV_BYTES 13
#define MIN_TENSOR_INFO_BYTES 32

// ----------------------------------------------------------------------------
// bounds-checked little-endian cursor over the mapping

typedef struct {
    const uint8_t *p;
    size_t size;
    size_t pos;
    BlError *err;
} Cursor;

static size_t left(const Cursor *c) { return c->size - c->pos; }

static int need(Cursor *c, uint64_t n, const char *what) {
    if (n > left(c))
        return bl_fail(c->err, "truncated %s at offset %zu: need %" PRIu64 " bytes, %zu left", what,
                       c->pos, n, left(c));
    return 0;
}

static uint64_t le_bytes(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int rd_u32(Cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return -1;
    *v = (uint32_t)le_bytes(c->p + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int rd_u64(Cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return -1;
    *v = le_bytes(c->p + c->pos, 8);
    c->pos += 8;
    return 0;
}

static int rd_str(Cursor *c, BlGgufStr *s, const char *what) {
    uint64_t len;
    size_t at = c->pos;
    if (rd_u64(c, &len, what)) return -1;
    if (len > left(c))
        return bl_fail(c->err, "%s at offset %zu: string length %" PRIu64 " runs past end of file (%zu bytes left)",
                       what, at, len, left(c));
    s->ptr = (const char *)c->p + c->pos;
    s->len = len;
    c->pos += (size_t)len;
    return 0;
}

// ----------------------------------------------------------------------------
// metadata values

static size_t scalar_size(uint32_t t) {
    switch (t) {
    case BL_GGUF_UINT8: case BL_GGUF_INT8: case BL_GGUF_BOOL: return 1;
    case BL_GGUF_UINT16: case BL_GGUF_INT16: return 2;
    case BL_GGUF_UINT32: case BL_GGUF_INT32: case BL_GGUF_FLOAT32: return 4;
    case BL_GGUF_UINT64: case BL_GGUF_INT64: case BL_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static bool is_unsigned(BlGgufType t) {
    return t == BL_GGUF_UINT8 || t == BL_GGUF_UINT16 || t == BL_GGUF_UINT32 || t == BL_GGUF_UINT64;
}

static bool is_signed(BlGgufType t) {
    return t == BL_GGUF_INT8 || t == BL_GGUF_INT16 || t == BL_GGUF_INT32 || t == BL_GGUF_INT64;
}

static int64_t sign_extend(uint64_t v, size_t bytes) {
    if (bytes == 8) return (int64_t)v;
    uint64_t sign = 1ull << (bytes * 8 - 1);
    return (int64_t)((v ^ sign) - sign);
}

static void decode_scalar(const uint8_t *p, BlGgufType t, BlGgufKV *kv) {
    size_t n = scalar_size(t);
    uint64_t raw = le_bytes(p, (int)n);
    switch (t) {
    case BL_GGUF_INT8: case BL_GGUF_INT16: case BL_GGUF_INT32: case BL_GGUF_INT64:
        kv->v.i = sign_extend(raw, n);
        break;
    case BL_GGUF_FLOAT32: {
        uint32_t b = (uint32_t)raw;
        float f;
        memcpy(&f, &b, sizeof f);
        kv->v.f = f;
        break;
    }
    case BL_GGUF_FLOAT64:
        memcpy(&kv->v.f, &raw, sizeof kv->v.f);
        break;
    default:
        kv->v.u = raw;
    }
}

static int read_array(Cursor *c, BlGgufKV *kv) {
    uint32_t et;
    uint64_t n;
    if (rd_u32(c, &et, "array element type") || rd_u64(c, &n, "array length")) return -1;
    kv->v.arr.type = (BlGgufType)et;
    kv->v.arr.n = n;
    if (et == BL_GGUF_ARRAY) return bl_fail(c->err, "nested arrays are not supported");
    if (et == BL_GGUF_STRING) {
        if (n > left(c) / 8)
            return bl_fail(c->err, "array of %" PRIu64 " strings at offset %zu runs past end of file", n, c->pos);
        kv->v.arr.strs = bl_calloc((size_t)n, sizeof *kv->v.arr.strs, c->err);
        if (!kv->v.arr.strs) return -1;
        for (uint64_t i = 0; i < n; i++)
            if (rd_str(c, &kv->v.arr.strs[i], "array string")) return -1;
        return 0;
    }
    size_t es = scalar_size(et);
    if (!es) return bl_fail(c->err, "unknown array element type %" PRIu32 " at offset %zu", et, c->pos - 12);
    if (n > left(c) / es)
        return bl_fail(c->err, "array of %" PRIu64 " %s values at offset %zu runs past end of file", n,
                       bl_gguf_type_name(kv->v.arr.type), c->pos);
    kv->v.arr.data = c->p + c->pos;
    c->pos += (size_t)(n * es);
    return 0;
}

static int read_value(Cursor *c, BlGgufKV *kv) {
    uint32_t t;
    size_t at = c->pos;
    if (rd_u32(c, &t, "value type")) return -1;
    kv->type = (BlGgufType)t;
    if (t == BL_GGUF_STRING) return rd_str(c, &kv->v.str, "string value");
    if (t == BL_GGUF_ARRAY) return read_array(c, kv);
    size_t n = scalar_size(t);
    if (!n) return bl_fail(c->err, "unknown value type %" PRIu32 " at offset %zu", t, at);
    if (need(c, n, "value")) return -1;
    decode_scalar(c->p + c->pos, kv->type, kv);
    c->pos += n;
    return 0;
}

static char *copy_str(BlGgufStr s, BlError *err) {
    if (s.len >= SIZE_MAX) {
        bl_fail(err, "string of %" PRIu64 " bytes is too long", s.len);
        return NULL;
    }
    char *out = bl_malloc((size_t)s.len + 1, err);
    if (!out) return NULL;
    memcpy(out, s.ptr, (size_t)s.len);
    out[s.len] = '\0';
    return out;
}

static int read_kvs(Cursor *c, BlGguf *g) {
    g->kv = bl_calloc((size_t)g->n_kv, sizeof *g->kv, c->err);
    if (!g->kv) return -1;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        BlGgufKV *kv = &g->kv[i];
        BlGgufStr key = {0};
        if (rd_str(c, &key, "metadata key")) return bl_fail_prefix(c->err, "kv #%" PRIu64, i);
        if (!(kv->key = copy_str(key, c->err))) return -1;
        if (read_value(c, kv)) return bl_fail_prefix(c->err, "kv '%s'", kv->key);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// duplicate names (keys, tensors): an open-addressing set, so crafted files
// with millions of entries stay linear

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Sets *dup to the first name seen twice, or NULL. */
static int find_duplicate(const char **names, size_t n, const char **dup, BlError *err) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    const char **slot = bl_calloc(cap, sizeof *slot, err);
    if (!slot) return -1;
    *dup = NULL;
    for (size_t i = 0; i < n && !*dup; i++) {
        size_t h = (size_t)hash_name(names[i]) & (cap - 1);
        while (slot[h] && strcmp(slot[h], names[i])) h = (h + 1) & (cap - 1);
        if (slot[h]) *dup = names[i];
        else slot[h] = names[i];
    }
    free(slot);
    return 0;
}

static int check_unique_keys(const BlGguf *g, BlError *err) {
    const char **names = bl_calloc((size_t)g->n_kv, sizeof *names, err);
    if (!names) return -1;
    for (uint64_t i = 0; i < g->n_kv; i++) names[i] = g->kv[i].key;
    const char *dup;
    int rc = find_duplicate(names, (size_t)g->n_kv, &dup, err);
    free(names);
    if (rc) return -1;
    return dup ? bl_fail(err, "duplicate metadata key '%s'", dup) : 0;
}

static int check_unique_tensors(const BlGguf *g, BlError *err) {
    const char **names = bl_calloc((size_t)g->n_tensors, sizeof *names, err);
    if (!names) return -1;
    for (uint64_t i = 0; i < g->n_tensors; i++) names[i] = g->tensors[i].name;
    const char *dup;
    int rc = find_duplicate(names, (size_t)g->n_tensors, &dup, err);
    free(names);
    if (rc) return -1;
    return dup ? bl_fail(err, "duplicate tensor name '%s'", dup) : 0;
}

// ----------------------------------------------------------------------------
// alignment and tensor infos

static int read_alignment(BlGguf *g, BlError *err) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const BlGgufKV *kv = bl_gguf_find(g, "general.alignment");
    if (!kv) return 0;
    if (!is_unsigned(kv->type) && !is_signed(kv->type))
        return bl_fail(err, "bad alignment: general.alignment has type %s, expected uint32",
                       bl_gguf_type_name(kv->type));
    uint64_t a = is_unsigned(kv->type) ? kv->v.u : kv->v.i < 0 ? 0 : (uint64_t)kv->v.i;
    if (a == 0 || (a & (a - 1)))
        return bl_fail(err, "bad alignment: general.alignment = %" PRIu64 " is not a power of two", a);
    g->alignment = a;
    return 0;
}

static int read_tensor_info(Cursor *c, BlGgufTensor *t, uint64_t index) {
    BlGgufStr name = {0};
    if (rd_str(c, &name, "tensor name")) return bl_fail_prefix(c->err, "tensor #%" PRIu64, index);
    if (!(t->name = copy_str(name, c->err))) return -1;
    if (rd_u32(c, &t->n_dims, "n_dims")) goto fail;
    if (t->n_dims < 1 || t->n_dims > 4) {
        bl_fail(c->err, "n_dims = %" PRIu32 " at offset %zu is out of range 1..4", t->n_dims, c->pos - 4);
        goto fail;
    }
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++)
        if (rd_u64(c, &t->ne[d], "dimension")) goto fail;
    if (rd_u32(c, &t->type, "tensor type") || rd_u64(c, &t->offset, "tensor data offset")) goto fail;
    return 0;
fail:
    return bl_fail_prefix(c->err, "tensor '%s'", t->name);
}

/* Shape, type and size checks that need nothing but the info itself. */
static int check_tensor_shape(BlGgufTensor *t, BlError *err) {
    const char *tn = bl_ggml_type_name(t->type);
    if (!tn) return bl_fail(err, "unknown ggml tensor type %" PRIu32, t->type);
    size_t bs = bl_ggml_block_size(t->type);
    if (!bs) return bl_fail(err, "ggml tensor type %s is not supported by bitlab", tn);
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (t->ne[d] == 0) return bl_fail(err, "ne[%" PRIu32 "] is 0", d);
        if (t->ne[d] > (uint64_t)INT64_MAX / n)
            return bl_fail(err, "element count overflows at ne[%" PRIu32 "] = %" PRIu64, d, t->ne[d]);
        n *= t->ne[d];
    }
    if (t->ne[0] % bs)
        return bl_fail(err, "ne[0] = %" PRIu64 " is not a multiple of the %s block size %zu", t->ne[0], tn, bs);
    t->n_elements = n;
    t->nbytes = bl_ggml_row_bytes(t->type, n);
    if (!t->nbytes) return bl_fail(err, "%" PRIu64 " elements of type %s are too large", n, tn);
    return 0;
}

static int place_tensor(const BlGguf *g, BlGgufTensor *t, BlError *err) {
    size_t data_size = g->size - (size_t)(g->data - (const uint8_t *)g->map);
    if (t->offset % g->alignment)
        return bl_fail(err, "data offset %" PRIu64 " is not aligned to %" PRIu64, t->offset, g->alignment);
    if (t->offset > data_size || t->nbytes > data_size - t->offset)
        return bl_fail(err, "data [%" PRIu64 ", +%zu) runs past end of file (data section holds %zu bytes)",
                       t->offset, t->nbytes, data_size);
    t->data = g->data + t->offset;
    return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return x + (a - x % a) % a; }

/* The data section as llama.cpp, the gguf package and bitlab's writer lay it
 * out: tensors in table order, the first at offset 0, each one at the end of
 * the one before rounded up to the alignment, and the section ending at the
 * last tensor's end (exactly, or rounded up to the alignment). Anything else
 * (overlaps, tensors out of order, gaps, unclaimed bytes at the end) means the
 * table does not describe the data: a tensor dropped from the table, a type or
 * shape edited without the data, or two tensors sharing bytes. */
static int check_layout(const BlGguf *g, BlError *err) {
    size_t data_size = g->size - (size_t)(g->data - (const uint8_t *)g->map);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        const BlGgufTensor *t = &g->tensors[i], *prev = &g->tensors[i - 1];
        if (t->offset < prev->offset)
            return bl_fail(err, "tensors out of order: tensor '%s' (#%" PRIu64 ") lies at data offset %" PRIu64
                           ", before tensor '%s' (#%" PRIu64 ") at %" PRIu64, t->name, i, t->offset, prev->name,
                           i - 1, prev->offset);
        if (t->offset < prev->offset + prev->nbytes)
            return bl_fail(err, "tensor '%s' at data [%" PRIu64 ", +%zu) overlaps tensor '%s' at [%" PRIu64
                           ", +%zu)", t->name, t->offset, t->nbytes, prev->name, prev->offset, prev->nbytes);
    }
    uint64_t end = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const BlGgufTensor *t = &g->tensors[i];
        uint64_t want = align_up(end, g->alignment);
        if (t->offset != want && i == 0)
            return bl_fail(err, "the first tensor '%s' is at data offset %" PRIu64 ", not 0: the tensor table "
                           "does not account for %" PRIu64 " bytes", t->name, t->offset, t->offset);
        if (t->offset != want)
            return bl_fail(err, "tensor '%s' at data offset %" PRIu64 " leaves %" PRIu64 " unclaimed bytes after "
                           "tensor '%s' (which ends at %" PRIu64 "; the next aligned offset is %" PRIu64 "): the "
                           "tensor table does not match the data", t->name, t->offset, t->offset - end,
                           g->tensors[i - 1].name, end, want);
        end = t->offset + t->nbytes;
    }
    if (data_size > align_up(end, g->alignment))
        return bl_fail(err, "the tensor table does not account for %" PRIu64 " bytes at the end of the data "
                       "section (its %" PRIu64 " tensors end at data offset %" PRIu64 ", the section holds %zu "
                       "bytes; a tensor missing from the table?)", (uint64_t)data_size - end, g->n_tensors, end,
                       data_size);
    return 0;
}

static int read_tensors(Cursor *c, BlGguf *g) {
    g->tensors = bl_calloc((size_t)g->n_tensors, sizeof *g->tensors, c->err);
    if (!g->tensors) return -1;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        BlGgufTensor *t = &g->tensors[i];
        if (read_tensor_info(c, t, i)) return -1;
        if (check_tensor_shape(t, c->err)) return bl_fail_prefix(c->err, "tensor '%s'", t->name);
    }
    if (check_unique_tensors(g, c->err)) return -1;
    uint64_t pad = (g->alignment - c->pos % g->alignment) % g->alignment;
    if (g->n_tensors && pad > left(c))
        return bl_fail(c->err, "data section (offset %zu + %" PRIu64 " padding) starts past end of file",
                       c->pos, pad);
    g->data = c->p + c->pos + (pad > left(c) ? left(c) : (size_t)pad);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (place_tensor(g, &g->tensors[i], c->err)) return bl_fail_prefix(c->err, "tensor '%s'", g->tensors[i].name);
    return check_layout(g, c->err);
}

// ----------------------------------------------------------------------------
// header and file

static int read_header(Cursor *c, BlGguf *g) {
    if (c->size < 4)
        return bl_fail(c->err, "truncated: %zu bytes is too short for the GGUF magic", c->size);
    const uint8_t *m = c->p;
    if (memcmp(m, "GGUF", 4))
        return bl_fail(c->err, "bad magic %02x %02x %02x %02x (expected \"GGUF\"): not a GGUF file", m[0], m[1],
                       m[2], m[3]);
    c->pos = 4;
    if (rd_u32(c, &g->version, "version")) return -1;
    if (g->version == 1) return bl_fail(c->err, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (g->version != 2 && g->version != 3) {
        if (g->version > 0xffff && (g->version & 0xffff) == 0)
            return bl_fail(c->err, "unsupported version %#" PRIx32 " (big-endian GGUF is not supported)",
                           g->version);
        return bl_fail(c->err, "unsupported GGUF version %" PRIu32 " (only versions 2 and 3)", g->version);
    }
    if (rd_u64(c, &g->n_tensors, "tensor count") || rd_u64(c, &g->n_kv, "kv count")) return -1;
    if (g->n_tensors > left(c) / MIN_TENSOR_INFO_BYTES)
        return bl_fail(c->err, "n_tensors = %" PRIu64 " cannot fit in a %zu-byte file", g->n_tensors, c->size);
    if (g->n_kv > left(c) / MIN_KV_BYTES)
        return bl_fail(c->err, "n_kv = %" PRIu64 " cannot fit in a %zu-byte file", g->n_kv, c->size);
    return 0;
}

static int map_file(BlGguf *g, const char *path, BlError *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return bl_fail(err, "cannot open: %s", strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st)) rc = bl_fail(err, "cannot stat: %s", strerror(errno));
    else if (S_ISDIR(st.st_mode)) rc = bl_fail(err, "is a directory, not a GGUF file");
    else if (!S_ISREG(st.st_mode)) rc = bl_fail(err, "not a regular file");
    else if (st.st_size == 0) rc = bl_fail(err, "empty file (0 bytes), not a GGUF file");
    if (rc == 0) {
        g->size = (size_t)st.st_size;
        void *map = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) rc = bl_fail(err, "cannot mmap %zu bytes: %s", g->size, strerror(errno));
        else g->map = map;
    }
    close(fd);
    return rc;
}

static int parse(BlGguf *g, BlError *err) {
    Cursor c = {.p = g->map, .size = g->size, .pos = 0, .err = err};
    if (read_header(&c, g) || read_kvs(&c, g) || check_unique_keys(g, err) || read_alignment(g, err))
        return -1;
    return read_tensors(&c, g);
}

int bl_gguf_open(BlGguf **out, const char *path, BlError *err) {
    *out = NULL;
    BlGguf *g = bl_calloc(1, sizeof *g, err);
    if (!g) return bl_fail_prefix(err, "%s", path);
    g->path = copy_str((BlGgufStr){path, strlen(path)}, err);
    if (!g->path || map_file(g, path, err) || parse(g, err)) {
        bl_gguf_close(g);
        return bl_fail_prefix(err, "%s", path);
    }
    *out = g;
    return 0;
}

void bl_gguf_close(BlGguf *g) {
    if (!g) return;
    for (uint64_t i = 0; g->kv && i < g->n_kv; i++) {
        free(g->kv[i].key);
        if (g->kv[i].type == BL_GGUF_ARRAY) free(g->kv[i].v.arr.strs);
    }
    for (uint64_t i = 0; g->tensors && i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    if (g->map) munmap(g->map, g->size);
    free(g->path);
    free(g);
}

// ----------------------------------------------------------------------------
// lookups and typed getters

const BlGgufKV *bl_gguf_find(const BlGguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && !strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const BlGgufTensor *bl_gguf_tensor(const BlGguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && !strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static int wrong_kind(const BlGguf *g, const BlGgufKV *kv, const char *expected, BlError *err) {
    return bl_fail(err, "%s: key '%s' has type %s, expected %s", g->path, kv->key, bl_gguf_type_name(kv->type),
                   expected);
}

static int kv_u64(const BlGguf *g, const BlGgufKV *kv, uint64_t *out, BlError *err) {
    if (is_unsigned(kv->type)) {
        *out = kv->v.u;
        return 0;
    }
    if (!is_signed(kv->type)) return wrong_kind(g, kv, "an integer", err);
    if (kv->v.i < 0)
        return bl_fail(err, "%s: key '%s' = %" PRId64 " is negative, expected an unsigned value", g->path,
                       kv->key, kv->v.i);
    *out = (uint64_t)kv->v.i;
    return 0;
}

/* Integers are accepted too: configs store e.g. rope bases either way. */
static int kv_f64(const BlGguf *g, const BlGgufKV *kv, double *out, BlError *err) {
    if (kv->type == BL_GGUF_FLOAT32 || kv->type == BL_GGUF_FLOAT64) *out = kv->v.f;
    else if (is_unsigned(kv->type)) *out = (double)kv->v.u;
    else if (is_signed(kv->type)) *out = (double)kv->v.i;
    else return wrong_kind(g, kv, "a number", err);
    return 0;
}

static const BlGgufKV *find_or_fail(const BlGguf *g, const char *key, BlError *err) {
    const BlGgufKV *kv = bl_gguf_find(g, key);
    if (!kv) bl_fail(err, "%s: missing key '%s'", g->path, key);
    return kv;
}

int bl_gguf_get_u64(const BlGguf *g, const char *key, uint64_t *out, BlError *err) {
    const BlGgufKV *kv = find_or_fail(g, key, err);
    return kv ? kv_u64(g, kv, out, err) : -1;
}

int bl_gguf_get_f64(const BlGguf *g, const char *key, double *out, BlError *err) {
    const BlGgufKV *kv = find_or_fail(g, key, err);
    return kv ? kv_f64(g, kv, out, err) : -1;
}

int bl_gguf_get_str(const BlGguf *g, const char *key, BlGgufStr *out, BlError *err) {
    const BlGgufKV *kv = find_or_fail(g, key, err);
    if (!kv) return -1;
    if (kv->type != BL_GGUF_STRING) return wrong_kind(g, kv, "string", err);
    *out = kv->v.str;
    return 0;
}

int bl_gguf_get_u64_or(const BlGguf *g, const char *key, uint64_t dflt, uint64_t *out, BlError *err) {
    const BlGgufKV *kv = bl_gguf_find(g, key);
    if (!kv) {
        *out = dflt;
        return 0;
    }
    return kv_u64(g, kv, out, err);
}

int bl_gguf_get_f64_or(const BlGguf *g, const char *key, double dflt, double *out, BlError *err) {
    const BlGgufKV *kv = bl_gguf_find(g, key);
    if (!kv) {
        *out = dflt;
        return 0;
    }
    return kv_f64(g, kv, out, err);
}

char *bl_gguf_strdup(BlGgufStr s, BlError *err) { return copy_str(s, err); }

const char *bl_gguf_type_name(BlGgufType t) {
    static const char *const names[] = {"uint8", "int8",  "uint16", "int16",  "uint32", "int32",  "float32",
                                        "bool",  "string", "array", "uint64", "int64",  "float64"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}
