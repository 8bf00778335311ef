/* checkpoint.h - the whole training state in one file: every LoRA adapter
 * of the student (frozen ones too), dense ΔW / SubLN / post-attention norm
 * weights, λ and activation width, every AdamW state, the trainer's step
 * counters, and an opaque JSON text for what the script side owns (step,
 * knob values, RNG state, data position).
 *
 * Layout (little-endian host order, this build's float format):
 *   header  "BLCKPT\0\0" | u32 version | u32 0 | u64 payload bytes | u64 FNV-1a of payload
 *   payload model shape, student flags, trainer counters, per linear its
 *           adapters (r, α, A, B), dense, SubLN; post-norm; per parameter
 *           its AdamW (n, t, m, v); the JSON text.
 *
 * Saving is atomic: a temporary file in the same directory is written,
 * fsync'd and renamed over the target, then the directory is fsync'd, so a
 * crash or a failing script never leaves a torn checkpoint behind.
 *
 * Loading reads and verifies the whole file (magic, version, size, checksum,
 * model shape, student flags) before it touches the student; the student
 * must have no more adapters than the checkpoint (missing ones are added
 * with the recorded ranks, then every value is overwritten). */
#ifndef BITLAB_CHECKPOINT_H
#define BITLAB_CHECKPOINT_H

#include "core/error.h"
#include "train/step.h"
#include "train/student.h"

#define BL_CKPT_VERSION 1u

/* tr may be NULL (counters saved as 0); json may be NULL (saved empty). */
int bl_checkpoint_save(const char *path, const BlStudent *st, const BlTrainer *tr,
                       const char *json, BlError *err);

/* Restores st (and tr's counters when tr != NULL); *json (may be NULL)
 * receives the malloc'd JSON text. */
int bl_checkpoint_load(const char *path, BlStudent *st, BlTrainer *tr, char **json, BlError *err);

/* Reads only what building a matching student needs: its options (subln,
 * post_attn_norm, dense, λ, act_bits). The file is fully verified (magic,
 * version, size, checksum) first. */
int bl_checkpoint_peek(const char *path, BlStudentConfig *cfg, BlError *err);

/* A student of m rebuilt from a checkpoint: peek, bl_build_student with the
 * recorded options, then bl_checkpoint_load (adapters, λ, act_bits; *json
 * as there). On failure st is left freed. */
int bl_student_from_checkpoint(BlStudent *st, const BlModel *m, const char *path, char **json,
                               BlError *err);

#endif
