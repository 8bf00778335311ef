/* manifest.c - training_manifest.json (see manifest.h). */
#include "export/manifest.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/sha256.h"
#include "io/atomic_file.h"

/* the last '/' among s[0..n), or NULL */
static const char *last_slash(const char *s, size_t n) {
    while (n > 0)
        if (s[--n] == '/') return s + n;
    return NULL;
}

char *bl_manifest_path(const char *export_path, bool folder_export) {
    static const char NAME[] = "training_manifest.json";
    size_t n = strlen(export_path);
    while (n > 1 && export_path[n - 1] == '/') n--; /* "out/" is the folder "out" */
    size_t dir = n;
    if (!folder_export) {
        const char *slash = last_slash(export_path, n);
        dir = slash ? (size_t)(slash - export_path) : 0;
        if (slash == export_path) dir = 1; /* "/x.gguf" lives in "/" */
    }
    char *p = malloc(dir + sizeof NAME + 2);
    if (!p) return NULL;
    if (dir == 0) snprintf(p, sizeof NAME, "%s", NAME);
    else snprintf(p, dir + sizeof NAME + 2, "%.*s%s%s", (int)dir, export_path,
                  export_path[dir - 1] == '/' ? "" : "/", NAME);
    return p;
}

static const char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *s = last_slash(path, n);
    return s ? s + 1 : path;
}

static cJSON *adapters_json(const BlStudent *st) {
    const BlLoraStack *fs = NULL;
    const BlConfig *c = &st->model->cfg;
    for (int l = 0; !fs && l < c->n_layers; l++)
        for (int k = 0; !fs && k < BL_LIN_KINDS; k++)
            if (bl_student_has(st, l, k)) fs = &st->lin[(size_t)l * BL_LIN_KINDS + k].lora;
    cJSON *o = cJSON_CreateObject(), *ranks = cJSON_CreateArray(), *alpha = cJSON_CreateArray();
    int n = fs ? fs->n : 0;
    for (int a = 0; a < n; a++) {
        cJSON_AddItemToArray(ranks, cJSON_CreateNumber(fs->ad[a].r));
        cJSON_AddItemToArray(alpha, cJSON_CreateNumber(fs->ad[a].alpha));
    }
    cJSON_AddNumberToObject(o, "count", n);
    cJSON_AddItemToObject(o, "ranks", ranks);
    cJSON_AddItemToObject(o, "alpha", alpha);
    return o;
}

static int base_model_json(cJSON *root, const BlStudent *st, BlError *err) {
    const BlModel *m = st->model;
    char hex[65];
    if (bl_sha256_path(m->path, hex, err)) return bl_fail_prefix(err, "manifest: base model");
    cJSON *b = cJSON_AddObjectToObject(root, "base_model");
    cJSON_AddStringToObject(b, "path", m->path);
    cJSON_AddStringToObject(b, "sha256", hex);
    if (m->name) cJSON_AddStringToObject(b, "name", m->name);
    cJSON_AddStringToObject(b, "architecture", bl_arch_name(m->cfg.arch));
    return 0;
}

int bl_manifest_write(const char *export_path, bool folder_export, const char *format,
                      const BlStudent *st, const cJSON *run, const BlManifestTensor *tensors,
                      int n_tensors, char **written, BlError *err) {
    if (written) *written = NULL;
    if (run && !cJSON_IsObject(run)) return bl_fail(err, "manifest: the run facts must be an object");
    cJSON *root = cJSON_CreateObject();
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    cJSON_AddStringToObject(root, "bitlab_version", BITLAB_VERSION);
    cJSON_AddStringToObject(root, "created", created);
    cJSON_AddStringToObject(root, "format", format);
    cJSON_AddStringToObject(root, "export", base_name(export_path));
    int rc = base_model_json(root, st, err);
    cJSON *s = cJSON_AddObjectToObject(root, "student");
    cJSON_AddNumberToObject(s, "lambda", st->cfg.lambda);
    cJSON_AddNumberToObject(s, "act_bits", st->cfg.act_bits);
    /* whether λ blended the BitLinear inputs too in training (a student
     * deployed at λ = 1 quantises them fully either way) */
    cJSON_AddBoolToObject(s, "lambda_acts", st->cfg.lambda_acts);
    cJSON_AddBoolToObject(s, "dense", st->cfg.dense);
    cJSON_AddItemToObject(root, "adapters", adapters_json(st));
    const cJSON *f;
    cJSON_ArrayForEach(f, run) {
        if (!f->string || cJSON_GetObjectItemCaseSensitive(root, f->string)) continue;
        cJSON_AddItemToObject(root, f->string, cJSON_Duplicate(f, 1));
    }
    /* ready for a ternary runtime: the weights the student last trained with
     * are the ternary ones exported, with activations a runtime quantises */
    bool all_ternary = n_tensors > 0;
    int n_linear = 0;
    for (int i = 0; i < n_tensors; i++)
        if (tensors[i].block_linear) n_linear++, all_ternary &= tensors[i].ternary;
    bool ready = st->cfg.lambda == 1.0f && (st->cfg.act_bits == 8 || st->cfg.act_bits == 4) &&
                 all_ternary && n_linear > 0;
    cJSON_AddBoolToObject(root, "compression_ready", ready);
    cJSON *types = cJSON_AddObjectToObject(root, "tensor_types");
    for (int i = 0; i < n_tensors; i++) cJSON_AddStringToObject(types, tensors[i].name, tensors[i].type);
    char *text = rc == 0 ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (rc == 0 && !text) rc = bl_fail(err, "manifest: out of memory");
    char *path = rc == 0 ? bl_manifest_path(export_path, folder_export) : NULL;
    if (rc == 0 && !path) rc = bl_fail(err, "manifest: out of memory");
    if (rc == 0) {
        size_t n = strlen(text);
        text[n] = '\n'; /* cJSON's buffer holds the NUL there; the file needs no NUL */
        rc = bl_atomic_write_file(path, text, n + 1, err);
    }
    cJSON_free(text);
    if (rc == 0 && written) *written = path;
    else free(path);
    return rc;
}

cJSON *bl_manifest_run_from_checkpoint(const char *json, const char *ckpt_path, BlError *err) {
    cJSON *root = json && json[0] ? cJSON_Parse(json) : cJSON_CreateObject();
    if (!root) {
        bl_fail(err, "%s: the checkpoint's script state is not JSON", ckpt_path);
        return NULL;
    }
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(root, "user");
    const cJSON *man = cJSON_GetObjectItemCaseSensitive(user, "manifest");
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(user, "step");
    cJSON *run = cJSON_IsObject(man) ? cJSON_Duplicate(man, 1) : cJSON_CreateObject();
    if (!cJSON_IsObject(man) && cJSON_IsNumber(step)) cJSON_AddNumberToObject(run, "steps", step->valuedouble);
    cJSON_Delete(root);
    return run;
}
