/* evaluate.c - the teacher–student comparison on a held-out set and a
 * prompt list (definitions in evaluate.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval/evaluate.h"
#include "eval/student_eval.h"
#include "tokenizer/tokenizer.h"

/* the report's fields and JSON names say top 5 */
_Static_assert(BL_EVAL_TOPK == 5, "BlEvalReport.agree_top5 counts BL_EVAL_TOPK");

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int n_adapters(const BlStudent *st) {
    const BlConfig *c = &st->model->cfg;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++)
            if (bl_student_has(st, l, k)) return st->lin[(size_t)l * BL_LIN_KINDS + k].lora.n;
    return 0;
}

/* Scored rows of example i cut to seq: row t when token t+1 is a target
 * (what bl_eval_dataset scores). */
static long long scored_rows(const BlDataset *d, int i, int seq) {
    int len;
    const uint8_t *tg;
    bl_dataset_example(d, i, &len, &tg);
    int n = seq > 0 && len > seq ? seq : len;
    long long rows = 0;
    for (int t = 1; t < n; t++) rows += tg[t] != 0;
    return rows;
}

/* Whole examples, in order, so that a capped set is the same at every
 * evaluation and equals max_examples = k: the cap ends the set with the
 * example that reaches it (or with the data, when it holds fewer rows). */
int bl_eval_n_examples(const BlDataset *d, const BlEvalOptions *opt) {
    int n = opt->max_examples > 0 && opt->max_examples < d->n ? opt->max_examples : d->n;
    if (opt->tokens <= 0) return n;
    long long rows = 0;
    for (int i = 0; i < n; i++)
        if ((rows += scored_rows(d, i, opt->seq)) >= opt->tokens) return i + 1;
    return n;
}

static int n_examples(const BlDataset *d, const BlEvalOptions *opt) {
    return bl_eval_n_examples(d, opt);
}

/* NLL, KL and the agreements over the first examples of d, teacher and student
 * through the runner (eval/student_eval.h's bl_eval_dataset). */
static int score_data(BlEvalRunner *run, const BlDataset *d, const BlEvalOptions *opt,
                      BlEvalTeacherRows *tc, int cache, BlEvalReport *r, BlError *err) {
    int n_ex = n_examples(d, opt);
    if (n_ex == 0) return bl_fail(err, "eval: the data holds no examples");
    BlEvalSums s = {0};
    int rc = cache ? bl_eval_dataset_teacher_cached(run, d, n_ex, opt->seq, opt->progress, tc,
                                                    cache == 1, &s, err)
                   : bl_eval_dataset(run, BL_EVAL_BOTH | BL_EVAL_FINITE, d, n_ex, opt->seq,
                                     opt->progress, &s, err);
    r->examples = s.examples;
    r->truncated = s.truncated;
    r->tokens = s.tokens;
    if (rc) return -1;
    if (s.rows == 0) return bl_fail(err, "eval: the data has no scored tokens (no targets)");
    r->rows = s.rows;
    r->teacher_nll = s.nll_teacher / (double)s.rows;
    r->student_nll = s.nll_student / (double)s.rows;
    r->teacher_ppl = exp(r->teacher_nll);
    r->student_ppl = exp(r->student_nll);
    r->kl = s.kl / (double)s.rows;
    r->agree = s.agree;
    r->agreement = (double)s.agree / (double)s.rows;
    r->agree_top5 = s.agree_topk;
    r->agreement_top5 = (double)s.agree_topk / (double)s.rows;
    for (int i = 0; i < BL_EVAL_N_POS; i++) {
        r->rows_pos[i] = s.rows_pos[i];
        r->agree_pos[i] = s.agree_pos[i];
        /* JSONL data scores assistant turns only, which may all start later */
        r->agreement_pos[i] = s.rows_pos[i] ? (double)s.agree_pos[i] / (double)s.rows_pos[i] : NAN;
    }
    /* from the NLLs: the ratio of two exps overflows first */
    r->ppl_ratio = exp(r->student_nll - r->teacher_nll);
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
static int generate_pair(BlEvalRunner *run, const BlModel *m, int max_new, BlEvalGeneration *g,
                         BlEvalTeacherGen *cached, bool from_cache, BlError *err) {
    if (!(g->teacher = bl_malloc(sizeof(int) * (size_t)max_new * 2, err))) return -1;
    g->student = g->teacher + max_new;
    if (from_cache) {
        if (cached->n > max_new) return bl_fail(err, "the cached teacher answer is too long");
        memcpy(g->teacher, cached->ids, sizeof(int) * (size_t)cached->n);
        g->n_teacher = cached->n;
    } else if (bl_eval_runner_generate(run, false, g->prompt_ids, g->n_prompt, max_new, NULL,
                                       NULL, g->teacher, &g->n_teacher, err)) {
        return -1;
    }
    if (cached && !from_cache) {
        if (!(cached->ids = bl_malloc(sizeof(int) * ((size_t)g->n_teacher + 1), err))) return -1;
        memcpy(cached->ids, g->teacher, sizeof(int) * (size_t)g->n_teacher);
        cached->n = g->n_teacher;
    }
    if (
        bl_eval_runner_generate(run, true, g->prompt_ids, g->n_prompt, max_new, NULL, NULL,
                                g->student, &g->n_student, err) ||
        bl_tokenizer_decode(m->tokenizer, g->teacher, g->n_teacher, true, &g->teacher_text, err) ||
        bl_tokenizer_decode(m->tokenizer, g->student, g->n_student, true, &g->student_text, err))
        return -1;
    g->common = bl_common_prefix(g->teacher, g->n_teacher, g->student, g->n_student);
    return 0;
}

static int run_prompts(BlEvalRunner *run, const BlModel *m, const BlEvalOptions *opt,
                       BlEvalTeacherGen *tg, int cache, BlEvalReport *r, BlError *err) {
    long long common = 0;
    for (int i = 0; i < r->n_gen; i++) {
        if (generate_pair(run, m, opt->max_tokens, &r->gen[i], cache ? &tg[i] : NULL, cache == 2,
                          err))
            return bl_fail_prefix(err, "eval: prompt %d", i + 1);
        common += r->gen[i].common;
        if (opt->progress)
            fprintf(opt->progress, "eval: prompt %d/%d (common prefix %d)\n", i + 1, r->n_gen,
                    r->gen[i].common);
    }
    r->mean_common = r->n_gen ? (double)common / r->n_gen : 0.0;
    return 0;
}

int bl_evaluate(const BlBackend *be, BlStudent *st, BlStudentMode mode, const BlDataset *d,
                const BlEvalOptions *opt, BlEvalReport *r, BlError *err) {
    const BlModel *m = st->model;
    memset(r, 0, sizeof *r);
    double t0 = now();
    if (opt->seq < 2 || opt->seq > m->cfg.max_seq_len)
        return bl_fail(err, "eval: sequence length %d is outside 2..%d (the model's context)",
                       opt->seq, m->cfg.max_seq_len);
    if (d->model != m) return bl_fail(err, "eval: the data was tokenised for another model");
    int longest;
    if (encode_prompts(m, opt, r, &longest, err)) return -1;
    r->lambda = mode.lambda;
    r->act_bits = mode.act_bits;
    r->adapters = n_adapters(st);
    r->subln = st->cfg.subln;
    r->post_attn_norm = st->cfg.post_attn_norm;
    /* the teacher cache: 0 off, 1 fill, 2 read */
    BlEvalTeacherRows tc = {0};
    BlEvalTeacherGen *tgen = NULL;
    char key[65];
    char *cpath = NULL;
    int cache = 0;
    FILE *note = opt->progress ? opt->progress : stderr;
    if (opt->teacher_cache && opt->teacher_cache[0]) {
        BlError e = {0};
        if (strcmp(be->name, "cpu") != 0) {
            fprintf(note, "bitlab eval: teacher cache not used on %s (CPU backend only)\n",
                    be->name);
        } else if (bl_eval_teacher_key(opt, be, d, n_examples(d, opt), r, key, &e) ||
                   !(cpath = bl_eval_teacher_cache_path(opt->teacher_cache, key, &e)) ||
                   !(tgen = bl_calloc((size_t)r->n_gen + 1, sizeof *tgen, &e))) {
            fprintf(note, "bitlab eval: teacher cache off: %s\n", e.msg);
        } else {
            cache = 1;
            FILE *probe = fopen(cpath, "rb");
            if (probe) {
                fclose(probe);
                if (bl_eval_teacher_cache_load(cpath, key, m->cfg.dim, &tc, tgen, r->n_gen, &e))
                    fprintf(note, "bitlab eval: teacher cache %s: %s; recomputing the teacher\n",
                            cpath, e.msg);
                else
                    cache = 2;
            }
        }
    }
    BlEvalRunner *run = NULL;
    int rc = bl_eval_runner_open(&run, be, m, st, mode, BL_STUDENT_WEFF_CACHE_MAX, err);
    bool opened = rc == 0;
    if (rc == 0) rc = score_data(run, d, opt, &tc, cache, r, err);
    if (rc && opened && cache == 2) {
        /* a consistent file that still does not fit this data: recompute */
        fprintf(note, "bitlab eval: teacher cache %s: %s; recomputing the teacher\n", cpath,
                err ? err->msg : "does not fit the data");
        memset(r->rows_pos, 0, sizeof r->rows_pos);
        cache = 1;
        for (int i = 0; i < r->n_gen; i++) {
            free(tgen[i].ids);
            tgen[i] = (BlEvalTeacherGen){0};
        }
        rc = score_data(run, d, opt, &tc, cache, r, err);
    }
    double t1 = now();
    r->seconds_data = t1 - t0;
    if (rc == 0) rc = run_prompts(run, m, opt, tgen, cache, r, err);
    r->seconds_prompts = now() - t1;
    bl_eval_runner_close(run);
    if (rc == 0 && cache == 1) {
        BlError e = {0};
        if (bl_eval_teacher_cache_save(opt->teacher_cache, cpath, key, &tc, tgen, r->n_gen, &e))
            fprintf(note, "bitlab eval: teacher cache %s not written: %s\n", cpath, e.msg);
        else if (opt->progress)
            fprintf(opt->progress, "bitlab eval: teacher cache written to %s\n", cpath);
    }
    r->teacher_cache = cache;
    bl_eval_teacher_rows_free(&tc);
    for (int i = 0; tgen && i < r->n_gen; i++) free(tgen[i].ids);
    free(tgen);
    free(cpath);
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
