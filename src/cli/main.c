/* main.c - the bitlab command line: dispatches `bitlab COMMAND ...` and
 * documents every command in --help. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char USAGE[] =
    "bitlab " BITLAB_VERSION " - distil a pretrained LLM into a ternary (BitNet b1.58) student\n"
    "\n"
    "usage:\n"
    "  bitlab info     --model PATH\n"
    "      architecture, sizes, parameter count and memory of a model\n"
    "  bitlab tokenize --model PATH --text TEXT [--bos]\n"
    "      token ids of TEXT on one line (--bos adds the tokenizer's special tokens)\n"
    "  bitlab generate --model PATH --prompt TEXT [--chat] [--system TEXT]\n"
    "                  [--template NAME] [--max-tokens N]\n"
    "      greedy decoding with a KV cache, streamed as it decodes. --chat wraps the\n"
    "      prompt in the model's chat template (--template chatml|llama3|llama2|zephyr|phi3\n"
    "      overrides the one from the model's metadata); --max-tokens defaults to 256\n"
    "  bitlab bench forward --model PATH [--batch B] [--seq T] [--iters N]\n"
    "      teacher-forward throughput: tokens/s and GEMM GFLOP/s (defaults 4 x 128)\n"
    "  bitlab bench step --model PATH [--batch B] [--seq T] [--iters N] [--warmup N]\n"
    "      one distillation step (teacher fwd + student fwd + backward + AdamW; lambda 1,\n"
    "      8-bit activations, LoRA r=16): tokens/s, peak RSS and the memory breakdown\n"
    "  bitlab SCRIPT.lua [--headless] [--log FILE] [--resume CKPT] [--control FILE]\n"
    "                    [-- SCRIPT ARGS]\n"
    "      runs a Lua experiment (e.g. experiments/overfit.lua). --log writes the metrics\n"
    "      stream (one JSON object per line); --resume continues from a checkpoint;\n"
    "      --control FILE is polled at each step for name=value knob changes. In a\n"
    "      terminal the live dashboard opens (? lists its keys); --headless, or no tty,\n"
    "      prints progress lines instead. Exit 0 on success (or q in the dashboard),\n"
    "      1 on a script error, 130 when stopped by Ctrl-C. The Lua library is found\n"
    "      in ../lua beside the executable or $BITLAB_LUA_PATH\n"
    "\n"
    "PATH is a GGUF file (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)\n"
    "or a Hugging Face folder (config.json, model.safetensors[.index.json], tokenizer.json).\n"
    "Architectures: llama (Llama-2/3, TinyLlama, SmolLM/SmolLM2, Mistral), qwen2, phi3.\n";

typedef struct {
    const char *name;
    int (*run)(const CliArgs *a);
} Command;

static const Command COMMANDS[] = {
    {"info", cmd_info},
    {"tokenize", cmd_tokenize},
    {"generate", cmd_generate},
    {"bench", cmd_bench},
};

int main(int argc, char **argv) {
    cli_fix_blas_core(argv);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("bitlab %s\n", BITLAB_VERSION);
        return 0;
    }
    size_t n1 = strlen(argv[1]);
    if (n1 > 4 && strcmp(argv[1] + n1 - 4, ".lua") == 0) return cmd_run(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
        if (strcmp(argv[1], COMMANDS[i].name) == 0) {
            CliArgs a = {argc - 2, argv + 2};
            return COMMANDS[i].run(&a);
        }
    }
    fprintf(stderr, "bitlab: unknown command '%s' (see bitlab --help)\n", argv[1]);
    return 2;
}
