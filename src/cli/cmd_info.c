/* cmd_info.c - `bitlab info`: what a model is and what it costs in memory. */
#include <stdio.h>

#include "cli/cli.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

static void print_linear_shapes(const BlLayer *l) {
    for (int k = 0; k < BL_LIN_KINDS; k++) {
        const BlLinear *lin = &l->lin[k];
        if (!lin->w) continue;
        printf("    %-8s [%d, %d]%s\n", bl_linear_kind_name((BlLinearKind)k), lin->out, lin->in,
               lin->b ? " + bias" : "");
    }
}

/* the family `generate --chat` will use, or why it cannot */
static void print_template(const BlModel *m) {
    if (!m->chat_template) {
        printf("chat template  none in the metadata (generate --chat needs --template NAME)\n");
        return;
    }
    BlChatTemplate tpl;
    BlError err = {{0}};
    if (bl_chat_template_detect(&tpl, m->chat_template, bl_tokenizer_bos_text(m->tokenizer),
                                bl_tokenizer_eos_text(m->tokenizer), &err) != 0) {
        printf("chat template  not recognised (%s)\n", err.msg);
        return;
    }
    printf("chat template  %s%s%s%s\n", bl_template_kind_name(tpl.kind),
           tpl.default_system ? ", default system prompt \"" : "",
           tpl.default_system ? tpl.default_system : "", tpl.default_system ? "\"" : "");
    bl_chat_template_free(&tpl);
}

int cmd_info(const CliArgs *a) {
    static const char *const known[] = {"--model", NULL};
    if (cli_check_known(a, known) != 0) return 2;
    BlModel *m = cli_load_model(a);
    if (!m) return 1;
    const BlConfig *c = &m->cfg;
    long long params = bl_config_param_count(c);
    size_t bytes = bl_model_weight_bytes(m);
    printf("model          %s\n", m->name ? m->name : "?");
    printf("path           %s\n", m->path);
    printf("architecture   %s\n", bl_arch_name(c->arch));
    printf("layers         %d\n", c->n_layers);
    printf("hidden         %d (head_dim %d, heads %d, kv heads %d)\n", c->dim, c->head_dim,
           c->n_heads, c->n_kv_heads);
    printf("intermediate   %d\n", c->hidden_dim);
    printf("vocab          %d\n", c->vocab_size);
    printf("context        %d\n", c->max_seq_len);
    printf("rope           theta %.1f, %s pairs\n", c->rope_theta,
           c->rope_interleaved ? "interleaved (2i,2i+1)" : "rotate-half (i,i+d/2)");
    printf("rms_norm_eps   %g\n", c->norm_eps);
    printf("embeddings     %s\n", c->tied_embeddings ? "tied with the LM head" : "separate LM head");
    printf("parameters     %lld (%.1f M)\n", params, params / 1e6);
    printf("weights (fp32) %.1f MiB in memory\n", bytes / (1024.0 * 1024.0));
    printf("tokenizer      %d tokens, bos %d, eos %d\n", bl_tokenizer_vocab_size(m->tokenizer),
           bl_tokenizer_bos_id(m->tokenizer), bl_tokenizer_eos_id(m->tokenizer));
    print_template(m);
    printf("block linears (layer 0, the student's BitLinears):\n");
    print_linear_shapes(&m->layers[0]);
    bl_model_free(m);
    return 0;
}
