/* load_packed.c - loads the weights of a folder written by bitlab's packed
 * ternary export (format in export/packed_safetensors.h): every block linear
 * is unpacked from 2-bit codes × its F32 scale into the fp32 arena, the rest
 * is read as in any Hugging Face folder. config.json's quantization_config
 * sets cfg.ternary_act_bits, so the forward quantises the block linears'
 * input activations as the student did. Every check of the packed data
 * names the tensor at fault. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/packed_format.h"
#include "io/safetensors.h"
#include "model/load_internal.h"

// ----------------------------------------------------------------------------
// config.json

static int field_int(const cJSON *q, const char *path, const char *key, int *out, BlError *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(q, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return bl_fail(err, "%s: quantization_config.%s must be an integer", path, key);
    *out = (int)v->valuedouble;
    return 0;
}

int bl_packed_config(const struct cJSON *root, const char *path, BlConfig *c, BlError *err) {
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    if (!q || cJSON_IsNull(q)) return 0;
    if (!cJSON_IsObject(q)) return bl_fail(err, "%s: quantization_config must be an object", path);
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
    if (!cJSON_IsString(method))
        return bl_fail(err, "%s: quantization_config.quant_method is missing or not a string", path);
    if (strcmp(method->valuestring, BL_PACKED_QUANT_METHOD) != 0)
        return bl_fail(err, "%s: quantization_config.quant_method \"%.64s\" is not supported (only "
                       "\"%s\", written by bitlab export)", path, method->valuestring,
                       BL_PACKED_QUANT_METHOD);
    int version = 0, bits = 0, act_bits = 0;
    if (field_int(q, path, "format_version", &version, err) ||
        field_int(q, path, "bits", &bits, err) || field_int(q, path, "act_bits", &act_bits, err))
        return -1;
    if (version != BL_PACKED_FORMAT_VERSION)
        return bl_fail(err, "%s: quantization_config.format_version %d is not supported (only %d)",
                       path, version, BL_PACKED_FORMAT_VERSION);
    if (bits != 2) return bl_fail(err, "%s: quantization_config.bits = %d, expected 2", path, bits);
    const cJSON *packing = cJSON_GetObjectItemCaseSensitive(q, "packing");
    if (!cJSON_IsString(packing) || strcmp(packing->valuestring, BL_PACKED_PACKING) != 0)
        return bl_fail(err, "%s: quantization_config.packing must be \"%s\"", path, BL_PACKED_PACKING);
    if (act_bits != 8 && act_bits != 4 && act_bits != 16)
        return bl_fail(err, "%s: quantization_config.act_bits = %d is not 4, 8 or 16", path, act_bits);
    c->ternary_act_bits = act_bits == 16 ? 0 : act_bits; /* 16: activations stay fp32 */
    return 1;
}

// ----------------------------------------------------------------------------
// the packing description in the safetensors __metadata__

/* The header was validated by bl_st_open; this reads its __metadata__ entry. */
static cJSON *read_packing(const char *path, BlError *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return bl_fail(err, "%s: cannot open: %s", path, strerror(errno)), NULL;
    unsigned char len_le[8];
    uint64_t n = 0;
    char *text = NULL;
    if (fread(len_le, 1, 8, f) == 8) {
        for (int i = 7; i >= 0; i--) n = n << 8 | len_le[i];
        text = n < ((uint64_t)1 << 30) ? bl_malloc((size_t)n + 1, err) : NULL;
    }
    bool ok = text && fread(text, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    cJSON *root = ok ? cJSON_ParseWithLength(text, (size_t)n) : NULL;
    free(text);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(meta, BL_PACKED_METADATA_KEY);
    cJSON *out = cJSON_IsString(pk) ? cJSON_Parse(pk->valuestring) : NULL;
    if (!out)
        bl_fail(err, "%s: __metadata__.%s is missing or not JSON text (the packing description)",
                path, BL_PACKED_METADATA_KEY);
    cJSON_Delete(root);
    return out;
}

static int check_packing(const cJSON *pk, const char *path, BlError *err) {
    static const int codes[3] = {-1, 0, 1};
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(pk, "format_version");
    if (!cJSON_IsNumber(v) || v->valuedouble != BL_PACKED_FORMAT_VERSION)
        return bl_fail(err, "%s: packing format_version is not %d", path, BL_PACKED_FORMAT_VERSION);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(pk, "codes");
    bool ok = cJSON_IsArray(c) && cJSON_GetArraySize(c) == 3;
    for (int i = 0; ok && i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(c, i);
        ok = cJSON_IsNumber(e) && e->valuedouble == codes[i];
    }
    if (!ok) return bl_fail(err, "%s: packing codes must be [-1, 0, 1]", path);
    v = cJSON_GetObjectItemCaseSensitive(pk, "bit_order");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "lsb_first") != 0)
        return bl_fail(err, "%s: packing bit_order must be \"lsb_first\"", path);
    v = cJSON_GetObjectItemCaseSensitive(pk, "row_padding");
    if (!cJSON_IsNumber(v) || v->valuedouble != 4)
        return bl_fail(err, "%s: packing row_padding must be 4", path);
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(pk, "tensors")))
        return bl_fail(err, "%s: packing tensors must be an object", path);
    return 0;
}

// ----------------------------------------------------------------------------
// tensors

static bool is_block_linear(const BlModel *m, const float *dst) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++)
            if (m->layers[l].lin[k].w == dst) return true;
    return false;
}

static int shape_is(const BlStTensor *t, int n_dims, uint64_t d0, uint64_t d1) {
    if (t->n_dims != n_dims) return 0;
    return (n_dims < 1 || t->shape[0] == d0) && (n_dims < 2 || t->shape[1] == d1);
}

static int shape_error(const BlStTensor *t, const char *path, int n_dims, uint64_t d0,
                       uint64_t d1, BlError *err) {
    unsigned long long want[2] = {d0, d1}, got[BL_ST_MAX_DIMS];
    for (int i = 0; i < t->n_dims; i++) got[i] = t->shape[i];
    char ws[64], gs[160];
    bl_shape_str(ws, sizeof ws, want, n_dims);
    bl_shape_str(gs, sizeof gs, got, t->n_dims);
    return bl_fail(err, "%s: tensor %s: expected shape %s, got %s", path, t->name, ws, gs);
}

static int load_plain(const BlSafetensors *st, const BlWeightSlot *s, const char *path,
                      BlError *err) {
    const BlStTensor *t = bl_st_tensor(st, s->hf_name);
    if (!t) return bl_fail(err, "%s: missing tensor %s", path, s->hf_name);
    int nd = s->cols ? 2 : 1;
    if (!shape_is(t, nd, (uint64_t)s->rows, (uint64_t)s->cols))
        return shape_error(t, path, nd, (uint64_t)s->rows, (uint64_t)s->cols, err);
    return bl_st_to_f32(st, t, s->dst, err);
}

/* The logical [out, in] the packing description records for name. */
static int check_recorded_shape(const cJSON *tensors, const BlWeightSlot *s, const char *path,
                                BlError *err) {
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(tensors, s->hf_name);
    if (!rec)
        return bl_fail(err, "%s: tensor %s is missing from the packing description", path, s->hf_name);
    const cJSON *a = cJSON_GetArrayItem(rec, 0), *b = cJSON_GetArrayItem(rec, 1);
    if (!cJSON_IsArray(rec) || cJSON_GetArraySize(rec) != 2 || !cJSON_IsNumber(a) ||
        !cJSON_IsNumber(b) || a->valuedouble != s->rows || b->valuedouble != s->cols)
        return bl_fail(err, "%s: tensor %s: the packing description's shape is not [%d, %d] "
                       "(config.json)", path, s->hf_name, s->rows, s->cols);
    return 0;
}

static int load_scale(const BlSafetensors *st, const char *name, const char *path, float *scale,
                      BlError *err) {
    char sname[160];
    snprintf(sname, sizeof sname, "%s%s", name, BL_PACKED_SCALE_SUFFIX);
    const BlStTensor *t = bl_st_tensor(st, sname);
    if (!t) return bl_fail(err, "%s: missing tensor %s (the scale of %s)", path, sname, name);
    if (strcmp(t->dtype, "F32") != 0 || t->n_elements != 1)
        return bl_fail(err, "%s: tensor %s: expected one F32 value, got %llu of %s", path, sname,
                       (unsigned long long)t->n_elements, t->dtype);
    memcpy(scale, t->data, sizeof *scale);
    if (!isfinite(*scale) || !(*scale > 0.0f))
        return bl_fail(err, "%s: tensor %s: %g is not a positive finite scale", path, sname,
                       (double)*scale);
    return 0;
}

/* W[r][j] = (code − 1) · scale; code 3 and non-zero padding are refused. */
static int load_linear(const BlSafetensors *st, const cJSON *tensors, const BlWeightSlot *s,
                       const char *path, BlError *err) {
    const BlStTensor *t = bl_st_tensor(st, s->hf_name);
    if (!t) return bl_fail(err, "%s: missing tensor %s", path, s->hf_name);
    if (strcmp(t->dtype, "U8") != 0)
        return bl_fail(err, "%s: tensor %s: dtype %s, expected U8 (packed ternary codes)", path,
                       s->hf_name, t->dtype);
    size_t rows = (size_t)s->rows, cols = (size_t)s->cols, row_bytes = (cols + 3) / 4;
    if (!shape_is(t, 2, rows, row_bytes)) return shape_error(t, path, 2, rows, row_bytes, err);
    float scale;
    if (check_recorded_shape(tensors, s, path, err) || load_scale(st, s->hf_name, path, &scale, err))
        return -1;
    const float value[3] = {-scale, 0.0f, scale};
    const unsigned char *src = t->data;
    for (size_t r = 0; r < rows; r++) {
        const unsigned char *row = src + r * row_bytes;
        float *dst = s->dst + r * cols;
        for (size_t j = 0; j < row_bytes * 4; j++) {
            unsigned code = (row[j / 4] >> (2 * (j % 4))) & 3u;
            if (code == 3)
                return bl_fail(err, "%s: tensor %s: row %zu, column %zu holds code 3, which is not "
                               "a ternary code (0, 1, 2)", path, s->hf_name, r, j);
            if (j >= cols && code != 1)
                return bl_fail(err, "%s: tensor %s: row %zu, padding column %zu holds code %u "
                               "(must be 1, zero)", path, s->hf_name, r, j, code);
            if (j < cols) dst[j] = value[code];
        }
    }
    return 0;
}

int bl_load_packed_weights(BlModel *m, const char *dir, BlError *err) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/model.safetensors", dir) >= sizeof path)
        return bl_fail(err, "%s: path too long", dir);
    BlSafetensors *st = NULL;
    if (bl_st_open(&st, path, err) != 0) return -1;
    cJSON *pk = read_packing(path, err);
    int rc = pk ? check_packing(pk, path, err) : -1;
    BlWeightPlan plan = {0};
    char cfg_path[4096 + 16];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    if (rc == 0) rc = bl_hf_check_sizes(&m->cfg, st, cfg_path, err);
    if (rc == 0 && (rc = bl_model_plan(m, &plan, NULL, NULL, err)) != 0)
        bl_fail_prefix(err, "%s/config.json", dir);
    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(pk, "tensors");
    int n_linear = 0;
    for (int i = 0; rc == 0 && i < plan.n; i++) {
        const BlWeightSlot *s = &plan.slots[i];
        bool lin = is_block_linear(m, s->dst);
        n_linear += lin;
        rc = lin ? load_linear(st, tensors, s, path, err) : load_plain(st, s, path, err);
    }
    if (rc == 0 && cJSON_GetArraySize(tensors) != n_linear)
        rc = bl_fail(err, "%s: the packing description lists %d tensors, config.json implies %d "
                     "block linears", path, cJSON_GetArraySize(tensors), n_linear);
    bl_weight_plan_free(&plan);
    cJSON_Delete(pk);
    bl_st_close(st);
    return rc;
}
