/* cmd_tokenize.c - `bitlab tokenize`: token ids of a text, one line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "tokenizer/tokenizer.h"

static const CliOpt OPTS[] = {
    CLI_STR_REQ("model"), CLI_STR_REQ("text"), CLI_FLAG_OPT("bos"),
    CLI_END};

const CliSpec cli_tokenize_spec = {
    .name = "tokenize",
    .synopsis = "bitlab tokenize --model PATH --text TEXT [--bos]",
    .summary = "token ids of TEXT on one line (--bos adds the tokenizer's special tokens)",
    .opts = OPTS,
};

int cmd_tokenize(int argc, char **argv) {
    CliArgs args;
    int prc = cli_parse(&args, &cli_tokenize_spec, argc, argv);
    if (prc >= 0) return prc;
    const CliArgs *a = &args;
    const char *text = cli_str(a, "--text", NULL);
    BlModel *m = cli_load_model(a);
    if (!m) return 1;
    int *ids = NULL, n = 0;
    BlError err = {{0}};
    int rc = bl_tokenizer_encode(m->tokenizer, text, strlen(text), cli_flag(a, "--bos"), &ids, &n, &err);
    if (rc != 0) {
        fprintf(stderr, "bitlab tokenize: %s\n", err.msg);
    } else {
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    free(ids);
    bl_model_free(m);
    return rc ? 1 : 0;
}
