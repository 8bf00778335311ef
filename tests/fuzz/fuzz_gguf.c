/* fuzz_gguf.c - libFuzzer harness: the input is a GGUF file. Opens it with
 * the reader (io/gguf.c), reads every kv through the getters and
 * dequantizes every small tensor, then builds a model from it (weights,
 * tokenizer.ggml.*, chat template: model/load_gguf.c) and encodes a line
 * with its tokenizer. */
#include <stdlib.h>

#include "fuzz_common.h"
#include "io/gguf.h"
#include "io/quants.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

static void walk(const BlGguf *g) {
    BlError err;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const char *key = g->kv[i].key;
        uint64_t u;
        double f;
        BlGgufStr s;
        if (bl_gguf_find(g, key) == NULL) abort(); /* every key opened must be found */
        bl_gguf_get_u64(g, key, &u, &err);
        bl_gguf_get_f64(g, key, &f, &err);
        if (bl_gguf_get_str(g, key, &s, &err) == 0) free(bl_gguf_strdup(s, &err));
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const BlGgufTensor *t = &g->tensors[i];
        if (bl_gguf_tensor(g, t->name) == NULL) abort();
        if (t->n_elements > (1u << 16)) continue;
        float *dst = malloc(sizeof(float) * (t->n_elements ? t->n_elements : 1));
        if (dst) bl_dequantize(t->type, t->data, dst, t->n_elements, &err);
        free(dst);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[128];
    fz_write(fz_path(path, sizeof path, "model.gguf"), data, size);
    BlError err;
    BlGguf *g = NULL;
    if (bl_gguf_open(&g, path, &err) != 0) return fz_note("gguf", err.msg), 0;
    walk(g);
    bl_gguf_close(g);

    BlModel *m = NULL;
    if (bl_model_load(&m, path, &err) != 0) return fz_note("model", err.msg), 0;
    int *ids = NULL, n = 0;
    static const char line[] = "Hello, world! <|im_start|>user 123";
    if (bl_tokenizer_encode(m->tokenizer, line, sizeof line - 1, true, &ids, &n, &err) == 0) {
        char *text = NULL;
        if (bl_tokenizer_decode(m->tokenizer, ids, n, false, &text, &err) == 0) free(text);
        free(ids);
    } else {
        fz_note("encode", err.msg);
    }
    bl_model_free(m);
    return 0;
}
