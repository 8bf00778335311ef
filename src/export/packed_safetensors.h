/* packed_safetensors.h - exports a trained ternary student as a packed
 * ternary folder (the format: io/packed_format.h), which `bitlab generate
 * --model DIR` runs directly. */
#ifndef BITLAB_PACKED_SAFETENSORS_H
#define BITLAB_PACKED_SAFETENSORS_H

#include <stdbool.h>

#include "core/error.h"
#include "export/export_gguf.h"
#include "io/packed_format.h"
#include "train/student.h"

/* Whether the embedding and LM head are stored F16 for an --embed choice
 * (F32 only for BL_EMBED_F32). */
bool bl_packed_embed_f16(BlEmbedStorage embed);

/* Writes the folder out_dir (created when missing; files of the same names
 * are replaced atomically); embed: the storage of the token embedding and
 * LM head (above). */
int bl_export_packed_safetensors(BlStudent *st, const char *out_dir, BlEmbedStorage embed,
                                 BlError *err);

#endif
