/* student_export.h - what every exporter takes from a trained student: each
 * block linear's weight at λ = 1, wq(W + ΔW), as ternary codes {−1, 0, 1}
 * and one per-tensor scale, so Weff = codes · scale exactly (the student's
 * forward computes ternary(w·s)/s with scale = 1/s; the codes are what
 * ops/quant.h's bl_wq_int8 returns for W + ΔW merged from the LoRA stack).
 *
 * Exporters write the student at λ = 1 whatever λ it trained at last (the
 * manifest records that λ, and whether the export is "compression ready"). */
#ifndef BITLAB_STUDENT_EXPORT_H
#define BITLAB_STUDENT_EXPORT_H

#include <stdint.h>

#include "core/error.h"
#include "train/student.h"

/* Fails (naming the option) for a student whose forward has weights the
 * plain Llama / Qwen2 / Phi-3 architectures lack: SubLN inside the
 * BitLinears, or the RMSNorm after attention. `format` names the target in
 * the message ("GGUF"). */
int bl_student_export_check(const BlStudent *st, const char *format, BlError *err);

/* Layer l's linear `kind` at λ = 1: codes[out·in] (row-major [out, in], the
 * model's row order) and *scale = 1/s. scratch holds out·in floats. */
void bl_student_ternary(BlStudent *st, int l, BlLinearKind kind, int8_t *codes, float *scale,
                        float *scratch);

/* The largest out·in of the model's block linears (the scratch size). */
size_t bl_student_max_linear(const BlStudent *st);

#endif
