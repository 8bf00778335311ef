/* cli.h - what the bitlab subcommands share: the option table each command
 * declares, getopt_long parsing of it (src/cli/args.c) and the entry point
 * every `bitlab NAME` has. */
#ifndef BITLAB_CLI_H
#define BITLAB_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"

/* ---------------------------------------------------------------------------
 * Option tables */

typedef enum {
    CLI_FLAG, /* --name, no value */
    CLI_STR,  /* --name VALUE or --name=VALUE, any text (dash-leading too) */
    CLI_INT,  /* an integer in [min, max] */
    CLI_NUM,  /* a finite number in [min, max] */
} CliKind;

typedef struct {
    const char *name; /* without the dashes: "max-tokens" */
    CliKind kind;
    double min, max;  /* CLI_INT, CLI_NUM: the accepted range, inclusive */
    bool required;    /* the command refuses to run without it */
} CliOpt;

/* Table entries (designated, so every field not named is zero). */
#define CLI_FLAG_OPT(n) {.name = (n), .kind = CLI_FLAG}
#define CLI_STR_OPT(n) {.name = (n), .kind = CLI_STR}
#define CLI_STR_REQ(n) {.name = (n), .kind = CLI_STR, .required = true}
#define CLI_INT_OPT(n, lo, hi) {.name = (n), .kind = CLI_INT, .min = (lo), .max = (hi)}
#define CLI_INT_REQ(n, lo, hi) {.name = (n), .kind = CLI_INT, .min = (lo), .max = (hi), .required = true}
#define CLI_NUM_OPT(n, lo, hi) {.name = (n), .kind = CLI_NUM, .min = (lo), .max = (hi)}
#define CLI_END {.name = NULL}

/* One command: its option table and its help, which lives only here.
 * `bitlab CMD --help` prints synopsis, summary and details; `bitlab --help`
 * prints every command's synopsis and summary. */
typedef struct {
    const char *name;     /* in messages: "eval", "bench step", "SCRIPT.lua" */
    const char *synopsis; /* "bitlab eval --model PATH ...", continuation lines indented by 2 */
    const char *summary;  /* a few lines: what it does */
    const char *details;  /* the rest of --help (may be NULL) */
    const CliOpt *opts;   /* terminated by {NULL} */
    bool takes_args;      /* arguments after `--` are passed on (SCRIPT.lua) */
} CliSpec;

#define CLI_MAX_OPTS 32

/* A parsed command line. */
typedef struct {
    const CliSpec *spec;
    const char *val[CLI_MAX_OPTS]; /* opts[i]'s value ("" for a flag), NULL when absent */
    int n_rest;                    /* arguments after `--` (takes_args only) */
    char **rest;
} CliArgs;

/* Parses argv[1..argc-1] (argv[0] is the command's name) against spec with
 * getopt_long: `--opt value`, `--opt=value`, unambiguous prefixes, `--` ends
 * the options, a value may begin with dashes, numbers are checked against
 * their range. Returns -1 when the command should run; otherwise the exit
 * code: 0 after printing --help (-h), 2 after a usage error naming the
 * option and the command. */
int cli_parse(CliArgs *a, const CliSpec *spec, int argc, char **argv);

/* Values by name ("--model" or "model"); the name must be in the table. */
const char *cli_str(const CliArgs *a, const char *name, const char *dflt);
int cli_int(const CliArgs *a, const char *name, int dflt);
double cli_num(const CliArgs *a, const char *name, double dflt);
bool cli_flag(const CliArgs *a, const char *name);
bool cli_has(const CliArgs *a, const char *name);

/* Prints "bitlab CMD: <message> (see bitlab CMD --help)"; returns 2. */
int cli_usage_error(const CliArgs *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* `bitlab CMD --help`: usage, summary and details of spec. */
void cli_print_help(FILE *f, const CliSpec *spec);
/* The synopsis and summary of spec, as `bitlab --help` lists them. */
void cli_print_overview(FILE *f, const CliSpec *spec);

/* --device cpu|cuda|auto (dflt when absent, "cpu" if dflt is NULL) as a
 * backend, resolved before the command does any work: NULL after printing
 * "bitlab CMD: --device NAME: <why>" for an unknown name or a CUDA that cannot
 * run here (bl_backend_select's reason: built without CUDA, no CUDA device,
 * the module failed to load); the caller exits 2. */
const BlBackend *cli_backend(const CliArgs *a, const char *dflt);

/* Loads --model (required), printing any error. NULL on failure. */
BlModel *cli_load_model(const CliArgs *a);

/* Re-executes bitlab with OPENBLAS_CORETYPE set when OpenBLAS fell back to
 * its generic kernels on a CPU with AVX2/AVX-512 (returns only if it did not). */
void cli_fix_blas_core(char **argv);

/* ---------------------------------------------------------------------------
 * The commands: argv[0] is the command's name (the script for SCRIPT.lua) */

extern const CliSpec cli_info_spec, cli_tokenize_spec, cli_generate_spec, cli_bench_forward_spec,
    cli_bench_step_spec, cli_bench_ternary_spec, cli_bench_sample_spec, cli_export_spec, cli_eval_spec, cli_plan_spec, cli_trace_spec,
    cli_run_spec;

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* `bitlab bench ternary` once cmd_bench has parsed its options (cmd_bench_ternary.c) */
int cli_bench_ternary(const CliArgs *a);
/* `bitlab bench sample` likewise (cmd_bench_sample.c) */
int cli_bench_sample(const CliArgs *a);
int cmd_export(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_trace(int argc, char **argv);
/* `bitlab SCRIPT.lua ...`: argv[0] is the script. */
int cmd_run(int argc, char **argv);

#endif
