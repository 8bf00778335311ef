/* main.c - the bitlab command line: dispatches `bitlab COMMAND ...`; its
 * --help lists every command's synopsis and summary, which live with the
 * command (each cmd_*.c's CliSpec, also printed by `bitlab COMMAND --help`). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
} Command;

static const Command COMMANDS[] = {
    {"info", cmd_info},   {"tokenize", cmd_tokenize}, {"generate", cmd_generate},
    {"bench", cmd_bench}, {"export", cmd_export},     {"eval", cmd_eval},
    {"plan", cmd_plan},   {"trace", cmd_trace},
};

/* in the order `bitlab --help` lists them */
static const CliSpec *const SPECS[] = {
    &cli_info_spec,   &cli_tokenize_spec, &cli_generate_spec, &cli_bench_forward_spec,
    &cli_bench_step_spec, &cli_bench_ternary_spec, &cli_bench_sample_spec, &cli_export_spec, &cli_eval_spec,   &cli_plan_spec,
    &cli_trace_spec,  &cli_run_spec,
};

static void usage(FILE *f) {
    fprintf(f,
            "bitlab " BITLAB_VERSION
            " - distil a pretrained LLM into a ternary (BitNet b1.58) student\n\nusage:\n");
    for (size_t i = 0; i < sizeof SPECS / sizeof SPECS[0]; i++) cli_print_overview(f, SPECS[i]);
    fprintf(f,
            "\n"
            "Every command answers --help (-h) with all its options and defaults. Options\n"
            "take --opt VALUE or --opt=VALUE (a VALUE may begin with dashes); -- ends them.\n"
            "Exit 2 on a bad command line, with a message naming the option.\n"
            "\n"
            "PATH is a GGUF file (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K-Q6_K, TQ1_0,\n"
            "TQ2_0) or a Hugging Face folder (config.json, model.safetensors[.index.json],\n"
            "tokenizer.json), including a packed student folder from bitlab export.\n"
            "Architectures: llama (Llama-2/3, TinyLlama, SmolLM/SmolLM2, Mistral), qwen2, phi3.\n");
}

int main(int argc, char **argv) {
    cli_fix_blas_core(argv);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("bitlab %s\n", BITLAB_VERSION);
        return 0;
    }
    /* `bitlab run SCRIPT ...` for a script of any name, `bitlab run --help` */
    if (strcmp(argv[1], "run") == 0) {
        if (argc >= 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
            cli_print_help(stdout, &cli_run_spec);
            return 0;
        }
        if (argc < 3 || argv[2][0] == '-') {
            fprintf(stderr, "bitlab run: expected a script (see bitlab run --help)\n");
            return 2;
        }
        return cmd_run(argc - 2, argv + 2);
    }
    size_t n1 = strlen(argv[1]);
    if (n1 > 4 && strcmp(argv[1] + n1 - 4, ".lua") == 0) return cmd_run(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "bitlab: unknown command '%s' (see bitlab --help)\n", argv[1]);
    return 2;
}
