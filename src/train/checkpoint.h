/* checkpoint.h - the whole training state in one file: every LoRA adapter
 * of the student (frozen ones too), dense ΔW / SubLN / post-attention norm
 * weights, λ, activation width and lambda_acts, every AdamW state, the trainer's step
 * counters, and an opaque JSON text for what the script side owns (step,
 * knob values, RNG state, data position).
 *
 * Layout (little-endian host order, this build's float format):
 *   header  "BLCKPT\0\0" | u32 version | u32 0 (reserved, checked) | u64 payload bytes
 *           | u64 FNV-1a of payload
 *   payload model shape (layers, dim, vocab); since version 2 the q/k row
 *           layout (0 rotate-half as in Hugging Face folders, 1 interleaved
 *           as in llama.cpp's llama GGUFs) and the BLAS that produced the run
 *           (thread count, core name length + name); student flags, trainer
 *           counters, the adapter table (count, then per adapter r, α and,
 *           since version 3, the dtype of its A and B: 0 fp32, 1 bf16); per
 *           linear its adapters (A, B), dense, SubLN; post-norm; per
 *           parameter its AdamW (n, t, m, v); the JSON text.
 *
 * Every value is fp32 but, when the writer was asked for it, the frozen
 * adapters (all but the newest, trainable one): bf16, the upper half of the
 * fp32 bits rounded to nearest even (NaN stays NaN), 2 bytes a value. That
 * halves the part of a LoRA run's checkpoint that grows with each rotation;
 * bf16 widens to fp32 exactly on load, but the values were rounded, so a run
 * resumed from such a file is not bit for bit the uninterrupted one. Only a
 * file with a bf16 adapter is written as version 3; an all-fp32 file is
 * version 2, byte for byte what earlier bitlab wrote, so readers of version 2
 * keep reading default checkpoints.
 *
 * A checkpoint loaded on a model of the other q/k layout (trained on a HF
 * folder, resumed on its GGUF, or the reverse) is converted: the output rows
 * of ΔW on q and k (every adapter's B, the dense ΔW) and of their AdamW
 * moments are permuted, which gives the same student (the quantisers'
 * scales do not depend on row order). Version 1 files carry no layout and
 * are taken to match the model, as before.
 *
 * Saving is atomic: a temporary file in the same directory is written,
 * fsync'd and renamed over the target, then the directory is fsync'd, so a
 * crash or a failing script never leaves a torn checkpoint behind. Temporary
 * files "<path>.tmp.PID" of a writer that was killed (PID not alive) are
 * removed by the next save to the same path.
 *
 * Loading reads and verifies the whole file (magic, version, size, checksum,
 * model shape, student flags) before it touches the student; the student
 * must have no more adapters than the checkpoint (missing ones are added
 * with the recorded ranks, then every value is overwritten). */
#ifndef BITLAB_CHECKPOINT_H
#define BITLAB_CHECKPOINT_H

#include "core/error.h"
#include "train/trainer.h"
#include "train/student.h"

#define BL_CKPT_VERSION 3u
#define BL_CKPT_CORE_LEN 64

/* How a checkpoint stores an adapter's A and B (the code in the file). */
typedef enum { BL_CKPT_F32 = 0, BL_CKPT_BF16 = 1 } BlCkptDtype;

/* How bl_checkpoint_save_opts stores the state; zero-initialised (or a NULL
 * pointer) is everything in fp32, so that a resume is bit for bit. */
typedef struct {
    BlCkptDtype frozen_adapters; /* BL_CKPT_BF16: smaller, resumes not bit for bit */
} BlCheckpointOptions;

/* What the header of a checkpoint records (bl_checkpoint_info). */
typedef struct {
    uint32_t version;
    int64_t n_layers, dim, vocab;
    int qk_interleaved;            /* 1 llama.cpp GGUF order, 0 rotate-half, -1 unknown (v1) */
    int64_t blas_threads;          /* 0 when unknown (v1) */
    char blas_core[BL_CKPT_CORE_LEN]; /* openblas_get_corename() of the run, "unknown" for v1 */
    BlStudentConfig student;
    int64_t steps, skipped;
    BlCkptDtype frozen_adapters;   /* BL_CKPT_BF16 when any adapter is stored in bf16 */
} BlCheckpointInfo;

/* The BLAS of this process: OpenBLAS's core name (the kernels it chose, or
 * OPENBLAS_CORETYPE's) and its thread count. Step results are deterministic
 * for one setting and differ (in the last bits) between settings. */
void bl_blas_info(char core[BL_CKPT_CORE_LEN], int *threads);
/* "interleaved (llama.cpp GGUF ...)" / "rotate-half (Hugging Face)". */
const char *bl_qk_layout_name(int interleaved);

/* The header fields (the whole file is verified first). */
int bl_checkpoint_info(const char *path, BlCheckpointInfo *info, BlError *err);

/* tr (the trainer of st) may be NULL (counters saved as 0); with it, its
 * backend's tensors and moments are downloaded into st first. json may be
 * NULL (saved empty). The file is the same for every backend. */
int bl_checkpoint_save(const char *path, BlStudent *st, BlTrainer *tr, const char *json,
                       BlError *err);
/* The same with options (opt may be NULL: all fp32, as bl_checkpoint_save). */
int bl_checkpoint_save_opts(const char *path, BlStudent *st, BlTrainer *tr, const char *json,
                            const BlCheckpointOptions *opt, BlError *err);

/* What a checkpoint of st (with script state json, may be NULL; saved with
 * opt, may be NULL) holds, in bytes of the file: the frozen adapters (2 bytes
 * a value when stored in bf16), the newest (trainable) adapter,
 * dense ΔW, SubLN / post-attention norm weights, the AdamW moments (two
 * floats per trainable value), the script's JSON state, and the rest
 * (header, shapes, counters): total (the file's size, as written) less the
 * parts, so nothing is serialised twice. */
typedef struct {
    size_t adapters_frozen, adapters_trainable, dense, norms, optimizer, state, other, total;
} BlCheckpointSizes;
void bl_checkpoint_sizes(const BlStudent *st, const char *json, const BlCheckpointOptions *opt,
                         size_t total, BlCheckpointSizes *out);

/* Restores st (and, with tr its trainer, the counters and the backend's copy
 * of the student); *json (may be NULL) receives the malloc'd JSON text. */
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
