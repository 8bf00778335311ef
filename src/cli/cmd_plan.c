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

/* The run's options; -1 on a malformed value (printed). */
static int run_options(const CliArgs *a, BlPlanRun *r, double *baseline) {
    *r = (BlPlanRun){0};
    if (cli_int(a, "--batch", 4, &r->B) || cli_int(a, "--seq", 128, &r->T) ||
        cli_int(a, "--rank", 16, &r->rank) || cli_int(a, "--adapters", 1, &r->adapters) ||
        cli_int(a, "--act-bits", 8, &r->act_bits) || cli_int(a, "--topk", 0, &r->topk))
        return -1;
    r->dense = cli_flag(a, "--dense");
    r->subln = cli_flag(a, "--subln");
    r->post_attn_norm = cli_flag(a, "--post-attn-norm");
    const char *b = cli_str(a, "--baseline-mib", NULL);
    *baseline = -1.0;
    if (b) {
        char *end;
        double v = strtod(b, &end);
        if (end == b || *end || !(v >= 0.0)) {
            fprintf(stderr, "bitlab plan: --baseline-mib expects a number >= 0, got '%s'\n", b);
            return -1;
        }
        *baseline = v * 1024.0 * 1024.0;
    }
    return 0;
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

int cmd_plan(const CliArgs *a) {
    static const char *const known[] = {"--config", "--model", "--batch", "--seq", "--rank",
                                        "--adapters", "--dense", "--subln", "--post-attn-norm",
                                        "--act-bits", "--topk", "--baseline-mib", "--json",
                                        NULL};
    if (cli_check_known(a, known)) return 2;
    const char *config = cli_str(a, "--config", NULL), *model = cli_str(a, "--model", NULL);
    if (!config == !model) {
        fprintf(stderr, "bitlab plan: give exactly one of --config CONFIG.json and --model PATH\n");
        return 2;
    }
    BlPlanRun run;
    double baseline;
    if (run_options(a, &run, &baseline)) return 2;
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
