/* cmd_trace.c - `bitlab trace`: precompute the teacher's top-K
 * log-probabilities (and optionally its hidden states) over a JSONL dataset
 * into a trace file that trainers read instead of running the teacher
 * (src/trace/trace.h has the format). --device runs the teacher forward on a
 * backend (a device copy of the weights); the top-K and the file are made on
 * the host. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "data/dataset.h"
#include "trace/trace.h"

/* "traced i/n" on one terminal line; nothing when stderr is a file */
static void progress(void *ctx, int done, int total) {
    (void)ctx;
    fprintf(stderr, "\rbitlab trace: %d/%d examples", done, total);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

static const CliOpt OPTS[] = {
    CLI_STR_REQ("model"),
    CLI_STR_REQ("data"),
    CLI_INT_REQ("k", 1, 1 << 20),
    CLI_STR_REQ("out"),
    CLI_INT_OPT("seq", 1, 1 << 24),
    CLI_INT_OPT("batch", 1, 4096),
    CLI_NUM_OPT("tau", 0.01, 100),
    CLI_FLAG_OPT("hidden"),
    CLI_STR_OPT("hidden-dtype"),
    CLI_STR_OPT("template"),
    CLI_STR_OPT("device"),
    CLI_END};

const CliSpec cli_trace_spec = {
    .name = "trace",
    .synopsis = "bitlab trace --model PATH --data FILE.jsonl --k K --out TRACE\n"
                "             [--seq T] [--batch B] [--tau X] [--hidden] [--hidden-dtype f32|f16]\n"
                "             [--template NAME] [--device cpu|cuda|auto]",
    .summary = "runs the teacher over every example of FILE and writes its top-K token ids and\n"
               "log-probabilities at temperature X with the 'other' mass to TRACE, which\n"
               "trainers read instead of running the teacher",
    .details = "FILE: chat or text JSONL lines, as bitlab.dataset reads them (the model's chat\n"
               "template, or --template NAME; response-only targets); every position that has a\n"
               "next token is traced. --tau X defaults to 1. --seq cuts examples to their first\n"
               "T tokens (default: the longest example); --batch sequences per forward (default\n"
               "1); --hidden also stores every block's hidden states (f32 by default,\n"
               "--hidden-dtype f16 halves them). The trace records the model's and the data's\n"
               "sha256: a trainer refuses a trace made from another model, other data, another\n"
               "K or another temperature. --device picks the backend of the teacher forward:\n"
               "cpu (the default), cuda, or auto (CUDA when a device is present); on cuda the\n"
               "weights are copied to the GPU once, in bf16, so the trace holds that teacher's\n"
               "values (a CPU step reading it sees them to bf16 precision, not bit for bit).\n"
               "Prints one JSON line: records, positions, bytes, seconds, the two sha256, the\n"
               "device",
    .opts = OPTS,
};

int cmd_trace(int argc, char **argv) {
    CliArgs args;
    int prc = cli_parse(&args, &cli_trace_spec, argc, argv);
    if (prc >= 0) return prc;
    const CliArgs *a = &args;
    const char *data = cli_str(a, "--data", NULL), *out = cli_str(a, "--out", NULL);
    const char *dtype = cli_str(a, "--hidden-dtype", "f32");
    BlTraceConfig c = {.tau = (float)cli_num(a, "--tau", 1.0),
                       .progress = isatty(2) ? progress : NULL};
    int K = cli_int(a, "--k", 0), seq = cli_int(a, "--seq", 0), batch = cli_int(a, "--batch", 1);
    if (strcmp(dtype, "f32") != 0 && strcmp(dtype, "f16") != 0)
        return cli_usage_error(a, "--hidden-dtype is f32 or f16, got '%s'", dtype);
    if (cli_has(a, "--hidden-dtype") && !cli_flag(a, "--hidden"))
        return cli_usage_error(a, "--hidden-dtype needs --hidden");
    c.K = K;
    c.batch = batch;
    c.hidden = !cli_flag(a, "--hidden") ? BL_TRACE_HIDDEN_NONE
               : strcmp(dtype, "f16") == 0 ? BL_TRACE_HIDDEN_F16
                                           : BL_TRACE_HIDDEN_F32;
    if (!(c.be = cli_backend(a, "cpu"))) return 2;
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
        cJSON_AddStringToObject(o, "device", c.be->name);
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
