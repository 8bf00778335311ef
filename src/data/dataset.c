/* dataset.c - examples, target flags, shuffling and batching (see dataset.h). */
#include "data/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "tokenizer/tokenizer.h"

// ----------------------------------------------------------------------------
// lifetime

int bl_dataset_init(BlDataset *d, const BlModel *m, const char *template_name, bool response_only,
                    BlError *err) {
    memset(d, 0, sizeof *d);
    d->model = m;
    d->response_only = response_only;
    const char *bos = bl_tokenizer_bos_text(m->tokenizer), *eos = bl_tokenizer_eos_text(m->tokenizer);
    if (template_name) {
        if (bl_chat_template_by_name(&d->tpl, template_name, bos, eos, err)) return -1;
        d->has_tpl = true;
    } else if (m->chat_template) {
        if (bl_chat_template_detect(&d->tpl, m->chat_template, bos, eos, err))
            return bl_fail_prefix(err, "dataset: the model's chat template");
        d->has_tpl = true;
    }
    return 0;
}

void bl_dataset_free(BlDataset *d) {
    if (d->has_tpl) bl_chat_template_free(&d->tpl);
    free(d->len);
    free(d->off);
    free(d->tok);
    free(d->target);
    free(d->order);
    memset(d, 0, sizeof *d);
}

int bl_dataset_set_long(BlDataset *d, int seq, BlLongPolicy policy, BlError *err) {
    if (d->n > 0)
        return bl_fail(err, "dataset: the long-example policy must be set before examples are added");
    if (seq < 2) return bl_fail(err, "dataset: seq %d is below 2 tokens", seq);
    d->seq = seq;
    d->long_policy = policy;
    return 0;
}

static const char *const POLICY_NAMES[] = {[BL_LONG_TRUNCATE] = "truncate", [BL_LONG_SPLIT] = "split",
                                           [BL_LONG_SKIP] = "skip"};

int bl_long_policy_parse(const char *name, BlLongPolicy *p) {
    for (int i = 0; i < (int)(sizeof POLICY_NAMES / sizeof *POLICY_NAMES); i++)
        if (strcmp(name, POLICY_NAMES[i]) == 0) return (*p = (BlLongPolicy)i, 0);
    return -1;
}

const char *bl_long_policy_name(BlLongPolicy p) {
    return (unsigned)p < sizeof POLICY_NAMES / sizeof *POLICY_NAMES ? POLICY_NAMES[p] : "?";
}

// ----------------------------------------------------------------------------
// growing the token store

static int reserve_tokens(BlDataset *d, size_t extra, BlError *err) {
    if (d->n_tok + extra <= d->cap_tok) return 0;
    size_t cap = d->cap_tok ? d->cap_tok : 1024;
    while (cap < d->n_tok + extra) cap *= 2;
    int *tok = realloc(d->tok, cap * sizeof *tok);
    if (tok) d->tok = tok;
    uint8_t *tg = tok ? realloc(d->target, cap) : NULL;
    if (!tg) return bl_fail(err, "dataset: out of memory for %zu tokens", cap);
    d->target = tg;
    d->cap_tok = cap;
    return 0;
}

/* Appends tokens to the example being built (the last one). */
static int append(BlDataset *d, const int *ids, int n, uint8_t target, BlError *err) {
    if (reserve_tokens(d, (size_t)n, err)) return -1;
    memcpy(d->tok + d->n_tok, ids, sizeof(int) * n);
    memset(d->target + d->n_tok, target, (size_t)n);
    d->n_tok += (size_t)n;
    return 0;
}

static int begin_example(BlDataset *d, BlError *err) {
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 16;
        int *len = realloc(d->len, sizeof(int) * cap);
        if (len) d->len = len;
        size_t *off = len ? realloc(d->off, sizeof(size_t) * cap) : NULL;
        if (off) d->off = off;
        int *order = off ? realloc(d->order, sizeof(int) * cap) : NULL;
        if (!order) return bl_fail(err, "dataset: out of memory for %d examples", cap);
        d->order = order;
        d->cap = cap;
    }
    d->off[d->n] = d->n_tok;
    return 0;
}

/* Drops the tokens of a half-built example; returns -1 for the caller. */
static int abort_example(BlDataset *d) {
    d->n_tok = d->off[d->n];
    return -1;
}

/* Makes the tokens from off[n] on example n. */
static void close_example(BlDataset *d, int len) {
    d->len[d->n] = len;
    d->order[d->n] = d->n; /* file order until shuffled */
    d->n++;
}

/* Whether a row of these n tokens selects anything: row t predicts token
 * t+1, so token 0's flag never counts. */
static bool predicts(const uint8_t *tg, int n) {
    for (int t = 1; t < n; t++)
        if (tg[t]) return true;
    return false;
}

/* Replaces the example being built (len > seq tokens) by pieces of at most
 * seq tokens, each starting on the last token of the one before: a piece's
 * first token is only context, so overlapping by one keeps every token a
 * prediction of exactly one piece. */
static int split_example(BlDataset *d, int len, BlError *err) {
    int n0 = d->n, S = d->seq;
    size_t off0 = d->off[n0];
    int *tok = bl_calloc((size_t)len, sizeof *tok, err);
    uint8_t *tg = tok ? bl_calloc((size_t)len, 1, err) : NULL;
    if (!tg) {
        free(tok);
        d->n_tok = off0;
        return -1;
    }
    memcpy(tok, d->tok + off0, sizeof(int) * (size_t)len);
    memcpy(tg, d->target + off0, (size_t)len);
    d->n_tok = off0;
    int rc = 0;
    for (int at = 0; at + 1 < len; at += S - 1) {
        int n = len - at < S ? len - at : S;
        if (!predicts(tg + at, n)) continue; /* a row that trains nothing */
        if ((rc = begin_example(d, err)) || (rc = reserve_tokens(d, (size_t)n, err))) break;
        memcpy(d->tok + d->n_tok, tok + at, sizeof(int) * (size_t)n);
        memcpy(d->target + d->n_tok, tg + at, (size_t)n);
        d->n_tok += (size_t)n;
        close_example(d, n);
    }
    free(tok);
    free(tg);
    if (rc) { /* none of the pieces: the example fails whole */
        d->n = n0;
        d->n_tok = off0;
        return -1;
    }
    d->n_split++;
    return 0;
}

/* Closes the example begun last; empty examples are dropped as an error.
 * One longer than seq is fitted to it by the long policy. */
static int end_example(BlDataset *d, BlError *err) {
    int len = (int)(d->n_tok - d->off[d->n]);
    if (len < 2) {
        d->n_tok = d->off[d->n];
        return bl_fail(err, "dataset: an example of %d token(s) has nothing to predict", len);
    }
    if (d->seq > 0 && len > d->seq) {
        d->n_long++;
        switch (d->long_policy) {
        case BL_LONG_TRUNCATE:
            d->n_cut++;
            d->tokens_dropped += len - d->seq;
            d->n_tok = d->off[d->n] + (size_t)d->seq;
            len = d->seq;
            break;
        case BL_LONG_SKIP:
            d->n_skipped++;
            d->tokens_dropped += len;
            d->n_tok = d->off[d->n];
            return 0;
        case BL_LONG_SPLIT:
            return split_example(d, len, err);
        }
    }
    close_example(d, len);
    return 0;
}

static int encode_append(BlDataset *d, const char *text, size_t n, bool add_special,
                         uint8_t target, BlError *err) {
    if (n == 0 && !add_special) return 0;
    int *ids = NULL, n_ids = 0;
    if (bl_tokenizer_encode(d->model->tokenizer, text, n, add_special, &ids, &n_ids, err))
        return -1;
    int rc = append(d, ids, n_ids, target, err);
    free(ids);
    return rc;
}

static bool is_stop(const BlModel *m, int id) {
    for (int i = 0; i < m->n_stop_tokens; i++)
        if (m->stop_tokens[i] == id) return true;
    return false;
}

// ----------------------------------------------------------------------------
// adding examples

int bl_dataset_add_tokens(BlDataset *d, const int *ids, const uint8_t *target, int n,
                          BlError *err) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= d->model->cfg.vocab_size)
            return bl_fail(err, "dataset: token %d at %d is outside the vocabulary", ids[i], i);
    if (begin_example(d, err) || reserve_tokens(d, (size_t)n, err)) return -1;
    memcpy(d->tok + d->n_tok, ids, sizeof(int) * n);
    for (int i = 0; i < n; i++) d->target[d->n_tok + i] = target ? target[i] != 0 : 1;
    d->n_tok += (size_t)n;
    return end_example(d, err);
}

int bl_dataset_add_text(BlDataset *d, const char *text, BlError *err) {
    if (begin_example(d, err)) return -1;
    if (encode_append(d, text, strlen(text), true, 1, err)) return abort_example(d);
    return end_example(d, err);
}

/* Where assistant message i's content starts in full (the rendering of the
 * whole conversation): after the rendering of messages 0..i−1 with the
 * generation prompt, skipping whitespace the template inserts (Llama-2 puts
 * a space; Llama-3 trims the content). -1 when not found. */
static long content_start(const BlDataset *d, const BlChatMessage *msgs, int i, const char *full,
                          const char **content, size_t *clen, BlError *err) {
    char *prefix = NULL;
    if (bl_chat_render(&d->tpl, msgs, i, true, &prefix, err)) return -2;
    size_t pl = strlen(prefix);
    bool ok = strncmp(prefix, full, pl) == 0;
    free(prefix);
    if (!ok) return -1;
    const char *c = msgs[i].content;
    size_t n = strlen(c);
    while (n && strchr(" \t\r\n", *c)) c++, n--;
    while (n && strchr(" \t\r\n", c[n - 1])) n--;
    const char *p = full + pl;
    while (*p && strchr(" \t\r\n", *p) && strncmp(p, c, n) != 0) p++;
    if (strncmp(p, c, n) != 0) return -1;
    *content = c;
    *clen = n;
    return p - full;
}

static int add_chat_segments(BlDataset *d, const BlChatMessage *msgs, int n_msgs,
                             const char *full, BlError *err) {
    size_t cursor = 0, first = d->n_tok;
    bool any = false;
    for (int i = 0; i < n_msgs; i++) {
        if (strcmp(msgs[i].role, "assistant") != 0) continue;
        const char *c;
        size_t clen;
        long at = content_start(d, msgs, i, full, &c, &clen, err);
        if (at == -2) return -1;
        if (at < 0 || (size_t)at < cursor)
            return bl_fail(err, "dataset: cannot locate assistant message %d in the rendered "
                                "%s template", i, bl_template_kind_name(d->tpl.kind));
        if (encode_append(d, full + cursor, (size_t)at - cursor, false, 0, err) ||
            encode_append(d, full + at, clen, false, 1, err))
            return -1;
        cursor = (size_t)at + clen;
        any = true;
    }
    if (!any) return bl_fail(err, "dataset: response-only loss needs an assistant message");
    if (encode_append(d, full + cursor, strlen(full + cursor), false, 0, err)) return -1;
    /* the end-of-turn token right after a content is a target too, so the
     * student learns where answers stop */
    for (size_t p = first; p + 1 < d->n_tok; p++)
        if (d->target[p] && !d->target[p + 1] && is_stop(d->model, d->tok[p + 1]))
            d->target[++p] = 1;
    return 0;
}

int bl_dataset_add_chat(BlDataset *d, const BlChatMessage *msgs, int n_msgs, BlError *err) {
    if (!d->has_tpl) return bl_fail(err, "dataset: the model has no chat template (name one)");
    for (int i = 0; i < n_msgs; i++)
        if (!msgs[i].role || !msgs[i].content)
            return bl_fail(err, "dataset: message %d lacks a role or content", i);
    char *full = NULL;
    if (bl_chat_render(&d->tpl, msgs, n_msgs, false, &full, err)) return -1;
    if (begin_example(d, err)) {
        free(full);
        return -1;
    }
    int rc = d->response_only ? add_chat_segments(d, msgs, n_msgs, full, err)
                              : encode_append(d, full, strlen(full), false, 1, err);
    free(full);
    return rc ? abort_example(d) : end_example(d, err);
}

// ----------------------------------------------------------------------------
// JSONL

int bl_chat_messages_from_json(const cJSON *msgs, BlChatMessage **out, int *n_out, BlError *err) {
    int n = cJSON_GetArraySize(msgs);
    if (n == 0) return bl_fail(err, "\"messages\" is empty");
    BlChatMessage *m = bl_calloc((size_t)n, sizeof *m, err);
    if (!m) return -1;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
            free(m);
            return bl_fail(err, "messages[%d] needs string \"role\" and \"content\"", i);
        }
        m[i++] = (BlChatMessage){.role = role->valuestring, .content = content->valuestring};
    }
    *out = m;
    *n_out = n;
    return 0;
}

static int add_json_line(BlDataset *d, const cJSON *j, BlError *err) {
    if (!cJSON_IsObject(j)) return bl_fail(err, "not a JSON object");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    if (cJSON_IsString(text)) return bl_dataset_add_text(d, text->valuestring, err);
    if (!cJSON_IsArray(msgs))
        return bl_fail(err, "expected a \"messages\" array or a \"text\" string");
    BlChatMessage *m;
    int n;
    if (bl_chat_messages_from_json(msgs, &m, &n, err)) return -1;
    int rc = bl_dataset_add_chat(d, m, n, err);
    free(m);
    return rc;
}

int bl_dataset_load_jsonl(BlDataset *d, const char *path, BlError *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return bl_fail(err, "%s: cannot open", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t k = (size_t)n;
        while (k && strchr(" \t\r\n", line[k - 1])) k--;
        if (k == 0) continue;
        cJSON *j = cJSON_ParseWithLength(line, k);
        if (!j) {
            rc = bl_fail(err, "%s:%d: malformed JSON", path, lineno);
            break;
        }
        if (add_json_line(d, j, err)) rc = bl_fail_prefix(err, "%s:%d", path, lineno);
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    if (rc == 0 && d->n == 0) rc = bl_fail(err, "%s: no examples", path);
    return rc;
}

// ----------------------------------------------------------------------------
// order and batches

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void bl_epoch_order(int *order, int n, uint64_t seed, long epoch) {
    for (int i = 0; i < n; i++) order[i] = i;
    if (seed == 0) return;
    uint64_t s = seed ^ ((uint64_t)epoch * 0xd1b54a32d192ed03ull);
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(splitmix64(&s) % (uint64_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static void draw_order(BlDataset *d) {
    bl_epoch_order(d->order, d->n, d->seed, d->epoch);
}

int bl_dataset_shuffle(BlDataset *d, uint64_t seed, BlError *err) {
    return (d->seed = seed, bl_dataset_seek(d, 0, 0, err));
}

int bl_dataset_seek(BlDataset *d, long epoch, long pos, BlError *err) {
    if (d->n == 0) return bl_fail(err, "dataset: no examples");
    if (epoch < 0 || pos < 0 || pos > d->n)
        return bl_fail(err, "dataset: position (epoch %ld, %ld) is outside 0..%d", epoch, pos,
                       d->n);
    d->epoch = epoch;
    d->pos = pos;
    draw_order(d);
    return 0;
}

int bl_dataset_next_batch(BlDataset *d, int B, int T, int *tokens, int *lens, uint8_t *mask,
                          BlError *err) {
    if (d->n == 0 && d->n_skipped > 0)
        return bl_fail(err, "dataset: no examples (all %ld were longer than seq = %d and skipped)",
                       d->n_skipped, d->seq);
    if (d->n == 0) return bl_fail(err, "dataset: no examples");
    if (B <= 0 || T < 2) return bl_fail(err, "dataset: batch shape %d x %d", B, T);
    memset(tokens, 0, sizeof(int) * (size_t)B * T);
    memset(mask, 0, (size_t)B * T);
    for (int b = 0; b < B; b++) {
        if (d->pos == d->n) {
            d->epoch++;
            d->pos = 0;
            draw_order(d);
        }
        int e = d->order[d->pos++];
        int n = d->len[e];
        if (n > T) {
            n = T;
            d->n_truncated++;
        }
        const int *src = d->tok + d->off[e];
        const uint8_t *tg = d->target + d->off[e];
        memcpy(tokens + (size_t)b * T, src, sizeof(int) * n);
        for (int t = 0; t + 1 < n; t++) mask[(size_t)b * T + t] = tg[t + 1];
        lens[b] = n;
        d->tokens_served += (size_t)n;
    }
    d->rows_served += B;
    d->slots_served += (size_t)B * (size_t)T;
    return 0;
}

const int *bl_dataset_example(const BlDataset *d, int i, int *len, const uint8_t **target) {
    *len = d->len[i];
    if (target) *target = d->target + d->off[i];
    return d->tok + d->off[i];
}

int bl_dataset_max_len(const BlDataset *d) {
    int m = 0;
    for (int i = 0; i < d->n; i++) m = d->len[i] > m ? d->len[i] : m;
    return m;
}

int bl_dataset_count_longer(const BlDataset *d, int T, long *excess) {
    int n = 0;
    long x = 0;
    for (int i = 0; i < d->n; i++)
        if (d->len[i] > T) {
            n++;
            x += d->len[i] - T;
        }
    if (excess) *excess = x;
    return n;
}

double bl_dataset_padding_fraction(const BlDataset *d) {
    if (d->slots_served > 0) return 1.0 - (double)d->tokens_served / (double)d->slots_served;
    if (d->n == 0) return 0.0;
    int L = d->seq > 0 ? d->seq : bl_dataset_max_len(d);
    return 1.0 - (double)d->n_tok / ((double)d->n * (double)L);
}
