/* plan_trainer_tool.c - what the trainer (train/trainer.h) really allocates
 * on the CPU backend, for tests/py/test_plan.py to hold `bitlab plan`
 * against: loads a model, builds the student (k adapters of rank r, optional
 * dense ΔW / SubLN / post-attention norm) and the trainer for B x T (top-K
 * buffers of K with --topk, the teacher's hidden states kept: CE + KL + cos,
 * the planner's run), takes one distillation step on pseudo-random
 * full-length tokens, then prints bl_trainer_memory as one JSON line, in
 * bytes.
 *
 *   plan_trainer_tool --model PATH --batch B --seq T --rank R --adapters K
 *                     [--dense] [--subln] [--post-attn-norm] [--act-bits N] [--topk K] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "model/model.h"
#include "train/trainer.h"

static const char *opt(int argc, char **argv, const char *name, const char *dflt) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return dflt;
}

static int flag(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], name)) return 1;
    return 0;
}

int main(int argc, char **argv) {
    const char *path = opt(argc, argv, "--model", NULL);
    if (!path) {
        fprintf(stderr, "usage: plan_trainer_tool --model PATH --batch B --seq T --rank R "
                        "--adapters K [--dense] [--subln] [--post-attn-norm] [--act-bits N] "
                        "[--topk K]\n");
        return 2;
    }
    int B = atoi(opt(argc, argv, "--batch", "1")), T = atoi(opt(argc, argv, "--seq", "8"));
    int rank = atoi(opt(argc, argv, "--rank", "16")), k = atoi(opt(argc, argv, "--adapters", "1"));
    int bits = atoi(opt(argc, argv, "--act-bits", "8")), topk = atoi(opt(argc, argv, "--topk", "0"));
    BlError err = {{0}};
    BlModel *m = NULL;
    if (bl_model_load(&m, path, &err)) {
        fprintf(stderr, "plan_trainer_tool: %s\n", err.msg);
        return 1;
    }
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = bits, .dense = flag(argc, argv, "--dense"),
                          .subln = flag(argc, argv, "--subln"),
                          .post_attn_norm = flag(argc, argv, "--post-attn-norm")};
    BlLossConfig lc = {.w_ce = 1.0f, .w_kl = 1.0f, .w_cos = 1.0f, .w_topk = topk ? 1.0f : 0.0f,
                       .tau = 2.0f};
    BlTrainerShape sh = {.batch = B, .seq = T, .topk = topk, .hidden = true,
                         .teacher_cache = true};
    BlOptConfig oc = {.adamw = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f},
                      .max_grad_norm = 1.0f};
    BlStudent st;
    BlTrainer tr;
    int rc = bl_build_student(&st, m, &sc, &err);
    int built = rc == 0;
    for (int a = 0; rc == 0 && a < k; a++) rc = bl_student_add_adapter(&st, rank, 2.0f * rank, 1 + a, &err);
    int trainer = rc == 0 && bl_build_trainer(&tr, bl_backend_cpu(), &st, &sh, &err) == 0;
    if (rc == 0 && !trainer) rc = -1;
    size_t M = (size_t)B * T;
    int *tokens = malloc(sizeof(int) * M), *lens = malloc(sizeof(int) * B);
    uint64_t r = 0x2545f4914f6cdd1dull;
    for (size_t i = 0; i < M; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int)((r >> 33) % (uint64_t)m->cfg.vocab_size);
    }
    for (int b = 0; b < B; b++) lens[b] = T;
    BlStepResult res;
    if (rc == 0) {
        BlStepParams sp = bl_step_params(&st, &lc, &oc);
        rc = bl_trainer_step(&tr, &(BlMicroBatch){tokens, lens, NULL, NULL, B, T},
                             1, &sp, &res, &err);
    }
    if (rc == 0) {
        BlTrainerMemory mem;
        bl_trainer_memory(&tr, &mem);
        printf("{\"frozen_weights\": %zu, \"adapters_frozen\": %zu, \"adapters_trainable\": %zu, "
               "\"grads\": %zu, \"optimizer\": %zu, \"activations\": %zu, \"scratch\": %zu}\n",
               mem.student.frozen_weights, mem.student.adapters_frozen,
               mem.student.adapters_trainable, mem.student.grads, mem.student.optimizer,
               mem.activations, mem.scratch);
    } else {
        fprintf(stderr, "plan_trainer_tool: %s\n", err.msg);
    }
    free(tokens);
    free(lens);
    if (trainer) bl_free_trainer(&tr);
    if (built) bl_free_student(&st);
    bl_model_free(m);
    return rc ? 1 : 0;
}
