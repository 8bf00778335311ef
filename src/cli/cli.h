/* cli.h - what the bitlab subcommands share: option parsing and the
 * signature every `bitlab NAME` entry point has. */
#ifndef BITLAB_CLI_H
#define BITLAB_CLI_H

#include <stdbool.h>

#include "core/error.h"
#include "model/model.h"

/* A parsed command line: `--name value` options and `--flag` switches. */
typedef struct {
    int argc;
    char **argv;
} CliArgs;

/* Value of --name, or dflt when absent. */
const char *cli_str(const CliArgs *a, const char *name, const char *dflt);
/* Integer value of --name; returns -1 and prints a message on a malformed number. */
int cli_int(const CliArgs *a, const char *name, int dflt, int *out);
bool cli_flag(const CliArgs *a, const char *name);
/* Fails (printing which) when an option is not in the NULL-terminated list
 * of known names, so a typo never silently does nothing. */
int cli_check_known(const CliArgs *a, const char *const *known);

/* Loads --model (required), printing any error. NULL on failure. */
BlModel *cli_load_model(const CliArgs *a);

/* Re-executes bitlab with OPENBLAS_CORETYPE set when OpenBLAS fell back to
 * its generic kernels on a CPU with AVX2/AVX-512 (returns only if it did not). */
void cli_fix_blas_core(char **argv);

int cmd_info(const CliArgs *a);
int cmd_tokenize(const CliArgs *a);
int cmd_generate(const CliArgs *a);
int cmd_bench(const CliArgs *a);
int cmd_export(const CliArgs *a);
int cmd_eval(const CliArgs *a);
int cmd_plan(const CliArgs *a);
int cmd_trace(const CliArgs *a);
/* `bitlab SCRIPT.lua ...`: argv[0] is the script. */
int cmd_run(int argc, char **argv);

#endif
