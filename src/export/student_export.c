/* student_export.c - ternary codes and scale of each block linear at λ = 1
 * (see student_export.h). */
#include "export/student_export.h"

#include <string.h>

#include "train/lora.h"
#include "ops/quant.h"

int bl_student_export_check(const BlStudent *st, const char *format, BlError *err) {
    if (st->cfg.subln)
        return bl_fail(err, "this student uses SubLN (an RMSNorm inside every BitLinear); %s's "
                            "llama/qwen2/phi3 architectures have no such norm, so the exported "
                            "model would compute something else: export refused", format);
    if (st->cfg.post_attn_norm)
        return bl_fail(err, "this student uses an RMSNorm after attention (post_attn_norm); %s's "
                            "llama/qwen2/phi3 architectures have no such norm, so the exported "
                            "model would compute something else: export refused", format);
    return 0;
}

void bl_student_ternary(BlStudent *st, int l, BlLinearKind kind, int8_t *codes, float *scale,
                        float *scratch) {
    const BlLinear *w = &st->model->layers[l].lin[kind];
    const BlLoraStack *ls = &bl_student_linear(st, l, kind)->lora;
    size_t n = (size_t)w->out * w->in;
    /* W + ΔW merged on the host, then wq's integer form: the same scale and
     * rounding as bl_weff at λ = 1 (ternary(w·s)/s), so codes·(1/s) is the
     * student's Weff */
    if (ls->n > 0 || ls->dense) bl_lora_merge(scratch, w->w, ls);
    else memcpy(scratch, w->w, n * sizeof(float));
    float s = bl_wq_int8(codes, scratch, n);
    *scale = 1.0f / s;
}

size_t bl_student_max_linear(const BlStudent *st) {
    size_t m = 0;
    const BlModel *md = st->model;
    for (int l = 0; l < md->cfg.n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlLinear *w = &md->layers[l].lin[k];
            if (w->w && (size_t)w->out * w->in > m) m = (size_t)w->out * w->in;
        }
    return m;
}
