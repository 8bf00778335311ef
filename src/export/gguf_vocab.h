/* gguf_vocab.h - the tokenizer metadata of an exported GGUF (tokenizer.ggml.*
 * and tokenizer.chat_template, the keys llama.cpp reads).
 *
 * A GGUF source's keys are copied verbatim. For a Hugging Face source they
 * are built from the loaded tokenizer, as llama.cpp's convert_hf_to_gguf.py
 * does for byte-level BPE: model "gpt2", tokens by id (ids nobody defines,
 * up to the model's vocab size, become "[PAD<id>]" of type UNUSED),
 * token_type (NORMAL, CONTROL for special added tokens, USER_DEFINED for the
 * other added tokens), merges in rank order, the pre-tokenizer's llama.cpp
 * name (read from tokenizer.json: gpt2, smollm, llama-bpe, qwen2), bos / eos
 * / padding ids and add_bos / add_eos. SentencePiece-style tokenizers from
 * HF folders are refused with a message saying how to convert them. */
#ifndef BITLAB_GGUF_VOCAB_H
#define BITLAB_GGUF_VOCAB_H

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_write.h"
#include "model/model.h"

/* Copies every tokenizer.* key of src (an open GGUF) into w. */
int bl_gguf_vocab_copy(BlGgufWriter *w, const BlGguf *src, BlError *err);

/* Builds the keys from m, loaded from the Hugging Face folder m->path. */
int bl_gguf_vocab_from_hf(BlGgufWriter *w, const BlModel *m, BlError *err);

#endif
