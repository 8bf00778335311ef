/* cmd_trace.c - `bitlab trace`: precompute the teacher's top-K
 * log-probabilities (and optionally its hidden states) over a JSONL dataset
 * into a trace file that trainers read instead of running the teacher
 * (src/trace/trace.h has the format). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "data/dataset.h"
#include "trace/trace.h"

static const char HELP[] =
    "usage: bitlab trace --model PATH --data FILE.jsonl --k K --out TRACE\n"
    "                    [--seq T] [--batch B] [--tau X] [--hidden] [--hidden-dtype f32|f16]\n"
    "                    [--template NAME]\n"
    "  runs the teacher over every example of FILE (chat or text JSONL lines, as\n"
    "  bitlab.dataset reads them: the model's chat template, response-only targets)\n"
    "  and writes its top-K token ids and log-probabilities at temperature X (default\n"
    "  1) with the 'other' mass, for every position that has a next token, to TRACE.\n"
    "  --seq cuts examples to their first T tokens (default: the longest example);\n"
    "  --batch sequences per forward (default 1); --hidden also stores every block's\n"
    "  hidden states (f32 by default, --hidden-dtype f16 halves them). The trace\n"
    "  records the model's and the data's sha256: a trainer refuses a trace made\n"
    "  from another model, other data, another K or another temperature.\n"
    "  Prints one JSON line: records, positions, bytes, seconds, the two sha256.\n";

/* "traced i/n" on one terminal line; nothing when stderr is a file */
static void progress(void *ctx, int done, int total) {
    (void)ctx;
    fprintf(stderr, "\rbitlab trace: %d/%d examples", done, total);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

static int parse_float(const char *name, const char *s, float *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end) {
        fprintf(stderr, "bitlab trace: %s expects a number, got '%s'\n", name, s);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int cmd_trace(const CliArgs *a) {
    static const char *const known[] = {"--model", "--data", "--k", "--out", "--seq", "--batch",
                                        "--tau", "--hidden", "--hidden-dtype", "--template",
                                        "--help", NULL};
    if (cli_check_known(a, known)) return 2;
    if (cli_flag(a, "--help")) {
        fputs(HELP, stdout);
        return 0;
    }
    const char *data = cli_str(a, "--data", NULL), *out = cli_str(a, "--out", NULL);
    const char *dtype = cli_str(a, "--hidden-dtype", "f32");
    BlTraceConfig c = {.tau = 1.0f, .progress = isatty(2) ? progress : NULL};
    int K = 0, seq = 0, batch = 1;
    if (cli_int(a, "--k", 0, &K) || cli_int(a, "--seq", 0, &seq) ||
        cli_int(a, "--batch", 1, &batch) ||
        (cli_str(a, "--tau", NULL) && parse_float("--tau", cli_str(a, "--tau", NULL), &c.tau)))
        return 2;
    if (!data || !out || K <= 0) {
        fprintf(stderr, "bitlab trace: --model, --data, --k (>= 1) and --out are required\n%s",
                HELP);
        return 2;
    }
    if (strcmp(dtype, "f32") != 0 && strcmp(dtype, "f16") != 0) {
        fprintf(stderr, "bitlab trace: --hidden-dtype is f32 or f16, got '%s'\n", dtype);
        return 2;
    }
    if (cli_str(a, "--hidden-dtype", NULL) && !cli_flag(a, "--hidden")) {
        fprintf(stderr, "bitlab trace: --hidden-dtype needs --hidden\n");
        return 2;
    }
    c.K = K;
    c.batch = batch;
    c.hidden = !cli_flag(a, "--hidden") ? BL_TRACE_HIDDEN_NONE
               : strcmp(dtype, "f16") == 0 ? BL_TRACE_HIDDEN_F16
                                           : BL_TRACE_HIDDEN_F32;
    BlModel *m = cli_load_model(a);
    if (!m) return 1;
    BlDataset d;
    BlError err = {{0}};
    BlTraceSummary s;
    int rc = bl_dataset_init(&d, m, cli_str(a, "--template", NULL), true, &err);
    if (rc == 0) {
        rc = bl_dataset_load_jsonl(&d, data, &err);
        c.seq = seq > 0 ? seq : bl_dataset_max_len(&d);
        if (rc == 0) rc = bl_trace_write(m, &d, &c, out, &s, &err);
        bl_dataset_free(&d);
    }
    if (rc == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "trace", out);
        cJSON_AddNumberToObject(o, "records", s.records);
        cJSON_AddNumberToObject(o, "positions", (double)s.positions);
        cJSON_AddNumberToObject(o, "rows", (double)s.rows);
        cJSON_AddNumberToObject(o, "k", c.K);
        cJSON_AddNumberToObject(o, "tau", c.tau);
        cJSON_AddNumberToObject(o, "seq", c.seq);
        cJSON_AddStringToObject(o, "hidden", bl_trace_hidden_name(c.hidden));
        cJSON_AddNumberToObject(o, "bytes", (double)s.bytes);
        cJSON_AddNumberToObject(o, "seconds", s.seconds);
        cJSON_AddStringToObject(o, "model_sha256", s.model_sha256);
        cJSON_AddStringToObject(o, "data_sha256", s.data_sha256);
        char *line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (line) puts(line);
        cJSON_free(line);
    }
    else
        fprintf(stderr, "bitlab trace: %s\n", err.msg);
    bl_model_free(m);
    return rc ? 1 : 0;
}
