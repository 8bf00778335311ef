/* args.c - option parsing for the bitlab subcommands: each command declares
 * a table of CliOpt and its help text (CliSpec); this file turns the table
 * into getopt_long's, parses, checks numbers against their ranges and prints
 * every usage message, so they read the same in every command. */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"

// ----------------------------------------------------------------------------
// help

/* text line by line, the first line after first, the others after rest */
static void print_indented(FILE *f, const char *text, const char *first, const char *rest) {
    const char *p = text;
    for (int line = 0; *p; line++) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(f, "%s%.*s\n", line ? rest : first, (int)n, p);
        p += n + (nl != NULL);
    }
}

void cli_print_help(FILE *f, const CliSpec *spec) {
    print_indented(f, spec->synopsis, "usage: ", "       ");
    fputc('\n', f);
    print_indented(f, spec->summary, "  ", "  ");
    if (spec->details) print_indented(f, spec->details, "  ", "  ");
    fprintf(f, "  -h, --help: this text. Options take --opt VALUE or --opt=VALUE; -- ends them\n");
}

void cli_print_overview(FILE *f, const CliSpec *spec) {
    print_indented(f, spec->synopsis, "  ", "  ");
    print_indented(f, spec->summary, "      ", "      ");
}

// ----------------------------------------------------------------------------
// messages

static void vmessage(const CliSpec *spec, const char *fmt, va_list ap) {
    fprintf(stderr, "bitlab %s: ", spec->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see bitlab %s --help)\n", spec->name);
}

static int usage_error(const CliSpec *spec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const CliSpec *spec, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(spec, fmt, ap);
    va_end(ap);
    return 2;
}

int cli_usage_error(const CliArgs *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(a->spec, fmt, ap);
    va_end(ap);
    return 2;
}

// ----------------------------------------------------------------------------
// parsing

/* "%g" without a trailing ".0" or an exponent for integral ranges */
static void fmt_bound(char *buf, size_t n, double v) {
    if (v == floor(v) && fabs(v) < 1e15) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%g", v);
}

static int check_value(const CliSpec *spec, const CliOpt *o, const char *s) {
    if (o->kind != CLI_INT && o->kind != CLI_NUM) return 0;
    char lo[32], hi[32];
    fmt_bound(lo, sizeof lo, o->min);
    fmt_bound(hi, sizeof hi, o->max);
    const char *what = o->kind == CLI_INT ? "an integer" : "a number";
    char *end;
    errno = 0;
    double v;
    if (o->kind == CLI_INT) {
        long long i = strtoll(s, &end, 10);
        v = (double)i;
    } else {
        v = strtod(s, &end);
    }
    if (end == s || *end || errno == ERANGE || !isfinite(v) || v < o->min || v > o->max)
        return usage_error(spec, "--%s expects %s from %s to %s, got '%s'", o->name, what, lo, hi,
                           s);
    return 0;
}

/* The option a `--name[=value]` token names: exact, else a unique prefix;
 * -1 when none, -2 when several. */
static int match_long(const CliOpt *opts, const char *tok) {
    const char *name = tok + 2, *eq = strchr(name, '=');
    size_t n = eq ? (size_t)(eq - name) : strlen(name);
    int found = -1;
    for (int i = 0; opts[i].name; i++) {
        if (strncmp(opts[i].name, name, n) != 0) continue;
        if (strlen(opts[i].name) == n) return i;
        found = found == -1 ? i : -2;
    }
    return found;
}

/* A message for the token getopt refused (argv[at]). */
static int refused(const CliSpec *spec, const char *tok, int c) {
    if (strncmp(tok, "--", 2) != 0)
        return usage_error(spec, "unknown option '-%c'%s%s%s", c ? c : tok[1],
                           strlen(tok) > 2 ? " (in '" : "", strlen(tok) > 2 ? tok : "",
                           strlen(tok) > 2 ? "'; long options take two dashes)" : "");
    const char *eq = strchr(tok, '=');
    int n = eq ? (int)(eq - tok) : (int)strlen(tok);
    int i = match_long(spec->opts, tok);
    bool help = strncmp(tok + 2, "help", (size_t)(n - 2)) == 0 && n > 2;
    if (c == ':') return usage_error(spec, "option '%.*s' needs a value", n, tok);
    if (i >= 0 || (help && i == -1))
        return usage_error(spec, "option '%.*s' takes no value, got '%s'", n, tok, tok);
    if (i == -2) {
        fprintf(stderr, "bitlab %s: option '%.*s' is ambiguous:", spec->name, n, tok);
        for (int k = 0; spec->opts[k].name; k++)
            if (strncmp(spec->opts[k].name, tok + 2, (size_t)(n - 2)) == 0)
                fprintf(stderr, " --%s", spec->opts[k].name);
        fprintf(stderr, " (see bitlab %s --help)\n", spec->name);
        return 2;
    }
    return usage_error(spec, "unknown option '%.*s'%s", n, tok,
                       spec->takes_args ? "; script arguments go after --" : "");
}

int cli_parse(CliArgs *a, const CliSpec *spec, int argc, char **argv) {
    *a = (CliArgs){.spec = spec};
    struct option lo[CLI_MAX_OPTS + 2];
    int n = 0;
    for (; spec->opts[n].name; n++) {
        if (n == CLI_MAX_OPTS) {
            fprintf(stderr, "bitlab %s: more than %d options in the table\n", spec->name, n);
            abort();
        }
        lo[n] = (struct option){spec->opts[n].name,
                                spec->opts[n].kind == CLI_FLAG ? no_argument : required_argument,
                                NULL, 256 + n};
    }
    lo[n] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n + 1] = (struct option){0};
    opterr = 0;
    optind = 0; /* glibc: a full re-initialisation */
    int last_end = 1; /* optind after the last option parsed */
    for (;;) {
        int at = optind ? optind : 1;
        int c = getopt_long(argc, argv, "+:h", lo, NULL);
        if (c == -1) break;
        if (c == 'h') {
            cli_print_help(stdout, spec);
            return 0;
        }
        if (c == '?' || c == ':') return refused(spec, argv[at], c == ':' ? ':' : optopt);
        const CliOpt *o = &spec->opts[c - 256];
        const char *v = o->kind == CLI_FLAG ? "" : optarg;
        if (check_value(spec, o, v)) return 2;
        a->val[c - 256] = v;
        last_end = optind;
    }
    bool dashdash = optind > last_end && strcmp(argv[optind - 1], "--") == 0;
    if (optind < argc && !(dashdash && spec->takes_args))
        return usage_error(spec, "unexpected argument '%s'%s", argv[optind],
                           spec->takes_args ? "; script arguments go after --" : "");
    for (int i = 0; i < n; i++)
        if (spec->opts[i].required && !a->val[i])
            return usage_error(spec, "--%s is required", spec->opts[i].name);
    if (spec->takes_args) {
        a->rest = argv + optind;
        a->n_rest = argc - optind;
    }
    return -1;
}

// ----------------------------------------------------------------------------
// values

static int index_of(const CliArgs *a, const char *name, CliKind kind) {
    while (*name == '-') name++;
    for (int i = 0; a->spec->opts[i].name; i++)
        if (strcmp(a->spec->opts[i].name, name) == 0) {
            if (a->spec->opts[i].kind == kind || kind == (CliKind)-1) return i;
            break;
        }
    fprintf(stderr, "bitlab %s: internal error: no option --%s of that kind in the table\n",
            a->spec->name, name);
    abort();
}

const char *cli_str(const CliArgs *a, const char *name, const char *dflt) {
    const char *v = a->val[index_of(a, name, CLI_STR)];
    return v ? v : dflt;
}

int cli_int(const CliArgs *a, const char *name, int dflt) {
    const char *v = a->val[index_of(a, name, CLI_INT)];
    return v ? (int)strtoll(v, NULL, 10) : dflt; /* range checked by cli_parse */
}

double cli_num(const CliArgs *a, const char *name, double dflt) {
    const char *v = a->val[index_of(a, name, CLI_NUM)];
    return v ? strtod(v, NULL) : dflt;
}

bool cli_flag(const CliArgs *a, const char *name) {
    return a->val[index_of(a, name, CLI_FLAG)] != NULL;
}

bool cli_has(const CliArgs *a, const char *name) {
    return a->val[index_of(a, name, (CliKind)-1)] != NULL;
}

/* The CUDA backend of this process: under mpirun one GPU per local rank,
 * device local_rank % count. More processes on a node than visible GPUs
 * share them, with a warning, rather than being refused: where each process
 * is shown its own GPU (CUDA_VISIBLE_DEVICES per rank, as Slurm's
 * --gpus-per-task does) every one sees a single device 0 and that is right,
 * and this process cannot tell that case from two ranks on one GPU, which
 * NCCL itself refuses ("Duplicate GPU detected") at the first shared step. */
static const BlBackend *cuda_of_rank(BlError *err) {
    int world = bl_comm_size();
    if (world <= 1) return bl_backend_cuda(err);
    int n = bl_backend_cuda_device_count(err);
    if (n < 0) return NULL;
    if (n == 0) {
        bl_fail(err, "no CUDA device");
        return NULL;
    }
    int local = bl_comm_local_rank(), dev = local % n;
    if (local >= n)
        fprintf(stderr, "bitlab: rank %d of %d: process %d of this node, which shows it %d CUDA "
                "device%s: it takes device %d, which another process of the node has too (fine "
                "when each process is shown its own GPU, e.g. CUDA_VISIBLE_DEVICES per rank; "
                "otherwise start at most %d processes per node)\n",
                bl_comm_rank(), world, local, n, n == 1 ? "" : "s", dev, n);
    return bl_backend_cuda_on(dev, err);
}

const BlBackend *cli_backend(const CliArgs *a, const char *dflt) {
    const char *name = cli_str(a, "--device", dflt ? dflt : "cpu");
    if (strcmp(name, "cpu") != 0 && strcmp(name, "cuda") != 0 && strcmp(name, "auto") != 0) {
        cli_usage_error(a, "--device expects cpu, cuda or auto, got '%s'", name);
        return NULL;
    }
    BlError err = {{0}};
    bool cuda = strcmp(name, "cuda") == 0 ||
                (strcmp(name, "auto") == 0 && bl_backend_cuda_available());
    const BlBackend *be = cuda ? cuda_of_rank(&err) : bl_backend_select(name, &err);
    if (!be) fprintf(stderr, "bitlab %s: --device %s: %s\n", a->spec->name, name, err.msg);
    return be;
}

BlModel *cli_load_model(const CliArgs *a) {
    const char *path = cli_str(a, "--model", NULL);
    if (!path) {
        cli_usage_error(a, "--model PATH is required (a .gguf file or a Hugging Face folder)");
        return NULL;
    }
    BlModel *m = NULL;
    BlError err = {{0}};
    if (bl_model_load(&m, path, &err) != 0) {
        fprintf(stderr, "bitlab %s: %s\n", a->spec->name, err.msg);
        return NULL;
    }
    return m;
}
