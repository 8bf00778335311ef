/* test_student_generate.c - the student's KV-cache greedy decoder
 * (bl_student_generate_greedy: nn/generate with eval/'s BitLinear hook, on the
 * CPU backend) against the argmax of the reference training forward
 * (tests/c/ref/train_forward.c) over the growing sequence, on hand-built random models of each arch
 * with and without SubLN / post-attention norm, λ ∈ {0.5, 1}, 8- and 4-bit
 * activations and a LoRA adapter with nonzero B; both with every Weff cached
 * for the call and with Weff rebuilt per step. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "nn/generate.h"
#include "eval/student_eval.h"
#include "train/student.h"
#include "train_forward.h"

#include "check.h"
#include "tiny_model.h"

enum { STEPS = 16, NP = 4, V = 37 };
static const int PROMPT[NP] = {3, 17, 5, 30};
static const char *ARCH_NAMES[] = {"llama", "qwen2", "phi3"};


/* The uncached reference: rerun the training forward per token. */
static void reference(BlStudent *st, int *ref) {
    BlTrainState ts;
    BlError err;
    int seq[NP + STEPS];
    float logits[V];
    for (int i = 0; i < NP; i++) seq[i] = PROMPT[i];
    if (bl_build_train_state(&ts, st, 1, NP + STEPS, &err)) {
        CHECK(0, "train state: %s", err.msg);
        return;
    }
    for (int n = NP; n < NP + STEPS; n++) {
        if (bl_train_forward(&ts, st, seq, &n, 1, n, &err)) {
            CHECK(0, "train forward: %s", err.msg);
            break;
        }
        bl_train_logits(&ts, n - 1, 1, logits);
        ref[n - NP] = seq[n] = bl_argmax(logits, V);
    }
    bl_free_train_state(&ts);
}

static void test_config(BlModel *m, const BlStudentConfig *sc) {
    BlStudent st;
    BlError err;
    if (bl_build_student(&st, m, sc, &err)) {
        CHECK(0, "student: %s", err.msg);
        return;
    }
    if (tiny_perturb_student(&st, &err)) CHECK(0, "add_adapter: %s", err.msg);
    int ref[STEPS], out[STEPS], n_out;
    reference(&st, ref);
    const size_t budgets[2] = {SIZE_MAX, 0}; /* every Weff cached / rebuilt per step */
    for (int b = 0; b < 2; b++) {
        if (bl_student_generate_greedy(bl_backend_cpu(), &st, bl_student_mode(&st), PROMPT, NP,
                                       STEPS, budgets[b], out, &n_out, &err)) {
            CHECK(0, "generate: %s", err.msg);
            continue;
        }
        int same = n_out == STEPS;
        for (int i = 0; same && i < STEPS; i++) same = out[i] == ref[i];
        CHECK(same, "%s subln=%d pan=%d lambda=%g bits=%d cache=%d: cached decode differs",
              ARCH_NAMES[m->cfg.arch], sc->subln, sc->post_attn_norm, sc->lambda, sc->act_bits,
              b == 0);
    }
    /* a stop token ends the decode before it is emitted */
    m->stop_tokens[0] = ref[5];
    m->n_stop_tokens = 1;
    int first = 0;
    while (ref[first] != ref[5]) first++;
    if (bl_student_generate_greedy(bl_backend_cpu(), &st, bl_student_mode(&st), PROMPT, NP, STEPS,
                                   SIZE_MAX, out, &n_out, &err))
        CHECK(0, "generate: %s", err.msg);
    else
        CHECK(n_out == first, "%s: stop token: %d tokens, want %d", ARCH_NAMES[m->cfg.arch],
              n_out, first);
    m->n_stop_tokens = 0;
    bl_free_student(&st);
}

int main(void) {
    int configs = 0;
    for (int arch = 0; arch < 3; arch++) {
        BlModel *m = tiny_model((BlArch)arch, 16, 2, 4, 24, V, 11 + arch);
        for (int norms = 0; norms < 4; norms++)
            for (int li = 0; li < 2; li++)
                for (int bi = 0; bi < 2; bi++) {
                    BlStudentConfig sc = {.lambda = li ? 1.0f : 0.5f, .act_bits = bi ? 4 : 8,
                                          .subln = norms & 1, .post_attn_norm = norms >> 1};
                    test_config(m, &sc);
                    configs++;
                }
        tiny_free(m);
    }
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("student KV-cache decode == training-forward argmax: %d configs x %d steps\n", configs,
           STEPS);
    return 0;
}
