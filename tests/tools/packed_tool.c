/* packed_tool.c - drives the packed ternary export and its loader for
 * tests/py/test_export_packed.py.
 *
 *   packed_tool export MODEL CKPT OUTDIR [f16|f32]
 *       The student of CKPT (bitlab checkpoint) on MODEL, written as a packed
 *       safetensors folder (embedding and LM head F16 unless f32 is given).
 *   packed_tool weff MODEL CKPT LAMBDA OUT
 *       Every block linear's Weff at LAMBDA (0 gives W + ΔW), layer by layer
 *       in model.h kind order, in the model's own row order, as raw float32.
 *   packed_tool logits MODEL CKPT IDS OUT
 *       Logits float32 [n, vocab] of the int32 ids in IDS: the student of
 *       CKPT (training forward), or with CKPT "-" the model's own forward
 *       (a packed folder quantises activations there).
 *   packed_tool config MODEL
 *       Prints {"ternary_act_bits", "rope_interleaved", "n_stop_tokens"} as JSON.
 *   packed_tool tokjson GGUF OUTDIR
 *       The GGUF's tokenizer (and chat template) written as tokenizer.json +
 *       tokenizer_config.json (the GGUF needs no tensors).
 * Prints "error: ..." and exits 1 on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/packed_safetensors.h"
#include "io/gguf.h"
#include "model/model.h"
#include "nn/forward.h"
#include "train/checkpoint.h"
#include "tokenizer/tokenizer.h"
#include "bitlinear.h"
#include "train_forward.h"

static int write_raw(const char *path, const void *p, size_t n, BlError *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return bl_fail(err, "cannot create %s", path);
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : bl_fail(err, "writing %s failed", path);
}

static int *read_ids(const char *path, int *n, BlError *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return bl_fail(err, "cannot open %s", path), NULL;
    fseek(f, 0, SEEK_END);
    *n = (int)(ftell(f) / (long)sizeof(int));
    fseek(f, 0, SEEK_SET);
    int *ids = *n > 0 ? bl_malloc((size_t)*n * sizeof(int), err) : NULL;
    if (!ids && *n <= 0) bl_fail(err, "%s: no token ids", path);
    if (ids && fread(ids, sizeof(int), (size_t)*n, f) != (size_t)*n) {
        bl_fail(err, "%s: read error", path);
        free(ids);
        ids = NULL;
    }
    fclose(f);
    return ids;
}

static int run_weff(BlStudent *st, float lambda, const char *out, BlError *err) {
    const BlModel *m = st->model;
    size_t total = 0, widest = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            size_t n = (size_t)m->layers[l].lin[k].out * m->layers[l].lin[k].in;
            if (!m->layers[l].lin[k].w) continue;
            total += n;
            widest = n > widest ? n : widest;
        }
    float *all = bl_malloc(total * sizeof(float), err);
    if (!all) return -1;
    size_t at = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!m->layers[l].lin[k].w) continue;
            BlBitLinear L = bl_student_bitlinear(st, l, (BlLinearKind)k);
            L.lambda = lambda;
            bl_bitlinear_weff(all + at, &L);
            at += (size_t)L.out * L.in;
        }
    int rc = write_raw(out, all, total * sizeof(float), err);
    free(all);
    return rc;
}

static int run_logits(BlModel *m, BlStudent *st, const char *ids_path, const char *out,
                      BlError *err) {
    int n = 0;
    int *ids = read_ids(ids_path, &n, err);
    if (!ids) return -1;
    size_t V = (size_t)m->cfg.vocab_size;
    float *logits = bl_malloc((size_t)n * V * sizeof(float), err);
    int rc = logits ? 0 : -1;
    if (rc == 0 && st) {
        BlTrainState ts;
        rc = bl_build_train_state(&ts, st, 1, n, err);
        if (rc == 0 && (rc = bl_train_forward(&ts, st, ids, &n, 1, n, err)) == 0)
            bl_train_logits(&ts, 0, n, logits);
        bl_free_train_state(&ts);
    } else if (rc == 0) {
        BlForwardState fs;
        rc = bl_build_forward_state(&fs, m, bl_backend_cpu(), 1, n, false, err);
        if (rc == 0) {
            rc = bl_forward(&fs, ids, &n, NULL, 1, n, logits, NULL, err);
            bl_free_forward_state(&fs);
        }
    }
    if (rc == 0) rc = write_raw(out, logits, (size_t)n * V * sizeof(float), err);
    free(ids);
    free(logits);
    return rc;
}

static int run_tokjson(const char *gguf, const char *dir, BlError *err) {
    BlGguf *g = NULL;
    BlTokenizer *t = NULL;
    char *tmpl = NULL;
    int rc = bl_gguf_open(&g, gguf, err);
    if (rc == 0) rc = bl_tokenizer_from_gguf(&t, g, err);
    if (rc == 0 && bl_gguf_find(g, "tokenizer.chat_template")) {
        BlGgufStr s;
        rc = bl_gguf_get_str(g, "tokenizer.chat_template", &s, err);
        if (rc == 0 && !(tmpl = strndup(s.ptr, s.len))) rc = bl_fail(err, "out of memory");
    }
    if (rc == 0) rc = bl_tokenizer_save_json(t, tmpl, dir, err);
    free(tmpl);
    bl_tokenizer_free(t);
    bl_gguf_close(g);
    return rc;
}

static int usage(void) {
    fprintf(stderr, "usage: packed_tool export MODEL CKPT OUTDIR [f16|f32] | weff MODEL CKPT LAMBDA OUT |\n"
                    "       logits MODEL CKPT|- IDS OUT | config MODEL | tokjson GGUF OUTDIR\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 3) return usage();
    const char *cmd = argv[1];
    BlError err = {{0}};
    if (!strcmp(cmd, "tokjson")) {
        if (argc != 4) return usage();
        if (run_tokjson(argv[2], argv[3], &err) == 0) return 0;
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    int want = !strcmp(cmd, "export") ? 5 : !strcmp(cmd, "weff") ? 6 : !strcmp(cmd, "logits") ? 6
               : !strcmp(cmd, "config") ? 3 : 0;
    bool export_embed = !strcmp(cmd, "export") && argc == 6; /* the optional f16|f32 */
    if (!want || (argc != want && !export_embed)) return usage();
    BlEmbedStorage embed = BL_EMBED_F16;
    if (export_embed && !strcmp(argv[5], "f32")) embed = BL_EMBED_F32;
    else if (export_embed && strcmp(argv[5], "f16") != 0) return usage();
    BlModel *m = NULL;
    BlStudent st;
    bool have_st = false;
    int rc = bl_model_load(&m, argv[2], &err);
    if (rc == 0 && want > 3 && strcmp(argv[3], "-") != 0) {
        rc = bl_student_from_checkpoint(&st, m, argv[3], NULL, &err);
        have_st = rc == 0;
    }
    if (rc == 0 && !strcmp(cmd, "config")) {
        printf("{\"ternary_act_bits\": %d, \"rope_interleaved\": %s, \"n_stop_tokens\": %d}\n",
               m->cfg.ternary_act_bits, m->cfg.rope_interleaved ? "true" : "false",
               m->n_stop_tokens);
    } else if (rc == 0 && (!strcmp(cmd, "export") || !strcmp(cmd, "weff")) && !have_st) {
        rc = bl_fail(&err, "%s needs a checkpoint", cmd);
    } else if (rc == 0 && !strcmp(cmd, "export")) {
        rc = bl_export_packed_safetensors(&st, argv[4], embed, &err);
    } else if (rc == 0 && !strcmp(cmd, "weff")) {
        rc = run_weff(&st, (float)atof(argv[4]), argv[5], &err);
    } else if (rc == 0) {
        rc = run_logits(m, have_st ? &st : NULL, argv[4], argv[5], &err);
    }
    if (have_st) bl_free_student(&st);
    bl_model_free(m);
    if (rc == 0) return 0;
    fprintf(stderr, "error: %s\n", err.msg);
    return 1;
}
