/* test_student_eval_device.c - the evaluation module (eval/student_eval.h)
 * on the CUDA backend against the CPU backend: whole-sequence logits and
 * next-token NLL of the teacher and of the student, and greedy answers of
 * both, on hand-built random models of each arch, with and without SubLN /
 * post-attention norm, λ ∈ {0.5, 1}, 8- and 4-bit activations and a LoRA
 * adapter with nonzero B, with every Weff cached and with Weff formed per
 * call (at λ = 1: the integer fast path).
 *
 * The model's matrices are rounded to bf16 first, and the reference is the
 * CPU backend with the CUDA backend's operand formats (cpu-bf16: the frozen
 * weights bf16 at weights_upload, matmul on bf16-rounded operands, as
 * test_device_step.c's), so both sides round the same operands; what is
 * left is float32 summation order and, rarely, an operand on the
 * neighbouring bf16 (tests/cuda_emu/README.md, "Findings"), which the
 * activation quantiser can turn into a whole quantisation step of one
 * element. Bounds, relative to the largest |logit| of the sequence:
 *   logits     max |Δ| ≤ 2⁻⁵ · max |logit|
 *   mean NLL   relative 2⁻⁶
 *   greedy ids identical, except from a step where the reference's top-1
 *              and the device's token are within 2⁻⁵ · max |logit| (a near
 *              tie): the rest then continues another sequence and is not
 *              compared.
 * --ref-cpu compares against the plain fp32 CPU backend instead, 8-bit
 * students only, bounds 2⁻⁴ and 2⁻⁵ (bf16 activations alone move a 4-bit
 * student's logits by up to 30% of max |logit| on these models: a few
 * activations cross a coarse quantisation step, measured with
 * --dev-cpu-bf16, which runs cpu-bf16 as the device against the CPU, no
 * GPU); --quick: llama, λ = 1 at 8 bits and λ = 0.5 at 4 bits, with and
 * without the norms: for the emulated device (about 10 minutes under ASan).
 *
 * Run with BITLAB_CUDA_MODULE set (the emulated device:
 * tests/cuda_emu/README.md) or on a GPU; exit 77 without a device or in a
 * build without CUDA. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "eval/student_eval.h"
#include "nn/generate.h"
#include "train/student.h"

#include "check.h"
#include "cpu_bf16.h"
#include "tiny_model.h"

enum { STEPS = 12, NP = 4, NSEQ = 9, V = 37 };
static const int PROMPT[NP] = {3, 17, 5, 30};
static const int SEQ[NSEQ] = {1, 8, 22, 4, 36, 15, 9, 0, 27};
static const char *ARCH_NAMES[] = {"llama", "qwen2", "phi3"};
static double LOGIT_TOL = 0x1p-5, NLL_TOL = 0x1p-6, TIE_TOL = 0x1p-5;

static const BlBackend *ref_be;


static double max_abs(const float *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

/* logits and NLL of SEQ on both backends */
static void compare_logits(BlEvalRunner *cpu, BlEvalRunner *dev, bool student, const char *what) {
    float lc[NSEQ * V], ld[NSEQ * V];
    BlError err;
    if (bl_eval_runner_logits(cpu, student, SEQ, NSEQ, lc, &err) ||
        bl_eval_runner_logits(dev, student, SEQ, NSEQ, ld, &err)) {
        CHECK(0, "%s: logits: %s", what, err.msg);
        return;
    }
    double scale = max_abs(lc, NSEQ * V), d = 0.0;
    for (int i = 0; i < NSEQ * V; i++) d = fmax(d, fabs((double)lc[i] - ld[i]));
    CHECK(isfinite(d) && d <= LOGIT_TOL * scale, "%s: logits max |diff| %.3g > %.3g·%.3g", what, d,
          LOGIT_TOL, scale);
    double nc = 0.0, nd = 0.0;
    long kc = 0, kd = 0;
    if (bl_eval_runner_sequence(cpu, student, SEQ, NSEQ, NULL, NULL, &nc, &kc, &err) ||
        bl_eval_runner_sequence(dev, student, SEQ, NSEQ, NULL, NULL, &nd, &kd, &err)) {
        CHECK(0, "%s: sequence: %s", what, err.msg);
        return;
    }
    CHECK(kc == kd && fabs(nc - nd) <= NLL_TOL * fabs(nc), "%s: NLL %.6g (cpu) vs %.6g (device)",
          what, nc / kc, nd / kd);
}

/* greedy ids of both backends: the same, up to a near tie */
static void compare_generate(BlEvalRunner *cpu, BlEvalRunner *dev, bool student,
                             const char *what, int *compared) {
    int oc[STEPS], od[STEPS], nc = 0, nd = 0;
    BlError err;
    if (bl_eval_runner_generate(cpu, student, PROMPT, NP, STEPS, NULL, NULL, oc, &nc, &err) ||
        bl_eval_runner_generate(dev, student, PROMPT, NP, STEPS, NULL, NULL, od, &nd, &err)) {
        CHECK(0, "%s: generate: %s", what, err.msg);
        return;
    }
    int i = 0;
    while (i < nc && i < nd && oc[i] == od[i]) i++;
    *compared += i;
    if (i == nc && i == nd) return;
    if (i == nc || i == nd) {
        CHECK(0, "%s: %d vs %d tokens with the same prefix", what, nc, nd);
        return;
    }
    /* step i differs: the CPU's logits there must make it a near tie */
    int seq[NP + STEPS];
    float lg[(NP + STEPS) * V];
    memcpy(seq, PROMPT, sizeof PROMPT);
    memcpy(seq + NP, oc, sizeof(int) * (size_t)i);
    int n = NP + i;
    if (bl_eval_runner_logits(cpu, student, seq, n, lg, &err)) {
        CHECK(0, "%s: logits: %s", what, err.msg);
        return;
    }
    const float *last = lg + (size_t)(n - 1) * V;
    double gap = (double)last[oc[i]] - last[od[i]], scale = max_abs(last, V);
    CHECK(gap <= TIE_TOL * scale, "%s: step %d: cpu %d, device %d, logit gap %.3g > %.3g·%.3g",
          what, i, oc[i], od[i], gap, TIE_TOL, scale);
    printf("note: %s: answers part at step %d, a near tie (gap %.3g)\n", what, i, gap);
}

static void test_config(const BlBackend *cuda, BlModel *m, const BlStudentConfig *sc,
                        int *compared) {
    BlStudent st;
    BlError err;
    if (bl_build_student(&st, m, sc, &err)) {
        CHECK(0, "student: %s", err.msg);
        return;
    }
    if (tiny_perturb_student(&st, &err)) CHECK(0, "add_adapter: %s", err.msg);
    const size_t budgets[2] = {SIZE_MAX, 0}; /* every Weff cached / formed per call */
    for (int b = 0; b < 2; b++) {
        char what[160];
        snprintf(what, sizeof what, "%s subln=%d pan=%d lambda=%g bits=%d cache=%d",
                 ARCH_NAMES[m->cfg.arch], sc->subln, sc->post_attn_norm, sc->lambda, sc->act_bits,
                 b == 0);
        BlEvalRunner *rc = NULL, *rd = NULL;
        if (bl_eval_runner_open(&rc, ref_be, m, &st, bl_student_mode(&st), budgets[b], &err) ||
            bl_eval_runner_open(&rd, cuda, m, &st, bl_student_mode(&st), budgets[b], &err)) {
            CHECK(0, "%s: open: %s", what, err.msg);
        } else {
            compare_logits(rc, rd, true, what);
            compare_generate(rc, rd, true, what, compared);
            if (b == 0) {
                char tw[200];
                snprintf(tw, sizeof tw, "%s teacher", ARCH_NAMES[m->cfg.arch]);
                compare_logits(rc, rd, false, tw);
                compare_generate(rc, rd, false, tw, compared);
            }
        }
        bl_eval_runner_close(rc);
        bl_eval_runner_close(rd);
    }
    bl_free_student(&st);
}

int main(int argc, char **argv) {
    bool quick = false, dev_cpu_bf16 = false;
    ref_be = cpu_bf16_backend();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--ref-cpu")) ref_be = bl_backend_cpu();
        else if (!strcmp(argv[i], "--dev-cpu-bf16")) dev_cpu_bf16 = true;
        else {
            fprintf(stderr, "usage: %s [--quick] [--ref-cpu] [--dev-cpu-bf16]\n", argv[0]);
            return 2;
        }
    }
    if (dev_cpu_bf16) ref_be = bl_backend_cpu();
    bool fp32_ref = ref_be == bl_backend_cpu();
    if (fp32_ref) {
        LOGIT_TOL = TIE_TOL = 0x1p-4;
        NLL_TOL = 0x1p-5;
    }
    BlError err = {{0}};
    const BlBackend *cuda = NULL;
    if (dev_cpu_bf16) {
        static BlBackend dev;
        dev = *cpu_bf16_backend();
        cuda = &dev;
    } else {
        BlCudaStatus status = bl_backend_cuda_status(&err);
        if (status == BL_CUDA_NOT_BUILT || status == BL_CUDA_NO_DEVICE) {
            printf("skipped: %s\n", err.msg);
            return 77;
        }
        cuda = status == BL_CUDA_READY ? bl_backend_cuda(&err) : NULL;
        if (!cuda) { /* a module that is there but does not load is a failure */
            fprintf(stderr, "cuda backend: %s\n", err.msg);
            return 1;
        }
    }
    printf("evaluation on %s vs %s\n", cuda->name, ref_be->name);
    int configs = 0, compared = 0;
    for (int arch = 0; arch < (quick ? 1 : 3); arch++) {
        BlModel *m = tiny_model((BlArch)arch, 32, 2, 4, 48, V, 21 + arch);
        bf16_round_model(m);
        for (int norms = 0; norms < 4; norms += 3) /* none, both */
            for (int li = 0; li < 2; li++)
                for (int bi = 0; bi < (fp32_ref ? 1 : 2); bi++) { /* fp32_ref: 8 bits only */
                    if (quick && li == bi) continue; /* λ 1 with A8, λ 0.5 with A4 */
                    BlStudentConfig sc = {.lambda = li ? 1.0f : 0.5f, .act_bits = bi ? 4 : 8,
                                          .subln = norms & 1, .post_attn_norm = norms >> 1};
                    test_config(cuda, m, &sc, &compared);
                    configs++;
                }
        tiny_free(m);
    }
    if (cuda->sync(&err)) CHECK(0, "cuda: %s", err.msg);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("evaluation on %s == on %s (bf16 bounds): %d configs, %d greedy tokens equal\n",
           cuda->name, ref_be->name, configs, compared);
    return 0;
}
