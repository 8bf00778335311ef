/* eval_teacher_cache.c - the teacher's side of an evaluation on disk
 * (evaluate.h, "teacher cache"): the key, and one file per key.
 *
 * File DIR/eval-teacher-<key>.bin, little-endian as the host writes it:
 *   "BLEVTC01" | key (64 hex) | int32 dim | int64 rows | int32 n_prompts
 *   | float m[rows·dim] | double negent[rows] | double nll[rows]
 *   | int32 top[rows] | per prompt: int32 n, int32 ids[n]
 *   | sha256 (32 bytes) of everything before it.
 * Written atomically (io/atomic_file.h); read whole and checked (size,
 * digest, magic, key, width) before anything of it is used. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/sha256.h"
#include "eval/evaluate.h"
#include "io/atomic_file.h"

#define MAGIC "BLEVTC01"

static void hash_int(BlSha256 *h, long long v) {
    int64_t x = v;
    bl_sha256_update(h, &x, sizeof x);
}

int bl_eval_teacher_key(const BlEvalOptions *opt, const BlBackend *be, const BlDataset *d,
                        int n_ex, const BlEvalReport *r, char key[65], BlError *err) {
    char model_hex[65];
    if (!opt->model_path) return bl_fail(err, "the model has no file to hash");
    if (bl_sha256_path(opt->model_path, model_hex, err))
        return bl_fail_prefix(err, "hashing the model %s", opt->model_path);
    BlSha256 h;
    bl_sha256_init(&h);
    bl_sha256_update(&h, MAGIC, 8);
    bl_sha256_update(&h, model_hex, 64);
    bl_sha256_update(&h, be->name, strlen(be->name) + 1);
    hash_int(&h, opt->seq);
    hash_int(&h, n_ex);
    /* the data as the models see it: the tokens and targets of every example
     * evaluated, cut to seq (covers the file, its format and the tokenizer) */
    for (int i = 0; i < n_ex; i++) {
        int len;
        const uint8_t *tg;
        const int *ids = bl_dataset_example(d, i, &len, &tg);
        int n = opt->seq > 0 && len > opt->seq ? opt->seq : len;
        hash_int(&h, n);
        bl_sha256_update(&h, ids, sizeof(int) * (size_t)n);
        bl_sha256_update(&h, tg, (size_t)n);
    }
    hash_int(&h, r->n_gen);
    hash_int(&h, r->n_gen ? opt->max_tokens : 0);
    for (int i = 0; i < r->n_gen; i++) {
        hash_int(&h, r->gen[i].n_prompt);
        bl_sha256_update(&h, r->gen[i].prompt_ids, sizeof(int) * (size_t)r->gen[i].n_prompt);
    }
    /* the cap decides n_ex, hashed above already; named too, so that a capped
     * set never shares a file with an uncapped one (uncapped keys are as before) */
    if (opt->tokens > 0) {
        bl_sha256_update(&h, "tokens", 6);
        hash_int(&h, opt->tokens);
    }
    unsigned char dig[32];
    bl_sha256_final(&h, dig, key);
    return 0;
}

char *bl_eval_teacher_cache_path(const char *dir, const char key[65], BlError *err) {
    size_t n = strlen(dir) + 64 + 32;
    char *p = bl_malloc(n, err);
    if (p) snprintf(p, n, "%s/eval-teacher-%s.bin", dir, key);
    return p;
}

/* ---- reading -------------------------------------------------------------- */

typedef struct {
    const unsigned char *p;
    size_t n, at;
} Cursor;

static int take(Cursor *c, void *dst, size_t n) {
    if (n > c->n - c->at) return -1;
    memcpy(dst, c->p + c->at, n);
    c->at += n;
    return 0;
}

int bl_eval_teacher_cache_load(const char *path, const char key[65], int dim,
                               BlEvalTeacherRows *tc, BlEvalTeacherGen *gen, int n_gen,
                               BlError *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return bl_fail(err, "%s", strerror(errno));
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : (1 << 20);
            unsigned char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return bl_fail(err, "out of memory reading it");
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    int rc = 0;
    Cursor c = {buf, n >= 32 ? n - 32 : 0, 0};
    char magic[8], fkey[64];
    int32_t fdim, fgen;
    int64_t rows;
    if (bad) {
        rc = bl_fail(err, "read error");
        goto done;
    }
    if (n < 32 + 8 + 64 + 4 + 8 + 4) {
        rc = bl_fail(err, "truncated (%zu bytes)", n);
        goto done;
    }
    {
        BlSha256 h;
        unsigned char dig[32];
        char hex[65];
        bl_sha256_init(&h);
        bl_sha256_update(&h, buf, n - 32);
        bl_sha256_final(&h, dig, hex);
        if (memcmp(dig, buf + n - 32, 32)) {
            rc = bl_fail(err, "checksum mismatch (truncated or corrupt, %zu bytes)", n);
            goto done;
        }
    }
    take(&c, magic, 8);
    take(&c, fkey, 64);
    take(&c, &fdim, 4);
    take(&c, &rows, 8);
    take(&c, &fgen, 4);
    if (memcmp(magic, MAGIC, 8)) {
        rc = bl_fail(err, "not a bitlab eval teacher cache (bad magic)");
        goto done;
    }
    if (memcmp(fkey, key, 64)) {
        rc = bl_fail(err, "made for another model / data / options (key mismatch)");
        goto done;
    }
    if (fdim != dim || fgen != n_gen || rows < 0 ||
        (uint64_t)rows > (c.n - c.at) / ((size_t)dim * 4 + 20)) {
        rc = bl_fail(err, "inconsistent header (width %d, %lld rows, %d prompts)", (int)fdim,
                     (long long)rows, (int)fgen);
        goto done;
    }
    bl_eval_teacher_rows_free(tc);
    tc->dim = dim;
    if ((rc = bl_eval_teacher_rows_reserve(tc, rows > 0 ? rows : 1, err))) goto done;
    tc->rows = rows;
    take(&c, tc->m, sizeof(float) * (size_t)rows * dim);
    take(&c, tc->negent, sizeof(double) * (size_t)rows);
    take(&c, tc->nll, sizeof(double) * (size_t)rows);
    take(&c, tc->top, sizeof(int32_t) * (size_t)rows);
    for (int i = 0; i < n_gen; i++) {
        int32_t k;
        if (take(&c, &k, 4) || k < 0 || (size_t)k > (c.n - c.at) / 4) {
            rc = bl_fail(err, "inconsistent answer of prompt %d", i + 1);
            goto done;
        }
        if (!(gen[i].ids = bl_malloc(sizeof(int) * ((size_t)k + 1), err))) {
            rc = -1;
            goto done;
        }
        gen[i].n = k;
        take(&c, gen[i].ids, sizeof(int) * (size_t)k);
    }
    if (c.at != c.n) rc = bl_fail(err, "%zu bytes after the last prompt", c.n - c.at);
done:
    free(buf);
    if (rc) {
        bl_eval_teacher_rows_free(tc);
        for (int i = 0; i < n_gen; i++) {
            free(gen[i].ids);
            gen[i].ids = NULL;
            gen[i].n = 0;
        }
    }
    return rc;
}

/* ---- writing -------------------------------------------------------------- */

static void put(BlAtomicFile *a, BlSha256 *h, const void *p, size_t n) {
    bl_atomic_write(a, p, n);
    bl_sha256_update(h, p, n);
}

int bl_eval_teacher_cache_save(const char *dir, const char *path, const char key[65],
                               const BlEvalTeacherRows *tc, const BlEvalTeacherGen *gen,
                               int n_gen, BlError *err) {
    if (mkdir(dir, 0777) && errno != EEXIST)
        return bl_fail(err, "cannot create %s: %s", dir, strerror(errno));
    BlAtomicFile a;
    if (bl_atomic_open(&a, path, err)) return -1;
    BlSha256 h;
    bl_sha256_init(&h);
    int32_t dim = tc->dim, ng = n_gen;
    int64_t rows = tc->rows;
    put(&a, &h, MAGIC, 8);
    put(&a, &h, key, 64);
    put(&a, &h, &dim, 4);
    put(&a, &h, &rows, 8);
    put(&a, &h, &ng, 4);
    put(&a, &h, tc->m, sizeof(float) * (size_t)rows * dim);
    put(&a, &h, tc->negent, sizeof(double) * (size_t)rows);
    put(&a, &h, tc->nll, sizeof(double) * (size_t)rows);
    put(&a, &h, tc->top, sizeof(int32_t) * (size_t)rows);
    for (int i = 0; i < n_gen; i++) {
        int32_t k = gen[i].n;
        put(&a, &h, &k, 4);
        put(&a, &h, gen[i].ids, sizeof(int) * (size_t)k);
    }
    unsigned char dig[32];
    char hex[65];
    bl_sha256_final(&h, dig, hex);
    bl_atomic_write(&a, dig, 32);
    return bl_atomic_commit(&a, err);
}
