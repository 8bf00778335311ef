/* corpus.c - the streaming corpus (see corpus.h): sources, the reader thread
 * and its bounded queue of tokenised pieces, packing, the position. */
#include "data/corpus.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "data/dataset.h"
#include "data/shard.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

#define DEFAULT_PIECE_BYTES ((size_t)1 << 20)
/* dozens of steps of large batches ahead, yet little CPU taken from the first steps */
#define DEFAULT_QUEUE_TOKENS ((size_t)1 << 18)

/* A run of one document's tokens, as the reader made it: owned ids (text), or
 * a range of a mapped shard. */
typedef struct Piece {
    struct Piece *next;
    BlCorpusPos at;      /* where it starts (consumed 0) */
    int fi;              /* the file it comes from (an index of files) */
    int *ids;            /* text: n ids */
    const BlShardView *view;
    uint64_t begin;      /* shards: ids [begin, begin + n) of view */
    size_t n;
    bool doc_begin, doc_end;
} Piece;

/* What the reader thread alone touches. */
typedef struct {
    BlCorpusPos at;      /* the next piece's position (consumed unused) */
    int *order;          /* the epoch's file order */
    FILE *fp;            /* the open file, order[at.file] */
    uint64_t size;       /* its size */
    char *buf;           /* piece_bytes of text */
    char *line;
    size_t line_cap;
    long pieces_in_epoch;
    bool whole_epoch;    /* this epoch was read from its start */
    uint64_t bytes;      /* read since the last piece was queued */
} Reader;

struct BlCorpus {
    const BlModel *model;
    const BlTokenizer *tok;
    int bos, eos;
    uint64_t seed;
    size_t piece_bytes, queue_tokens;
    BlChatTemplate tpl;
    bool has_tpl;
    char **files;
    bool *jsonl;
    int n_files;
    BlShardFile *shards; /* [n_files] when reading shards */

    /* the reader and its queue */
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv_put, cv_get;
    Piece *head, *tail;
    size_t queued_tokens;
    bool stop;
    bool reader_failed;  /* the reader stopped at reader_error, after the pieces queued */
    char reader_error[sizeof(BlError)];
    Reader r;
    uint64_t bytes_read, tokens_read;
    double busy_seconds;

    /* the consumer */
    Piece *cur;
    uint64_t used;       /* tokens of cur served */
    BlCorpusPos start;   /* the position before the first piece is taken */
    uint64_t skip;       /* tokens of that first piece already served */
    char *failed;        /* a batch failed: this error until the next seek */
    int *scratch;        /* shard piece ids for next_piece */
    size_t scratch_cap;
    BlCorpusStats st;
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ----------------------------------------------------------------------------
// sources

typedef struct {
    char **v;
    int n, cap;
} PathList;

static int push_path(PathList *l, const char *p, BlError *err) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, sizeof *v * (size_t)cap);
        if (!v) return bl_fail(err, "corpus: out of memory for %d paths", cap);
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(p))) return bl_fail(err, "corpus: out of memory");
    l->n++;
    return 0;
}

static bool has_ext(const char *p, const char *ext) {
    size_t n = strlen(p), k = strlen(ext);
    return n > k && strcmp(p + n - k, ext) == 0;
}

static bool corpus_ext(const char *p) {
    return has_ext(p, ".txt") || has_ext(p, ".md") || has_ext(p, ".jsonl");
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every corpus file under dir (recursive, hidden names skipped), unsorted. */
static int walk(PathList *l, const char *dir, int depth, BlError *err) {
    if (depth > 64) return bl_fail(err, "corpus: %s: folders nested too deep (a link loop?)", dir);
    DIR *d = opendir(dir);
    if (!d) return bl_fail(err, "corpus: %s: cannot open the folder (%s)", dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        if (!p) {
            rc = bl_fail(err, "corpus: out of memory");
            break;
        }
        snprintf(p, n, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode)) rc = walk(l, p, depth + 1, err);
            else if (S_ISREG(st.st_mode) && corpus_ext(p)) rc = push_path(l, p, err);
        }
        free(p);
    }
    closedir(d);
    return rc;
}

/* A path named by the user (or matched by a pattern): a folder contributes
 * its corpus files in sorted order, a file itself. */
static int add_source(PathList *l, const char *p, BlError *err) {
    struct stat st;
    if (stat(p, &st) != 0) return bl_fail(err, "corpus: %s: %s", p, strerror(errno));
    if (S_ISREG(st.st_mode)) return push_path(l, p, err);
    if (!S_ISDIR(st.st_mode)) return bl_fail(err, "corpus: %s: not a file or a folder", p);
    int first = l->n;
    if (walk(l, p, 0, err)) return -1;
    if (l->n == first) return bl_fail(err, "corpus: %s: no .txt, .md or .jsonl files in the folder", p);
    qsort(l->v + first, (size_t)(l->n - first), sizeof *l->v, cmp_str);
    return 0;
}

static int resolve(PathList *l, const char *const *paths, int n, BlError *err) {
    for (int i = 0; i < n; i++) {
        const char *p = paths[i];
        if (!strpbrk(p, "*?[")) {
            if (add_source(l, p, err)) return -1;
            continue;
        }
        glob_t g;
        int rc = glob(p, 0, NULL, &g);
        if (rc == GLOB_NOMATCH) return bl_fail(err, "corpus: no file matches \"%s\"", p);
        if (rc != 0) return bl_fail(err, "corpus: cannot expand \"%s\"", p);
        for (size_t k = 0; k < g.gl_pathc && rc == 0; k++) rc = add_source(l, g.gl_pathv[k], err);
        globfree(&g);
        if (rc) return -1;
    }
    return 0;
}

static int open_shards(BlCorpus *c, const char *dir, PathList *l, BlError *err) {
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return bl_fail(err, "corpus: shards folder %s: %s", dir,
                       errno ? strerror(errno) : "not a folder");
    size_t n = strlen(dir) + 32;
    char *pat = malloc(n);
    if (!pat) return bl_fail(err, "corpus: out of memory");
    snprintf(pat, n, "%s/shard-*.bin", dir);
    glob_t g;
    int rc = glob(pat, 0, NULL, &g);
    free(pat);
    if (rc == GLOB_NOMATCH)
        return bl_fail(err, "corpus: %s: no shard-*.bin files (bitlab tokenize --corpus ... --out "
                            "%s writes them)", dir, dir);
    if (rc != 0) return bl_fail(err, "corpus: %s: cannot list the shards", dir);
    for (size_t k = 0; k < g.gl_pathc && rc == 0; k++) rc = push_path(l, g.gl_pathv[k], err);
    globfree(&g);
    if (rc) return -1;
    if (!(c->shards = bl_calloc((size_t)l->n, sizeof *c->shards, err))) return -1;
    unsigned char id[32];
    bl_shard_tokenizer_id(c->tok, id);
    uint32_t vocab = (uint32_t)c->model->cfg.vocab_size;
    for (int i = 0; i < l->n; i++)
        if (bl_shard_open(&c->shards[i], l->v[i], id, vocab, err)) return -1;
    return 0;
}

// ----------------------------------------------------------------------------
// the reader: one piece at a time

/* The tokens of one document or piece of text; EOS appended at its end (unless
 * the tokenizer's own post-processor put it there), taken off a first piece
 * that does not end its document. */
static int encode(const BlCorpus *c, const char *text, size_t n, bool add_special, bool doc_end,
                  int **ids, size_t *n_ids, BlError *err) {
    int *v = NULL, k = 0;
    if (bl_tokenizer_encode(c->tok, text, n, add_special, &v, &k, err)) return -1;
    bool ends_eos = c->eos >= 0 && k > 0 && v[k - 1] == c->eos;
    if (!doc_end && add_special && ends_eos) k--;
    if (doc_end && c->eos >= 0 && !ends_eos) {
        int *w = realloc(v, sizeof *w * (size_t)(k + 1));
        if (!w) {
            free(v);
            return bl_fail(err, "corpus: out of memory");
        }
        v = w;
        v[k++] = c->eos;
    }
    *ids = v;
    *n_ids = (size_t)k;
    return 0;
}

/* A {"messages": [...]} line: the conversation rendered with the model's template. */
static int encode_chat(const BlCorpus *c, const cJSON *msgs, int **ids, size_t *n_ids, BlError *err) {
    if (!c->has_tpl) return bl_fail(err, "a \"messages\" line needs the model's chat template, and "
                                         "the model has none that bitlab knows");
    BlChatMessage *m;
    int n;
    if (bl_chat_messages_from_json(msgs, &m, &n, err)) return -1;
    char *full = NULL;
    int rc = bl_chat_render(&c->tpl, m, n, false, &full, err);
    free(m);
    if (rc == 0) rc = encode(c, full, strlen(full), false, true, ids, n_ids, err);
    free(full);
    return rc;
}

static int encode_json_line(const BlCorpus *c, const char *line, size_t k, int **ids,
                            size_t *n_ids, BlError *err) {
    cJSON *j = cJSON_ParseWithLength(line, k);
    if (!j) return bl_fail(err, "malformed JSON");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    int rc;
    if (!cJSON_IsObject(j)) rc = bl_fail(err, "not a JSON object");
    else if (cJSON_IsString(text))
        rc = encode(c, text->valuestring, strlen(text->valuestring), true, true, ids, n_ids, err);
    else if (cJSON_IsArray(msgs)) rc = encode_chat(c, msgs, ids, n_ids, err);
    else rc = bl_fail(err, "expected a \"text\" string or a \"messages\" array");
    cJSON_Delete(j);
    return rc;
}

/* Where a piece of n bytes (more follow) ends: before the last paragraph
 * break, else before the last line break or space (which the next piece's
 * first word keeps, as it would in the whole text), else before the last
 * UTF-8 character. */
static size_t cut_piece(const char *b, size_t n) {
    for (size_t i = n - 1; i > 0; i--)
        if (b[i] == '\n' && b[i - 1] == '\n' && i - 1 > 0) return i - 1;
    for (size_t i = n - 1; i > 0; i--)
        if (b[i] == '\n' || b[i] == ' ') return i;
    size_t i = n - 1;
    while (i > 1 && ((unsigned char)b[i] & 0xC0) == 0x80) i--;
    return i;
}

static void close_file(Reader *r) {
    if (r->fp) fclose(r->fp);
    r->fp = NULL;
}

/* Moves the reader to the next file, and past the last into the next epoch. */
static int next_file(BlCorpus *c, Reader *r, BlError *err) {
    close_file(r);
    r->at.file++;
    r->at.offset = 0;
    r->at.line = 0;
    if (r->at.file < c->n_files) return 0;
    if (r->whole_epoch && r->pieces_in_epoch == 0)
        return bl_fail(err, "corpus: no documents in its %d file(s): they are empty", c->n_files);
    r->at.epoch++;
    r->at.file = 0;
    r->pieces_in_epoch = 0;
    r->whole_epoch = true;
    bl_epoch_order(r->order, c->n_files, c->seed, r->at.epoch);
    return 0;
}

/* A text file's next piece into p; 0 with p->n == 0 at its end. */
static int read_text(BlCorpus *c, Reader *r, const char *path, Piece *p, BlError *err) {
    if (r->at.offset >= r->size) return 0;
    if (fseeko(r->fp, (off_t)r->at.offset, SEEK_SET) != 0)
        return bl_fail(err, "%s: cannot seek to %llu", path, (unsigned long long)r->at.offset);
    uint64_t left = r->size - r->at.offset;
    size_t want = left < c->piece_bytes ? (size_t)left : c->piece_bytes;
    size_t got = fread(r->buf, 1, want, r->fp);
    if (got != want) return bl_fail(err, "%s: read failed at %llu", path, (unsigned long long)r->at.offset);
    bool last = got == left;
    size_t n = last ? got : cut_piece(r->buf, got);
    p->doc_begin = r->at.offset == 0;
    p->doc_end = last;
    r->bytes += n;
    if (encode(c, r->buf, n, p->doc_begin, last, &p->ids, &p->n, err))
        return bl_fail_prefix(err, "%s", path);
    r->at.offset += n;
    return 0;
}

/* A .jsonl file's next document into p; 0 with p->n == 0 at its end. */
static int read_jsonl(BlCorpus *c, Reader *r, const char *path, Piece *p, BlError *err) {
    for (;;) {
        p->at = r->at;
        ssize_t got = getline(&r->line, &r->line_cap, r->fp);
        if (got < 0) return 0;
        r->at.offset += (uint64_t)got;
        r->at.line++;
        p->at.line = r->at.line;
        r->bytes += (uint64_t)got;
        size_t k = (size_t)got;
        while (k && strchr(" \t\r\n", r->line[k - 1])) k--;
        if (k == 0) continue;
        p->doc_begin = p->doc_end = true;
        if (encode_json_line(c, r->line, k, &p->ids, &p->n, err))
            return bl_fail_prefix(err, "%s:%ld", path, r->at.line);
        if (p->n > 0) return 0;
        free(p->ids);
        p->ids = NULL;
    }
}

/* The next piece of the corpus into p (its position set). */
static int read_piece(BlCorpus *c, Reader *r, Piece *p, BlError *err) {
    for (;;) {
        memset(p, 0, sizeof *p);
        p->at = r->at;
        int fi = r->order[r->at.file];
        if (c->shards) {
            const BlShardView *v = &c->shards[fi].view;
            if (r->at.offset >= v->n_docs) {
                if (next_file(c, r, err)) return -1;
                continue;
            }
            uint64_t b, e;
            bl_shard_doc(v, r->at.offset++, &b, &e);
            *p = (Piece){.at = p->at, .fi = fi, .view = v, .begin = b, .n = (size_t)(e - b),
                         .doc_begin = true, .doc_end = true};
            r->bytes += (e - b) * (uint64_t)v->width;
            r->pieces_in_epoch++;
            return 0;
        }
        const char *path = c->files[fi];
        if (!r->fp) {
            if (!(r->fp = fopen(path, "rb"))) return bl_fail(err, "%s: cannot open (%s)", path, strerror(errno));
            struct stat st;
            if (fstat(fileno(r->fp), &st) != 0) return bl_fail(err, "%s: cannot stat", path);
            r->size = (uint64_t)st.st_size;
            if (c->jsonl[fi] && r->at.offset > 0 && fseeko(r->fp, (off_t)r->at.offset, SEEK_SET) != 0)
                return bl_fail(err, "%s: cannot seek to %llu", path, (unsigned long long)r->at.offset);
        }
        p->fi = fi;
        int rc = c->jsonl[fi] ? read_jsonl(c, r, path, p, err) : read_text(c, r, path, p, err);
        if (rc) return -1;
        if (p->n > 0) {
            r->pieces_in_epoch++;
            return 0;
        }
        free(p->ids);
        if (p->at.offset == r->at.offset && next_file(c, r, err)) return -1; /* at its end */
    }
}

static void free_piece(Piece *p) {
    if (!p) return;
    free(p->ids);
    free(p);
}

static void *reader_main(void *arg) {
    BlCorpus *c = arg;
    Reader *r = &c->r;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (!c->stop && c->queued_tokens >= c->queue_tokens) pthread_cond_wait(&c->cv_put, &c->mu);
        bool stop = c->stop;
        pthread_mutex_unlock(&c->mu);
        if (stop) break;
        Piece *p = malloc(sizeof *p);
        BlError err = {{0}};
        double t0 = now_seconds();
        int rc = p ? read_piece(c, r, p, &err) : bl_fail(&err, "corpus: out of memory");
        double dt = now_seconds() - t0;
        if (rc && p) {
            free(p->ids);
            free(p);
        }
        pthread_mutex_lock(&c->mu);
        c->busy_seconds += dt;
        c->bytes_read += r->bytes;
        r->bytes = 0;
        if (rc) { /* reported once the pieces before it are served */
            c->reader_failed = true;
            snprintf(c->reader_error, sizeof c->reader_error, "%s", err.msg);
        } else {
            p->next = NULL;
            if (c->tail) c->tail->next = p;
            else c->head = p;
            c->tail = p;
            c->queued_tokens += p->n;
            c->tokens_read += p->n;
        }
        pthread_cond_signal(&c->cv_get);
        pthread_mutex_unlock(&c->mu);
        if (rc) break;
    }
    return NULL;
}

/* Stops the reader and drops what it queued. */
static void stop_reader(BlCorpus *c) {
    if (c->running) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_cond_broadcast(&c->cv_put);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
        c->running = false;
    }
    while (c->head) {
        Piece *p = c->head;
        c->head = p->next;
        free_piece(p);
    }
    c->tail = NULL;
    c->queued_tokens = 0;
    c->reader_failed = false;
    close_file(&c->r);
}

/* Starts the reader at pos (consumed tokens are skipped by the consumer). */
static int start_reader(BlCorpus *c, const BlCorpusPos *pos, BlError *err) {
    Reader *r = &c->r;
    r->at = *pos;
    r->at.consumed = 0;
    r->at.line = pos->line > 0 ? pos->line - 1 : 0; /* the lines before the piece's */
    r->pieces_in_epoch = 0;
    r->whole_epoch = pos->file == 0 && pos->offset == 0;
    bl_epoch_order(r->order, c->n_files, c->seed, pos->epoch);
    c->stop = false;
    if (pthread_create(&c->thread, NULL, reader_main, c) != 0)
        return bl_fail(err, "corpus: cannot start the reader thread");
    c->running = true;
    return 0;
}

// ----------------------------------------------------------------------------
// lifetime

int bl_corpus_open(BlCorpus **out, const BlCorpusOptions *o, BlError *err) {
    *out = NULL;
    if (!o->shards && o->n_paths <= 0) return bl_fail(err, "corpus: no paths given");
    BlCorpus *c = bl_calloc(1, sizeof *c, err);
    if (!c) return -1;
    c->model = o->model;
    c->tok = o->model->tokenizer;
    c->bos = bl_tokenizer_bos_id(c->tok);
    c->eos = bl_tokenizer_eos_id(c->tok);
    c->seed = o->seed;
    c->piece_bytes = o->piece_bytes ? o->piece_bytes : DEFAULT_PIECE_BYTES;
    c->queue_tokens = o->queue_tokens ? o->queue_tokens : DEFAULT_QUEUE_TOKENS;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv_put, NULL);
    pthread_cond_init(&c->cv_get, NULL);
    if (o->model->chat_template) {
        BlError ignored;
        c->has_tpl = bl_chat_template_detect(&c->tpl, o->model->chat_template,
                                             bl_tokenizer_bos_text(c->tok),
                                             bl_tokenizer_eos_text(c->tok), &ignored) == 0;
    }
    PathList l = {0};
    int rc = o->shards ? open_shards(c, o->shards, &l, err) : resolve(&l, o->paths, o->n_paths, err);
    c->files = l.v;
    c->n_files = l.n;
    if (rc) {
        bl_corpus_free(c);
        return -1;
    }
    uint64_t bytes = 0;
    c->jsonl = bl_calloc((size_t)c->n_files, sizeof *c->jsonl, err);
    c->r.order = c->jsonl ? bl_calloc((size_t)c->n_files, sizeof *c->r.order, err) : NULL;
    c->r.buf = c->r.order ? bl_malloc(c->piece_bytes, err) : NULL;
    rc = c->r.buf ? 0 : -1;
    for (int i = 0; rc == 0 && i < c->n_files; i++) {
        c->jsonl[i] = has_ext(c->files[i], ".jsonl");
        struct stat st;
        if (!c->shards && stat(c->files[i], &st) == 0) bytes += (uint64_t)st.st_size;
    }
    if (rc == 0 && !c->shards && bytes == 0)
        rc = bl_fail(err, "corpus: its %d file(s) are all empty", c->n_files);
    c->st.files = c->n_files;
    if (rc == 0) rc = start_reader(c, &c->start, err);
    if (rc) {
        bl_corpus_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

void bl_corpus_free(BlCorpus *c) {
    if (!c) return;
    stop_reader(c);
    free_piece(c->cur);
    for (int i = 0; i < c->n_files; i++) {
        free(c->files[i]);
        if (c->shards) bl_shard_close(&c->shards[i]);
    }
    free(c->files);
    free(c->shards);
    free(c->jsonl);
    free(c->r.order);
    free(c->r.buf);
    free(c->r.line);
    free(c->failed);
    free(c->scratch);
    if (c->has_tpl) bl_chat_template_free(&c->tpl);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv_put);
    pthread_cond_destroy(&c->cv_get);
    free(c);
}

// ----------------------------------------------------------------------------
// the consumer

static int fail_sticky(BlCorpus *c, const char *msg, BlError *err) {
    if (!c->failed) c->failed = strdup(msg);
    return bl_fail(err, "%s", msg);
}

/* Makes cur a piece with tokens left, waiting on the reader when needed. */
static int take_piece(BlCorpus *c, BlError *err) {
    if (c->cur && c->used < c->cur->n) return 0;
    pthread_mutex_lock(&c->mu);
    if (!c->head && !c->reader_failed) {
        double t0 = now_seconds();
        while (!c->head && !c->reader_failed) pthread_cond_wait(&c->cv_get, &c->mu);
        c->st.stall_seconds += now_seconds() - t0;
    }
    Piece *p = c->head;
    if (!p) { /* every later batch reports it too, until a seek */
        pthread_mutex_unlock(&c->mu);
        return fail_sticky(c, c->reader_error, err);
    }
    c->head = p->next;
    if (!c->head) c->tail = NULL;
    c->queued_tokens -= p->n;
    pthread_cond_signal(&c->cv_put);
    pthread_mutex_unlock(&c->mu);
    bool first = c->cur == NULL;
    free_piece(c->cur);
    c->cur = p;
    c->used = 0;
    if (first && c->skip > 0) {
        if (c->skip > p->n) {
            char msg[256];
            snprintf(msg, sizeof msg, "corpus: the position skips %llu tokens of a piece of %zu "
                     "(the files changed since it was taken?)", (unsigned long long)c->skip, p->n);
            return fail_sticky(c, msg, err);
        }
        c->used = c->skip;
        c->skip = 0;
        return take_piece(c, err);
    }
    return 0;
}

/* Copies k tokens of cur from c->used into dst, checking shard ids. */
static int copy_tokens(BlCorpus *c, int *dst, size_t k, BlError *err) {
    const Piece *p = c->cur;
    if (p->ids) {
        memcpy(dst, p->ids + c->used, sizeof *dst * k);
        return 0;
    }
    uint32_t vocab = p->view->vocab_size;
    for (size_t i = 0; i < k; i++) {
        uint32_t id = bl_shard_token(p->view, p->begin + c->used + i);
        if (id >= vocab) {
            char msg[4200];
            snprintf(msg, sizeof msg, "%s: token %u (document %llu) is outside the vocabulary of %u",
                     c->files[p->fi], id,
                     (unsigned long long)p->at.offset, vocab);
            return fail_sticky(c, msg, err);
        }
        dst[i] = (int)id;
    }
    return 0;
}

int bl_corpus_next_batch(BlCorpus *c, int B, int T, int *tokens, int *lens, uint8_t *mask,
                         int *doc_start, BlError *err) {
    if (c->failed) return bl_fail(err, "%s", c->failed);
    if (B <= 0 || T < 2) return bl_fail(err, "corpus: batch shape %d x %d", B, T);
    for (int b = 0; b < B; b++) {
        int *row = tokens + (size_t)b * T;
        int *ds = doc_start + (size_t)b * T;
        int t = 0, seg = 0;
        while (t < T) {
            if (take_piece(c, err)) return -1;
            if (c->used == 0 && c->cur->doc_begin) {
                seg = t;
                c->st.documents++;
            }
            size_t k = c->cur->n - c->used;
            if (k > (size_t)(T - t)) k = (size_t)(T - t);
            if (copy_tokens(c, row + t, k, err)) return -1;
            for (size_t i = 0; i < k; i++) ds[t + i] = seg;
            c->used += k;
            t += (int)k;
        }
        lens[b] = T;
        uint8_t *m = mask + (size_t)b * T;
        for (int i = 0; i + 1 < T; i++) m[i] = ds[i + 1] == ds[i];
        m[T - 1] = 0;
    }
    c->st.rows += B;
    c->st.tokens += (uint64_t)B * (uint64_t)T;
    c->st.slots += (uint64_t)B * (uint64_t)T;
    return 0;
}

int bl_corpus_next_piece(BlCorpus *c, BlCorpusPiece *out, BlError *err) {
    if (c->failed) return bl_fail(err, "%s", c->failed);
    if (take_piece(c, err)) return -1;
    Piece *p = c->cur;
    size_t k = p->n - c->used;
    const int *ids = p->ids ? p->ids + c->used : NULL;
    if (!ids) {
        if (k > c->scratch_cap) {
            int *s = realloc(c->scratch, sizeof *s * k);
            if (!s) return bl_fail(err, "corpus: out of memory for %zu tokens", k);
            c->scratch = s;
            c->scratch_cap = k;
        }
        if (copy_tokens(c, c->scratch, k, err)) return -1;
        ids = c->scratch;
    }
    *out = (BlCorpusPiece){.ids = ids, .n = k, .doc_begin = p->doc_begin && c->used == 0,
                           .doc_end = p->doc_end, .epoch = p->at.epoch};
    if (out->doc_begin) c->st.documents++;
    c->used = p->n;
    c->st.tokens += k;
    return 0;
}

// ----------------------------------------------------------------------------
// position and statistics

void bl_corpus_position(const BlCorpus *c, BlCorpusPos *p) {
    if (c->cur) {
        *p = c->cur->at;
        p->consumed = c->used;
    } else {
        *p = c->start;
        p->consumed = c->skip;
    }
    /* the consumer's counters: written only by the thread taking batches */
    p->documents = c->st.documents;
    p->rows = c->st.rows;
    p->tokens = c->st.tokens;
    p->slots = c->st.slots;
}

int bl_corpus_seek(BlCorpus *c, const BlCorpusPos *p, BlError *err) {
    if (p->epoch < 0 || p->file < 0 || p->file >= c->n_files || p->line < 0)
        return bl_fail(err, "corpus: position (epoch %ld, file %ld) is outside its %d file(s)",
                       p->epoch, p->file, c->n_files);
    stop_reader(c);
    free_piece(c->cur);
    c->cur = NULL;
    c->used = 0;
    free(c->failed);
    c->failed = NULL;
    c->start = *p;
    c->skip = p->consumed;
    c->st.documents = p->documents;
    c->st.rows = p->rows;
    c->st.tokens = p->tokens;
    c->st.slots = p->slots;
    return start_reader(c, p, err);
}

void bl_corpus_stats(BlCorpus *c, BlCorpusStats *s) {
    pthread_mutex_lock(&c->mu);
    *s = c->st;
    s->bytes_read = c->bytes_read;
    s->tokens_read = c->tokens_read;
    s->tokens_per_s = c->busy_seconds > 0 ? (double)c->tokens_read / c->busy_seconds : 0;
    pthread_mutex_unlock(&c->mu);
    BlCorpusPos p;
    bl_corpus_position(c, &p);
    s->epoch = p.epoch;
}

int bl_corpus_n_files(const BlCorpus *c) {
    return c->n_files;
}

const char *bl_corpus_file(const BlCorpus *c, int i) {
    return c->files[i];
}

int bl_corpus_is_shards(const BlCorpus *c) {
    return c->shards != NULL;
}
