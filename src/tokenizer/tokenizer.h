/* tokenizer.h - byte-level BPE (GPT-2 / SmolLM / Llama-3 / Qwen2) and
 * SentencePiece-style BPE with byte fallback (Llama-2 / TinyLlama / Phi-3),
 * loaded from tokenizer.json or from GGUF tokenizer.ggml.* metadata, with
 * exact parity against Hugging Face `tokenizers`. */
#ifndef BITLAB_TOKENIZER_H
#define BITLAB_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

struct BlGguf;
typedef struct BlTokenizer BlTokenizer;

/* tokenizer_config_path may be NULL; when given, it supplies add_bos_token /
 * add_eos_token and the bos/eos token strings. */
int bl_tokenizer_from_json(BlTokenizer **out, const char *tokenizer_json_path,
                           const char *tokenizer_config_path, BlError *err);
int bl_tokenizer_from_gguf(BlTokenizer **out, const struct BlGguf *g, BlError *err);
void bl_tokenizer_free(BlTokenizer *t);

/* Encodes len bytes of UTF-8 text; special/added tokens in the text are
 * recognised as in HF. add_special adds BOS (and EOS) as the tokenizer's
 * post-processor would. *ids is malloc'd; the caller frees it. */
int bl_tokenizer_encode(const BlTokenizer *t, const char *text, size_t len, bool add_special,
                        int **ids, int *n_ids, BlError *err);
/* Decodes ids to malloc'd UTF-8 (NUL-terminated). skip_special drops special tokens. */
int bl_tokenizer_decode(const BlTokenizer *t, const int *ids, int n_ids, bool skip_special,
                        char **text, BlError *err);

int bl_tokenizer_vocab_size(const BlTokenizer *t);
/* id of an exact token string (special tokens included), or -1 */
int bl_tokenizer_token_id(const BlTokenizer *t, const char *piece);
/* -1 when the tokenizer has none */
int bl_tokenizer_bos_id(const BlTokenizer *t);
int bl_tokenizer_eos_id(const BlTokenizer *t);
/* the bos token's text ("<s>", "<|begin_of_text|>") or NULL; templates need it */
const char *bl_tokenizer_bos_text(const BlTokenizer *t);
const char *bl_tokenizer_eos_text(const BlTokenizer *t);

/* Writes DIR/tokenizer.json (Hugging Face schema: BPE vocab and merges, the
 * normalizer / pre-tokenizer / decoder / post-processor steps, added tokens
 * with their flags) and DIR/tokenizer_config.json (bos/eos/unk tokens,
 * add_bos_token / add_eos_token, chat_template when not NULL), which both
 * bl_tokenizer_from_json and HF `tokenizers` read back to the same
 * encodings. DIR must exist; each file is replaced atomically. */
int bl_tokenizer_save_json(const BlTokenizer *t, const char *chat_template, const char *dir,
                           BlError *err);

#endif
