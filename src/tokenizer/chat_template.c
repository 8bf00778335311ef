/* chat_template.c - native C renderers for the chat template families in
 * chat_template.h, plus recognition of a family from its Jinja text.
 *
 * There is no Jinja engine here: each family's published template is small
 * and fixed, so it is rewritten as straight-line C that produces the same
 * bytes transformers' apply_chat_template does (tests/py/test_chat_template.py
 * checks that against the real template texts in tests/py/chat_templates/). */
#include "tokenizer/chat_template.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// growable output string

typedef struct {
    char *s;
    size_t len, cap;
    BlError *err;
    int failed;
} Buf;

static void buf_addn(Buf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            bl_fail(b->err, "out of memory rendering chat template (%zu bytes)", cap);
            b->failed = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void buf_add(Buf *b, const char *s) { buf_addn(b, s, strlen(s)); }

// ---------------------------------------------------------------------------
// Python's str.strip(): Jinja's `trim` filter and `.strip()` both call it, and
// it removes every Unicode whitespace code point, not only ASCII blanks.

static int is_py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Decodes the UTF-8 sequence at s (n bytes available); returns its length, or
 * 0 for a malformed sequence (never whitespace, so stripping stops there). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len = (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    uint32_t c = s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    *cp = c;
    return len;
}

/* Appends s with leading and trailing whitespace removed. */
static void buf_add_stripped(Buf *b, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t start = 0, end = strlen(s);
    uint32_t cp;
    size_t k;
    while (start < end && (k = utf8_decode(p + start, end - start, &cp)) && is_py_space(cp))
        start += k;
    while (end > start) {
        size_t back = 1;  // step back to the lead byte of the last code point
        while (back < 4 && back < end - start && (p[end - back] & 0xc0) == 0x80) back++;
        k = utf8_decode(p + end - back, back, &cp);
        if (k != back || !is_py_space(cp)) break;
        end -= back;
    }
    buf_addn(b, s + start, end - start);
}

// ---------------------------------------------------------------------------
// renderers, one per family; each mirrors its template in tests/py/chat_templates/

/* SmolLM2 / Qwen2: the default system turn goes in front of the first message
 * when that message is not a system one. */
static void render_chatml(const BlChatTemplate *t, const BlChatMessage *m, int n, bool gen, Buf *b) {
    for (int i = 0; i < n; i++) {
        if (i == 0 && t->default_system && strcmp(m[0].role, "system") != 0) {
            buf_add(b, "<|im_start|>system\n");
            buf_add(b, t->default_system);
            buf_add(b, "<|im_end|>\n");
        }
        buf_add(b, "<|im_start|>");
        buf_add(b, m[i].role);
        buf_add(b, "\n");
        buf_add(b, m[i].content);
        buf_add(b, "<|im_end|>\n");
    }
    if (gen) buf_add(b, "<|im_start|>assistant\n");
}

static void render_llama3(const BlChatTemplate *t, const BlChatMessage *m, int n, bool gen, Buf *b) {
    for (int i = 0; i < n; i++) {
        if (i == 0) buf_add(b, t->bos_text);
        buf_add(b, "<|start_header_id|>");
        buf_add(b, m[i].role);
        buf_add(b, "<|end_header_id|>\n\n");
        buf_add_stripped(b, m[i].content);
        buf_add(b, "<|eot_id|>");
    }
    if (gen) buf_add(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Llama-2-chat: a leading system message is folded into the first user turn;
 * the rest must alternate user/assistant, which the template enforces with
 * raise_exception. Its only check is "user exactly at even positions", so any
 * other role at an odd position passes and renders nothing - kept as is.
 * add_generation_prompt has no effect: the prompt already ends in [/INST]. */
static int render_llama2(const BlChatTemplate *t, const BlChatMessage *m, int n, Buf *b,
                         BlError *err) {
    if (n == 0) return bl_fail(err, "llama2 chat template: empty conversation (it reads messages[0])");
    const char *system = NULL;
    if (strcmp(m[0].role, "system") == 0) {
        system = m[0].content;
        m++;
        n--;
    }
    for (int i = 0; i < n; i++) {
        bool is_user = strcmp(m[i].role, "user") == 0;
        if (is_user != (i % 2 == 0))
            return bl_fail(err,
                           "llama2 chat template: conversation roles must alternate "
                           "user/assistant/user/assistant/... (message %d is '%s')",
                           i + (system ? 1 : 0), m[i].role);
        bool is_assistant = strcmp(m[i].role, "assistant") == 0;
        if (!is_user && !is_assistant) continue;
        Buf content = {.err = err};
        if (i == 0 && system) {
            buf_add(&content, "<<SYS>>\n");
            buf_add(&content, system);
            buf_add(&content, "\n<</SYS>>\n\n");
        }
        buf_add(&content, m[i].content);
        if (content.failed) {
            free(content.s);
            b->failed = 1;
            return -1;
        }
        if (is_user) {
            buf_add(b, t->bos_text);
            buf_add(b, "[INST] ");
            buf_add_stripped(b, content.s);
            buf_add(b, " [/INST]");
        } else {
            buf_add(b, " ");
            buf_add_stripped(b, content.s);
            buf_add(b, " ");
            buf_add(b, t->eos_text);
        }
        free(content.s);
    }
    return 0;
}

/* Zephyr: the template's block tags sit on their own lines and transformers
 * renders with trim_blocks, so each turn ends in eos + "\n" and the generation
 * prompt (written inside the loop, after the last message) is "<|assistant|>\n".
 * Roles other than system/user/assistant render nothing. */
static void render_zephyr(const BlChatTemplate *t, const BlChatMessage *m, int n, bool gen, Buf *b) {
    for (int i = 0; i < n; i++) {
        const char *tag = strcmp(m[i].role, "user") == 0        ? "<|user|>\n"
                          : strcmp(m[i].role, "system") == 0    ? "<|system|>\n"
                          : strcmp(m[i].role, "assistant") == 0 ? "<|assistant|>\n"
                                                                : NULL;
        if (tag) {
            buf_add(b, tag);
            buf_add(b, m[i].content);
            buf_add(b, t->eos_text);
            buf_add(b, "\n");
        }
        if (i == n - 1 && gen) buf_add(b, "<|assistant|>\n");
    }
}

/* Phi-3-mini-4k-instruct (mid-2024 template): system turns are kept as
 * <|system|>; without a generation prompt the text ends in eos. */
static void render_phi3(const BlChatTemplate *t, const BlChatMessage *m, int n, bool gen, Buf *b) {
    for (int i = 0; i < n; i++) {
        const char *tag = strcmp(m[i].role, "system") == 0      ? "<|system|>\n"
                          : strcmp(m[i].role, "user") == 0      ? "<|user|>\n"
                          : strcmp(m[i].role, "assistant") == 0 ? "<|assistant|>\n"
                                                                : NULL;
        if (!tag) continue;
        buf_add(b, tag);
        buf_add(b, m[i].content);
        buf_add(b, "<|end|>\n");
    }
    buf_add(b, gen ? "<|assistant|>\n" : t->eos_text);
}

int bl_chat_render(const BlChatTemplate *t, const BlChatMessage *msgs, int n_msgs,
                   bool add_generation_prompt, char **out, BlError *err) {
    *out = NULL;
    if (n_msgs < 0) return bl_fail(err, "chat render: negative message count %d", n_msgs);
    for (int i = 0; i < n_msgs; i++)
        if (!msgs[i].role || !msgs[i].content)
            return bl_fail(err, "chat render: message %d has no %s", i,
                           msgs[i].role ? "content" : "role");
    Buf b = {.err = err};
    buf_add(&b, "");  // an empty conversation still renders to a (possibly empty) string
    int rc = 0;
    switch (t->kind) {
    case BL_TEMPLATE_CHATML: render_chatml(t, msgs, n_msgs, add_generation_prompt, &b); break;
    case BL_TEMPLATE_LLAMA3: render_llama3(t, msgs, n_msgs, add_generation_prompt, &b); break;
    case BL_TEMPLATE_LLAMA2: rc = render_llama2(t, msgs, n_msgs, &b, err); break;
    case BL_TEMPLATE_ZEPHYR: render_zephyr(t, msgs, n_msgs, add_generation_prompt, &b); break;
    case BL_TEMPLATE_PHI3: render_phi3(t, msgs, n_msgs, add_generation_prompt, &b); break;
    default: rc = bl_fail(err, "chat render: unknown template kind %d", (int)t->kind);
    }
    if (rc != 0 || b.failed) {
        free(b.s);
        return -1;
    }
    *out = b.s;
    return 0;
}

// ---------------------------------------------------------------------------
// construction

static const char *const KIND_NAMES[] = {
    [BL_TEMPLATE_CHATML] = "chatml", [BL_TEMPLATE_LLAMA3] = "llama3",
    [BL_TEMPLATE_LLAMA2] = "llama2", [BL_TEMPLATE_ZEPHYR] = "zephyr",
    [BL_TEMPLATE_PHI3] = "phi3",
};
#define N_KINDS ((int)(sizeof KIND_NAMES / sizeof KIND_NAMES[0]))

const char *bl_template_kind_name(BlTemplateKind k) {
    return (int)k >= 0 && (int)k < N_KINDS ? KIND_NAMES[k] : "unknown";
}

static char *dup_or_null(const char *s, BlError *err, int *failed) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = bl_malloc(n, err);
    if (!p) {
        *failed = 1;
        return NULL;
    }
    memcpy(p, s, n);
    return p;
}

/* Fills the special-token texts the family writes, falling back to the
 * family's own tokens when the model's metadata gave none. */
static int init_template(BlChatTemplate *out, BlTemplateKind kind, const char *default_system,
                         const char *bos_text, const char *eos_text, BlError *err) {
    static const char *const DEFAULT_BOS[] = {
        [BL_TEMPLATE_LLAMA3] = "<|begin_of_text|>",
        [BL_TEMPLATE_LLAMA2] = "<s>",
    };
    static const char *const DEFAULT_EOS[] = {
        [BL_TEMPLATE_LLAMA2] = "</s>",
        [BL_TEMPLATE_ZEPHYR] = "</s>",
        [BL_TEMPLATE_PHI3] = "<|endoftext|>",
    };
    bool writes_bos = kind == BL_TEMPLATE_LLAMA3 || kind == BL_TEMPLATE_LLAMA2;
    bool writes_eos = kind == BL_TEMPLATE_LLAMA2 || kind == BL_TEMPLATE_ZEPHYR ||
                      kind == BL_TEMPLATE_PHI3;
    memset(out, 0, sizeof *out);
    out->kind = kind;
    int failed = 0;
    out->default_system = dup_or_null(default_system, err, &failed);
    if (writes_bos) out->bos_text = dup_or_null(bos_text ? bos_text : DEFAULT_BOS[kind], err, &failed);
    if (writes_eos) out->eos_text = dup_or_null(eos_text ? eos_text : DEFAULT_EOS[kind], err, &failed);
    if (failed) {
        bl_chat_template_free(out);
        return -1;
    }
    return 0;
}

void bl_chat_template_free(BlChatTemplate *t) {
    if (!t) return;
    free(t->default_system);
    free(t->bos_text);
    free(t->eos_text);
    t->default_system = t->bos_text = t->eos_text = NULL;
}

int bl_chat_template_by_name(BlChatTemplate *out, const char *name, const char *bos_text,
                             const char *eos_text, BlError *err) {
    memset(out, 0, sizeof *out);
    for (int k = 0; k < N_KINDS; k++)
        if (name && strcmp(name, KIND_NAMES[k]) == 0)
            return init_template(out, (BlTemplateKind)k, NULL, bos_text, eos_text, err);
    return bl_fail(err, "unknown chat template '%s' (valid: chatml, llama3, llama2, zephyr, phi3)",
                   name ? name : "(null)");
}

// ---------------------------------------------------------------------------
// detection

/* Reads the Jinja string literal whose opening quote is at *p, undoing its
 * escapes (templates from tokenizer_config.json often spell a newline as the
 * two characters backslash-n inside the literal, GGUF ones as a real newline). */
static char *read_jinja_string(const char *p, BlError *err) {
    char q = *p++;
    size_t n = 0;
    while (p[n] && p[n] != q) n += (p[n] == '\\' && p[n + 1]) ? 2 : 1;
    if (!p[n]) {
        bl_fail(err, "chat template: unterminated string literal");
        return NULL;
    }
    char *s = bl_malloc(n + 1, err);
    if (!s) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\\') {
            s[o++] = p[i];
            continue;
        }
        char c = p[++i];
        s[o++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
    }
    s[o] = '\0';
    return s;
}

/* The ChatML default system prompt: the literal
 * '<|im_start|>system\n...<|im_end|>\n' written in the branch taken when the
 * first message is not a system one. Sets *out to NULL when there is none. */
static int chatml_default_system(const char *jinja, char **out, BlError *err) {
    static const char *const CONDS[] = {"messages[0]['role'] != 'system'",
                                        "messages[0][\"role\"] != \"system\""};
    static const char OPEN[] = "<|im_start|>system\n", CLOSE[] = "<|im_end|>\n";
    *out = NULL;
    const char *branch = NULL;
    for (size_t i = 0; i < 2 && !branch; i++) branch = strstr(jinja, CONDS[i]);
    if (!branch) return 0;
    const char *endif = strstr(branch, "endif");
    for (const char *p = branch; *p && (!endif || p < endif); p++) {
        if (*p != '\'' && *p != '"') continue;
        if (strncmp(p + 1, "<|im_start|>system", 18) != 0) continue;
        char *lit = read_jinja_string(p, err);
        if (!lit) return -1;
        size_t n = strlen(lit), no = sizeof OPEN - 1, nc = sizeof CLOSE - 1;
        if (n >= no + nc && memcmp(lit, OPEN, no) == 0 && memcmp(lit + n - nc, CLOSE, nc) == 0) {
            memmove(lit, lit + no, n - no - nc);
            lit[n - no - nc] = '\0';
            *out = lit;
        } else {
            free(lit);
        }
        return 0;
    }
    return 0;
}

int bl_chat_template_detect(BlChatTemplate *out, const char *jinja, const char *bos_text,
                            const char *eos_text, BlError *err) {
    memset(out, 0, sizeof *out);
    if (!jinja || !*jinja) return bl_fail(err, "chat template: empty template text (use --template NAME)");
    if (strstr(jinja, "<|im_start|>")) {
        char *sys;
        if (chatml_default_system(jinja, &sys, err) != 0) return -1;
        int rc = init_template(out, BL_TEMPLATE_CHATML, sys, bos_text, eos_text, err);
        free(sys);
        return rc;
    }
    if (strstr(jinja, "<|start_header_id|>")) {
        /* Llama-3.1+ templates always write a system turn with a knowledge
         * cutoff and today's date (and tool blocks); the plain renderer would
         * silently differ from them, so say so instead of guessing. */
        if (strstr(jinja, "Cutting Knowledge Date"))
            return bl_fail(err,
                           "chat template: Llama-3.1-style template (date/tools system "
                           "boilerplate) is not rendered natively; use --template llama3 "
                           "for the plain Llama-3 format");
        return init_template(out, BL_TEMPLATE_LLAMA3, NULL, bos_text, eos_text, err);
    }
    if (strstr(jinja, "[INST]") && strstr(jinja, "<<SYS>>"))
        return init_template(out, BL_TEMPLATE_LLAMA2, NULL, bos_text, eos_text, err);
    if (strstr(jinja, "<|user|>")) {
        if (strstr(jinja, "<|end|>"))
            return init_template(out, BL_TEMPLATE_PHI3, NULL, bos_text, eos_text, err);
        if (strstr(jinja, "eos_token") || strstr(jinja, "</s>"))
            return init_template(out, BL_TEMPLATE_ZEPHYR, NULL, bos_text, eos_text, err);
    }
    return bl_fail(err,
                   "chat template: unrecognised template (looked for <|im_start|> = chatml, "
                   "<|start_header_id|> = llama3, [INST] with <<SYS>> = llama2, <|user|> with "
                   "<|end|> = phi3, <|user|> with eos_token or </s> = zephyr); pass "
                   "--template NAME (chatml, llama3, llama2, zephyr, phi3)");
}
