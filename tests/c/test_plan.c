/* test_plan.c - the planner's CPU trainer figures equal what the trainer
 * (train/trainer.h, on the CPU backend) really allocates: for tiny random
 * models of each architecture (llama, qwen2's q/k/v biases, phi3's fused qkv
 * and gate_up) and runs with several adapters, ranks, a dense ΔW, SubLN, the
 * post-attention norm, a top-K loss, no teacher hidden states and a given
 * loss chunk, several micro-batches and processes (the step's gradient
 * accumulator and host copy), a student and trainer are built and one
 * distillation step is taken; bl_trainer_memory must then equal bl_plan_trainer_memory in every
 * field, byte for byte, and the plan's student in backend memory what the
 * device student allocated. The weights figure is checked against the
 * tensors the test model actually allocated. Also: bad runs are refused with
 * a message naming the field, and the plan's own arithmetic (totals, the
 * dense and copy alternatives) holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "plan/plan.h"
#include "tiny_model.h"
#include "train/trainer.h"

/* Floats the tiny model allocated, counted from its own tensors. */
static size_t tiny_weight_bytes(const BlModel *m) {
    const BlConfig *c = &m->cfg;
    size_t n = 2 * (size_t)c->vocab_size * c->dim + c->dim; /* tok_embd, lm_head, out_norm */
    for (int l = 0; l < c->n_layers; l++) {
        n += 2 * (size_t)c->dim; /* attn_norm, ffn_norm */
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlLinear *L = &m->layers[l].lin[k];
            if (!L->w) continue;
            n += (size_t)L->out * L->in + (L->b ? (size_t)L->out : 0);
        }
    }
    return n * sizeof(float);
}

/* a reduction over processes that leaves every value as it is */
static int keep(void *ctx, float *g, size_t n, double *s, int ns, BlError *err) {
    (void)ctx, (void)g, (void)n, (void)s, (void)ns, (void)err;
    return 0;
}

typedef struct {
    const char *name;
    BlArch arch;
    int dim, layers, heads, hidden, vocab;
    BlPlanRun run;
} Case;

static void check_case(const Case *cs) {
    BlModel *m = tiny_model(cs->arch, cs->dim, cs->layers, cs->heads, cs->hidden, cs->vocab, 77);
    const BlPlanRun *r = &cs->run;
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = r->act_bits, .subln = r->subln,
                          .post_attn_norm = r->post_attn_norm, .dense = r->dense};
    /* the planner's run: CE + KL (+ cos with the teacher's hidden states, + top-K) */
    BlLossConfig lc = {.w_ce = 1.0f, .w_kl = 1.0f, .w_cos = r->no_teacher_hidden ? 0.0f : 1.0f,
                       .w_topk = r->topk ? 1.0f : 0.0f, .tau = 2.0f};
    BlTrainerShape sh = {.batch = r->B, .seq = r->T, .topk = r->topk,
                         .hidden = !r->no_teacher_hidden, .teacher_cache = true,
                         .loss_chunk_seqs = r->loss_chunk_seqs};
    BlOptConfig oc = {.adamw = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f},
                      .max_grad_norm = 1.0f};
    BlError err = {{0}};
    BlStudent st;
    BlTrainer tr;
    int rc = bl_build_student(&st, m, &sc, &err);
    for (int a = 0; rc == 0 && a < r->adapters; a++)
        rc = bl_student_add_adapter(&st, r->rank, 2.0f * r->rank, 10 + a, &err);
    if (rc == 0) rc = bl_build_trainer(&tr, bl_backend_cpu(), &st, &sh, &err);
    CHECK(rc == 0, "%s: build: %s", cs->name, err.msg);
    if (rc != 0) {
        tiny_free(m);
        return;
    }
    /* one step on fresh random tokens, some sequences shorter than T, in
     * the run's micro-batches; a multi-process run's step as one of its
     * processes takes it (the reduction itself a no-op here) */
    int micro = r->micro > 1 ? r->micro : 1, ranks = r->ranks > 1 ? r->ranks : 1;
    int M = micro * r->B * r->T;
    int *tokens = malloc(sizeof(int) * M), *lens = malloc(sizeof(int) * micro * r->B);
    for (int i = 0; i < M; i++) tokens[i] = (int)((tiny_frand() + 1.0f) * 0.5f * (cs->vocab - 1));
    for (int b = 0; b < micro * r->B; b++) lens[b] = b % 2 ? r->T : r->T - b % 3;
    BlStepResult res;
    BlStepParams sp = bl_step_params(&st, &lc, &oc);
    /* the other processes' rows as many as this one's */
    BlMicroBatch here = {tokens, lens, NULL, NULL, micro * r->B, r->T};
    BlStepReduce red = {.reduce = keep, .rows_total = bl_micro_batch_rows(&here) * ranks};
    rc = bl_trainer_step_reduce(&tr, &(BlMicroBatch){tokens, lens, NULL, NULL, r->B, r->T}, micro,
                                ranks > 1 ? &red : NULL, &sp, &res, &err);
    CHECK(rc == 0, "%s: step: %s", cs->name, err.msg);

    BlTrainerMemory got, want;
    bl_trainer_memory(&tr, &got);
    BlPlan p;
    BlPlanHost host = {0};
    CHECK(bl_plan_compute(&p, &m->cfg, r, &host, &err) == 0, "%s: plan: %s", cs->name, err.msg);
    bl_plan_trainer_memory(&p, &want);
    /* the tiny model has no arena (bl_model_weight_bytes is 0): count its tensors */
    CHECK(want.student.frozen_weights == tiny_weight_bytes(m), "%s: weights plan %zu, model %zu",
          cs->name, want.student.frozen_weights, tiny_weight_bytes(m));
#define SAME(f)                                                                          \
    CHECK(got.f == want.f, "%s: %s: trainer %zu, plan %zu", cs->name, #f, (size_t)got.f, \
          (size_t)want.f)
    SAME(student.adapters_frozen);
    SAME(student.adapters_trainable);
    SAME(student.grads);
    SAME(student.optimizer);
    SAME(device_student);
    SAME(activations);
    SAME(scratch);
    SAME(grad_accum);
#undef SAME
    /* the student in backend memory: what bl_build_device_student allocated
     * (bl_device_student_bytes counts the one-float minimum allocations) */
    size_t ds = bl_device_student_bytes(&tr.ds);
    CHECK(p.cpu.bytes[BL_PLAN_DEVICE_STUDENT] == ds, "%s: device student: plan %zu, trainer %zu",
          cs->name, p.cpu.bytes[BL_PLAN_DEVICE_STUDENT], ds);
    /* the buffer table the trainer allocated from is the plan's */
    size_t table = 0;
    for (int i = 0; i < BL_BUF_COUNT; i++) table += tr.buf.bytes[i];
    CHECK(table == tr.buf.saved_total + tr.buf.scratch_total && got.activations == tr.buf.saved_total,
          "%s: the trainer's table: %zu bytes, saved %zu + scratch %zu", cs->name, table,
          tr.buf.saved_total, tr.buf.scratch_total);
    /* the plan's totals add up */
    size_t sum = 0;
    for (int i = 0; i < BL_PLAN_TRAINER_CATS; i++) sum += p.cpu.bytes[i];
    CHECK(sum == p.cpu.trainer, "%s: trainer total", cs->name);
    CHECK(p.cpu.peak >= p.cpu.train_peak && p.cpu.peak >= p.cpu.load_peak, "%s: peak", cs->name);
    CHECK(p.cpu_copy_peak >= p.cpu.train_peak + p.cpu.bytes[BL_PLAN_WEIGHTS], "%s: copy", cs->name);
    CHECK(p.gpu.bytes[BL_PLAN_WEIGHTS] * 2 == p.cpu.bytes[BL_PLAN_WEIGHTS], "%s: bf16", cs->name);
    CHECK(p.gpu.bytes[BL_PLAN_OPTIMIZER] == p.cpu.bytes[BL_PLAN_OPTIMIZER], "%s: fp32 moments",
          cs->name);
    /* (b) dense: the trainable part is every linear's [out, in] (+ norms) */
    size_t lin = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++)
            if (m->layers[l].lin[k].w)
                lin += (size_t)m->layers[l].lin[k].out * m->layers[l].lin[k].in;
    CHECK(p.cpu_dense.bytes[BL_PLAN_ADAPTERS_FROZEN] == 0, "%s: dense has no adapters", cs->name);
    CHECK(p.cpu_dense.bytes[BL_PLAN_TRAINABLE] >= lin * sizeof(float) &&
              p.cpu_dense.bytes[BL_PLAN_OPTIMIZER] == 2 * p.cpu_dense.bytes[BL_PLAN_TRAINABLE],
          "%s: dense trainable %zu < %zu", cs->name, p.cpu_dense.bytes[BL_PLAN_TRAINABLE],
          lin * sizeof(float));

    free(tokens);
    free(lens);
    bl_free_trainer(&tr);
    bl_free_student(&st);
    tiny_free(m);
}

/* The dense alternative equals a student really built with dense ΔW. */
static void check_dense_student(void) {
    BlModel *m = tiny_model(BL_ARCH_LLAMA, 32, 2, 4, 48, 50, 5);
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = 8, .dense = true};
    BlStudent st;
    BlError err;
    CHECK(bl_build_student(&st, m, &sc, &err) == 0, "%s", err.msg);
    BlStudentMemory sm;
    bl_student_memory(&st, &sm);
    BlPlanRun run = {.B = 2, .T = 8, .rank = 4, .adapters = 3, .act_bits = 8};
    BlPlan p;
    BlPlanHost host = {0};
    CHECK(bl_plan_compute(&p, &m->cfg, &run, &host, &err) == 0, "%s", err.msg);
    CHECK(p.cpu_dense.bytes[BL_PLAN_TRAINABLE] == sm.adapters_trainable &&
              p.cpu_dense.bytes[BL_PLAN_GRADS] == sm.grads &&
              p.cpu_dense.bytes[BL_PLAN_OPTIMIZER] == sm.optimizer,
          "dense alternative: plan %zu/%zu/%zu, student %zu/%zu/%zu",
          p.cpu_dense.bytes[BL_PLAN_TRAINABLE], p.cpu_dense.bytes[BL_PLAN_GRADS],
          p.cpu_dense.bytes[BL_PLAN_OPTIMIZER], sm.adapters_trainable, sm.grads, sm.optimizer);
    bl_free_student(&st);
    tiny_free(m);
}

static void check_refusals(void) {
    BlModel *m = tiny_model(BL_ARCH_LLAMA, 32, 2, 4, 48, 50, 5);
    BlPlanHost host = {0};
    BlPlan p;
    struct { BlPlanRun run; const char *needle; } bad[] = {
        {{.B = 0, .T = 8, .rank = 4, .adapters = 1, .act_bits = 8}, "batch"},
        {{.B = 1, .T = -1, .rank = 4, .adapters = 1, .act_bits = 8}, "seq"},
        {{.B = 1, .T = 8, .rank = 0, .adapters = 1, .act_bits = 8}, "rank"},
        {{.B = 1, .T = 8, .rank = 4, .adapters = -2, .act_bits = 8}, "adapters"},
        {{.B = 1, .T = 8, .rank = 4, .adapters = 1, .act_bits = 5}, "activation width"},
        {{.B = 1, .T = 8, .rank = 4, .adapters = 1, .act_bits = 8, .topk = 51}, "top-K"},
        {{.B = 1 << 30, .T = 1 << 30, .rank = 4, .adapters = 1, .act_bits = 8}, "10^18"},
        {{.B = 1, .T = 8, .rank = 4, .adapters = 1, .act_bits = 8, .loss_chunk_seqs = -1},
         "loss chunk"},
        {{.B = 1, .T = 8, .rank = 4, .adapters = 1, .act_bits = 8, .micro = -1}, "micro-batches"},
        {{.B = 1, .T = 8, .rank = 4, .adapters = 1, .act_bits = 8, .ranks = -3}, "processes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        BlError err = {{0}};
        CHECK(bl_plan_compute(&p, &m->cfg, &bad[i].run, &host, &err) != 0 &&
                  strstr(err.msg, bad[i].needle),
              "bad run %zu: expected an error naming '%s', got '%s'", i, bad[i].needle, err.msg);
    }
    tiny_free(m);
}

int main(void) {
    const Case cases[] = {
        {"llama r16 x1", BL_ARCH_LLAMA, 64, 2, 4, 96, 97,
         {.B = 1, .T = 16, .rank = 16, .adapters = 1, .act_bits = 8}},
        {"llama r4 x3 B3", BL_ARCH_LLAMA, 48, 3, 6, 80, 61,
         {.B = 3, .T = 12, .rank = 4, .adapters = 3, .act_bits = 4}},
        {"qwen2 r8 x2 subln topk", BL_ARCH_QWEN2, 64, 2, 4, 96, 120,
         {.B = 2, .T = 10, .rank = 8, .adapters = 2, .act_bits = 8, .subln = true, .topk = 7}},
        {"phi3 r8 post-norm", BL_ARCH_PHI3, 64, 2, 4, 96, 80,
         {.B = 4, .T = 9, .rank = 8, .adapters = 1, .act_bits = 16, .post_attn_norm = true}},
        {"llama dense + r2 x2", BL_ARCH_LLAMA, 32, 2, 4, 48, 50,
         {.B = 2, .T = 8, .rank = 2, .adapters = 2, .act_bits = 8, .dense = true, .subln = true,
          .post_attn_norm = true}},
        {"llama r4 micro 3", BL_ARCH_LLAMA, 48, 2, 6, 80, 61,
         {.B = 2, .T = 12, .rank = 4, .adapters = 2, .act_bits = 8, .micro = 3}},
        {"qwen2 r8 2 ranks", BL_ARCH_QWEN2, 64, 2, 4, 96, 120,
         {.B = 1, .T = 10, .rank = 8, .adapters = 1, .act_bits = 8, .ranks = 2}},
        {"llama dense micro 2 x 4 ranks", BL_ARCH_LLAMA, 32, 2, 4, 48, 50,
         {.B = 2, .T = 8, .rank = 2, .adapters = 1, .act_bits = 8, .dense = true, .micro = 2,
          .ranks = 4}},
        {"phi3 no adapters", BL_ARCH_PHI3, 32, 1, 2, 40, 40,
         {.B = 1, .T = 5, .rank = 0, .adapters = 0, .act_bits = 8, .post_attn_norm = true}},
        {"qwen2 no teacher hidden, topk", BL_ARCH_QWEN2, 48, 2, 4, 64, 70,
         {.B = 3, .T = 7, .rank = 4, .adapters = 1, .act_bits = 8, .topk = 5,
          .no_teacher_hidden = true}},
        {"llama 1-seq loss chunks", BL_ARCH_LLAMA, 32, 2, 4, 48, 50,
         {.B = 3, .T = 6, .rank = 2, .adapters = 2, .act_bits = 8, .loss_chunk_seqs = 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
    check_dense_student();
    check_refusals();
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    else printf("test_plan: OK\n");
    return failures ? 1 : 0;
}
