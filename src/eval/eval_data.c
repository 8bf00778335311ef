/* eval_data.c - the held-out set and the prompt list of an evaluation (see
 * evaluate.h): plain text cut into token chunks, chat/text JSONL, prompts
 * one per line, prompts rendered with the model's chat template. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/evaluate.h"
#include "io/textfile.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

BlEvalFormat bl_eval_format_of(const char *path) {
    size_t n = strlen(path);
    return n >= 6 && strcmp(path + n - 6, ".jsonl") == 0 ? BL_EVAL_JSONL : BL_EVAL_TEXT;
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (!isspace((unsigned char)*s)) return false;
    return true;
}

/* Plain text: no special tokens, so every chunk is just text and a token is
 * predicted only from earlier tokens of its own chunk (the first token of a
 * chunk has no context and is not scored). */
static int load_text(BlDataset *d, const BlModel *m, const char *path, int seq, BlError *err) {
    size_t len;
    char *text = bl_read_text_file(path, &len, err);
    if (!text) return -1;
    int rc = 0, *ids = NULL, n = 0;
    if (blank(text))
        rc = bl_fail(err, "%s: no text to evaluate (the file is empty)", path);
    else if (bl_tokenizer_encode(m->tokenizer, text, len, false, &ids, &n, err))
        rc = bl_fail_prefix(err, "%s", path);
    else if (n < 2)
        rc = bl_fail(err, "%s: only %d token; at least 2 are needed to score one", path, n);
    for (int at = 0; rc == 0 && n - at >= 2; at += seq) {
        int k = n - at < seq ? n - at : seq;
        rc = bl_dataset_add_tokens(d, ids + at, NULL, k, err);
    }
    free(ids);
    free(text);
    return rc;
}

int bl_eval_load_data(BlDataset *d, const BlModel *m, const char *path, BlEvalFormat format,
                      int seq, BlError *err) {
    if (seq < 2) return bl_fail(err, "eval: the sequence length must be at least 2 (got %d)", seq);
    if (bl_dataset_init(d, m, NULL, true, err)) return -1;
    int rc = format == BL_EVAL_JSONL ? bl_dataset_load_jsonl(d, path, err)
                                     : load_text(d, m, path, seq, err);
    if (rc) bl_dataset_free(d);
    return rc;
}

int bl_eval_read_prompts(const char *path, char ***out, int *n, BlError *err) {
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return bl_fail(err, "%s: cannot open the prompt list", path);
    char *line = NULL, **list = NULL;
    size_t cap = 0;
    int count = 0, rc = 0;
    ssize_t got;
    while (rc == 0 && (got = getline(&line, &cap, f)) >= 0) {
        size_t k = (size_t)got;
        while (k && isspace((unsigned char)line[k - 1])) k--;
        line[k] = '\0';
        if (blank(line)) continue;
        char **grown = realloc(list, sizeof *list * (size_t)(count + 1));
        char *copy = grown ? strdup(line) : NULL;
        if (grown) list = grown;
        if (!copy) rc = bl_fail(err, "%s: out of memory", path);
        else list[count++] = copy;
    }
    free(line);
    fclose(f);
    if (rc == 0 && count == 0) rc = bl_fail(err, "%s: no prompts (one per line expected)", path);
    if (rc) {
        bl_eval_free_prompts(list, count);
        return -1;
    }
    *out = list;
    *n = count;
    return 0;
}

void bl_eval_free_prompts(char **p, int n) {
    for (int i = 0; i < n && p; i++) free(p[i]);
    free(p);
}

int bl_eval_encode_prompt(const BlModel *m, const char *text, int **ids, int *n, bool *chat,
                          BlError *err) {
    *chat = m->chat_template != NULL;
    if (!*chat) return bl_tokenizer_encode(m->tokenizer, text, strlen(text), true, ids, n, err);
    BlChatTemplate tpl;
    if (bl_chat_template_detect(&tpl, m->chat_template, bl_tokenizer_bos_text(m->tokenizer),
                                bl_tokenizer_eos_text(m->tokenizer), err))
        return bl_fail_prefix(err, "%s: the chat template", m->path);
    BlChatMessage msg = {"user", text};
    char *rendered = NULL;
    int rc = bl_chat_render(&tpl, &msg, 1, true, &rendered, err);
    bl_chat_template_free(&tpl);
    /* the rendered template holds its special tokens already (as HF's
     * apply_chat_template): none are added */
    if (rc == 0) rc = bl_tokenizer_encode(m->tokenizer, rendered, strlen(rendered), false, ids, n, err);
    free(rendered);
    return rc;
}
