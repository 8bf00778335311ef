/* packed_format.h - the packed ternary folder format: a Hugging Face
 * style folder whose block linears are stored as packed 2-bit ternary codes,
 * written by export/packed_safetensors.c and run directly by `bitlab generate
 * --model DIR` (src/model/load_packed.c). The format is defined here, below both.
 *
 * Format, version 1:
 *   config.json        the architecture as transformers writes it (Llama,
 *                      Qwen2 or Phi-3 fields) plus
 *                      "quantization_config": {"quant_method": "bitlab_ternary",
 *                      "format_version": 1, "bits": 2, "packing":
 *                      "ternary_2bit_lsb_rows", "weight_scale": "per_tensor",
 *                      "act_bits": 8|4|16, "act_quant": "per_token_absmax",
 *                      "student_lambda": λ at export}.
 *   model.safetensors  every block linear `NAME` (HF names,
 *                      model.layers.N.self_attn.q_proj.weight, ...) is a U8
 *                      tensor [out, ceil(in/4)]: element j of row r has the
 *                      2-bit code (byte[r][j/4] >> 2·(j%4)) & 3, i.e. four
 *                      codes per byte, least significant bits first; code c
 *                      stands for the ternary value c − 1 (0 → −1, 1 → 0,
 *                      2 → +1; code 3 is invalid). A row is padded to a
 *                      multiple of 4 elements with code 1 (zero).
 *                      `NAME.scale` is an F32 scalar (shape []):
 *                      W[r][j] = (code − 1) · scale, which is exactly the
 *                      student's Weff at λ = 1 (scale = 1/s of absmean wq).
 *                      The token embedding (model.embed_tokens.weight) and
 *                      the untied LM head (lm_head.weight) are F16 by
 *                      default: the student's fp32 values rounded to nearest
 *                      (ties to even); `--embed f32` / embed = "f32" stores
 *                      them F32, bit-exact ("keep" means F16 here:
 *                      safetensors has no ggml block types such as Q4_1).
 *                      Norm weights and biases are F32, bit-exact (tiny, and
 *                      the student trained them in fp32). The data holds the
 *                      F32 tensors first, then F16, then the U8 codes, so
 *                      each is aligned to its element size; its bytes are
 *                      what `bitlab eval` counts as the student's weight
 *                      bytes. "__metadata__" holds "format": "pt"
 *                      and "bitlab_packing": a JSON text {"format_version": 1,
 *                      "codes": [-1, 0, 1], "bit_order": "lsb_first",
 *                      "row_padding": 4, "tensors": {NAME: [out, in], ...}}.
 *                      Llama GGUF sources store q/k rows permuted for
 *                      interleaved RoPE; they are written in HF order.
 *   tokenizer.json, tokenizer_config.json, generation_config.json
 *                      copied from a Hugging Face source folder; written from
 *                      the loaded tokenizer for a GGUF source.
 *
 * The packed model is the student at λ = 1 with its activation width; the
 * forward of a loaded folder quantises every block linear's input per token
 * (BlConfig.ternary_act_bits). Students with SubLN or a post-attention norm
 * are refused: the format has no place for those weights. */
#ifndef BITLAB_PACKED_FORMAT_H
#define BITLAB_PACKED_FORMAT_H

#define BL_PACKED_QUANT_METHOD "bitlab_ternary"
#define BL_PACKED_FORMAT_VERSION 1
#define BL_PACKED_PACKING "ternary_2bit_lsb_rows"
#define BL_PACKED_METADATA_KEY "bitlab_packing"
#define BL_PACKED_SCALE_SUFFIX ".scale"

#endif
