/* trace_tool.c - the distillation step with the teacher live, cached and
 * from a teacher trace, for tests/py/test_trace.py.
 *
 *   trace_tool --model PATH --trace FILE --tokens tokens.bin --lens L0,L1,...
 *              --weights CE,KL,TOPK,COS,MAG --k K --tau TAU --out out.bin
 *
 * tokens.bin (little-endian): int32 B, int32 T, int32 tokens [B, T].
 * One student (λ = 1, 8-bit activations, one LoRA adapter r=4 α=8 whose B
 * is filled with fixed pseudo-random values so that both dA and dB are
 * non-zero) and two trainers of it (train/trainer.h on the CPU backend,
 * top-K buffers of K, the teacher's hidden states kept, the teacher cache
 * on), then three accumulates of the same micro-batch (weight 1, no
 * update), the gradients downloaded (bl_trainer_download_grads) and zeroed
 * between them:
 *   0  trainer 1, live teacher (computed)
 *   1  trainer 1 again (its teacher cache holds this micro-batch: cached)
 *   2  trainer 2 whose teacher is the trace (trace)
 * out.bin: for each, int32 teacher source (BlTeacherSource), float64 [ce,
 * kl, topk, cos, mag, total], then for every BitLinear (layer order, then
 * BlLinearKind order) dA float32 [r, in] and dB float32 [out, r].
 * A refused step prints its message on stderr and exits 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "model/model.h"
#include "trace/trace.h"
#include "train/student.h"
#include "train/trainer.h"

static const char *arg(int argc, char **argv, const char *name, const char *def) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return def;
}

static int32_t *read_tokens(const char *path, BlError *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return bl_fail(err, "%s: cannot read", path), NULL;
    int32_t hd[2];
    int32_t *tk = NULL;
    if (fread(hd, 4, 2, f) == 2 && hd[0] > 0 && hd[1] > 0 && hd[0] < 4096 && hd[1] < 65536 &&
        (tk = malloc(4 * (2 + (size_t)hd[0] * hd[1])))) {
        memcpy(tk, hd, 8);
        if (fread(tk + 2, 4, (size_t)hd[0] * hd[1], f) != (size_t)hd[0] * hd[1]) {
            free(tk);
            tk = NULL;
        }
    }
    fclose(f);
    if (!tk) bl_fail(err, "%s: bad tokens file", path);
    return tk;
}

static int write_mode(FILE *f, BlTrainer *tr, const BlStepResult *r, BlError *err) {
    BlStudent *st = tr->student;
    if (bl_trainer_download_grads(tr, err)) return -1;
    bl_trainer_zero_grads(tr); /* no update: dropped */
    int32_t src = (int32_t)r->teacher;
    double losses[6] = {r->ce, r->kl, r->topk, r->cos, r->mag, r->total};
    int ok = fwrite(&src, 4, 1, f) == 1 && fwrite(losses, sizeof losses, 1, f) == 1;
    for (int l = 0; ok && l < st->model->cfg.n_layers; l++)
        for (int k = 0; ok && k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlLoraStack *s = &bl_student_linear(st, l, k)->lora;
            BlLoraAdapter *ad = &s->ad[s->n - 1];
            ok = fwrite(ad->dA, sizeof(float) * ad->r * s->in, 1, f) == 1 &&
                 fwrite(ad->dB, sizeof(float) * s->out * ad->r, 1, f) == 1;
        }
    return ok ? 0 : bl_fail(err, "write failed");
}

/* B of the adapter ← fixed pseudo-random values in ±0.05. */
static void fill_b(BlStudent *st) {
    uint64_t r = 0x2545f4914f6cdd1dull;
    for (int l = 0; l < st->model->cfg.n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlLoraStack *s = &bl_student_linear(st, l, k)->lora;
            BlLoraAdapter *ad = &s->ad[s->n - 1];
            for (size_t i = 0; i < (size_t)s->out * ad->r; i++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                ad->B[i] = ((float)(r >> 40) / (float)(1 << 24) - 0.5f) * 0.1f;
            }
        }
}

static int run(BlModel *m, int argc, char **argv, BlError *err) {
    const char *tp = arg(argc, argv, "--tokens", NULL), *lp = arg(argc, argv, "--lens", NULL);
    const char *op = arg(argc, argv, "--out", NULL), *trp = arg(argc, argv, "--trace", NULL);
    const char *wp = arg(argc, argv, "--weights", "1,0,1,0,0");
    if (!tp || !lp || !op || !trp) return bl_fail(err, "missing --tokens/--lens/--out/--trace");
    BlLossConfig lc = {.tau = strtof(arg(argc, argv, "--tau", "1"), NULL)};
    int K = atoi(arg(argc, argv, "--k", "8"));
    if (sscanf(wp, "%f,%f,%f,%f,%f", &lc.w_ce, &lc.w_kl, &lc.w_topk, &lc.w_cos, &lc.w_mag) != 5)
        return bl_fail(err, "--weights needs five numbers");
    int32_t *tk = read_tokens(tp, err);
    if (!tk) return -1;
    int B = tk[0], T = tk[1], *lens = calloc((size_t)B, sizeof(int));
    const char *c = lp;
    for (int b = 0; b < B; b++) {
        lens[b] = (int)strtol(c, (char **)&c, 10);
        if (*c == ',') c++;
    }
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = 8};
    BlOptConfig oc = {.adamw = {.lr = 0}};
    /* the whole batch in one loss chunk: the teacher's logits then come from
     * the same LM-head product as the trace writer's (test_trace.py expects
     * the trace's own batch bit for bit) */
    BlTrainerShape sh = {.batch = B, .seq = T, .topk = K, .hidden = true, .teacher_cache = true,
                         .loss_chunk_seqs = B};
    BlStudent st;
    BlTrainer live, traced;
    BlTrace *trace = NULL;
    BlTraceReader *reader = NULL;
    FILE *f = NULL;
    int rc = -1, have_st = 0, have_live = 0, have_traced = 0;
    BlStepResult r0 = {0}, r1 = {0}, r2 = {0};
    if (bl_build_student(&st, m, &sc, err)) goto done;
    have_st = 1;
    if (bl_student_add_adapter(&st, 4, 8.0f, 7, err)) goto done;
    fill_b(&st);
    if (bl_build_trainer(&live, bl_backend_cpu(), &st, &sh, err)) goto done;
    have_live = 1;
    if (bl_build_trainer(&traced, bl_backend_cpu(), &st, &sh, err)) goto done;
    have_traced = 1;
    if (bl_trace_open(&trace, trp, err) || bl_trace_check_model(trace, m, err) ||
        bl_trace_reader_new(&reader, trace, err))
        goto done;
    BlTeacherProvider p;
    bl_trace_provider(reader, &p);
    BlStepParams sp = bl_step_params(&st, &lc, &oc);
    if (bl_trainer_set_teacher(&traced, &p, err) || bl_trainer_check_params(&traced, &sp, err))
        goto done;
    if (!(f = fopen(op, "wb"))) {
        bl_fail(err, "%s: cannot write", op);
        goto done;
    }
    if (bl_trainer_accumulate(&live, &(BlMicroBatch){tk + 2, lens, NULL, NULL, B, T},
                              1.0f, &sp, &r0, err) ||
        write_mode(f, &live, &r0, err) ||
        bl_trainer_accumulate(&live, &(BlMicroBatch){tk + 2, lens, NULL, NULL, B, T},
                              1.0f, &sp, &r1, err) ||
        write_mode(f, &live, &r1, err) ||
        bl_trainer_accumulate(&traced, &(BlMicroBatch){tk + 2, lens, NULL, NULL, B, T},
                              1.0f, &sp, &r2, err) ||
        write_mode(f, &traced, &r2, err))
        goto done;
    rc = 0;
done:
    if (f && fclose(f) != 0 && rc == 0) rc = bl_fail(err, "%s: write failed", op);
    bl_trace_reader_free(reader);
    bl_trace_close(trace);
    if (have_traced) bl_free_trainer(&traced);
    if (have_live) bl_free_trainer(&live);
    if (have_st) bl_free_student(&st);
    free(lens);
    free(tk);
    return rc;
}

int main(int argc, char **argv) {
    const char *mp = arg(argc, argv, "--model", NULL);
    if (!mp) {
        fprintf(stderr, "usage: trace_tool --model PATH ... (see the file header)\n");
        return 2;
    }
    BlError err = {{0}};
    BlModel *m = NULL;
    int rc = bl_model_load(&m, mp, &err);
    if (rc == 0) rc = run(m, argc, argv, &err);
    if (rc) fprintf(stderr, "trace_tool: %s\n", err.msg);
    bl_model_free(m);
    return rc ? 1 : 0;
}
