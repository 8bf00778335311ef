/* fuzz_tokenizer.c - libFuzzer harness: a Hugging Face tokenizer. The input
 * is three parts behind u32 LE length prefixes (fuzz_common.h: fz_split):
 * tokenizer.json, tokenizer_config.json (absent when empty), and the rest a
 * text. Loads the tokenizer (tokenizer/load_json.c), encodes the text with
 * and without the special tokens, decodes the ids back, and saves the
 * tokenizer as JSON and loads that again. */
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

static void encode_decode(const BlTokenizer *t, const FzPart *text, bool special) {
    BlError err;
    int *ids = NULL, n = 0;
    if (bl_tokenizer_encode(t, (const char *)text->p, text->n, special, &ids, &n, &err) != 0)
        return fz_note("encode", err.msg);
    int V = bl_tokenizer_vocab_size(t);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) abort(); /* an encoding names only its own tokens */
    char *s = NULL;
    if (bl_tokenizer_decode(t, ids, n, !special, &s, &err) == 0) free(s);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FzPart part[3];
    fz_split(data, size, part, 3);
    char tok[128], tc[128], out[128];
    fz_path(tok, sizeof tok, "tokenizer.json");
    fz_path(tc, sizeof tc, "tokenizer_config.json");
    fz_path(out, sizeof out, "saved");
    fz_write(tok, part[0].p, part[0].n);
    if (part[1].n) fz_write(tc, part[1].p, part[1].n);

    BlError err;
    BlTokenizer *t = NULL;
    if (bl_tokenizer_from_json(&t, tok, part[1].n ? tc : NULL, &err) == 0) {
        encode_decode(t, &part[2], true);
        encode_decode(t, &part[2], false);
        bl_tokenizer_bos_text(t);
        bl_tokenizer_eos_text(t);
        /* what bitlab writes, it reads back */
        mkdir(out, 0700);
        if (bl_tokenizer_save_json(t, NULL, out, &err) == 0) {
            char tok2[160], tc2[160];
            snprintf(tok2, sizeof tok2, "%s/tokenizer.json", out);
            snprintf(tc2, sizeof tc2, "%s/tokenizer_config.json", out);
            BlTokenizer *t2 = NULL;
            if (bl_tokenizer_from_json(&t2, tok2, tc2, &err) != 0) {
                fprintf(stderr, "fuzz: a saved tokenizer does not load: %s\n", err.msg);
                abort();
            }
            if (bl_tokenizer_vocab_size(t2) != bl_tokenizer_vocab_size(t)) abort();
            bl_tokenizer_free(t2);
        }
        bl_tokenizer_free(t);
    } else {
        fz_note("tokenizer", err.msg);
    }
    if (part[1].n) unlink(tc);
    return 0;
}
