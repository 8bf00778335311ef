/* cmd_tokenize.c - `bitlab tokenize`: token ids of a text, one line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "tokenizer/tokenizer.h"

int cmd_tokenize(const CliArgs *a) {
    static const char *const known[] = {"--model", "--text", "--bos", NULL};
    if (cli_check_known(a, known) != 0) return 2;
    const char *text = cli_str(a, "--text", NULL);
    if (!text) {
        fprintf(stderr, "bitlab tokenize: --text TEXT is required\n");
        return 2;
    }
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
