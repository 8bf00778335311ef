/* test_quantize.c - the ternary encoders of io/quantize.h against blocks
 * worked out by hand from ggml's layouts (quantize_row_*_ref), a round trip
 * of random codes through bitlab's decoder (io/quants.h) for every type, the
 * refusals, and the GGUF writer (io/gguf_write.h) read back by bitlab's GGUF
 * reader: every metadata kind, alignment, tensors, replacing a key, and the
 * writer's own refusals. The Python test test_export_gguf.py checks the same
 * files against the `gguf` package. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "io/gguf.h"
#include "io/gguf_write.h"
#include "io/quantize.h"
#include "io/quants.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static int8_t rand_code(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (int8_t)(rng % 3) - 1;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* hand-checked bytes: d = 0.5 is fp16 0x3800 */
static void test_hand_blocks(void) {
    BlError err = {{0}};
    int8_t q[256];
    uint8_t b[66];

    /* Q4_0: byte j holds value j (low nibble) and j + 16 (high), nibble = q + 8 */
    memset(q, 0, 32);
    q[0] = -1, q[16] = 1, q[5] = 1, q[31] = -1;
    CHECK(bl_quantize_ternary(BL_GGML_Q4_0, q, 0.5f, 32, b, &err) == 0, "q4_0: %s", err.msg);
    CHECK(rd16(b) == 0x3800, "q4_0 d %04x", rd16(b));
    CHECK(b[2] == 0x97, "q4_0 byte 0: %02x (7 | 9 << 4)", b[2]);
    CHECK(b[2 + 5] == 0x89, "q4_0 byte 5: %02x (9 | 8 << 4)", b[2 + 5]);
    CHECK(b[2 + 15] == 0x78, "q4_0 byte 15: %02x (8 | 7 << 4)", b[2 + 15]);
    CHECK(b[2 + 1] == 0x88, "q4_0 zero pair: %02x", b[2 + 1]);

    /* Q8_0: int8 codes after d */
    CHECK(bl_quantize_ternary(BL_GGML_Q8_0, q, 0.5f, 32, b, &err) == 0, "q8_0: %s", err.msg);
    CHECK(rd16(b) == 0x3800 && b[2] == 0xff && b[2 + 16] == 0x01 && b[2 + 1] == 0, "q8_0 bytes");

    /* TQ2_0: byte m of half j holds values j·128 + n·32 + m at bits 2n, digit q + 1 */
    memset(q, 0, 256);
    q[0] = 1, q[32] = -1, q[64] = 0, q[96] = 1; /* digits 2, 0, 1, 2 */
    q[128 + 3] = -1;                            /* half 1, byte 3, bits 0 */
    CHECK(bl_quantize_ternary(BL_GGML_TQ2_0, q, 0.5f, 256, b, &err) == 0, "tq2_0: %s", err.msg);
    CHECK(b[0] == 0x92, "tq2_0 byte 0: %02x (2 | 0 << 2 | 1 << 4 | 2 << 6)", b[0]);
    CHECK(b[1] == 0x55, "tq2_0 all-zero byte: %02x", b[1]);
    CHECK(b[32 + 3] == 0x54, "tq2_0 byte 35: %02x", b[32 + 3]);
    CHECK(rd16(b + 64) == 0x3800, "tq2_0 d at byte 64");

    /* TQ1_0: five digits, most significant first, as ceil(x·256/243) */
    memset(q, 0, 256);
    q[0] = 1;                      /* byte 0: digits 2,1,1,1,1 = 202 -> 213 */
    q[160 + 16] = -1;              /* byte 32: digits 1,0,1,1,1 = 94 -> 100 */
    q[240 + 1 + 4] = 1;            /* qh byte 1: digits 1,2,1,1 = 49, ·3 = 147 -> 155 */
    CHECK(bl_quantize_ternary(BL_GGML_TQ1_0, q, 0.5f, 256, b, &err) == 0, "tq1_0: %s", err.msg);
    CHECK(b[0] == 213, "tq1_0 byte 0: %d", b[0]);
    CHECK(b[1] == 128, "tq1_0 all-zero byte: %d (121 -> 128)", b[1]);
    CHECK(b[32] == 100, "tq1_0 byte 32: %d", b[32]);
    CHECK(b[48] == 127, "tq1_0 all-zero qh: %d (120 -> 127)", b[48]);
    CHECK(b[49] == 155, "tq1_0 qh byte 1: %d", b[49]);
    CHECK(rd16(b + 52) == 0x3800, "tq1_0 d at byte 52");

    /* F16: ±fp16(d), 0 */
    int8_t f[3] = {1, -1, 0};
    uint8_t h[6];
    CHECK(bl_quantize_ternary(BL_GGML_F16, f, 0.5f, 3, h, &err) == 0, "f16: %s", err.msg);
    CHECK(rd16(h) == 0x3800 && rd16(h + 2) == 0xb800 && rd16(h + 4) == 0, "f16 values");
}

/* every type: decode(encode(q, d)) == q · fp16(d) (F32: q · d) */
static void test_round_trip(void) {
    static const uint32_t types[] = {BL_GGML_TQ2_0, BL_GGML_TQ1_0, BL_GGML_Q4_0, BL_GGML_Q8_0,
                                     BL_GGML_F16, BL_GGML_F32};
    enum { N = 1024 };
    int8_t q[N];
    float y[N];
    uint8_t buf[N * 4];
    for (int i = 0; i < N; i++) q[i] = rand_code();
    float d = 0.0371f;
    float d16 = bl_fp16_to_fp32(bl_fp32_to_fp16(d));
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        BlError err = {{0}};
        size_t bytes = bl_ggml_row_bytes(types[t], N);
        CHECK(bytes > 0 && bytes <= sizeof buf, "%s row bytes", bl_ggml_type_name(types[t]));
        CHECK(bl_quantize_ternary(types[t], q, d, N, buf, &err) == 0, "%s: %s",
              bl_ggml_type_name(types[t]), err.msg);
        CHECK(bl_dequantize(types[t], buf, y, N, &err) == 0, "%s decode: %s",
              bl_ggml_type_name(types[t]), err.msg);
        float unit = types[t] == BL_GGML_F32 ? d : d16;
        int bad = 0;
        for (int i = 0; i < N; i++) bad += y[i] != (float)q[i] * unit;
        CHECK(bad == 0, "%s: %d values differ from q x scale", bl_ggml_type_name(types[t]), bad);
    }
    float x[4] = {1.0f, -2.5f, 65504.0f, 1e-8f};
    uint8_t hb[8];
    BlError err = {{0}};
    CHECK(bl_quantize_float(BL_GGML_F16, x, 4, hb, &err) == 0 && rd16(hb) == 0x3c00 &&
              rd16(hb + 2) == 0xc100 && rd16(hb + 4) == 0x7bff && rd16(hb + 6) == 0,
          "f16 floats");
}

static void test_refusals(void) {
    BlError err = {{0}};
    int8_t q[32] = {0};
    uint8_t b[64];
    CHECK(bl_quantize_ternary(BL_GGML_Q4_0, q, 0.5f, 31, b, &err) != 0 && strstr(err.msg, "multiple"),
          "partial block refused: %s", err.msg);
    q[7] = 2;
    CHECK(bl_quantize_ternary(BL_GGML_Q8_0, q, 0.5f, 32, b, &err) != 0 && strstr(err.msg, "value 7"),
          "non-ternary code refused: %s", err.msg);
    q[7] = 0;
    CHECK(bl_quantize_ternary(BL_GGML_Q8_0, q, 1e6f, 32, b, &err) != 0 && strstr(err.msg, "fp16"),
          "scale beyond fp16 refused: %s", err.msg);
    CHECK(bl_quantize_ternary(BL_GGML_Q4_1, q, 0.5f, 32, b, &err) != 0 && strstr(err.msg, "Q4_1"),
          "unsupported type refused: %s", err.msg);
}

// ----------------------------------------------------------------------------
// the writer, read back

static void test_writer(void) {
    char path[] = "/tmp/bitlab_test_gguf_write_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "temp file");
    if (fd < 0) return;
    close(fd);
    BlError err = {{0}};
    BlGgufWriter *w = bl_gguf_writer_new(&err);
    CHECK(w != NULL, "writer: %s", err.msg);
    if (!w) return;
    int32_t ints[3] = {-5, 0, 7};
    const char *strs[3] = {"a", "", "Ġthe"};
    int rc = bl_gguf_set_str(w, "general.architecture", "llama", &err) |
             bl_gguf_set_u32(w, "x.u32", 4000000000u, &err) | bl_gguf_set_i32(w, "x.i32", -7, &err) |
             bl_gguf_set_u64(w, "x.u64", 1ull << 40, &err) | bl_gguf_set_f32(w, "x.f32", 1e-5f, &err) |
             bl_gguf_set_bool(w, "x.bool", true, &err) |
             bl_gguf_set_array(w, "x.ints", BL_GGUF_INT32, ints, 3, &err) |
             bl_gguf_set_str_array(w, "x.strs", strs, NULL, 3, &err) |
             bl_gguf_set_u32(w, "x.u32", 9, &err); /* replaced in place */
    CHECK(rc == 0, "setters: %s", err.msg);
    float vec[5] = {1, 2, 3, 4, 5};
    int8_t q[64];
    for (int i = 0; i < 64; i++) q[i] = rand_code();
    uint8_t *qb = malloc(bl_ggml_row_bytes(BL_GGML_Q4_0, 64));
    bl_quantize_ternary(BL_GGML_Q4_0, q, 0.25f, 64, qb, &err);
    uint64_t ne1[1] = {5}, ne2[2] = {32, 2};
    CHECK(bl_gguf_add_tensor(w, "v", BL_GGML_F32, 1, ne1, vec, sizeof vec, false, &err) == 0, "%s", err.msg);
    CHECK(bl_gguf_add_tensor(w, "q", BL_GGML_Q4_0, 2, ne2, qb, 36, true, &err) == 0, "%s", err.msg);
    CHECK(bl_gguf_add_tensor(w, "v", BL_GGML_F32, 1, ne1, vec, sizeof vec, false, &err) != 0 &&
              strstr(err.msg, "twice"), "duplicate tensor refused: %s", err.msg);
    CHECK(bl_gguf_add_tensor(w, "bad", BL_GGML_F32, 1, ne1, vec, 4, false, &err) != 0 &&
              strstr(err.msg, "bytes"), "wrong size refused: %s", err.msg);
    uint64_t ne3[1] = {31};
    CHECK(bl_gguf_add_tensor(w, "odd", BL_GGML_Q4_0, 1, ne3, qb, 18, false, &err) != 0 &&
              strstr(err.msg, "multiple"), "partial block refused: %s", err.msg);
    CHECK(bl_gguf_write(w, path, &err) == 0, "write: %s", err.msg);
    bl_gguf_writer_free(w);

    BlGguf *g = NULL;
    CHECK(bl_gguf_open(&g, path, &err) == 0, "read back: %s", err.msg);
    if (g) {
        uint64_t u;
        double f;
        BlGgufStr s;
        CHECK(g->version == 3 && g->alignment == 32 && g->n_kv == 9 && g->n_tensors == 2, "header");
        CHECK(bl_gguf_get_u64(g, "x.u32", &u, &err) == 0 && u == 9, "u32 replaced");
        CHECK(bl_gguf_get_u64(g, "x.u64", &u, &err) == 0 && u == 1ull << 40, "u64");
        const BlGgufKV *kv = bl_gguf_find(g, "x.i32");
        CHECK(kv && kv->type == BL_GGUF_INT32 && kv->v.i == -7, "i32");
        CHECK(bl_gguf_get_f64(g, "x.f32", &f, &err) == 0 && (float)f == 1e-5f, "f32");
        kv = bl_gguf_find(g, "x.bool");
        CHECK(kv && kv->type == BL_GGUF_BOOL && kv->v.u == 1, "bool");
        CHECK(bl_gguf_get_str(g, "general.architecture", &s, &err) == 0 && s.len == 5 &&
                  memcmp(s.ptr, "llama", 5) == 0, "string");
        kv = bl_gguf_find(g, "x.ints");
        int32_t got[3] = {0};
        if (kv && kv->type == BL_GGUF_ARRAY && kv->v.arr.n == 3) memcpy(got, kv->v.arr.data, sizeof got);
        CHECK(got[0] == -5 && got[1] == 0 && got[2] == 7, "int array");
        kv = bl_gguf_find(g, "x.strs");
        CHECK(kv && kv->v.arr.type == BL_GGUF_STRING && kv->v.arr.n == 3 && kv->v.arr.strs[1].len == 0 &&
                  kv->v.arr.strs[2].len == strlen("Ġthe") &&
                  memcmp(kv->v.arr.strs[2].ptr, "Ġthe", 4) == 0, "string array");
        const BlGgufTensor *tv = bl_gguf_tensor(g, "v"), *tq = bl_gguf_tensor(g, "q");
        CHECK(tv && tq && tv->offset == 0 && tq->offset == 32 && tq->ne[0] == 32 && tq->ne[1] == 2,
              "tensor offsets aligned to 32");
        CHECK(((g->data - (const uint8_t *)g->map) % 32) == 0, "data section aligned");
        float y[64];
        CHECK(tv && memcmp(tv->data, vec, sizeof vec) == 0, "F32 tensor bytes");
        int bad = tq && bl_dequantize(BL_GGML_Q4_0, tq->data, y, 64, &err) == 0 ? 0 : 1;
        for (int i = 0; !bad && i < 64; i++) bad += y[i] != q[i] * 0.25f;
        CHECK(bad == 0, "Q4_0 tensor decodes to the codes");
        bl_gguf_close(g);
    }
    unlink(path);
    /* an unwritable target leaves nothing behind and says where */
    w = bl_gguf_writer_new(&err);
    CHECK(bl_gguf_write(w, "/nonexistent_dir_bitlab/x.gguf", &err) != 0 &&
              strstr(err.msg, "nonexistent_dir_bitlab"), "unwritable path: %s", err.msg);
    bl_gguf_writer_free(w);
}

int main(void) {
    test_hand_blocks();
    test_round_trip();
    test_refusals();
    test_writer();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_quantize: all passed\n");
    return 0;
}
