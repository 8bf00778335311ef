/* plan_host.c - the planner's inputs from files and its measurements of
 * the process (see plan_host.h). */
#include "plan/plan_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/gguf.h"
#include "ops/gemm.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"

// ----------------------------------------------------------------------------
// /proc/self/status

/* The value in kB of a "Key:   N kB" line, or -1. */
static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

size_t bl_plan_rss_now(void) {
    long kb = status_kb("VmRSS");
    return kb > 0 ? (size_t)kb * 1024 : 0;
}

/* Anonymous resident memory (the heap), for before/after deltas. */
static long anon_kb(void) {
    return status_kb("RssAnon");
}

static size_t grew(long before_kb, long after_kb) {
    return before_kb >= 0 && after_kb > before_kb ? (size_t)(after_kb - before_kb) * 1024 : 0;
}

// ----------------------------------------------------------------------------
// OpenBLAS buffers

#define MIN2(a, b) ((a) < (b) ? (a) : (b))

/* Matrices straight from mmap, so that unmapping them returns every page
 * and leaves malloc's state as it was. */
static float *map_floats(size_t n) {
    void *p = mmap(NULL, n * sizeof(float), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) return NULL;
    float *f = p;
    for (size_t i = 0; i < n; i++) f[i] = (float)(i % 13) * 0.01f - 0.06f;
    return f;
}

size_t bl_plan_blas_buffers(const BlConfig *c, const BlPlanRun *r) {
    int M = (int)MIN2((long long)r->B * r->T, 256);
    int N = MIN2(c->vocab_size, 2048);
    int K = MIN2(c->dim > c->hidden_dim ? c->dim : c->hidden_dim, 1024);
    size_t nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
    long before = status_kb("VmRSS");
    float *x = map_floats(nx), *w = map_floats(nw), *y = map_floats(ny);
    bool ok = x && w && y;
    if (ok) {
        bl_gemm(false, true, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
        bl_gemm(false, false, M, K, N, 1.0f, y, N, w, K, 0.0f, x, K);
    }
    if (x) munmap(x, nx * sizeof(float));
    if (w) munmap(w, nw * sizeof(float));
    if (y) munmap(y, ny * sizeof(float));
    /* the matrices are gone again, so what grew is OpenBLAS's */
    return ok ? grew(before, status_kb("VmRSS")) : 0;
}

// ----------------------------------------------------------------------------
// sources

static bool is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool exists(const char *path) {
    return access(path, F_OK) == 0;
}

static bool is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    bool yes = f && fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    if (f) fclose(f);
    return yes;
}

static int check_config(BlPlanSource *s, BlError *err) {
    if (bl_config_check(&s->cfg, err)) return bl_fail_prefix(err, "%s", s->path);
    return 0;
}

static int open_gguf(BlPlanSource *s, const char *path, BlError *err) {
    snprintf(s->path, sizeof s->path, "%s", path);
    snprintf(s->format, sizeof s->format, "gguf");
    BlGguf *g = NULL;
    long a0 = anon_kb();
    if (bl_gguf_open(&g, path, err)) return -1;
    s->host.load_meta = grew(a0, anon_kb());
    s->host.weight_files = g->size;
    int rc = bl_config_from_gguf(&s->cfg, g, err) || check_config(s, err) ? -1 : 0;
    if (rc == 0) {
        BlTokenizer *t = NULL;
        long a1 = anon_kb();
        if (bl_tokenizer_from_gguf(&t, g, err)) {
            rc = bl_fail_prefix(err, "%s", path);
        } else {
            s->host.tokenizer = grew(a1, anon_kb());
            s->has_tokenizer = true;
            bl_tokenizer_free(t);
        }
    }
    bl_gguf_close(g);
    return rc;
}

/* Bytes of the safetensors file(s) beside config.json, which the loader maps
 * whole; none there (a bare config): 2 bytes per parameter, as an fp16/bf16
 * checkpoint would have. */
static int hf_weight_files(BlPlanSource *s, const char *dir, BlError *err) {
    char path[4200];
    BlSafetensors *st = NULL;
    int rc = 0;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (exists(path)) {
        rc = bl_st_open_index(&st, path, err);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (exists(path)) rc = bl_st_open(&st, path, err);
    }
    if (rc) return -1;
    if (!st) {
        s->host.weight_files = 2 * (size_t)bl_config_param_count(&s->cfg);
        s->host.weight_files_assumed = true;
        return 0;
    }
    for (int i = 0; i < st->n_files; i++) s->host.weight_files += st->files[i].size;
    bl_st_close(st);
    return 0;
}

static int hf_tokenizer(BlPlanSource *s, const char *dir, BlError *err) {
    char tok[4200], tc[4200];
    snprintf(tok, sizeof tok, "%s/tokenizer.json", dir);
    snprintf(tc, sizeof tc, "%s/tokenizer_config.json", dir);
    if (!exists(tok)) return 0;
    BlTokenizer *t = NULL;
    long a0 = anon_kb();
    if (bl_tokenizer_from_json(&t, tok, exists(tc) ? tc : NULL, err)) return -1;
    s->host.tokenizer = grew(a0, anon_kb());
    s->has_tokenizer = true;
    bl_tokenizer_free(t);
    return 0;
}

static int open_hf(BlPlanSource *s, const char *config_json, BlError *err) {
    snprintf(s->path, sizeof s->path, "%s", config_json);
    snprintf(s->format, sizeof s->format, "hf");
    if (bl_config_read_hf(&s->cfg, config_json, err) || check_config(s, err)) return -1;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", config_json);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    return hf_weight_files(s, dir, err) || hf_tokenizer(s, dir, err) ? -1 : 0;
}

int bl_plan_source_open(BlPlanSource *s, const char *config_path, const char *model_path,
                        BlError *err) {
    memset(s, 0, sizeof *s);
    if (!config_path == !model_path)
        return bl_fail(err, "plan: give exactly one of a config (config.json) and a model");
    const char *path = config_path ? config_path : model_path;
    if (!exists(path)) return bl_fail(err, "%s: no such file or folder", path);
    if (is_dir(path)) {
        char cj[4200];
        snprintf(cj, sizeof cj, "%s/config.json", path);
        if (!exists(cj)) return bl_fail(err, "%s: no config.json in this folder", path);
        return open_hf(s, cj, err);
    }
    if (is_gguf(path)) return open_gguf(s, path, err);
    if (model_path)
        return bl_fail(err, "%s: not a GGUF file (a model is a GGUF file or a Hugging Face folder)",
                       path);
    return open_hf(s, path, err);
}

// ----------------------------------------------------------------------------
// all of it

int bl_plan_make(BlPlan *p, BlPlanSource *src, const char *config_path, const char *model_path,
                 const BlPlanRun *run, double baseline_bytes, BlError *err) {
    /* before anything is opened: the tokenizer's freed heap must not count */
    size_t start = bl_plan_rss_now();
    long file0 = status_kb("RssFile");
    if (bl_plan_source_open(src, config_path, model_path, err) ||
        bl_plan_compute(p, &src->cfg, run, &src->host, err)) /* a bad run is refused first */
        return -1;
    if (baseline_bytes >= 0.0) {
        src->host.baseline = (size_t)baseline_bytes;
    } else {
        size_t blas = bl_plan_blas_buffers(&src->cfg, run);
        /* code pages the loader, the tokenizer and OpenBLAS's kernels touched
         * (the GGUF mapping is closed again, so RssFile holds only code) */
        src->host.baseline = start + grew(file0, status_kb("RssFile")) + blas;
        src->host.baseline_measured = true;
    }
    return bl_plan_compute(p, &src->cfg, run, &src->host, err);
}
