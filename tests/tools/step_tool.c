/* step_tool.c - bitlab's distillation step for tests/py/test_distill_step_parity.py
 * (protocol in that file's header).
 *
 *   step_tool --model DIR --adapters adapters.bin --tokens tokens.bin
 *             --lens L0,L1,... --lam LAMBDA --bits {4,8,16} --tau TAU --topk K
 *             [--lambda-acts 1] [--doc-start S0,S1,... (B·T entries: packed rows)]
 *             [--rel-layer L (0-based: the attention-relation loss at layer L, weight 1)]
 *             --out out.bin
 *
 * The parity mode runs one accumulate of THE trainer (train/trainer.h, on the
 * CPU backend: teacher + student forward, every loss with weight 1,
 * backward; no update), downloads the gradients into the host student
 * (bl_trainer_download_grads) and writes the losses and the newest adapter's
 * gradients; with --rel-layer the losses are 7 doubles, rel before total.
 * (The step benchmark is `bitlab bench step`.) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "model/model.h"
#include "train/student.h"
#include "train/trainer.h"

static const char *arg(int argc, char **argv, const char *name, const char *def) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return def;
}

static void *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc(sz > 0 ? (size_t)sz : 1);
    if (p && fread(p, 1, (size_t)sz, f) != (size_t)sz) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return p;
}

// ----------------------------------------------------------------------------
// adapters.bin → the student's stack

typedef struct {
    const char *p;
    size_t n, off;
} Reader;

static int take(Reader *r, void *dst, size_t bytes) {
    if (r->off + bytes > r->n) return -1;
    memcpy(dst, r->p + r->off, bytes);
    r->off += bytes;
    return 0;
}

static int load_adapters(BlStudent *st, const char *path, BlError *err) {
    Reader r = {0};
    char *data = read_file(path, &r.n);
    if (!data) return bl_fail(err, "%s: cannot read", path);
    r.p = data;
    int32_t n = 0;
    int rc = take(&r, &n, 4);
    for (int a = 0; rc == 0 && a < n; a++) {
        int32_t rank;
        float alpha;
        if (take(&r, &rank, 4) || take(&r, &alpha, 4) || rank <= 0) { rc = -1; break; }
        if (bl_student_add_adapter(st, rank, alpha, (uint64_t)a, err)) { rc = -2; break; }
        for (int l = 0; rc == 0 && l < st->model->cfg.n_layers; l++)
            for (int k = 0; rc == 0 && k < BL_LIN_KINDS; k++) {
                if (!bl_student_has(st, l, k)) continue;
                BlLoraStack *s = &bl_student_linear(st, l, k)->lora;
                BlLoraAdapter *ad = &s->ad[s->n - 1];
                if (take(&r, ad->A, sizeof(float) * rank * s->in) ||
                    take(&r, ad->B, sizeof(float) * s->out * rank))
                    rc = -1;
            }
    }
    if (rc == 0 && r.off != r.n) rc = -1;
    free(data);
    if (rc == -1) return bl_fail(err, "%s: truncated or malformed at byte %zu", path, r.off);
    return rc;
}

// ----------------------------------------------------------------------------
// parity mode

static int write_out(BlStudent *st, const BlStepResult *res, bool rel, const char *path,
                     BlError *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return bl_fail(err, "%s: cannot write", path);
    double losses[7] = {res->ce, res->kl, res->topk, res->cos, res->mag, res->total, 0.0};
    if (rel) losses[5] = res->rel, losses[6] = res->total;
    int ok = fwrite(losses, sizeof(double) * (rel ? 7 : 6), 1, f) == 1;
    for (int l = 0; ok && l < st->model->cfg.n_layers; l++)
        for (int k = 0; ok && k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlLoraStack *s = &bl_student_linear(st, l, k)->lora;
            BlLoraAdapter *ad = &s->ad[s->n - 1];
            ok = fwrite(ad->dA, sizeof(float) * ad->r * s->in, 1, f) == 1 &&
                 fwrite(ad->dB, sizeof(float) * s->out * ad->r, 1, f) == 1;
        }
    if (fclose(f) != 0 || !ok) return bl_fail(err, "%s: write failed", path);
    return 0;
}

static int run_step(BlModel *m, int argc, char **argv, BlError *err) {
    const char *ap = arg(argc, argv, "--adapters", NULL), *tp = arg(argc, argv, "--tokens", NULL);
    const char *lp = arg(argc, argv, "--lens", NULL), *op = arg(argc, argv, "--out", NULL);
    if (!ap || !tp || !lp || !op) return bl_fail(err, "missing --adapters/--tokens/--lens/--out");
    size_t tn;
    int32_t *tk = read_file(tp, &tn);
    if (!tk || tn < 8 || tk[0] <= 0 || tk[1] <= 0 || tn != 8 + 4 * (size_t)tk[0] * tk[1]) {
        free(tk);
        return bl_fail(err, "%s: bad tokens file", tp);
    }
    int B = tk[0], T = tk[1];
    int *lens = calloc((size_t)B, sizeof(int));
    const char *c = lp;
    for (int b = 0; b < B; b++) {
        lens[b] = (int)strtol(c, (char **)&c, 10);
        if (*c == ',') c++;
    }
    /* --doc-start: B·T comma-separated entries, a packed batch */
    const char *dp = arg(argc, argv, "--doc-start", NULL);
    int *doc_start = dp ? calloc((size_t)B * T, sizeof(int)) : NULL;
    for (size_t i = 0; doc_start && i < (size_t)B * T; i++) {
        doc_start[i] = (int)strtol(dp, (char **)&dp, 10);
        if (*dp == ',') dp++;
    }
    BlStudentConfig sc = {.lambda = strtof(arg(argc, argv, "--lam", "1"), NULL),
                          .act_bits = atoi(arg(argc, argv, "--bits", "8"))};
    const char *rl = arg(argc, argv, "--rel-layer", NULL);
    BlLossConfig lc = {.w_ce = 1, .w_kl = 1, .w_topk = 1, .w_cos = 1, .w_mag = 1,
                       .w_rel = rl ? 1.0f : 0.0f,
                       .tau = strtof(arg(argc, argv, "--tau", "2"), NULL)};
    BlTrainerShape sh = {.batch = B, .seq = T, .topk = atoi(arg(argc, argv, "--topk", "8")),
                         .hidden = true, .relation = rl != NULL,
                         .relation_layer = rl ? atoi(rl) : 0};
    BlOptConfig oc = {.adamw = {.lr = 0}};
    BlStudent st;
    BlTrainer tr;
    BlStepResult res = {0};
    int rc = bl_build_student(&st, m, &sc, err);
    if (rc == 0) {
        rc = load_adapters(&st, ap, err);
        if (rc == 0) rc = bl_build_trainer(&tr, bl_backend_cpu(), &st, &sh, err);
        if (rc == 0) {
            /* λ and the width as the student was built with (--lam, --bits) */
            BlStepParams sp = bl_step_params(&st, &lc, &oc);
            sp.lambda_acts = atoi(arg(argc, argv, "--lambda-acts", "0")) != 0;
            BlMicroBatch mb = {tk + 2, lens, NULL, doc_start, B, T};
            rc = bl_trainer_accumulate(&tr, &mb, 1.0f, &sp, &res, err);
            if (rc == 0) rc = bl_trainer_download_grads(&tr, err);
            if (rc == 0) rc = write_out(&st, &res, rl != NULL, op, err);
            bl_free_trainer(&tr);
        }
        bl_free_student(&st);
    }
    free(lens);
    free(doc_start);
    free(tk);
    return rc;
}

int main(int argc, char **argv) {
    const char *mp = arg(argc, argv, "--model", NULL);
    if (!mp) {
        fprintf(stderr, "usage: step_tool --model PATH ... (see the file header)\n");
        return 2;
    }
    BlError err = {{0}};
    BlModel *m = NULL;
    int rc = bl_model_load(&m, mp, &err);
    if (rc == 0) rc = run_step(m, argc, argv, &err);
    if (rc) fprintf(stderr, "step_tool: %s\n", err.msg);
    bl_model_free(m);
    return rc ? 1 : 0;
}
