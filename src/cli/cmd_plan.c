/* cmd_plan.c - `bitlab plan`: the memory a distillation run needs on the
 * CPU (the trainer's exact allocations plus the measured process) and on a
 * GPU (design estimate), from a config.json or a model's metadata, without
 * loading any weight. The planner itself is src/plan/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "plan/plan_host.h"
#include "plan/plan_report.h"

static const CliOpt OPTS[] = {
    CLI_STR_OPT("config"),
    CLI_STR_OPT("model"),
    CLI_INT_OPT("batch", 1, 1 << 20),
    CLI_INT_OPT("seq", 1, 1 << 24),
    CLI_INT_OPT("rank", 1, 1 << 16),
    CLI_INT_OPT("adapters", 0, 1024),
    CLI_FLAG_OPT("dense"),
    CLI_FLAG_OPT("subln"),
    CLI_FLAG_OPT("post-attn-norm"),
    CLI_INT_OPT("act-bits", 1, 32),
    CLI_INT_OPT("topk", 0, 1 << 24),
    CLI_INT_OPT("micro", 1, 1 << 20),
    CLI_INT_OPT("ranks", 1, 1 << 20),
    CLI_NUM_OPT("baseline-mib", 0, 1e9),
    CLI_STR_OPT("json"),
    CLI_END};

const CliSpec cli_plan_spec = {
    .name = "plan",
    .synopsis = "bitlab plan (--config CONFIG.json | --model PATH) [--batch B] [--seq T] [--rank R]\n"
                "            [--adapters K] [--dense] [--subln] [--post-attn-norm] [--act-bits N]\n"
                "            [--topk K] [--micro N] [--ranks N] [--baseline-mib X] [--json OUT]",
    .summary = "the memory a distillation run needs, without loading any weight: the CPU\n"
               "trainer's exact allocations by category plus the measured process baseline,\n"
               "tokenizer and load peak; a GPU design estimate (bf16 weights, fp32 optimizer);\n"
               "compared with a separate student weight copy and a dense trainable dW",
    .details = "Defaults 4 x 128, one LoRA r=16, A8 (--act-bits 4, 8 or 16), no top-K loss\n"
               "(--topk 0), one micro-batch per step (--micro N: N micro-batches of B, each\n"
               "formed alone and summed: a second gradient arena) in one process (--ranks N:\n"
               "data parallel; the CPU reduces through a host copy of the gradients, GPUs by\n"
               "NCCL in place). --baseline-mib X replaces the measured process baseline. --json OUT\n"
               "writes every figure in bytes (OUT = - prints only the JSON). Exit 1 on a bad\n"
               "config or run, 2 on bad options",
    .opts = OPTS,
};

/* The run's options, range-checked by cli_parse. */
static void run_options(const CliArgs *a, BlPlanRun *r, double *baseline) {
    *r = (BlPlanRun){.B = cli_int(a, "--batch", 4),
                     .T = cli_int(a, "--seq", 128),
                     .rank = cli_int(a, "--rank", 16),
                     .adapters = cli_int(a, "--adapters", 1),
                     .act_bits = cli_int(a, "--act-bits", 8),
                     .topk = cli_int(a, "--topk", 0),
                     .micro = cli_int(a, "--micro", 1),
                     .ranks = cli_int(a, "--ranks", 1),
                     .dense = cli_flag(a, "--dense"),
                     .subln = cli_flag(a, "--subln"),
                     .post_attn_norm = cli_flag(a, "--post-attn-norm")};
    double b = cli_num(a, "--baseline-mib", -1.0);
    *baseline = b < 0.0 ? -1.0 : b * 1024.0 * 1024.0;
}

static int write_json(const char *out, const BlPlan *p, const BlPlanSource *src) {
    cJSON *j = bl_plan_to_json(p, src);
    char *text = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!text) {
        fprintf(stderr, "bitlab plan: out of memory\n");
        return -1;
    }
    FILE *f = strcmp(out, "-") == 0 ? stdout : fopen(out, "w");
    int rc = f ? 0 : -1;
    if (f) {
        fprintf(f, "%s\n", text);
        if (f != stdout && fclose(f) != 0) rc = -1;
    }
    if (rc) fprintf(stderr, "bitlab plan: cannot write %s\n", out);
    free(text);
    return rc;
}

int cmd_plan(int argc, char **argv) {
    CliArgs args;
    int prc = cli_parse(&args, &cli_plan_spec, argc, argv);
    if (prc >= 0) return prc;
    const CliArgs *a = &args;
    const char *config = cli_str(a, "--config", NULL), *model = cli_str(a, "--model", NULL);
    if (!config == !model)
        return cli_usage_error(a, "give exactly one of --config CONFIG.json and --model PATH");
    BlPlanRun run;
    double baseline;
    run_options(a, &run, &baseline);
    BlPlan p;
    BlPlanSource src;
    BlError err = {{0}};
    if (bl_plan_make(&p, &src, config, model, &run, baseline, &err)) {
        fprintf(stderr, "bitlab plan: %s\n", err.msg);
        return 1;
    }
    const char *json = cli_str(a, "--json", NULL);
    if (!json || strcmp(json, "-") != 0) bl_plan_print_table(stdout, &p, &src);
    return json && write_json(json, &p, &src) ? 1 : 0;
}
