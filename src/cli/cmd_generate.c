/* cmd_generate.c - `bitlab generate`: greedy decoding with a KV cache,
 * printing text as it decodes, by the teacher or (--checkpoint) its student,
 * on the CPU or (--device cuda|auto) the GPU with a device copy of the
 * weights; the work is eval/student_eval.h's bl_eval_generate. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cli/cli.h"
#include "eval/student_eval.h"
#include "nn/generate.h"
#include "ops/quant.h"
#include "train/checkpoint.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

/* Streaming state: the produced ids and how many bytes of their decoding
 * were already printed. Decoding the whole list each time keeps multi-token
 * characters (byte-fallback pieces, split UTF-8) intact. */
typedef struct {
    const BlTokenizer *tok;
    int *ids;
    int n, cap;
    size_t printed;
} Stream;

static int ends_with_partial_char(const char *s, size_t n) {
    /* U+FFFD as the last char means the next token may complete it */
    return n >= 3 && (unsigned char)s[n - 3] == 0xEF && (unsigned char)s[n - 2] == 0xBF &&
           (unsigned char)s[n - 1] == 0xBD;
}

static int on_token(int token, void *user) {
    Stream *st = user;
    if (st->n == st->cap) {
        int cap = st->cap ? st->cap * 2 : 64;
        int *ids = realloc(st->ids, (size_t)cap * sizeof *ids);
        if (!ids) return 1;
        st->ids = ids;
        st->cap = cap;
    }
    st->ids[st->n++] = token;
    char *text = NULL;
    BlError err;
    if (bl_tokenizer_decode(st->tok, st->ids, st->n, true, &text, &err) != 0) return 1;
    size_t len = strlen(text);
    if (len > st->printed && !ends_with_partial_char(text, len)) {
        fwrite(text + st->printed, 1, len - st->printed, stdout);
        fflush(stdout);
        st->printed = len;
    }
    free(text);
    return interrupted;
}

/* The prompt text: raw, or wrapped in the chat template (--template NAME
 * overrides the model's own). */
static char *build_prompt(const CliArgs *a, const BlModel *m, BlError *err) {
    const char *prompt = cli_str(a, "--prompt", NULL);
    if (!cli_flag(a, "--chat")) {
        char *s = strdup(prompt);
        if (!s) bl_fail(err, "out of memory");
        return s;
    }
    const char *bos = bl_tokenizer_bos_text(m->tokenizer), *eos = bl_tokenizer_eos_text(m->tokenizer);
    const char *name = cli_str(a, "--template", NULL);
    BlChatTemplate tpl;
    int rc;
    if (name)
        rc = bl_chat_template_by_name(&tpl, name, bos, eos, err);
    else if (m->chat_template)
        rc = bl_chat_template_detect(&tpl, m->chat_template, bos, eos, err);
    else
        rc = bl_fail(err, "%s has no chat template in its metadata; pass --template NAME", m->path);
    if (rc != 0) return NULL;
    BlChatMessage msgs[2];
    int n = 0;
    const char *system = cli_str(a, "--system", NULL);
    if (system) msgs[n++] = (BlChatMessage){"system", system};
    msgs[n++] = (BlChatMessage){"user", prompt};
    char *out = NULL;
    bl_chat_render(&tpl, msgs, n, true, &out, err);
    bl_chat_template_free(&tpl);
    return out;
}

static const CliOpt OPTS[] = {
    CLI_STR_REQ("model"),
    CLI_STR_REQ("prompt"),
    CLI_FLAG_OPT("chat"),
    CLI_STR_OPT("system"),
    CLI_STR_OPT("template"),
    CLI_INT_OPT("max-tokens", 1, 1 << 20),
    CLI_STR_OPT("checkpoint"),
    CLI_NUM_OPT("lambda", 0, 1),
    CLI_INT_OPT("act-bits", 4, 16),
    CLI_STR_OPT("device"),
    CLI_END};

const CliSpec cli_generate_spec = {
    .name = "generate",
    .synopsis = "bitlab generate --model PATH --prompt TEXT [--chat] [--system TEXT]\n"
                "                [--template NAME] [--max-tokens N] [--checkpoint CKPT\n"
                "                [--lambda L] [--act-bits B]] [--device cpu|cuda|auto]",
    .summary = "greedy decoding with a KV cache, streamed as it decodes. --chat wraps the\n"
               "prompt in the model's chat template (--template chatml|llama3|llama2|zephyr|phi3\n"
               "overrides the one from the model's metadata); --max-tokens defaults to 256.\n"
               "--device picks the backend (default cpu; auto: CUDA when a device is present);\n"
               "on cuda the weights are copied to the GPU once, in bf16. An exported student\n"
               "(bitlab export) runs as trained: ternary weights, quantised activations.\n"
               "--checkpoint CKPT: the student of that checkpoint answers instead of the\n"
               "teacher, at the checkpoint's lambda and activation bits (--lambda, --act-bits\n"
               "override them; below lambda 1 a student trained with lambda_acts blends its\n"
               "activations by lambda as in training)",
    .opts = OPTS,
};

int cmd_generate(int argc, char **argv) {
    CliArgs args;
    int prc = cli_parse(&args, &cli_generate_spec, argc, argv);
    if (prc >= 0) return prc;
    const CliArgs *a = &args;
    int max_tokens = cli_int(a, "--max-tokens", 256);
    const char *ckpt = cli_str(a, "--checkpoint", NULL);
    int act_bits = cli_int(a, "--act-bits", 0);
    if (act_bits && bl_actq_levels(act_bits) < 0)
        return cli_usage_error(a, "--act-bits is 4, 8 or 16, got %d", act_bits);
    if (!ckpt && (cli_has(a, "--lambda") || cli_has(a, "--act-bits")))
        return cli_usage_error(a, "--lambda and --act-bits need --checkpoint (the student)");
    BlError err = {{0}};
    const BlBackend *be = cli_backend(a, "cpu");
    if (!be) return 2;
    BlModel *m = cli_load_model(a);
    if (!m) return 1;

    BlStudent student = {0};
    BlStudent *st = NULL;
    BlStudentMode mode = {0};
    Stream out = {.tok = m->tokenizer};
    int *prompt_ids = NULL, n_prompt = 0, rc = 1;
    char *prompt = build_prompt(a, m, &err);
    if (!prompt) goto done;
    /* chat templates already contain their special tokens, as in HF's apply_chat_template */
    if (bl_tokenizer_encode(m->tokenizer, prompt, strlen(prompt), !cli_flag(a, "--chat"),
                            &prompt_ids, &n_prompt, &err) != 0)
        goto done;
    if (n_prompt + max_tokens > m->cfg.max_seq_len) {
        bl_fail(&err, "prompt (%d tokens) + --max-tokens %d exceeds the model's context of %d",
                n_prompt, max_tokens, m->cfg.max_seq_len);
        goto done;
    }
    if (ckpt) {
        if (bl_student_from_checkpoint(&student, m, ckpt, NULL, &err)) goto done;
        st = &student;
        mode = bl_student_mode(st);
        mode.lambda = (float)cli_num(a, "--lambda", mode.lambda);
        if (act_bits) mode.act_bits = act_bits;
    }
    signal(SIGINT, on_sigint);
    if (bl_eval_generate(be, m, st, mode, prompt_ids, n_prompt, max_tokens, on_token, &out, NULL,
                         NULL, &err) != 0)
        goto done;
    printf("\n");
    rc = 0;
done:
    if (rc) fprintf(stderr, "bitlab generate: %s\n", err.msg);
    free(prompt);
    free(prompt_ids);
    free(out.ids);
    if (st) bl_free_student(st);
    bl_model_free(m);
    return rc;
}
