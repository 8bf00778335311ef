/* args.c - `--name value` option parsing for the bitlab subcommands. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int find(const CliArgs *a, const char *name) {
    for (int i = 0; i < a->argc; i++)
        if (strcmp(a->argv[i], name) == 0) return i;
    return -1;
}

const char *cli_str(const CliArgs *a, const char *name, const char *dflt) {
    int i = find(a, name);
    return (i >= 0 && i + 1 < a->argc) ? a->argv[i + 1] : dflt;
}

int cli_int(const CliArgs *a, const char *name, int dflt, int *out) {
    const char *s = cli_str(a, name, NULL);
    if (!s) { *out = dflt; return 0; }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < -2147483647L || v > 2147483647L) {
        fprintf(stderr, "bitlab: %s expects an integer, got '%s'\n", name, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

bool cli_flag(const CliArgs *a, const char *name) { return find(a, name) >= 0; }

int cli_check_known(const CliArgs *a, const char *const *known) {
    for (int i = 0; i < a->argc; i++) {
        const char *arg = a->argv[i];
        if (strncmp(arg, "--", 2) != 0) continue;
        bool ok = false;
        for (const char *const *k = known; *k; k++)
            if (strcmp(arg, *k) == 0) ok = true;
        if (!ok) {
            fprintf(stderr, "bitlab: unknown option '%s' (see bitlab --help)\n", arg);
            return -1;
        }
    }
    return 0;
}

BlModel *cli_load_model(const CliArgs *a) {
    const char *path = cli_str(a, "--model", NULL);
    if (!path) {
        fprintf(stderr, "bitlab: --model PATH is required (a .gguf file or a Hugging Face folder)\n");
        return NULL;
    }
    BlModel *m = NULL;
    BlError err = {{0}};
    if (bl_model_load(&m, path, &err) != 0) {
        fprintf(stderr, "bitlab: %s\n", err.msg);
        return NULL;
    }
    return m;
}
