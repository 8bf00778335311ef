/* test_model_config.c - architecture names and parameter counting.
 * The SmolLM2-135M count is the published 134,515,008; Qwen2-0.5B's is
 * 494,032,768 (tied, q/k/v biases); Phi-3-mini's 3,821,079,552. */
#include <stdio.h>
#include <string.h>

#include "model/config.h"
#include "model/model.h"

static int failures;

static void check(int ok, const char *what) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failures++;
}

static void test_names(void) {
    static const struct { const char *name; BlArch arch; } cases[] = {
        {"llama", BL_ARCH_LLAMA}, {"mistral", BL_ARCH_LLAMA},
        {"qwen2", BL_ARCH_QWEN2}, {"phi3", BL_ARCH_PHI3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        BlArch a = BL_ARCH_PHI3 + 1;
        check(bl_arch_from_name(cases[i].name, &a) == 0 && a == cases[i].arch, cases[i].name);
    }
    BlArch a;
    check(bl_arch_from_name("gpt2", &a) == -1, "gpt2 is unknown");
    check(bl_arch_from_name(NULL, &a) == -1, "NULL is unknown");
    check(strcmp(bl_arch_name(BL_ARCH_QWEN2), "qwen2") == 0, "qwen2 name");
    check(strcmp(bl_arch_name(BL_ARCH_PHI3), "phi3") == 0, "phi3 name");
    check(strcmp(bl_linear_kind_name(BL_LIN_GATE_UP), "gate_up") == 0, "gate_up kind name");
    check(strcmp(bl_linear_kind_name(BL_LIN_KINDS), "unknown") == 0, "out-of-range kind name");
}

static void test_param_counts(void) {
    BlConfig smol = {.arch = BL_ARCH_LLAMA, .dim = 576, .n_layers = 30, .n_heads = 9,
                     .n_kv_heads = 3, .head_dim = 64, .hidden_dim = 1536, .vocab_size = 49152,
                     .tied_embeddings = true};
    check(bl_config_param_count(&smol) == 134515008LL, "SmolLM2-135M param count");
    BlConfig qwen = {.arch = BL_ARCH_QWEN2, .dim = 896, .n_layers = 24, .n_heads = 14,
                     .n_kv_heads = 2, .head_dim = 64, .hidden_dim = 4864, .vocab_size = 151936,
                     .tied_embeddings = true, .qkv_bias = true};
    check(bl_config_param_count(&qwen) == 494032768LL, "Qwen2-0.5B param count");
    BlConfig phi = {.arch = BL_ARCH_PHI3, .dim = 3072, .n_layers = 32, .n_heads = 32,
                    .n_kv_heads = 32, .head_dim = 96, .hidden_dim = 8192, .vocab_size = 32064,
                    .fused_qkv = true, .fused_gate_up = true};
    check(bl_config_param_count(&phi) == 3821079552LL, "Phi-3-mini param count");
}

int main(void) {
    test_names();
    test_param_counts();
    printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
