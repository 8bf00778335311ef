/* cmd_eval.c - `bitlab eval`: the teacher against a ternary student (from a
 * checkpoint, or fresh as the before-training baseline) on held-out data
 * and a prompt list; the table on stdout and optionally JSON, progress on
 * stderr. The work is in eval/evaluate.h, on the backend of --device
 * (cli_backend): the teacher's and the student's forwards and greedy answers
 * all run there. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "eval/evaluate.h"
#include "train/checkpoint.h"
#include "ops/quant.h"

/* --checkpoint's student, or a fresh one (no adapters) at 8-bit
 * activations. */
static int build_student(BlStudent *st, const BlModel *m, const char *ckpt, BlError *err) {
    if (ckpt) return bl_student_from_checkpoint(st, m, ckpt, NULL, err);
    BlStudentConfig c = {.lambda = 1.0f, .act_bits = 8};
    return bl_build_student(st, m, &c, err);
}

static const CliOpt OPTS[] = {
    CLI_STR_REQ("model"),
    CLI_STR_REQ("data"),
    CLI_STR_OPT("checkpoint"),
    CLI_STR_OPT("prompts"),
    CLI_INT_OPT("max-tokens", 1, 1 << 20),
    CLI_INT_OPT("seq", 2, 1 << 20),
    CLI_INT_OPT("max-examples", 0, 1e9),
    CLI_INT_OPT("tokens", 1, 1e9),
    CLI_INT_OPT("act-bits", 4, 16),
    CLI_STR_OPT("json"),
    CLI_STR_OPT("teacher-cache"),
    CLI_FLAG_OPT("quiet"),
    CLI_STR_OPT("device"),
    CLI_END};

const CliSpec cli_eval_spec = {
    .name = "eval",
    .synopsis = "bitlab eval --model PATH --data FILE [--checkpoint CKPT] [--prompts FILE]\n"
                "            [--max-tokens N] [--seq T] [--max-examples N] [--tokens N]\n"
                "            [--act-bits B]\n"
                "            [--json OUT] [--quiet] [--device cpu|cuda|auto]\n"
                "            [--teacher-cache DIR]",
    .summary = "the teacher against its ternary student (lambda 1) on held-out data:\n"
               "perplexities and their ratio, KL, top-1 agreement (all, first 8 / 32\n"
               "positions), top-5 agreement, common greedy prefixes, weight bytes and QEI;\n"
               "a table and --json OUT",
    .details =
        "The student: lambda 1, the checkpoint's activation bits, or --act-bits (4, 8 or\n"
        "16). Reported: perplexity of each and student/teacher perplexity ratio, mean\n"
        "KL(teacher||student) per token (tau 1), top-1 agreement (the same most likely\n"
        "token) over all scored tokens and over those at positions < 8 and < 32 of their\n"
        "example, top-5 agreement (the teacher's top-1 among the student's 5 most likely\n"
        "tokens), the common greedy prefix on each prompt of --prompts (one per\n"
        "line, chat template, KV cache, --max-tokens new tokens, default 64), weight bytes\n"
        "and QEI = (quality_S/quality_T) / (memory_S/memory_T), quality = 1/perplexity.\n"
        "Agreement moves long before greedy answers share a prefix.\n"
        "Memory: teacher = every parameter at 16 bits; student = block linears at\n"
        "2 bits (ternary, 4 per byte) + one fp32 scale per tensor + embedding / LM head\n"
        "at 16 bits + norms and biases at 32 bits (the packed safetensors export's data).\n"
        "FILE: .txt = plain text cut into chunks of --seq tokens (default 256);\n"
        ".jsonl = {\"messages\":[...]} lines scored on assistant turns (or {\"text\":...}),\n"
        "examples longer than --seq cut. Without --checkpoint: a fresh student (no\n"
        "adapters), the before-training baseline. --max-examples N: only the first N\n"
        "(0, the default: all). --tokens N: the examples in order up to the first that\n"
        "brings the scored tokens to N (whole examples, so the same set every time:\n"
        "bitlab.train's eval = {tokens = N}; the report's scored_tokens is the count).\n"
        "--device: where both models run (cpu, the default;\n"
        "cuda: the weights in bf16 on the GPU; auto: CUDA when a device is present).\n"
        "Output: the table on stdout (ending with the JSON path when --json is given);\n"
        "progress lines and the JSON path on stderr, errors on stderr. --json OUT\n"
        "writes every number; --quiet drops the progress lines and the stderr JSON line.\n"
        "--teacher-cache DIR (CPU): the teacher's side of the data and prompts is kept in\n"
        "DIR/eval-teacher-<sha256>.bin (4*dim+20 bytes per scored token), keyed by the\n"
        "model file, the tokens evaluated and the options; a later eval with the same key\n"
        "runs only the student, with the same numbers (KL to float rounding). Default: off",
    .opts = OPTS,
};

int cmd_eval(int argc, char **argv) {
    CliArgs args;
    int prc = cli_parse(&args, &cli_eval_spec, argc, argv);
    if (prc >= 0) return prc;
    const CliArgs *a = &args;
    BlEvalOptions opt = {.checkpoint_path = cli_str(a, "--checkpoint", NULL),
                         .data_path = cli_str(a, "--data", NULL),
                         .prompts_path = cli_str(a, "--prompts", NULL),
                         .model_path = cli_str(a, "--model", NULL),
                         .max_tokens = cli_int(a, "--max-tokens", BL_EVAL_DEFAULT_MAX_TOKENS),
                         .seq = cli_int(a, "--seq", BL_EVAL_DEFAULT_SEQ),
                         .max_examples = cli_int(a, "--max-examples", 0),
                         .tokens = cli_int(a, "--tokens", 0)};
    int act_bits = cli_int(a, "--act-bits", 0);
    if (act_bits && bl_actq_levels(act_bits) < 0)
        return cli_usage_error(a, "--act-bits is 4, 8 or 16, got %d", act_bits);
    opt.format = bl_eval_format_of(opt.data_path);
    opt.teacher_cache = cli_str(a, "--teacher-cache", NULL);
    if (!cli_flag(a, "--quiet")) opt.progress = stderr;
    const char *json = cli_str(a, "--json", NULL);
    const BlBackend *be = cli_backend(a, "cpu");
    if (!be) return 2;

    BlModel *m = cli_load_model(a);
    if (!m) return 1;
    BlError err = {{0}};
    BlStudent st = {0};
    BlDataset data = {0};
    BlEvalReport rep = {0};
    char **prompts = NULL;
    int rc = 1, have_student = 0, have_data = 0;
    if (build_student(&st, m, opt.checkpoint_path, &err)) goto done;
    have_student = 1;
    if (bl_eval_load_data(&data, m, opt.data_path, opt.format, opt.seq, &err)) goto done;
    have_data = 1;
    if (opt.prompts_path &&
        bl_eval_read_prompts(opt.prompts_path, &prompts, &opt.n_prompts, &err))
        goto done;
    opt.prompts = (const char *const *)prompts;
    /* the student as it would be exported: ternary (λ = 1) */
    BlStudentMode mode = {.lambda = 1.0f, .act_bits = act_bits ? act_bits : st.cfg.act_bits};
    if (bl_evaluate(be, &st, mode, &data, &opt, &rep, &err)) goto done;
    bl_eval_report_print(stdout, &opt, &rep);
    if (json && bl_eval_report_write_json(json, &opt, &rep, &err)) goto done;
    if (json) {
        printf("  report: %s (JSON)\n", json);
        /* stdout may be redirected to a file: say where the JSON went here too */
        if (opt.progress) fprintf(opt.progress, "bitlab eval: JSON report written to %s\n", json);
    }
    rc = 0;
done:
    if (rc) fprintf(stderr, "bitlab eval: %s\n", err.msg);
    bl_eval_report_free(&rep);
    bl_eval_free_prompts(prompts, opt.n_prompts);
    if (have_data) bl_dataset_free(&data);
    if (have_student) bl_free_student(&st);
    bl_model_free(m);
    return rc;
}
