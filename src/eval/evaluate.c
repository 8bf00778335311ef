/* evaluate.c - the teacher–student comparison on a held-out set and a
 * prompt list (definitions in evaluate.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "eval/evaluate.h"
#include "nn/forward.h"
#include "nn/generate.h"
#include "eval/student_eval.h"
#include "tokenizer/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    double nll_t, nll_s, kl;
    long long rows, agree;
} Sums;

/* log Σ exp(x) over x[n], in double */
static double log_sum_exp(const float *x, int n) {
    double mx = x[0];
    for (int v = 1; v < n; v++) mx = x[v] > mx ? x[v] : mx;
    double s = 0.0;
    for (int v = 0; v < n; v++) s += exp((double)x[v] - mx);
    return mx + log(s);
}

/* One scored row: teacher logits lt, student logits ls, the next token.
 * KL(T‖S) = Σ p_T·(lt − ls) + logZ_S − logZ_T, since Σ p_T = 1. */
static void score_row(const float *lt, const float *ls, int V, int next, Sums *s) {
    double lzt = log_sum_exp(lt, V), lzs = log_sum_exp(ls, V);
    double cross = 0.0;
    for (int v = 0; v < V; v++) cross += exp((double)lt[v] - lzt) * ((double)lt[v] - ls[v]);
    s->nll_t += lzt - lt[next];
    s->nll_s += lzs - ls[next];
    s->kl += cross + lzs - lzt;
    s->agree += bl_argmax(lt, V) == bl_argmax(ls, V);
    s->rows++;
}

static int n_adapters(const BlStudent *st) {
    const BlConfig *c = &st->model->cfg;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++)
            if (bl_student_has(st, l, k)) return st->lin[(size_t)l * BL_LIN_KINDS + k].lora.n;
    return 0;
}

static int n_examples(const BlDataset *d, const BlEvalOptions *opt) {
    return opt->max_examples > 0 && opt->max_examples < d->n ? opt->max_examples : d->n;
}

/* Longest sequence the evaluated examples feed (each is cut to seq). */
static int data_capacity(const BlDataset *d, const BlEvalOptions *opt) {
    int cap = 0, n_ex = n_examples(d, opt);
    for (int i = 0; i < n_ex; i++) {
        int len;
        const uint8_t *tg;
        bl_dataset_example(d, i, &len, &tg);
        cap = len > cap ? len : cap;
    }
    return cap < opt->seq ? cap : opt->seq;
}

/* NLL, KL and agreement over the first examples of d: the teacher through
 * the inference forward, the student through the runner. */
static int score_data(BlStudentRunner *run, const BlModel *m, const BlDataset *d,
                      const BlEvalOptions *opt, BlEvalReport *r, BlError *err) {
    int V = m->cfg.vocab_size;
    int n_ex = n_examples(d, opt), cap = data_capacity(d, opt);
    if (n_ex == 0) return bl_fail(err, "eval: the data holds no examples");
    BlForwardState fs;
    if (bl_build_forward_state(&fs, m, bl_backend_cpu(), 1, cap, false, err)) return -1;
    float *lt = bl_malloc(sizeof(float) * (size_t)cap * V * 2, err), *ls = lt + (size_t)cap * V;
    Sums s = {0};
    int rc = lt ? 0 : -1;
    for (int i = 0; rc == 0 && i < n_ex; i++) {
        int len;
        const uint8_t *tg;
        const int *ids = bl_dataset_example(d, i, &len, &tg);
        int n = len < opt->seq ? len : opt->seq;
        r->truncated += len > n;
        r->examples++;
        r->tokens += n;
        if (n < 2) continue;
        if ((rc = bl_forward(&fs, ids, &n, 1, n, lt, NULL, err)) ||
            (rc = bl_student_runner_logits(run, ids, n, ls, err))) {
            bl_fail_prefix(err, "eval: example %d", i + 1);
            break;
        }
        for (int t = 0; t + 1 < n; t++)
            if (tg[t + 1]) score_row(lt + (size_t)t * V, ls + (size_t)t * V, V, ids[t + 1], &s);
        if (!isfinite(s.nll_t + s.nll_s + s.kl)) {
            rc = bl_fail(err, "eval: example %d: the %s's logits are not finite", i + 1,
                         isfinite(s.nll_t) ? "student" : "teacher");
            break;
        }
        if (opt->progress)
            fprintf(opt->progress, "eval: example %d/%d (%d tokens)\n", i + 1, n_ex, n);
    }
    free(lt);
    bl_free_forward_state(&fs);
    if (rc) return -1;
    if (s.rows == 0) return bl_fail(err, "eval: the data has no scored tokens (no targets)");
    r->rows = s.rows;
    r->teacher_nll = s.nll_t / (double)s.rows;
    r->student_nll = s.nll_s / (double)s.rows;
    r->teacher_ppl = exp(r->teacher_nll);
    r->student_ppl = exp(r->student_nll);
    r->kl = s.kl / (double)s.rows;
    r->agree = s.agree;
    r->agreement = (double)s.agree / (double)s.rows;
    return 0;
}

/* Every prompt as token ids (gen[i].prompt_ids), checked against the
 * context; *longest receives the longest prompt + max_tokens. */
static int encode_prompts(const BlModel *m, const BlEvalOptions *opt, BlEvalReport *r,
                          int *longest, BlError *err) {
    *longest = 0;
    if (opt->n_prompts == 0) return 0;
    if (opt->max_tokens < 1) return bl_fail(err, "eval: max_tokens must be at least 1");
    if (!(r->gen = bl_calloc((size_t)opt->n_prompts, sizeof *r->gen, err))) return -1;
    r->n_gen = opt->n_prompts;
    for (int i = 0; i < opt->n_prompts; i++) {
        BlEvalGeneration *g = &r->gen[i];
        g->prompt = opt->prompts[i];
        if (bl_eval_encode_prompt(m, g->prompt, &g->prompt_ids, &g->n_prompt, &r->chat_prompts, err))
            return bl_fail_prefix(err, "eval: prompt %d", i + 1);
        int need = g->n_prompt + opt->max_tokens;
        if (need > m->cfg.max_seq_len)
            return bl_fail(err, "eval: prompt %d (%d tokens) + %d new tokens exceed the model's "
                                "context of %d", i + 1, g->n_prompt, opt->max_tokens,
                           m->cfg.max_seq_len);
        *longest = need > *longest ? need : *longest;
    }
    return 0;
}

/* Teacher and student greedy answers to one encoded prompt. */
static int generate_pair(BlStudentRunner *run, const BlModel *m, int max_new, BlEvalGeneration *g,
                         BlError *err) {
    if (!(g->teacher = bl_malloc(sizeof(int) * (size_t)max_new * 2, err))) return -1;
    g->student = g->teacher + max_new;
    if (bl_generate_greedy(m, bl_backend_cpu(), g->prompt_ids, g->n_prompt, max_new, NULL, NULL,
                           g->teacher, &g->n_teacher, err) ||
        bl_student_runner_generate(run, g->prompt_ids, g->n_prompt, max_new, g->student,
                                   &g->n_student, err) ||
        bl_tokenizer_decode(m->tokenizer, g->teacher, g->n_teacher, true, &g->teacher_text, err) ||
        bl_tokenizer_decode(m->tokenizer, g->student, g->n_student, true, &g->student_text, err))
        return -1;
    g->common = bl_common_prefix(g->teacher, g->n_teacher, g->student, g->n_student);
    return 0;
}

static int run_prompts(BlStudentRunner *run, const BlModel *m, const BlEvalOptions *opt,
                       BlEvalReport *r, BlError *err) {
    long long common = 0;
    for (int i = 0; i < r->n_gen; i++) {
        if (generate_pair(run, m, opt->max_tokens, &r->gen[i], err))
            return bl_fail_prefix(err, "eval: prompt %d", i + 1);
        common += r->gen[i].common;
        if (opt->progress)
            fprintf(opt->progress, "eval: prompt %d/%d (common prefix %d)\n", i + 1, r->n_gen,
                    r->gen[i].common);
    }
    r->mean_common = r->n_gen ? (double)common / r->n_gen : 0.0;
    return 0;
}

int bl_evaluate(BlStudent *st, const BlDataset *d, const BlEvalOptions *opt, BlEvalReport *r,
                BlError *err) {
    const BlModel *m = st->model;
    memset(r, 0, sizeof *r);
    double t0 = now();
    if (opt->seq < 2 || opt->seq > m->cfg.max_seq_len)
        return bl_fail(err, "eval: sequence length %d is outside 2..%d (the model's context)",
                       opt->seq, m->cfg.max_seq_len);
    if (d->model != m) return bl_fail(err, "eval: the data was tokenised for another model");
    int longest;
    if (encode_prompts(m, opt, r, &longest, err)) return -1;
    int cap = data_capacity(d, opt);
    cap = longest > cap ? longest : cap;
    float lambda = st->cfg.lambda;
    st->cfg.lambda = 1.0f; /* the student as it would be exported: ternary */
    r->lambda = 1.0f;
    r->act_bits = st->cfg.act_bits;
    r->adapters = n_adapters(st);
    r->subln = st->cfg.subln;
    r->post_attn_norm = st->cfg.post_attn_norm;
    BlStudentRunner *run = NULL;
    int rc = bl_student_runner_open(&run, st, cap > 0 ? cap : 1, BL_STUDENT_WEFF_CACHE_MAX, err);
    if (rc == 0) rc = score_data(run, m, d, opt, r, err);
    double t1 = now();
    r->seconds_data = t1 - t0;
    if (rc == 0) rc = run_prompts(run, m, opt, r, err);
    r->seconds_prompts = now() - t1;
    bl_student_runner_close(run);
    st->cfg.lambda = lambda;
    if (rc) return -1;
    bl_eval_memory(m, st, &r->mem);
    double quality_ratio = r->teacher_ppl / r->student_ppl; /* (1/ppl_S) / (1/ppl_T) */
    double memory_ratio = (double)r->mem.student_bytes / (double)r->mem.teacher_bytes;
    r->qei = quality_ratio / memory_ratio;
    r->seconds = now() - t0;
    return 0;
}

void bl_eval_report_free(BlEvalReport *r) {
    for (int i = 0; i < r->n_gen; i++) {
        free(r->gen[i].prompt_ids);
        free(r->gen[i].teacher); /* the student's ids share this allocation */
        free(r->gen[i].teacher_text);
        free(r->gen[i].student_text);
    }
    free(r->gen);
    memset(r, 0, sizeof *r);
}
