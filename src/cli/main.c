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
    "      architecture, sizes, parameter count and memory of a model; for a GGUF also\n"
    "      each tensor's storage type and whether it is a bitlab ternary student\n"
    "  bitlab tokenize --model PATH --text TEXT [--bos]\n"
    "      token ids of TEXT on one line (--bos adds the tokenizer's special tokens)\n"
    "  bitlab generate --model PATH --prompt TEXT [--chat] [--system TEXT]\n"
    "                  [--template NAME] [--max-tokens N] [--device cpu|cuda|auto]\n"
    "      greedy decoding with a KV cache, streamed as it decodes. --chat wraps the\n"
    "      prompt in the model's chat template (--template chatml|llama3|llama2|zephyr|phi3\n"
    "      overrides the one from the model's metadata); --max-tokens defaults to 256.\n"
    "      --device picks the backend (default cpu; auto: CUDA when a device is present);\n"
    "      on cuda the weights are copied to the GPU once, in bf16. An exported student\n"
    "      (bitlab export) runs as trained: ternary weights, quantised activations\n"
    "  bitlab bench forward --model PATH [--batch B] [--seq T] [--iters N]\n"
    "                       [--device cpu|cuda|auto]\n"
    "      teacher-forward throughput: tokens/s and GEMM GFLOP/s (defaults 4 x 128)\n"
    "  bitlab bench step --model PATH [--batch B] [--seq T] [--iters N] [--warmup N]\n"
    "                    [--device cpu|cuda|auto] [--trainer reference|device]\n"
    "                    [--ternary-fast-path] [--peak-tflops N]\n"
    "      one distillation step (teacher fwd + student fwd + backward + AdamW; lambda 1,\n"
    "      8-bit activations, LoRA r=16): tokens/s, peak memory and the memory breakdown;\n"
    "      on a GPU also model FLOP utilisation against the card's bf16 peak. --trainer\n"
    "      defaults to reference (the CPU trainer) on cpu and device (the backend trainer)\n"
    "      otherwise; --ternary-fast-path runs the lambda-1 A8 student forward as an int8\n"
    "      product (device trainer)\n"
    "  bitlab export   --model PATH --checkpoint CKPT --out FILE.gguf|DIR\n"
    "                  [--format gguf|safetensors] [--ternary tq2_0|tq1_0] [--embed keep|f32|f16]\n"
    "      the student of CKPT (trained on PATH) at lambda 1 as a GGUF file llama.cpp and\n"
    "      bitlab run (block linears with rows of 256-multiples TQ2_0, or TQ1_0 with\n"
    "      --ternary tq1_0; 32-multiples Q4_0; others F16; --embed keep stores the token\n"
    "      embedding and LM head as a GGUF source stored them, F32 for a Hugging Face\n"
    "      source), or as a packed safetensors folder (--format safetensors, or an --out\n"
    "      not ending in .gguf: block linears as 2-bit codes + an F32 scale, norms and\n"
    "      biases F32, token embedding and LM head F16 by default: --embed f32 for exact\n"
    "      values; keep means f16 there, safetensors has no ggml block types); writes\n"
    "      training_manifest.json beside it (inside DIR)\n"
    "  bitlab eval     --model PATH --data FILE [--checkpoint CKPT] [--prompts FILE]\n"
    "                  [--max-tokens N] [--seq T] [--max-examples N] [--act-bits B]\n"
    "                  [--json OUT] [--quiet]\n"
    "      the teacher against its ternary student (lambda 1) on held-out data:\n"
    "      perplexities, KL, top-1 agreement, common greedy prefixes, weight bytes and\n"
    "      QEI; a table and --json OUT. Every option and definition: bitlab eval --help\n"
    "  bitlab plan (--config CONFIG.json | --model PATH) [--batch B] [--seq T] [--rank R]\n"
    "              [--adapters K] [--dense] [--subln] [--post-attn-norm] [--act-bits N]\n"
    "              [--topk K] [--baseline-mib X] [--json OUT]\n"
    "      the memory a distillation run needs, without loading any weight: the CPU\n"
    "      trainer's exact allocations by category plus the measured process baseline,\n"
    "      tokenizer and load peak; a GPU design estimate (bf16 weights, fp32 optimizer);\n"
    "      compared with a separate student weight copy and a dense trainable dW.\n"
    "      Defaults 4 x 128, one LoRA r=16, A8. --json OUT writes every figure in bytes\n"
    "      (OUT = - prints only the JSON). Exit 1 on a bad config or run, 2 on bad options\n"
    "  bitlab trace    --model PATH --data FILE.jsonl --k K --out TRACE [--seq T] [--batch B]\n"
    "                  [--tau X] [--hidden] [--hidden-dtype f32|f16] [--template NAME]\n"
    "      runs the teacher over every example of FILE (chat or text JSONL, as\n"
    "      bitlab.dataset reads it) and writes its top-K token ids and log-probabilities at\n"
    "      temperature X (default 1) with the 'other' mass for every position that has a\n"
    "      next token; --seq cuts examples to T tokens, --batch sequences per forward,\n"
    "      --hidden also stores every block's hidden states. The trace records the model's\n"
    "      and the data's sha256: a trainer refuses a trace of another model, other data,\n"
    "      another K or another temperature. Prints one JSON line of what it wrote\n"
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
    "PATH is a GGUF file (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K-Q6_K, TQ1_0,\n"
    "TQ2_0) or a Hugging Face folder (config.json, model.safetensors[.index.json],\n"
    "tokenizer.json), including a packed student folder from bitlab export.\n"
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
    {"export", cmd_export},
    {"eval", cmd_eval},
    {"plan", cmd_plan},
    {"trace", cmd_trace},
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
