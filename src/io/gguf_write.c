/* gguf_write.c - the GGUF v3 writer (see gguf_write.h). Each key/value is
 * serialised when it is set (type + value bytes), so writing the file is
 * a matter of concatenation. */
#include "io/gguf_write.h"

#include <stdlib.h>
#include <string.h>

#include "core/bytebuf.h"
#include "io/atomic_file.h"
#include "io/quants.h"

#define MAX_NAME 63 /* GGML_MAX_NAME is 64 including the NUL */

typedef struct {
    char *key;
    BlByteBuf val; /* u32 type, then the value */
} Kv;

typedef struct {
    char *name;
    uint32_t type;
    int n_dims;
    uint64_t ne[4];
    const void *data;
    size_t nbytes;
    bool own;
    uint64_t offset;
} Tensor;

struct BlGgufWriter {
    Kv *kv;
    int n_kv, cap_kv;
    Tensor *t;
    int n_t, cap_t;
    uint32_t alignment;
};

// ----------------------------------------------------------------------------
// little-endian serialisation

/* size: 1..8 bytes (the bound in the loop says so to the compiler too) */
static void put_le(BlByteBuf *b, uint64_t v, int size) {
    uint8_t x[8];
    for (int i = 0; i < size && i < (int)sizeof x; i++) x[i] = (uint8_t)(v >> (8 * i));
    bl_bytebuf_put(b, x, (size_t)size);
}

static void put_str(BlByteBuf *b, const char *s, uint64_t len) {
    put_le(b, len, 8);
    bl_bytebuf_put(b, s, (size_t)len);
}

/* bytes of one element of a scalar type; 0 for STRING / ARRAY / unknown */
static int elem_size(BlGgufType t) {
    switch (t) {
    case BL_GGUF_UINT8: case BL_GGUF_INT8: case BL_GGUF_BOOL: return 1;
    case BL_GGUF_UINT16: case BL_GGUF_INT16: return 2;
    case BL_GGUF_UINT32: case BL_GGUF_INT32: case BL_GGUF_FLOAT32: return 4;
    case BL_GGUF_UINT64: case BL_GGUF_INT64: case BL_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

// ----------------------------------------------------------------------------
// metadata

BlGgufWriter *bl_gguf_writer_new(BlError *err) {
    BlGgufWriter *w = bl_calloc(1, sizeof *w, err);
    if (!w) return NULL;
    w->alignment = BL_GGUF_DEFAULT_ALIGNMENT;
    if (bl_gguf_set_u32(w, "general.alignment", BL_GGUF_DEFAULT_ALIGNMENT, err) != 0) {
        bl_gguf_writer_free(w);
        return NULL;
    }
    return w;
}

void bl_gguf_writer_free(BlGgufWriter *w) {
    if (!w) return;
    for (int i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val.p);
    }
    for (int i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        if (w->t[i].own) free((void *)w->t[i].data);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

static int find_kv(const BlGgufWriter *w, const char *key) {
    for (int i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) return i;
    return -1;
}

bool bl_gguf_writer_has(const BlGgufWriter *w, const char *key) { return find_kv(w, key) >= 0; }

/* Stores the serialised value under key (replacing an earlier one); takes val. */
static int set_kv(BlGgufWriter *w, const char *key, BlByteBuf val, BlError *err) {
    if (val.failed) {
        free(val.p);
        return bl_fail(err, "gguf: out of memory for key %s", key);
    }
    if (!key[0]) {
        free(val.p);
        return bl_fail(err, "gguf: empty metadata key");
    }
    int i = find_kv(w, key);
    if (i >= 0) {
        free(w->kv[i].val.p);
        w->kv[i].val = val;
        return 0;
    }
    if (w->n_kv == w->cap_kv) {
        int cap = w->cap_kv ? 2 * w->cap_kv : 32;
        Kv *kv = realloc(w->kv, (size_t)cap * sizeof *kv);
        if (!kv) {
            free(val.p);
            return bl_fail(err, "gguf: out of memory for key %s", key);
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(val.p);
        return bl_fail(err, "gguf: out of memory for key %s", key);
    }
    w->kv[w->n_kv++] = (Kv){k, val};
    return 0;
}

static int set_scalar(BlGgufWriter *w, const char *key, BlGgufType t, uint64_t bits, BlError *err) {
    BlByteBuf b = {0};
    put_le(&b, t, 4);
    put_le(&b, bits, elem_size(t));
    return set_kv(w, key, b, err);
}

int bl_gguf_set_u32(BlGgufWriter *w, const char *key, uint32_t v, BlError *err) {
    if (strcmp(key, "general.alignment") == 0) {
        if (v == 0 || (v & (v - 1)) || v % 8)
            return bl_fail(err, "gguf: general.alignment %u is not a power of two >= 8", v);
        w->alignment = v;
    }
    return set_scalar(w, key, BL_GGUF_UINT32, v, err);
}

int bl_gguf_set_i32(BlGgufWriter *w, const char *key, int32_t v, BlError *err) {
    return set_scalar(w, key, BL_GGUF_INT32, (uint32_t)v, err);
}

int bl_gguf_set_u64(BlGgufWriter *w, const char *key, uint64_t v, BlError *err) {
    return set_scalar(w, key, BL_GGUF_UINT64, v, err);
}

int bl_gguf_set_f32(BlGgufWriter *w, const char *key, float v, BlError *err) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return set_scalar(w, key, BL_GGUF_FLOAT32, u, err);
}

int bl_gguf_set_bool(BlGgufWriter *w, const char *key, bool v, BlError *err) {
    return set_scalar(w, key, BL_GGUF_BOOL, v ? 1 : 0, err);
}

int bl_gguf_set_str(BlGgufWriter *w, const char *key, const char *v, BlError *err) {
    BlByteBuf b = {0};
    put_le(&b, BL_GGUF_STRING, 4);
    put_str(&b, v, strlen(v));
    return set_kv(w, key, b, err);
}

int bl_gguf_set_array(BlGgufWriter *w, const char *key, BlGgufType elem_type, const void *data,
                      uint64_t n, BlError *err) {
    int es = elem_size(elem_type);
    if (es == 0) return bl_fail(err, "gguf: %s: arrays of %s need bl_gguf_set_str_array", key,
                                bl_gguf_type_name(elem_type));
    BlByteBuf b = {0};
    put_le(&b, BL_GGUF_ARRAY, 4);
    put_le(&b, elem_type, 4);
    put_le(&b, n, 8);
    /* elements are little-endian in the file and in memory on bitlab's hosts */
    bl_bytebuf_put(&b, data, (size_t)n * (size_t)es);
    return set_kv(w, key, b, err);
}

int bl_gguf_set_str_array(BlGgufWriter *w, const char *key, const char *const *strs,
                          const uint64_t *lens, uint64_t n, BlError *err) {
    BlByteBuf b = {0};
    put_le(&b, BL_GGUF_ARRAY, 4);
    put_le(&b, BL_GGUF_STRING, 4);
    put_le(&b, n, 8);
    for (uint64_t i = 0; i < n; i++) put_str(&b, strs[i], lens ? lens[i] : strlen(strs[i]));
    return set_kv(w, key, b, err);
}

int bl_gguf_copy_kv(BlGgufWriter *w, const BlGgufKV *kv, BlError *err) {
    BlByteBuf b = {0};
    put_le(&b, kv->type, 4);
    switch (kv->type) {
    case BL_GGUF_STRING:
        put_str(&b, kv->v.str.ptr, kv->v.str.len);
        break;
    case BL_GGUF_ARRAY: {
        BlGgufType et = kv->v.arr.type;
        put_le(&b, et, 4);
        put_le(&b, kv->v.arr.n, 8);
        if (et == BL_GGUF_STRING)
            for (uint64_t i = 0; i < kv->v.arr.n; i++) put_str(&b, kv->v.arr.strs[i].ptr, kv->v.arr.strs[i].len);
        else
            bl_bytebuf_put(&b, kv->v.arr.data, (size_t)kv->v.arr.n * (size_t)elem_size(et));
        break;
    }
    case BL_GGUF_FLOAT32: {
        float f = (float)kv->v.f; /* exact: it was read from a float */
        uint32_t u;
        memcpy(&u, &f, 4);
        put_le(&b, u, 4);
        break;
    }
    case BL_GGUF_FLOAT64: {
        uint64_t u;
        memcpy(&u, &kv->v.f, 8);
        put_le(&b, u, 8);
        break;
    }
    case BL_GGUF_INT8: case BL_GGUF_INT16: case BL_GGUF_INT32: case BL_GGUF_INT64:
        put_le(&b, (uint64_t)kv->v.i, elem_size(kv->type));
        break;
    default:
        put_le(&b, kv->v.u, elem_size(kv->type));
        break;
    }
    return set_kv(w, kv->key, b, err);
}

// ----------------------------------------------------------------------------
// tensors

int bl_gguf_add_tensor(BlGgufWriter *w, const char *name, uint32_t type, int n_dims,
                       const uint64_t *ne, const void *data, size_t nbytes, bool own,
                       BlError *err) {
    if (!name) return bl_fail(err, "gguf: a tensor without a name");
    int rc = 0;
    const char *tn = bl_ggml_type_name(type);
    uint64_t rows = 1;
    for (int i = 1; i < n_dims && i < 4; i++) rows *= ne[i];
    size_t row = n_dims >= 1 && n_dims <= 4 ? bl_ggml_row_bytes(type, ne[0]) : 0;
    if (strlen(name) == 0 || strlen(name) > MAX_NAME)
        rc = bl_fail(err, "gguf: tensor name \"%s\" must have 1..%d bytes", name, MAX_NAME);
    else if (!tn || !bl_ggml_block_size(type))
        rc = bl_fail(err, "gguf: tensor %s: ggml type %u is not one bitlab writes", name, type);
    else if (n_dims < 1 || n_dims > 4)
        rc = bl_fail(err, "gguf: tensor %s: %d dimensions (1..4)", name, n_dims);
    else if (row == 0)
        rc = bl_fail(err, "gguf: tensor %s: row length %llu is not a multiple of %s's block of %zu",
                     name, (unsigned long long)ne[0], tn, bl_ggml_block_size(type));
    else if ((uint64_t)nbytes != (uint64_t)row * rows)
        rc = bl_fail(err, "gguf: tensor %s: %zu bytes of data, its shape needs %llu", name, nbytes,
                     (unsigned long long)row * rows);
    for (int i = 0; rc == 0 && i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) rc = bl_fail(err, "gguf: tensor %s added twice", name);
    if (rc == 0 && w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 64;
        Tensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (t) {
            w->t = t;
            w->cap_t = cap;
        } else {
            rc = bl_fail(err, "gguf: out of memory for tensor %s", name);
        }
    }
    char *nm = rc == 0 ? strdup(name) : NULL;
    if (rc == 0 && !nm) rc = bl_fail(err, "gguf: out of memory for tensor %s", name);
    if (rc != 0) {
        if (own) free((void *)data);
        return -1;
    }
    Tensor *t = &w->t[w->n_t++];
    *t = (Tensor){.name = nm, .type = type, .n_dims = n_dims, .data = data, .nbytes = nbytes, .own = own};
    for (int i = 0; i < n_dims; i++) t->ne[i] = ne[i];
    return 0;
}

// ----------------------------------------------------------------------------
// the file

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

int bl_gguf_write(BlGgufWriter *w, const char *path, BlError *err) {
    BlByteBuf h = {0};
    bl_bytebuf_put(&h, "GGUF", 4);
    put_le(&h, 3, 4);
    put_le(&h, (uint64_t)w->n_t, 8);
    put_le(&h, (uint64_t)w->n_kv, 8);
    for (int i = 0; i < w->n_kv; i++) {
        put_str(&h, w->kv[i].key, strlen(w->kv[i].key));
        bl_bytebuf_put(&h, w->kv[i].val.p, w->kv[i].val.n);
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        Tensor *t = &w->t[i];
        t->offset = off;
        put_str(&h, t->name, strlen(t->name));
        put_le(&h, (uint64_t)t->n_dims, 4);
        for (int d = 0; d < t->n_dims; d++) put_le(&h, t->ne[d], 8);
        put_le(&h, t->type, 4);
        put_le(&h, t->offset, 8);
        off = align_up(off + t->nbytes, w->alignment);
    }
    static const uint8_t zeros[256] = {0}; /* alignment <= 256 in practice; padded in chunks */
    if (h.failed) {
        free(h.p);
        return bl_fail(err, "%s: out of memory for the GGUF header", path);
    }
    BlAtomicFile f;
    if (bl_atomic_open(&f, path, err) != 0) {
        free(h.p);
        return -1;
    }
    bl_atomic_write(&f, h.p, h.n);
    uint64_t at = h.n, data0 = align_up(h.n, w->alignment);
    free(h.p);
    for (int i = 0; i <= w->n_t; i++) {
        uint64_t want = data0 + (i < w->n_t ? w->t[i].offset : off);
        while (at < want) {
            size_t k = want - at < sizeof zeros ? (size_t)(want - at) : sizeof zeros;
            bl_atomic_write(&f, zeros, k);
            at += k;
        }
        if (i == w->n_t) break;
        bl_atomic_write(&f, w->t[i].data, w->t[i].nbytes);
        at += w->t[i].nbytes;
    }
    return bl_atomic_commit(&f, err);
}
