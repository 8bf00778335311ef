/* eval_report.c - an evaluation's results as a readable table and as JSON
 * (every number, the paths, and the definitions the numbers follow). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/evaluate.h"

static const char QEI_DEFINITION[] =
    "QEI = (quality_student / quality_teacher) / (memory_student / memory_teacher), "
    "quality = 1/perplexity";
static const char AGREEMENT_DEFINITION[] =
    "agreement: the student's top-1 token is the teacher's, over scored tokens; "
    "agreement_firstN: the same over scored tokens at positions < N of their example "
    "(the row at position t predicts token t+1); agreement_top5: the teacher's top-1 token "
    "is among the student's 5 most likely (ties by the lower token id); "
    "perplexity_ratio = student_perplexity / teacher_perplexity";
static const char MEMORY_ACCOUNTING[] =
    "teacher: every parameter at 16 bits (the source file's size is reported, not used); "
    "student: block linear weights at 2 bits (ternary, packed 4 per byte, out*ceil(in/4) bytes "
    "per tensor) + one fp32 scale per tensor + the token embedding and lm_head when untied at "
    "16 bits + norm weights and biases (SubLN / post-attention norm weights included) at 32 bits, "
    "the tensor data of the default packed safetensors export; adapters are merged into W "
    "before quantisation";

/* n with thousands separators, in a rotating set of static buffers so a
 * few can appear in one printf */
static const char *grouped(long long n) {
    static char bufs[8][32];
    static int next;
    char *b = bufs[next++ % 8], tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%lld", n < 0 ? -n : n), o = 0;
    if (n < 0) b[o++] = '-';
    for (int i = 0; i < len; i++) {
        if (i && (len - i) % 3 == 0) b[o++] = ',';
        b[o++] = tmp[i];
    }
    b[o] = '\0';
    return b;
}

static const char *format_name(BlEvalFormat f) {
    return f == BL_EVAL_JSONL ? "jsonl" : f == BL_EVAL_TEXT ? "text" : "dataset";
}

static void print_student(FILE *f, const BlEvalOptions *opt, const BlEvalReport *r) {
    char acts[32];
    if (r->act_bits == 16) snprintf(acts, sizeof acts, "full-precision activations");
    else snprintf(acts, sizeof acts, "%d-bit activations", r->act_bits);
    if (opt->checkpoint_path)
        fprintf(f, "  student   %s (%d adapter%s; evaluated at lambda = 1, %s%s%s)\n",
                opt->checkpoint_path, r->adapters, r->adapters == 1 ? "" : "s", acts,
                r->subln ? ", SubLN" : "", r->post_attn_norm ? ", post-attention norm" : "");
    else if (r->adapters == 0)
        fprintf(f, "  student   fresh: no adapters, lambda = 1, %s -- the \"before training\" "
                   "baseline (the teacher's weights quantised as they are)\n", acts);
    else
        fprintf(f, "  student   in memory (%d adapter%s; evaluated at lambda = 1, %s)\n",
                r->adapters, r->adapters == 1 ? "" : "s", acts);
}

static void print_data(FILE *f, const BlEvalOptions *opt, const BlEvalReport *r) {
    const char *what = opt->format == BL_EVAL_TEXT ? "plain text" :
                       opt->format == BL_EVAL_JSONL ? "JSONL, loss on assistant turns" : "dataset";
    const char *unit = opt->format == BL_EVAL_TEXT ? "chunks" : "examples";
    fprintf(f, "  data      %s (%s): %d %s of <= %d tokens, %s tokens, %s scored",
            opt->data_path ? opt->data_path : "(in memory)", what, r->examples, unit, opt->seq,
            grouped(r->tokens), grouped(r->rows));
    if (r->truncated) fprintf(f, "; %d cut to %d tokens", r->truncated, opt->seq);
    if (opt->tokens > 0)
        fprintf(f, r->rows >= opt->tokens ? "; the %s up to the first reaching %s scored tokens"
                                          : "; all the %s: they hold fewer than the cap of %s scored tokens",
                unit, grouped(opt->tokens));
    fprintf(f, "\n");
}

/* Top-1 agreement overall and by position, then top-5: the measures that
 * move long before the greedy answers share a prefix. */
static void print_agreement(FILE *f, const BlEvalReport *r) {
    fprintf(f, "  top-1 agreement          %6.2f %% (%s of %s scored tokens)\n",
            100.0 * r->agreement, grouped(r->agree), grouped(r->rows));
    for (int i = 0; i < BL_EVAL_N_POS; i++) {
        char label[32];
        snprintf(label, sizeof label, "positions < %d", bl_eval_pos_cuts[i]);
        if (r->rows_pos[i])
            fprintf(f, "    %-23s%6.2f %% (%s of %s)\n", label, 100.0 * r->agreement_pos[i],
                    grouped(r->agree_pos[i]), grouped(r->rows_pos[i]));
        else
            fprintf(f, "    %-23s   n/a   (no scored token there)\n", label);
    }
    fprintf(f, "  top-5 agreement          %6.2f %% (%s of %s: the teacher's top-1 among the "
               "student's 5 most likely)\n",
            100.0 * r->agreement_top5, grouped(r->agree_top5), grouped(r->rows));
}

static void print_generations(FILE *f, const BlEvalOptions *opt, const BlEvalReport *r) {
    if (r->n_gen == 0) return;
    fprintf(f, "\n  greedy answers (up to %d new tokens, KV cache%s)%s%s:\n", opt->max_tokens,
            r->chat_prompts ? ", prompt in the chat template" : "",
            opt->prompts_path ? " from " : "", opt->prompts_path ? opt->prompts_path : "");
    fprintf(f, "     #  common  teacher  student  prompt\n");
    for (int i = 0; i < r->n_gen; i++) {
        const BlEvalGeneration *g = &r->gen[i];
        fprintf(f, "    %2d  %6d  %7d  %7d  %.60s%s\n", i + 1, g->common, g->n_teacher,
                g->n_student, g->prompt, strlen(g->prompt) > 60 ? "..." : "");
    }
    fprintf(f, "  mean common greedy prefix: %.2f tokens\n", r->mean_common);
}

static void print_memory(FILE *f, const BlEvalReport *r) {
    const BlEvalMemory *mm = &r->mem;
    fprintf(f, "\n  memory (bytes of weights)\n");
    fprintf(f, "    teacher  %s params x 16 bits = %s bytes", grouped(mm->teacher_params),
            grouped(mm->teacher_bytes));
    if (mm->source_bytes >= 0) fprintf(f, " (source file: %s bytes)", grouped(mm->source_bytes));
    fprintf(f, "\n    student  %s block-linear weights x 2 bits (ternary, 4 per byte) = %s bytes\n",
            grouped(mm->ternary_weights), grouped(mm->ternary_bytes));
    fprintf(f, "             + %d fp32 scales = %s bytes\n", mm->ternary_tensors,
            grouped(mm->scale_bytes));
    fprintf(f, "             + %s embedding / LM head params x 16 bits = %s bytes\n",
            grouped(mm->matrix_params), grouped(mm->matrix_bytes));
    fprintf(f, "             + %s norm and bias params x 32 bits = %s bytes\n",
            grouped(mm->vector_params), grouped(mm->vector_bytes));
    fprintf(f, "             = %s bytes (%.2f%% of the teacher)\n", grouped(mm->student_bytes),
            100.0 * (double)mm->student_bytes / (double)mm->teacher_bytes);
}

void bl_eval_report_print(FILE *f, const BlEvalOptions *opt, const BlEvalReport *r) {
    fprintf(f, "bitlab eval: teacher vs ternary student\n");
    fprintf(f, "  model     %s\n", opt->model_path ? opt->model_path : "(in memory)");
    print_student(f, opt, r);
    print_data(f, opt, r);
    fprintf(f, "\n                                   teacher          student\n");
    fprintf(f, "  perplexity               %15.4f  %15.4f\n", r->teacher_ppl, r->student_ppl);
    fprintf(f, "  mean NLL (nats/token)    %15.4f  %15.4f\n", r->teacher_nll, r->student_nll);
    fprintf(f, "  weight bytes             %15s  %15s\n", grouped(r->mem.teacher_bytes),
            grouped(r->mem.student_bytes));
    fprintf(f, "\n  KL(teacher||student)     %.4f nats/token (tau = 1, mean over scored tokens)\n",
            r->kl);
    fprintf(f, "  perplexity ratio         %.4g (student / teacher; 1 = the teacher's)\n",
            r->ppl_ratio);
    print_agreement(f, r);
    print_generations(f, opt, r);
    print_memory(f, r);
    fprintf(f, "\n  %s\n", QEI_DEFINITION);
    fprintf(f, "      = (%.6g / %.6g) / (%s / %s) = %.4g / %.4g = %.4g\n", r->teacher_ppl,
            r->student_ppl, grouped(r->mem.student_bytes), grouped(r->mem.teacher_bytes),
            r->teacher_ppl / r->student_ppl,
            (double)r->mem.student_bytes / (double)r->mem.teacher_bytes, r->qei);
    fprintf(f, "\n  %.1f s (held-out set %.1f s, greedy answers %.1f s)%s\n", r->seconds,
            r->seconds_data, r->seconds_prompts,
            r->teacher_cache == 2   ? ", teacher from its cache"
            : r->teacher_cache == 1 ? ", teacher cache written"
                                    : "");
}

// ----------------------------------------------------------------------------
// JSON

static void add_str(cJSON *o, const char *k, const char *v) {
    if (v) cJSON_AddStringToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

static cJSON *ids_array(const int *ids, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

static cJSON *memory_json(const BlEvalMemory *mm) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "teacher_params", (double)mm->teacher_params);
    cJSON_AddNumberToObject(o, "teacher_bits_per_param", 16);
    cJSON_AddNumberToObject(o, "teacher_bytes", (double)mm->teacher_bytes);
    if (mm->source_bytes >= 0) cJSON_AddNumberToObject(o, "source_file_bytes", (double)mm->source_bytes);
    else cJSON_AddNullToObject(o, "source_file_bytes");
    cJSON_AddNumberToObject(o, "student_ternary_weights", (double)mm->ternary_weights);
    cJSON_AddNumberToObject(o, "student_ternary_tensors", mm->ternary_tensors);
    cJSON_AddNumberToObject(o, "student_ternary_bytes", (double)mm->ternary_bytes);
    cJSON_AddNumberToObject(o, "student_scale_bytes", (double)mm->scale_bytes);
    cJSON_AddNumberToObject(o, "student_embedding_params", (double)mm->matrix_params);
    cJSON_AddNumberToObject(o, "student_embedding_bytes", (double)mm->matrix_bytes);
    cJSON_AddNumberToObject(o, "student_norm_bias_params", (double)mm->vector_params);
    cJSON_AddNumberToObject(o, "student_norm_bias_bytes", (double)mm->vector_bytes);
    cJSON_AddNumberToObject(o, "student_other_params", (double)mm->other_params);
    cJSON_AddNumberToObject(o, "student_other_bytes", (double)mm->other_bytes);
    cJSON_AddNumberToObject(o, "student_bytes", (double)mm->student_bytes);
    cJSON_AddStringToObject(o, "accounting", MEMORY_ACCOUNTING);
    return o;
}

/* The early-moving measures, flat beside "agreement" so that a dashboard
 * line or a Lua report reads them as plain numbers: agreement_first8 /
 * _first32 (NaN, i.e. null, when no row is scored there), agreement_top5,
 * perplexity_ratio. */
static void agreement_json(cJSON *o, const BlEvalReport *r) {
    for (int i = 0; i < BL_EVAL_N_POS; i++) {
        char k[48];
        snprintf(k, sizeof k, "agreement_first%d", bl_eval_pos_cuts[i]);
        cJSON_AddNumberToObject(o, k, r->agreement_pos[i]);
        snprintf(k, sizeof k, "agreement_first%d_tokens", bl_eval_pos_cuts[i]);
        cJSON_AddNumberToObject(o, k, (double)r->agree_pos[i]);
        snprintf(k, sizeof k, "scored_tokens_first%d", bl_eval_pos_cuts[i]);
        cJSON_AddNumberToObject(o, k, (double)r->rows_pos[i]);
    }
    cJSON_AddNumberToObject(o, "agreement_top5", r->agreement_top5);
    cJSON_AddNumberToObject(o, "agreement_top5_tokens", (double)r->agree_top5);
    cJSON_AddStringToObject(o, "agreement_definition", AGREEMENT_DEFINITION);
    cJSON_AddNumberToObject(o, "perplexity_ratio", r->ppl_ratio);
}

static cJSON *prompts_json(const BlEvalOptions *opt, const BlEvalReport *r) {
    cJSON *o = cJSON_CreateObject();
    add_str(o, "file", opt->prompts_path);
    cJSON_AddNumberToObject(o, "max_tokens", opt->max_tokens);
    cJSON_AddBoolToObject(o, "chat_template", r->chat_prompts);
    cJSON_AddNumberToObject(o, "mean_common_prefix", r->mean_common);
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    for (int i = 0; items && i < r->n_gen; i++) {
        const BlEvalGeneration *g = &r->gen[i];
        cJSON *it = cJSON_CreateObject();
        cJSON_AddStringToObject(it, "prompt", g->prompt);
        cJSON_AddNumberToObject(it, "prompt_tokens", g->n_prompt);
        cJSON_AddNumberToObject(it, "common_prefix", g->common);
        cJSON_AddItemToObject(it, "teacher_ids", ids_array(g->teacher, g->n_teacher));
        cJSON_AddItemToObject(it, "student_ids", ids_array(g->student, g->n_student));
        add_str(it, "teacher_text", g->teacher_text);
        add_str(it, "student_text", g->student_text);
        cJSON_AddItemToArray(items, it);
    }
    return o;
}

cJSON *bl_eval_report_json(const BlEvalOptions *opt, const BlEvalReport *r) {
    cJSON *o = cJSON_CreateObject();
    add_str(o, "model", opt->model_path);
    add_str(o, "checkpoint", opt->checkpoint_path);
    cJSON_AddStringToObject(o, "student_source", opt->checkpoint_path ? "checkpoint" :
                            r->adapters ? "in memory" : "fresh (no adapters): before-training baseline");
    add_str(o, "data", opt->data_path);
    cJSON_AddStringToObject(o, "data_format", format_name(opt->format));
    cJSON_AddNumberToObject(o, "seq", opt->seq);
    cJSON_AddNumberToObject(o, "max_examples", opt->max_examples);
    cJSON_AddNumberToObject(o, "tokens_cap", (double)opt->tokens); /* 0: none */
    cJSON_AddNumberToObject(o, "examples", r->examples);
    cJSON_AddNumberToObject(o, "examples_truncated", r->truncated);
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(o, "scored_tokens", (double)r->rows);
    cJSON *s = cJSON_AddObjectToObject(o, "student");
    cJSON_AddNumberToObject(s, "lambda", r->lambda);
    cJSON_AddNumberToObject(s, "act_bits", r->act_bits);
    cJSON_AddNumberToObject(s, "adapters", r->adapters);
    cJSON_AddBoolToObject(s, "subln", r->subln);
    cJSON_AddBoolToObject(s, "post_attn_norm", r->post_attn_norm);
    cJSON_AddNumberToObject(o, "teacher_perplexity", r->teacher_ppl);
    cJSON_AddNumberToObject(o, "student_perplexity", r->student_ppl);
    cJSON_AddNumberToObject(o, "teacher_nll", r->teacher_nll);
    cJSON_AddNumberToObject(o, "student_nll", r->student_nll);
    cJSON_AddNumberToObject(o, "kl", r->kl);
    cJSON_AddNumberToObject(o, "kl_tau", 1);
    cJSON_AddNumberToObject(o, "agreement", r->agreement);
    cJSON_AddNumberToObject(o, "agreement_tokens", (double)r->agree);
    agreement_json(o, r);
    cJSON_AddItemToObject(o, "prompts", prompts_json(opt, r));
    cJSON_AddItemToObject(o, "memory", memory_json(&r->mem));
    cJSON_AddNumberToObject(o, "qei", r->qei);
    cJSON_AddStringToObject(o, "qei_definition", QEI_DEFINITION);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    cJSON_AddNumberToObject(o, "seconds_data", r->seconds_data);
    cJSON_AddNumberToObject(o, "seconds_prompts", r->seconds_prompts);
    cJSON_AddStringToObject(o, "teacher_cache", r->teacher_cache == 2   ? "read"
                                                : r->teacher_cache == 1 ? "written"
                                                                        : "off");
    return o;
}

int bl_eval_report_write_json(const char *path, const BlEvalOptions *opt, const BlEvalReport *r,
                              BlError *err) {
    cJSON *o = bl_eval_report_json(opt, r);
    char *text = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!text) return bl_fail(err, "%s: out of memory formatting the report", path);
    FILE *f = fopen(path, "wb");
    int rc = 0;
    if (!f) rc = bl_fail(err, "%s: cannot create", path);
    else {
        size_t n = strlen(text);
        if (fwrite(text, 1, n, f) != n || fputc('\n', f) == EOF) rc = bl_fail(err, "%s: write failed", path);
        if (fclose(f) && rc == 0) rc = bl_fail(err, "%s: write failed", path);
    }
    free(text);
    return rc;
}
