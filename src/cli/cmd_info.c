/* cmd_info.c - `bitlab info`: what a model is and what it costs in memory;
 * for a GGUF file also each tensor's storage type, and whether it is a
 * ternary student exported by bitlab. */
#include <stdio.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "io/gguf.h"
#include "io/quants.h"
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

/* A ternary student exported by bitlab says so in its metadata. */
static void print_student(const BlModel *m, const BlGguf *g) {
    const BlGgufKV *kv = g ? bl_gguf_find(g, "bitlab.student") : NULL;
    if (!kv || kv->type != BL_GGUF_BOOL || !kv->v.u) return;
    BlGgufStr ver = {"?", 1};
    BlError err;
    if (bl_gguf_find(g, "bitlab.version")) bl_gguf_get_str(g, "bitlab.version", &ver, &err);
    printf("bitlab student ternary (BitNet b1.58) student exported by bitlab %.*s; ", (int)ver.len,
           ver.ptr);
    if (m->cfg.ternary_act_bits)
        printf("block linear inputs quantised to %d bits per token (absmax)\n", m->cfg.ternary_act_bits);
    else
        printf("full-precision activations\n");
}

/* Every tensor's storage type and shape (ggml order: row length first). */
static void print_tensors(const BlGguf *g) {
    printf("tensors (%llu, storage type, ggml shape):\n", (unsigned long long)g->n_tensors);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const BlGgufTensor *t = &g->tensors[i];
        const char *type = bl_ggml_type_name(t->type);
        char shape[96];
        int at = snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->n_dims && at < (int)sizeof shape; d++)
            at += snprintf(shape + at, sizeof shape - (size_t)at, "%s%llu", d ? ", " : "",
                           (unsigned long long)t->ne[d]);
        printf("    %-32s %-6s %s]\n", t->name, type ? type : "?", shape);
    }
}

static const CliOpt OPTS[] = {CLI_STR_REQ("model"), CLI_END};

const CliSpec cli_info_spec = {
    .name = "info",
    .synopsis = "bitlab info --model PATH",
    .summary = "architecture, sizes, parameter count and memory of a model; for a GGUF also\n"
               "each tensor's storage type and whether it is a bitlab ternary student",
    .opts = OPTS,
};

int cmd_info(int argc, char **argv) {
    CliArgs args;
    int prc = cli_parse(&args, &cli_info_spec, argc, argv);
    if (prc >= 0) return prc;
    const CliArgs *a = &args;
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
    /* a GGUF file: its storage, read again without dequantising */
    struct stat sb;
    BlGguf *g = NULL;
    BlError err = {{0}};
    if (stat(m->path, &sb) == 0 && S_ISREG(sb.st_mode) && bl_gguf_open(&g, m->path, &err) != 0) {
        fprintf(stderr, "bitlab: %s\n", err.msg);
        bl_model_free(m);
        return 1;
    }
    print_student(m, g);
    printf("block linears (layer 0, the student's BitLinears):\n");
    print_linear_shapes(&m->layers[0]);
    if (g) print_tensors(g);
    bl_gguf_close(g);
    bl_model_free(m);
    return 0;
}
