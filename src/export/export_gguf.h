/* export_gguf.h - a trained student as a GGUF file that llama.cpp and bitlab
 * both run.
 *
 * Block linears hold the student's weights at λ = 1 (export/student_export.h):
 * ternary codes × one per-tensor scale, stored exactly up to the rounding of
 * the scale to fp16, in the smallest ggml type that holds them exactly for
 * the row length (in-features):
 *   multiple of 256  TQ2_0 (2.06 bits/weight; TQ1_0, 1.69 bits, on request)
 *   multiple of 32   Q4_0  (d = scale, nibble = code + 8; 4.5 bits/weight)
 *   otherwise        F16   (code × fp16(scale); ggml's other block types
 *                          also need 32-multiples)
 * Norms and biases are F32. The token embedding and the LM head are stored
 * by default as the source stored them: a GGUF source's bytes are copied
 * verbatim (its type, e.g. Q4_1 or Q8_0), so the export is bit-exact to the
 * student that was trained on those dequantised values without inflating
 * the file; a Hugging Face source's values are F32. F32 or F16 can be asked
 * for instead.
 *
 * Metadata: general.architecture (llama, qwen2, phi3) and the {arch}.* keys
 * llama.cpp reads (context_length, embedding_length, block_count,
 * feed_forward_length, attention.head_count(_kv), rope.freq_base,
 * rope.dimension_count, attention.layer_norm_rms_epsilon, vocab_size,
 * attention.key_length / value_length when head_dim != dim / heads), the
 * tokenizer (export/gguf_vocab.h), the other general.* keys of a GGUF source,
 * and bitlab.student = true, bitlab.act_bits (8, 4 or 16: the width the
 * block linears' inputs are quantised to per token), bitlab.version. Llama
 * models from Hugging Face folders get their q/k rows permuted for ggml's
 * interleaved RoPE, as convert_hf_to_gguf.py does (a row permutation
 * commutes with the per-tensor ternarisation). */
#ifndef BITLAB_EXPORT_GGUF_H
#define BITLAB_EXPORT_GGUF_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "train/student.h"

typedef enum {
    BL_EMBED_KEEP = 0, /* a GGUF source's own bytes; F32 for a Hugging Face source */
    BL_EMBED_F32,
    BL_EMBED_F16,
} BlEmbedStorage;

typedef struct {
    uint32_t ternary_type; /* BL_GGML_TQ2_0 (also when 0) or BL_GGML_TQ1_0 */
    BlEmbedStorage embed;  /* token embedding and LM head */
} BlGgufExportOptions;

/* One tensor of an export, for the report and the manifest. */
typedef struct {
    char name[64];
    uint32_t type;      /* ggml type */
    bool block_linear;  /* a BitLinear of the student (ternary values) */
} BlExportTensor;

typedef struct {
    BlExportTensor *tensors;
    int n_tensors;
    double max_scale_rel_err; /* max over block linears of |fp16(scale) − scale| / scale */
} BlExportSummary;

/* The storage type of a block linear with rows of `in` values. */
uint32_t bl_export_linear_type(int in, uint32_t ternary_type);

/* Writes st as GGUF to out (atomically). sum (may be NULL) receives the
 * tensors written; free it with bl_export_summary_free. */
int bl_export_gguf(BlStudent *st, const char *out, const BlGgufExportOptions *o,
                   BlExportSummary *sum, BlError *err);
void bl_export_summary_free(BlExportSummary *sum);

#endif
