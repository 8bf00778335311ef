/* checkpoint.c - atomic save and validated load of the training state (see
 * checkpoint.h). */
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "core/bytebuf.h"
#include "io/quants.h"
#include "ops/parallel.h"

static const char MAGIC[8] = {'B', 'L', 'C', 'K', 'P', 'T', 0, 0};
#define HEADER_BYTES 32
/* version 3 added a dtype per adapter; a file without a bf16 adapter is
 * written as version 2, the layout earlier bitlab reads */
#define DTYPE_VERSION 3u
#define ALL_FP32_VERSION 2u
/* the student flags: its shape (subln 1, post_attn_norm 2, dense 4: must
 * match the student loaded into) and whether λ blended its activations in
 * training (restored; a file without it is what earlier bitlab wrote) */
#define FLAG_SHAPE 7
#define FLAG_LAMBDA_ACTS 8

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

void bl_blas_info(char core[BL_CKPT_CORE_LEN], int *threads) {
    const char *name = openblas_get_corename();
    snprintf(core, BL_CKPT_CORE_LEN, "%s", name ? name : "unknown");
    /* trailing blanks in some OpenBLAS builds */
    for (size_t n = strlen(core); n > 0 && core[n - 1] == ' '; n--) core[n - 1] = 0;
    *threads = bl_parallel_threads(); /* OpenBLAS itself runs on one, called from each */
}

const char *bl_qk_layout_name(int interleaved) {
    return interleaved ? "interleaved (llama.cpp GGUF: q/k rows permuted for ggml's RoPE)"
                       : "rotate-half (Hugging Face)";
}

// ----------------------------------------------------------------------------
// writing: the state serialised into one buffer (native byte order)

static void put_i64(BlByteBuf *b, int64_t v) { bl_bytebuf_put(b, &v, sizeof v); }
static void put_f32(BlByteBuf *b, float v) { bl_bytebuf_put(b, &v, sizeof v); }
static void put_floats(BlByteBuf *b, const float *p, size_t n) {
    bl_bytebuf_put(b, p, n * sizeof(float));
}

static void put_tensor(BlByteBuf *b, const float *p, size_t n, BlCkptDtype dtype) {
    if (dtype == BL_CKPT_F32) {
        put_floats(b, p, n);
        return;
    }
    uint16_t chunk[2048]; /* converted a piece at a time: no copy of the tensor */
    for (size_t i = 0; i < n; i += 2048) {
        size_t k = n - i < 2048 ? n - i : 2048;
        for (size_t j = 0; j < k; j++) chunk[j] = bl_fp32_to_bf16(p[i + j]);
        bl_bytebuf_put(b, chunk, k * sizeof *chunk);
    }
}

/* The dtype adapter a of n is stored in: only frozen ones (not the newest,
 * which trains) may be bf16. */
static BlCkptDtype adapter_dtype(const BlCheckpointOptions *opt, int a, int n) {
    return opt && a < n - 1 ? opt->frozen_adapters : BL_CKPT_F32;
}

static size_t dtype_bytes(BlCkptDtype dtype) { return dtype == BL_CKPT_BF16 ? 2 : sizeof(float); }

/* The dtype version only when it is needed (a bf16 adapter), so that
 * default files stay readable by the readers that know only version 2. */
static uint32_t file_version(const BlStudent *st, const BlCheckpointOptions *opt) {
    const BlLoraStack *fs = bl_student_first_stack(st);
    int na = fs ? fs->n : 0;
    for (int a = 0; a < na; a++)
        if (adapter_dtype(opt, a, na) != BL_CKPT_F32) return DTYPE_VERSION;
    return ALL_FP32_VERSION;
}

static void serialise(BlByteBuf *b, const BlStudent *st, const BlTrainer *tr, const char *json,
                      const BlCheckpointOptions *opt, uint32_t version) {
    const BlConfig *c = &st->model->cfg;
    put_i64(b, c->n_layers);
    put_i64(b, c->dim);
    put_i64(b, c->vocab_size);
    /* v2: the q/k row layout of the model trained on, and the BLAS that ran it */
    put_i64(b, c->rope_interleaved ? 1 : 0);
    char core[BL_CKPT_CORE_LEN];
    int threads;
    bl_blas_info(core, &threads);
    put_i64(b, threads);
    size_t cl = strlen(core);
    put_i64(b, (int64_t)cl);
    bl_bytebuf_put(b, core, cl);
    put_i64(b, (st->cfg.subln ? 1 : 0) | (st->cfg.post_attn_norm ? 2 : 0) | (st->cfg.dense ? 4 : 0) |
                   (st->cfg.lambda_acts ? FLAG_LAMBDA_ACTS : 0));
    put_f32(b, st->cfg.lambda);
    put_i64(b, st->cfg.act_bits);
    put_i64(b, tr ? tr->steps : 0);
    put_i64(b, tr ? tr->skipped : 0);
    const BlLoraStack *fs = bl_student_first_stack(st);
    int na = fs ? fs->n : 0;
    put_i64(b, na);
    for (int a = 0; a < na; a++) {
        put_i64(b, fs->ad[a].r);
        put_f32(b, fs->ad[a].alpha);
        if (version >= DTYPE_VERSION) put_i64(b, adapter_dtype(opt, a, na));
    }
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            const BlStudentLinear *sl = &st->lin[(size_t)l * BL_LIN_KINDS + k];
            const BlLoraStack *s = &sl->lora;
            put_i64(b, s->out);
            put_i64(b, s->in);
            for (int a = 0; a < s->n; a++) {
                BlCkptDtype dtype = adapter_dtype(opt, a, s->n);
                put_tensor(b, s->ad[a].A, (size_t)s->ad[a].r * s->in, dtype);
                put_tensor(b, s->ad[a].B, (size_t)s->out * s->ad[a].r, dtype);
            }
            if (s->dense) put_floats(b, s->dense, (size_t)s->out * s->in);
            if (sl->subln) put_floats(b, sl->subln, (size_t)s->in);
        }
    if (st->post_norm) put_floats(b, st->post_norm, (size_t)c->n_layers * c->dim);
    put_i64(b, st->n_params);
    for (int i = 0; i < st->n_params; i++) {
        put_i64(b, (int64_t)st->opt[i].n);
        put_i64(b, st->opt[i].t);
        put_floats(b, st->opt[i].m, st->opt[i].n);
        put_floats(b, st->opt[i].v, st->opt[i].n);
    }
    size_t jn = json ? strlen(json) : 0;
    put_i64(b, (int64_t)jn);
    if (jn) bl_bytebuf_put(b, json, jn);
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync of the directory holding path, so the rename itself is durable. */
static int sync_dir(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof dir) return -1;
    if (n == 0) strcpy(dir, slash ? "/" : ".");
    else memcpy(dir, path, n), dir[n] = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Removes "<path>.tmp.PID" files left by a writer that was killed: those
 * whose PID is not a live process (ours is kept: we are about to write it).
 * Best effort; failures are ignored. */
static void remove_stale_temps(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    const char *base = slash ? slash + 1 : path;
    size_t dn = slash ? (size_t)(slash - path) : 0;
    if (dn >= sizeof dir) return;
    if (slash) memcpy(dir, path, dn), dir[dn] = 0;
    else strcpy(dir, ".");
    if (slash && dn == 0) strcpy(dir, "/");
    DIR *d = opendir(dir);
    if (!d) return;
    size_t bn = strlen(base);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (strncmp(n, base, bn) != 0 || strncmp(n + bn, ".tmp.", 5) != 0) continue;
        const char *q = n + bn + 5;
        char *endp;
        errno = 0;
        long pid = strtol(q, &endp, 10);
        if (*q < '0' || *q > '9' || *endp || errno || pid <= 0 || (pid_t)pid != pid) continue;
        if (pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno == EPERM) continue; /* alive (maybe another user's) */
        char full[4096 + 256];
        if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, n) < sizeof full) unlink(full);
    }
    closedir(d);
}

void bl_checkpoint_sizes(const BlStudent *st, const char *json, const BlCheckpointOptions *opt,
                         size_t total, BlCheckpointSizes *out) {
    memset(out, 0, sizeof *out);
    const BlConfig *c = &st->model->cfg;
    size_t F = sizeof(float);
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            const BlStudentLinear *sl = &st->lin[(size_t)l * BL_LIN_KINDS + k];
            const BlLoraStack *ls = &sl->lora;
            for (int a = 0; a < ls->n; a++) {
                size_t n = dtype_bytes(adapter_dtype(opt, a, ls->n)) * (size_t)ls->ad[a].r *
                           (ls->in + ls->out);
                *(a == ls->n - 1 ? &out->adapters_trainable : &out->adapters_frozen) += n;
            }
            if (ls->dense) out->dense += F * (size_t)ls->out * ls->in;
            if (sl->subln) out->norms += F * (size_t)ls->in;
        }
    if (st->post_norm) out->norms += F * (size_t)c->n_layers * c->dim;
    for (int i = 0; i < st->n_params; i++) out->optimizer += 2 * F * st->opt[i].n;
    out->state = json ? strlen(json) : 0;
    out->total = total;
    out->other = out->total - out->adapters_frozen - out->adapters_trainable - out->dense -
                 out->norms - out->optimizer - out->state;
}

int bl_checkpoint_save(const char *path, BlStudent *st, BlTrainer *tr, const char *json,
                       BlError *err) {
    return bl_checkpoint_save_opts(path, st, tr, json, NULL, err);
}

int bl_checkpoint_save_opts(const char *path, BlStudent *st, BlTrainer *tr, const char *json,
                            const BlCheckpointOptions *opt, BlError *err) {
    if (opt && opt->frozen_adapters != BL_CKPT_F32 && opt->frozen_adapters != BL_CKPT_BF16)
        return bl_fail(err, "%s: unknown dtype %d for the frozen adapters", path,
                       (int)opt->frozen_adapters);
    if (tr && tr->student != st)
        return bl_fail(err, "%s: the trainer trains another student", path);
    /* the trainer's tensors and moments live on its backend: the host copy
     * first, when an update landed there since the host was last written */
    if (tr && bl_trainer_sync_host(tr, err)) return bl_fail_prefix(err, "%s", path);
    remove_stale_temps(path);
    BlByteBuf b = {0};
    uint32_t version = file_version(st, opt);
    serialise(&b, st, tr, json, opt, version);
    if (b.failed) {
        free(b.p);
        return bl_fail(err, "%s: out of memory serialising the checkpoint", path);
    }
    unsigned char hdr[HEADER_BYTES] = {0};
    uint64_t n = b.n, sum = fnv1a(b.p, b.n);
    memcpy(hdr, MAGIC, 8);
    memcpy(hdr + 8, &version, 4);
    memcpy(hdr + 16, &n, 8);
    memcpy(hdr + 24, &sum, 8);
    size_t pl = strlen(path);
    char *tmp = bl_malloc(pl + 32, err);
    if (!tmp) {
        free(b.p);
        return -1;
    }
    snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int rc = fd < 0 ? bl_fail(err, "%s: cannot create: %s", tmp, strerror(errno)) : 0;
    if (rc == 0 && (write_all(fd, hdr, sizeof hdr) || write_all(fd, b.p, b.n) || fsync(fd)))
        rc = bl_fail(err, "%s: write failed: %s", tmp, strerror(errno));
    if (fd >= 0 && close(fd) && rc == 0) rc = bl_fail(err, "%s: close failed", tmp);
    if (rc == 0 && rename(tmp, path))
        rc = bl_fail(err, "%s: cannot rename into place: %s", path, strerror(errno));
    if (rc == 0 && sync_dir(path)) rc = bl_fail(err, "%s: cannot sync its directory", path);
    if (rc && fd >= 0) unlink(tmp);
    free(tmp);
    free(b.p);
    return rc;
}

// ----------------------------------------------------------------------------
// reading: a bounds-checked cursor

typedef struct {
    const unsigned char *p;
    size_t n, at;
    int bad;
} Cur;

static const void *take(Cur *c, size_t n) {
    if (c->bad || n > c->n - c->at) {
        c->bad = 1;
        return NULL;
    }
    const void *p = c->p + c->at;
    c->at += n;
    return p;
}

static int64_t get_i64(Cur *c) {
    int64_t v = 0;
    const void *p = take(c, sizeof v);
    if (p) memcpy(&v, p, sizeof v);
    return v;
}

static float get_f32(Cur *c) {
    float v = 0;
    const void *p = take(c, sizeof v);
    if (p) memcpy(&v, p, sizeof v);
    return v;
}

/* Copies n values stored as dtype into dst as fp32 (bf16 widens exactly),
 * or only skips them when dst is NULL. */
static void get_tensor(Cur *c, float *dst, size_t n, BlCkptDtype dtype) {
    size_t es = dtype_bytes(dtype);
    if (n > SIZE_MAX / es) {
        c->bad = 1;
        return;
    }
    const unsigned char *p = take(c, n * es);
    if (!p || !dst) return;
    if (dtype == BL_CKPT_F32) {
        memcpy(dst, p, n * es);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, sizeof h);
        dst[i] = bl_bf16_to_fp32(h);
    }
}

static void get_floats(Cur *c, float *dst, size_t n) { get_tensor(c, dst, n, BL_CKPT_F32); }

/* What precedes the student flags: model shape and (v2) q/k layout, BLAS. */
static void read_prelude(Cur *c, uint32_t version, BlCheckpointInfo *info) {
    info->version = version;
    info->n_layers = get_i64(c);
    info->dim = get_i64(c);
    info->vocab = get_i64(c);
    info->qk_interleaved = -1;
    info->blas_threads = 0;
    snprintf(info->blas_core, sizeof info->blas_core, "unknown");
    if (version < 2) return;
    int64_t layout = get_i64(c);
    info->qk_interleaved = layout == 1;
    if (!c->bad && layout != 0 && layout != 1) c->bad = 2;
    info->blas_threads = get_i64(c);
    int64_t cl = get_i64(c);
    if (!c->bad && (cl < 0 || cl >= BL_CKPT_CORE_LEN)) {
        c->bad = 2;
        return;
    }
    const char *p = take(c, (size_t)(cl > 0 ? cl : 0));
    if (p) {
        memcpy(info->blas_core, p, (size_t)cl);
        info->blas_core[cl] = 0;
    }
}

typedef struct {
    int64_t flags, act_bits, steps, skipped, na;
    float lambda;
    int r[64];
    float alpha[64];
    BlCkptDtype dtype[64];
} Head;

/* The adapter table: count, then per adapter r, α and (v3) the dtype of
 * its A and B. Truncation is left in c->bad for the caller. */
static int read_adapter_table(Cur *c, uint32_t version, Head *h, const char *path, BlError *err) {
    int64_t na = get_i64(c);
    if (!c->bad && (na < 0 || na > 64))
        return bl_fail(err, "%s: %lld adapters (corrupt?)", path, (long long)na);
    h->na = na; /* 0 when truncated: get_i64 read nothing */
    for (int a = 0; a < h->na; a++) {
        h->r[a] = (int)get_i64(c);
        h->alpha[a] = get_f32(c);
        int64_t dtype = version >= DTYPE_VERSION ? get_i64(c) : BL_CKPT_F32;
        if (!c->bad && (h->r[a] <= 0 || h->r[a] > 1 << 16))
            return bl_fail(err, "%s: adapter %d has rank %d (corrupt?)", path, a, h->r[a]);
        if (!c->bad && dtype != BL_CKPT_F32 && (dtype != BL_CKPT_BF16 || a == h->na - 1))
            return bl_fail(err, "%s: adapter %d of %lld stored as dtype %lld (fp32 = 0, and bf16 "
                                "= 1 only for a frozen one; corrupt?)", path, a,
                           (long long)h->na, (long long)dtype);
        h->dtype[a] = (BlCkptDtype)dtype;
    }
    return 0;
}

static int read_head(Cur *c, uint32_t version, const BlStudent *st, Head *h, BlCheckpointInfo *info,
                     const char *path, BlError *err) {
    const BlConfig *cfg = &st->model->cfg;
    read_prelude(c, version, info);
    int64_t L = info->n_layers, D = info->dim, V = info->vocab;
    if (c->bad == 2) return bl_fail(err, "%s: bad q/k layout or BLAS record in the checkpoint header (corrupt?)", path);
    if (!c->bad && (L != cfg->n_layers || D != cfg->dim || V != cfg->vocab_size))
        return bl_fail(err, "%s: checkpoint of a model with %lld layers, dim %lld, vocab %lld; "
                            "this model has %d, %d, %d", path, (long long)L, (long long)D,
                       (long long)V, cfg->n_layers, cfg->dim, cfg->vocab_size);
    h->flags = get_i64(c);
    if (!c->bad && (h->flags & ~(int64_t)(FLAG_SHAPE | FLAG_LAMBDA_ACTS)))
        return bl_fail(err, "%s: unknown student flags %#llx (corrupt, or from a newer bitlab?)",
                       path, (unsigned long long)h->flags);
    int64_t want = (st->cfg.subln ? 1 : 0) | (st->cfg.post_attn_norm ? 2 : 0) | (st->cfg.dense ? 4 : 0);
    if (!c->bad && (h->flags & FLAG_SHAPE) != want)
        return bl_fail(err, "%s: checkpoint student options (subln %d, post_attn_norm %d, dense %d) "
                            "differ from this student's (%d, %d, %d)", path, (int)(h->flags & 1),
                       (int)(h->flags >> 1 & 1), (int)(h->flags >> 2 & 1), st->cfg.subln,
                       st->cfg.post_attn_norm, st->cfg.dense);
    h->lambda = get_f32(c);
    h->act_bits = get_i64(c);
    h->steps = get_i64(c);
    h->skipped = get_i64(c);
    if (read_adapter_table(c, version, h, path, err)) return -1;
    const BlLoraStack *fs = bl_student_first_stack(st);
    int have = fs ? fs->n : 0;
    if (!c->bad && have > h->na)
        return bl_fail(err, "%s: the student already has %d adapters, the checkpoint only %lld",
                       path, have, (long long)h->na);
    for (int a = 0; !c->bad && a < have; a++)
        if (fs->ad[a].r != h->r[a])
            return bl_fail(err, "%s: adapter %d has rank %d in the checkpoint, %d in the student",
                           path, a, h->r[a], fs->ad[a].r);
    return c->bad ? bl_fail(err, "%s: truncated checkpoint header", path) : 0;
}

/* The weights: with apply == 0 only checks shapes and sizes. */
static int read_weights(Cur *c, BlStudent *st, const Head *h, int apply, const char *path,
                        BlError *err) {
    const BlConfig *cfg = &st->model->cfg;
    for (int l = 0; l < cfg->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlStudentLinear *sl = bl_student_linear(st, l, k);
            const BlLinear *w = &st->model->layers[l].lin[k];
            int64_t out = get_i64(c), in = get_i64(c);
            if (!c->bad && (out != w->out || in != w->in))
                return bl_fail(err, "%s: layer %d %s is %lld x %lld in the checkpoint, %d x %d here",
                               path, l, bl_linear_kind_name(k), (long long)out, (long long)in,
                               w->out, w->in);
            for (int a = 0; a < h->na; a++) {
                get_tensor(c, apply ? sl->lora.ad[a].A : NULL, (size_t)h->r[a] * w->in, h->dtype[a]);
                get_tensor(c, apply ? sl->lora.ad[a].B : NULL, (size_t)w->out * h->r[a], h->dtype[a]);
            }
            if (h->flags & 4) get_floats(c, apply ? sl->lora.dense : NULL, (size_t)w->out * w->in);
            if (h->flags & 1) get_floats(c, apply ? sl->subln : NULL, (size_t)w->in);
        }
    if (h->flags & 2) get_floats(c, apply ? st->post_norm : NULL, (size_t)cfg->n_layers * cfg->dim);
    return c->bad ? bl_fail(err, "%s: truncated checkpoint weights", path) : 0;
}

/* The optimizer section; with apply == 0 checks it against st's parameters. */
static int read_opt(Cur *c, BlStudent *st, int apply, const char *path, BlError *err) {
    int64_t np = get_i64(c);
    if (!c->bad && np != st->n_params)
        return bl_fail(err, "%s: %lld optimizer states, the student has %d trainable tensors",
                       path, (long long)np, st->n_params);
    for (int i = 0; !c->bad && i < st->n_params; i++) {
        int64_t n = get_i64(c), t = get_i64(c);
        if (!c->bad && (size_t)n != st->opt[i].n)
            return bl_fail(err, "%s: optimizer state %d holds %lld values, expected %zu", path, i,
                           (long long)n, st->opt[i].n);
        get_floats(c, apply ? st->opt[i].m : NULL, (size_t)n);
        get_floats(c, apply ? st->opt[i].v : NULL, (size_t)n);
        if (apply) st->opt[i].t = t;
    }
    return c->bad ? bl_fail(err, "%s: truncated optimizer state", path) : 0;
}

static int read_json(Cur *c, char **json, const char *path, BlError *err) {
    int64_t jn = get_i64(c);
    const char *p = !c->bad && jn >= 0 ? take(c, (size_t)jn) : NULL;
    if (!p || c->at != c->n) return bl_fail(err, "%s: bad checkpoint trailer", path);
    if (!json) return 0;
    if (!(*json = bl_malloc((size_t)jn + 1, err))) return -1;
    memcpy(*json, p, (size_t)jn);
    (*json)[jn] = 0;
    return 0;
}

static unsigned char *read_file(const char *path, size_t *n, BlError *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return bl_fail(err, "%s: cannot open checkpoint: %s", path, strerror(errno)), NULL;
    unsigned char *p = NULL;
    long sz = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (sz >= 0 && fseek(f, 0, SEEK_SET) == 0 && (p = bl_malloc((size_t)sz + 1, err)) &&
        fread(p, 1, (size_t)sz, f) != (size_t)sz) {
        free(p);
        p = NULL;
        bl_fail(err, "%s: read failed", path);
    }
    if (sz < 0) bl_fail(err, "%s: cannot size the file", path);
    fclose(f);
    *n = sz > 0 ? (size_t)sz : 0;
    return p;
}

/* The whole file, its header verified; *n is the payload size. */
static unsigned char *read_verified(const char *path, size_t *n, uint32_t *version_out, BlError *err) {
    size_t size = 0;
    unsigned char *file = read_file(path, &size, err);
    if (!file) return NULL;
    int rc = 0;
    uint32_t version = 0, reserved = 0;
    uint64_t pn = 0, sum = 0;
    if (size < HEADER_BYTES || memcmp(file, MAGIC, 8) != 0) {
        rc = bl_fail(err, "%s: not a bitlab checkpoint (bad magic)", path);
    } else {
        memcpy(&version, file + 8, 4);
        memcpy(&reserved, file + 12, 4);
        memcpy(&pn, file + 16, 8);
        memcpy(&sum, file + 24, 8);
        if (version < 1 || version > BL_CKPT_VERSION)
            rc = bl_fail(err, "%s: checkpoint version %u, this bitlab reads versions 1 to %u", path,
                         version, BL_CKPT_VERSION);
        else if (reserved != 0)
            rc = bl_fail(err, "%s: checkpoint header bytes 12..15 (reserved) are %#x, must be 0 "
                              "(corrupt file?)", path, reserved);
        else if (pn != size - HEADER_BYTES)
            rc = bl_fail(err, "%s: checkpoint payload is %zu bytes, the header says %llu "
                              "(truncated?)", path, size - HEADER_BYTES, (unsigned long long)pn);
        else if (fnv1a(file + HEADER_BYTES, pn) != sum)
            rc = bl_fail(err, "%s: checkpoint checksum mismatch (corrupt file)", path);
    }
    if (rc) {
        free(file);
        return NULL;
    }
    *n = pn;
    *version_out = version;
    return file;
}

// ----------------------------------------------------------------------------
// q/k row layout: a student trained on a Hugging Face folder (rotate-half
// RoPE) loaded on the llama.cpp GGUF of the same weights (q/k rows permuted
// for interleaved RoPE), or the other way round. The per-tensor ternary scale
// and the per-token activation scale do not depend on row order, so permuting
// the output rows of ΔW (every adapter's B, the dense ΔW) and of their AdamW
// moments gives the same student on the other layout.

/* Row h·hd + j·hd/2 + i (rotate-half) <-> row h·hd + 2i + j (interleaved). */
static void permute_rows(float *p, float *tmp, int n_heads, int head_dim, size_t width, int to_interleaved) {
    int half = head_dim / 2;
    size_t rows = (size_t)n_heads * head_dim;
    memcpy(tmp, p, rows * width * sizeof *p);
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < half; i++) {
                size_t halves = (size_t)h * head_dim + (size_t)j * half + i;
                size_t inter = (size_t)h * head_dim + 2 * (size_t)i + j;
                size_t dst = to_interleaved ? inter : halves, src = to_interleaved ? halves : inter;
                memcpy(p + dst * width, tmp + src * width, width * sizeof *p);
            }
}

/* Scratch for convert_qk_layout, allocated before the student changes. */
static float *qk_scratch(const BlStudent *st, const Head *h, BlError *err) {
    const BlConfig *c = &st->model->cfg;
    size_t need = 1;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = BL_LIN_Q; k <= BL_LIN_K; k++) {
            if (!bl_student_has(st, l, k)) continue;
            const BlLinear *w = &st->model->layers[l].lin[k];
            size_t width = (h->flags & 4) ? (size_t)w->in : 1;
            for (int a = 0; a < h->na; a++) width = width > (size_t)h->r[a] ? width : (size_t)h->r[a];
            if ((size_t)w->out * width > need) need = (size_t)w->out * width;
        }
    return bl_malloc(need * sizeof(float), err);
}

static void convert_qk_layout(BlStudent *st, float *tmp, int to_interleaved) {
    const BlConfig *c = &st->model->cfg;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = BL_LIN_Q; k <= BL_LIN_K; k++) {
            if (!bl_student_has(st, l, k)) continue;
            int nh = k == BL_LIN_Q ? c->n_heads : c->n_kv_heads;
            BlLoraStack *s = &bl_student_linear(st, l, k)->lora;
            for (int a = 0; a < s->n; a++)
                permute_rows(s->ad[a].B, tmp, nh, c->head_dim, (size_t)s->ad[a].r, to_interleaved);
            if (s->dense) permute_rows(s->dense, tmp, nh, c->head_dim, (size_t)s->in, to_interleaved);
            for (int i = 0; i < st->n_params; i++) {
                if (st->param_layer[i] != l || st->param_kind[i] != k) continue;
                const float *p = st->params[i].p;
                int is_b = s->n > 0 && p == s->ad[s->n - 1].B;
                if (!is_b && p != s->dense) continue; /* A: its rows are the rank, not q/k */
                size_t width = st->opt[i].n / (size_t)s->out;
                permute_rows(st->opt[i].m, tmp, nh, c->head_dim, width, to_interleaved);
                permute_rows(st->opt[i].v, tmp, nh, c->head_dim, width, to_interleaved);
            }
        }
}

int bl_checkpoint_load(const char *path, BlStudent *st, BlTrainer *tr, char **json, BlError *err) {
    if (tr && tr->student != st)
        return bl_fail(err, "%s: the trainer trains another student", path);
    size_t n = 0;
    uint32_t version = 0;
    unsigned char *file = read_verified(path, &n, &version, err);
    if (!file) return -1;
    int rc = 0;
    Head h = {0};
    BlCheckpointInfo info;
    Cur c = {.p = file + HEADER_BYTES, .n = n};
    /* pass 1: everything is validated before the student changes */
    if (rc == 0) rc = read_head(&c, version, st, &h, &info, path, err);
    size_t weights_at = c.at;
    if (rc == 0) rc = read_weights(&c, st, &h, 0, path, err);
    size_t opt_at = c.at;
    if (rc == 0) {
        Cur skip = c;
        int64_t np = get_i64(&skip);
        for (int64_t i = 0; !skip.bad && i < np; i++) {
            int64_t k = get_i64(&skip);
            get_i64(&skip);
            get_floats(&skip, NULL, (size_t)k);
            get_floats(&skip, NULL, (size_t)k);
        }
        rc = skip.bad ? bl_fail(err, "%s: truncated optimizer state", path)
                      : read_json(&skip, NULL, path, err);
    }
    /* v1 files do not record the layout: assumed to be the model's (as v1 did) */
    int here = st->model->cfg.rope_interleaved ? 1 : 0;
    int convert = info.qk_interleaved >= 0 && info.qk_interleaved != here;
    float *scratch = NULL;
    if (rc == 0 && convert && !(scratch = qk_scratch(st, &h, err))) rc = -1;
    /* the missing adapters, then the optimizer layout can be checked */
    const BlLoraStack *fs = bl_student_first_stack(st);
    for (int a = fs ? fs->n : 0; rc == 0 && a < h.na; a++)
        rc = bl_student_add_adapter(st, h.r[a], h.alpha[a], 0, err);
    if (rc == 0) {
        Cur o = c;
        o.at = opt_at;
        rc = read_opt(&o, st, 0, path, err);
    }
    /* pass 2: apply */
    if (rc == 0) {
        c.at = weights_at;
        read_weights(&c, st, &h, 1, path, err);
        read_opt(&c, st, 1, path, err);
        rc = read_json(&c, json, path, err);
        if (convert) convert_qk_layout(st, scratch, here);
        st->cfg.lambda = h.lambda;
        st->cfg.act_bits = (int)h.act_bits;
        st->cfg.lambda_acts = h.flags & FLAG_LAMBDA_ACTS;
        if (tr) {
            tr->steps = h.steps;
            tr->skipped = h.skipped;
        }
    }
    /* the trainer's backend copy follows the restored host student */
    if (rc == 0 && tr && bl_trainer_upload(tr, err)) rc = bl_fail_prefix(err, "%s", path);
    free(scratch);
    free(file);
    return rc;
}

int bl_checkpoint_info(const char *path, BlCheckpointInfo *info, BlError *err) {
    size_t n = 0;
    uint32_t version = 0;
    memset(info, 0, sizeof *info);
    unsigned char *file = read_verified(path, &n, &version, err);
    if (!file) return -1;
    Cur c = {.p = file + HEADER_BYTES, .n = n};
    read_prelude(&c, version, info);
    int64_t flags = get_i64(&c);
    BlStudentConfig *cfg = &info->student;
    cfg->subln = flags & 1;
    cfg->post_attn_norm = flags >> 1 & 1;
    cfg->dense = flags >> 2 & 1;
    cfg->lambda_acts = flags & FLAG_LAMBDA_ACTS;
    cfg->lambda = get_f32(&c);
    cfg->act_bits = (int)get_i64(&c);
    info->steps = get_i64(&c);
    info->skipped = get_i64(&c);
    Head h = {0};
    int rc = c.bad == 2 ? bl_fail(err, "%s: bad q/k layout or BLAS record in the checkpoint header (corrupt?)", path)
             : read_adapter_table(&c, version, &h, path, err) ? -1
             : c.bad ? bl_fail(err, "%s: truncated checkpoint header", path)
                     : 0;
    info->frozen_adapters = BL_CKPT_F32;
    for (int a = 0; rc == 0 && a < h.na; a++)
        if (h.dtype[a] == BL_CKPT_BF16) info->frozen_adapters = BL_CKPT_BF16;
    free(file);
    return rc;
}

int bl_checkpoint_peek(const char *path, BlStudentConfig *cfg, BlError *err) {
    BlCheckpointInfo info;
    if (bl_checkpoint_info(path, &info, err) != 0) return -1;
    *cfg = info.student;
    return 0;
}

int bl_student_from_checkpoint(BlStudent *st, const BlModel *m, const char *path, char **json,
                               BlError *err) {
    BlStudentConfig cfg;
    if (bl_checkpoint_peek(path, &cfg, err) || bl_build_student(st, m, &cfg, err)) return -1;
    if (bl_checkpoint_load(path, st, NULL, json, err) == 0) return 0;
    bl_free_student(st);
    return -1;
}
