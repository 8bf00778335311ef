/* cmd_bench_sample.c - `bitlab bench sample`: teacher tokens/s of batched
 * KV-cache sampling (nn/sample.h) from the BOS token, the workload of a
 * teacher writing its own training data. */
#include <stdio.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "backend/device_model.h"
#include "cli/cli.h"
#include "nn/sample.h"
#include "tokenizer/tokenizer.h"

static const CliOpt SAMPLE_OPTS[] = {CLI_STR_REQ("model"),
                                     CLI_INT_OPT("batch", 1, 4096),
                                     CLI_INT_OPT("rows", 1, 1 << 16),
                                     CLI_INT_OPT("max-tokens", 1, 1 << 20),
                                     CLI_NUM_OPT("temperature", 0, 1e6),
                                     CLI_NUM_OPT("top-p", 1e-9, 1),
                                     CLI_INT_OPT("seed", 0, 1 << 30),
                                     CLI_STR_OPT("device"),
                                     CLI_END};

const CliSpec cli_bench_sample_spec = {
    .name = "bench sample",
    .synopsis = "bitlab bench sample --model PATH [--batch B] [--rows R] [--max-tokens N]\n"
                "                    [--temperature T] [--top-p P] [--seed S] [--device cpu|cuda|auto]",
    .summary = "teacher sampling throughput: --rows answers (16) from the BOS token, decoded\n"
               "--batch (16) rows at a time with a KV cache each; generated tokens/s; one JSON line",
    .details = "Each answer runs to a stop token or --max-tokens (128); defaults temperature\n"
               "0.8, top-p 0.95, seed 1. The same seed draws the same answers at every batch\n"
               "size, so runs at --batch 1 and 16 do the same work: their tokens/s compare\n"
               "the batched decode step (one GEMM over the live rows) against one row at a time.",
    .opts = SAMPLE_OPTS,
};

int cli_bench_sample(const CliArgs *a) {
    int rows = cli_int(a, "--rows", 16);
    BlSampleOptions o = {.max_new = cli_int(a, "--max-tokens", 128),
                         .batch = cli_int(a, "--batch", 16),
                         .temperature = (float)cli_num(a, "--temperature", 0.8),
                         .top_p = (float)cli_num(a, "--top-p", 0.95),
                         .seed = (uint64_t)cli_int(a, "--seed", 1)};
    const BlBackend *be = cli_backend(a, "cpu");
    if (!be) return 2;
    BlModel *m = cli_load_model(a);
    if (!m) return 1;
    BlError err = {{0}};
    int bos[1] = {bl_tokenizer_bos_id(m->tokenizer)};
    if (bos[0] < 0) {
        fprintf(stderr, "bitlab bench sample: %s: the tokenizer has no BOS token\n", m->path);
        bl_model_free(m);
        return 1;
    }
    const int **prompts = bl_malloc(sizeof *prompts * (size_t)rows, &err);
    int *n_prompt = bl_malloc(sizeof(int) * (size_t)rows, &err);
    int *out = bl_malloc(sizeof(int) * (size_t)rows * o.max_new, &err);
    int *n_out = bl_malloc(sizeof(int) * (size_t)rows, &err);
    BlDeviceModel dm = {0};
    BlSampleStats st;
    int rc = prompts && n_prompt && out && n_out ? 0 : -1;
    for (int i = 0; rc == 0 && i < rows; i++) {
        prompts[i] = bos;
        n_prompt[i] = 1;
    }
    /* the weights go to the device once, outside the timed sampling */
    if (rc == 0) rc = bl_device_model_build(&dm, m, be, &err);
    if (rc == 0) rc = bl_sample(&dm.model, be, prompts, n_prompt, rows, &o, out, n_out, &st, &err);
    if (rc == 0) {
        double secs = st.prefill_s + st.decode_s;
        printf("{\"bench\": \"sample\", \"backend\": \"%s\", \"batch\": %d, \"rows\": %d, "
               "\"max_tokens\": %d, \"tokens\": %lld, \"steps\": %lld, \"seconds\": %.3f, "
               "\"tokens_per_s\": %.1f, \"mean_live_rows\": %.2f}\n",
               be->name, o.batch, rows, o.max_new, st.tokens, st.steps, secs,
               secs > 0 ? (double)st.tokens / secs : 0.0,
               st.steps ? (double)st.row_steps / (double)st.steps : 0.0);
    } else {
        fprintf(stderr, "bitlab bench sample: %s\n", err.msg);
    }
    bl_device_model_free(&dm);
    free(prompts);
    free(n_prompt);
    free(out);
    free(n_out);
    bl_model_free(m);
    return rc ? 1 : 0;
}
