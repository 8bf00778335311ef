/* gguf_dump.c - prints what bitlab's GGUF reader sees, for tests/py/test_gguf_*.py.
 *
 *   gguf_dump FILE                       header, metadata and tensor infos
 *   gguf_dump FILE OUT.f32 [NAME...]     also dequantizes the named tensors (all
 *                                        if none named) into OUT.f32, back to back
 *
 * Text on stdout, one record per line; every string (keys, values, names) is
 * written as "s:" + hex bytes so arbitrary bytes survive:
 *   version V / alignment A / n_kv N / n_tensors N / data_start FILE_OFFSET
 *   kv KEY TYPE VALUE            scalars: integers in decimal, floats %.17g
 *   kv KEY array ELEMTYPE N V... every element, same formats
 *   tensor NAME TYPE N_DIMS NE... OFFSET NBYTES
 *   data NAME BYTE_OFFSET COUNT  where the tensor's floats are in OUT.f32
 * Exit status: 0 ok, 1 the reader refused the file (message on stderr), 2 usage. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "io/quants.h"

static void put_str(const char *p, uint64_t len) {
    printf(" s:");
    for (uint64_t i = 0; i < len; i++) printf("%02x", (unsigned char)p[i]);
}

static uint64_t le(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    while (n--) v = v << 8 | p[n];
    return v;
}

/* One raw little-endian array element of a scalar type. */
static void put_raw(BlGgufType t, const uint8_t *p) {
    switch (t) {
    case BL_GGUF_UINT8: case BL_GGUF_BOOL: printf(" %" PRIu64, le(p, 1)); break;
    case BL_GGUF_INT8: printf(" %d", (int8_t)p[0]); break;
    case BL_GGUF_UINT16: printf(" %" PRIu64, le(p, 2)); break;
    case BL_GGUF_INT16: printf(" %d", (int16_t)le(p, 2)); break;
    case BL_GGUF_UINT32: printf(" %" PRIu64, le(p, 4)); break;
    case BL_GGUF_INT32: printf(" %" PRId32, (int32_t)le(p, 4)); break;
    case BL_GGUF_UINT64: printf(" %" PRIu64, le(p, 8)); break;
    case BL_GGUF_INT64: printf(" %" PRId64, (int64_t)le(p, 8)); break;
    case BL_GGUF_FLOAT32: {
        uint32_t b = (uint32_t)le(p, 4);
        float f;
        memcpy(&f, &b, sizeof f);
        printf(" %.17g", f);
        break;
    }
    case BL_GGUF_FLOAT64: {
        uint64_t b = le(p, 8);
        double f;
        memcpy(&f, &b, sizeof f);
        printf(" %.17g", f);
        break;
    }
    default: printf(" ?"); /* the reader never leaves other element types */
    }
}

static size_t elem_size(BlGgufType t) {
    switch (t) {
    case BL_GGUF_UINT8: case BL_GGUF_INT8: case BL_GGUF_BOOL: return 1;
    case BL_GGUF_UINT16: case BL_GGUF_INT16: return 2;
    case BL_GGUF_UINT32: case BL_GGUF_INT32: case BL_GGUF_FLOAT32: return 4;
    default: return 8;
    }
}

static void put_kv(const BlGgufKV *kv) {
    printf("kv");
    put_str(kv->key, strlen(kv->key));
    printf(" %s", bl_gguf_type_name(kv->type));
    switch (kv->type) {
    case BL_GGUF_STRING: put_str(kv->v.str.ptr, kv->v.str.len); break;
    case BL_GGUF_FLOAT32: case BL_GGUF_FLOAT64: printf(" %.17g", kv->v.f); break;
    case BL_GGUF_INT8: case BL_GGUF_INT16: case BL_GGUF_INT32: case BL_GGUF_INT64:
        printf(" %" PRId64, kv->v.i);
        break;
    case BL_GGUF_ARRAY:
        printf(" %s %" PRIu64, bl_gguf_type_name(kv->v.arr.type), kv->v.arr.n);
        for (uint64_t i = 0; i < kv->v.arr.n; i++) {
            if (kv->v.arr.strs) put_str(kv->v.arr.strs[i].ptr, kv->v.arr.strs[i].len);
            else put_raw(kv->v.arr.type, (const uint8_t *)kv->v.arr.data + i * elem_size(kv->v.arr.type));
        }
        break;
    default: printf(" %" PRIu64, kv->v.u);
    }
    printf("\n");
}

static void put_tensor(const BlGgufTensor *t) {
    printf("tensor");
    put_str(t->name, strlen(t->name));
    printf(" %s %" PRIu32, bl_ggml_type_name(t->type), t->n_dims);
    for (uint32_t d = 0; d < t->n_dims; d++) printf(" %" PRIu64, t->ne[d]);
    printf(" %" PRIu64 " %zu\n", t->offset, t->nbytes);
}

static int dump_data(const BlGgufTensor *t, FILE *out, long *pos, BlError *err) {
    float *buf = bl_malloc(t->n_elements * sizeof(float), err);
    if (!buf) return -1;
    int rc = bl_dequantize(t->type, t->data, buf, t->n_elements, err);
    if (rc == 0 && fwrite(buf, sizeof(float), t->n_elements, out) != t->n_elements)
        rc = bl_fail(err, "short write of tensor '%s'", t->name);
    free(buf);
    if (rc) return bl_fail_prefix(err, "tensor '%s'", t->name);
    printf("data");
    put_str(t->name, strlen(t->name));
    printf(" %ld %" PRIu64 "\n", *pos, t->n_elements);
    *pos += (long)(t->n_elements * sizeof(float));
    return 0;
}

static int dump_tensors(const BlGguf *g, const char *out_path, char **names, int n_names, BlError *err) {
    FILE *out = fopen(out_path, "wb");
    if (!out) return bl_fail(err, "cannot create %s", out_path);
    long pos = 0;
    int rc = 0;
    uint64_t n = n_names ? (uint64_t)n_names : g->n_tensors;
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        const BlGgufTensor *t = n_names ? bl_gguf_tensor(g, names[i]) : &g->tensors[i];
        rc = t ? dump_data(t, out, &pos, err) : bl_fail(err, "no tensor named '%s'", names[i]);
    }
    if (fclose(out) && rc == 0) rc = bl_fail(err, "cannot write %s", out_path);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: gguf_dump FILE [OUT.f32 [NAME...]]\n");
        return 2;
    }
    BlError err = {{0}};
    BlGguf *g;
    if (bl_gguf_open(&g, argv[1], &err)) {
        fprintf(stderr, "gguf_dump: %s\n", err.msg);
        return 1;
    }
    printf("version %" PRIu32 "\nalignment %" PRIu64 "\nn_kv %" PRIu64 "\nn_tensors %" PRIu64 "\n", g->version,
           g->alignment, g->n_kv, g->n_tensors);
    printf("data_start %td\n", (const char *)g->data - (const char *)g->map);
    for (uint64_t i = 0; i < g->n_kv; i++) put_kv(&g->kv[i]);
    for (uint64_t i = 0; i < g->n_tensors; i++) put_tensor(&g->tensors[i]);
    int rc = argc > 2 ? dump_tensors(g, argv[2], argv + 3, argc - 3, &err) : 0;
    bl_gguf_close(g);
    if (rc) {
        fprintf(stderr, "gguf_dump: %s\n", err.msg);
        return 1;
    }
    return 0;
}
