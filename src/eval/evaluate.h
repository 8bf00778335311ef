/* evaluate.h - `bitlab eval` / `bitlab.eval{}`: how good the ternary
 * student is against its teacher on held-out data, and what it costs.
 *
 * On every example of a held-out set (plain text cut into chunks, or chat /
 * text JSONL with the loss on assistant turns) the teacher and the student
 * (always at λ = 1, with the student's activation width) run the whole
 * sequence, on the backend of the call (CPU or CUDA); per scored row t (token t+1 is a target) they give
 *   NLL  −log p(ids[t+1])          → perplexity exp(mean NLL), each model
 *   KL   Σ_v p_T(v)·(log p_T(v) − log p_S(v))   (τ = 1), mean over rows
 *   top-1 agreement  argmax p_T == argmax p_S, fraction of rows; also over
 *                    the rows at positions t < 8 and t < 32 of their example
 *                    (little context: learnt first, so it moves early)
 *   top-5 agreement  argmax p_T among the student's 5 most likely tokens
 *                    (ties by the lower id), fraction of rows
 *   perplexity ratio ppl_S / ppl_T = exp(mean NLL_S − mean NLL_T), 1 = as good
 * all accumulated in double. (A KL ratio would mean nothing: the teacher's
 * KL to itself is 0; the KL above is the held-out distance.) On each prompt of a prompt list both answer
 * greedily (KV cache) and the common prefix of the two answers is counted.
 *
 * Memory accounting (bytes a deployment of each model needs for weights):
 *   teacher = every parameter at 16 bits (the model file's own size, e.g. a
 *             4-bit GGUF, is reported beside it but not used);
 *   student = every block linear weight at 2 bits (ternary packed 4 per
 *             byte, out·⌈in/4⌉ bytes per tensor: rows padded to 4 codes, the
 *             layout of the packed export) + one fp32 scale per such tensor
 *             + the token embedding and lm_head when untied at 16 bits
 *             + norm weights, biases (and SubLN / post-attention norm
 *             weights, which the export refuses) at 32 bits: exactly the
 *             tensor data of the default packed safetensors export (F16
 *             embedding / LM head, F32 norms and biases; its file adds only
 *             the JSON header). Adapters cost nothing: they are merged into
 *             W before quantisation.
 *   QEI = (quality_S / quality_T) / (memory_S / memory_T), quality = 1/ppl,
 *   i.e. (ppl_T / ppl_S) · (memory_T / memory_S): 1 = the student keeps the
 *   teacher's quality per byte; above 1 it buys more quality per byte. */
#ifndef BITLAB_EVALUATE_H
#define BITLAB_EVALUATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "core/error.h"
#include "data/dataset.h"
#include "eval/student_eval.h"
#include "model/model.h"
#include "train/student.h"

#define BL_EVAL_DEFAULT_SEQ 256
#define BL_EVAL_DEFAULT_MAX_TOKENS 64

typedef enum { BL_EVAL_TEXT, BL_EVAL_JSONL, BL_EVAL_DATASET } BlEvalFormat;

/* What to evaluate and how; the path strings are also what the report
 * names (NULL = not given). */
typedef struct {
    const char *model_path;
    const char *checkpoint_path; /* NULL: a fresh student (no adapters) */
    const char *data_path;       /* NULL when the data came as a dataset object */
    BlEvalFormat format;
    const char *prompts_path;    /* where the prompts came from, or NULL */
    const char *const *prompts;  /* [n_prompts] prompt texts */
    int n_prompts;
    int seq;          /* text chunk length; longer examples are cut to it */
    int max_examples; /* 0 = every example */
    long long tokens; /* > 0: the held-out set ends with the first example that brings the
                       * scored tokens (rows, after the cut to seq) to >= tokens; whole
                       * examples, so it is the set of max_examples = k for that k (and
                       * within max_examples when both are given); 0 = no cap */
    int max_tokens;   /* greedy tokens per prompt */
    FILE *progress;   /* one line per example / prompt, or NULL */
    const char *teacher_cache; /* directory of teacher caches, NULL = off */
} BlEvalOptions;

/* One prompt's greedy answers. */
typedef struct {
    const char *prompt;
    int *prompt_ids;       /* the prompt as fed (template included) */
    int n_prompt;
    int *teacher, *student;
    int n_teacher, n_student;
    int common;            /* common prefix, tokens */
    char *teacher_text, *student_text;
} BlEvalGeneration;

typedef struct {
    long long teacher_params;
    long long teacher_bytes;       /* 2 · teacher_params */
    long long source_bytes;        /* the model file (folder: its .safetensors), −1 if unknown */
    long long ternary_weights;     /* block linear weights */
    int ternary_tensors;
    long long ternary_bytes;       /* Σ out·⌈in/4⌉ */
    long long scale_bytes;         /* 4 · ternary_tensors */
    long long matrix_params;       /* token embedding + untied lm_head */
    long long matrix_bytes;        /* 2 · matrix_params (F16) */
    long long vector_params;       /* norm weights and biases */
    long long vector_bytes;        /* 4 · vector_params (F32) */
    long long other_params;        /* matrix_params + vector_params */
    long long other_bytes;         /* matrix_bytes + vector_bytes */
    long long student_bytes;
} BlEvalMemory;

typedef struct {
    int examples;       /* evaluated */
    int truncated;      /* of them, cut to seq */
    long long tokens;   /* tokens fed (each model) */
    long long rows;     /* scored rows */
    double teacher_nll, student_nll; /* mean, nats per token */
    double teacher_ppl, student_ppl;
    double kl;          /* mean KL(teacher‖student), nats per token */
    long long agree;    /* rows with the same top-1 */
    double agreement;   /* agree / rows */
    long long agree_top5;  /* rows whose teacher top-1 is in the student's top 5 */
    double agreement_top5; /* agree_top5 / rows */
    long long rows_pos[BL_EVAL_N_POS];  /* scored rows at positions < bl_eval_pos_cuts[i] */
    long long agree_pos[BL_EVAL_N_POS]; /* of them, the same top-1 */
    double agreement_pos[BL_EVAL_N_POS]; /* agree_pos / rows_pos, NAN when no such row */
    double ppl_ratio;   /* student_ppl / teacher_ppl */
    float lambda;       /* as evaluated (1) */
    int act_bits;
    int adapters;
    bool subln, post_attn_norm;
    BlEvalGeneration *gen;
    int n_gen;
    bool chat_prompts;  /* prompts were wrapped in the chat template */
    double mean_common;
    BlEvalMemory mem;
    double qei;
    int teacher_cache;       /* 0 off / unusable, 1 computed and written, 2 read */
    double seconds;          /* the whole call */
    double seconds_data;     /* of it: the held-out set (and building the student) */
    double seconds_prompts;  /* of it: the greedy answers */
} BlEvalReport;

// ---- data (eval_data.c) ------------------------------------------------------

/* Format of a data file by its name: ".jsonl" → JSONL, else plain text. */
BlEvalFormat bl_eval_format_of(const char *path);

/* The held-out set of path into d (initialised here; free with
 * bl_dataset_free). Plain text: encoded without special tokens, cut into
 * consecutive chunks of seq tokens (a final chunk of < 2 tokens is dropped),
 * every token a target. JSONL: bl_dataset_load_jsonl with response_only
 * (chat lines score assistant turns, text lines every token). */
int bl_eval_load_data(BlDataset *d, const BlModel *m, const char *path, BlEvalFormat format,
                      int seq, BlError *err);

/* Prompts of a file, one per line (blank lines skipped, trailing CR/space
 * removed): *out is an array of n malloc'd strings (bl_eval_free_prompts). */
int bl_eval_read_prompts(const char *path, char ***out, int *n, BlError *err);
void bl_eval_free_prompts(char **p, int n);

/* A prompt as token ids: wrapped in the model's chat template as a user turn
 * when it has one (*chat = true), else the text with the tokenizer's own
 * special tokens. *ids malloc'd. */
int bl_eval_encode_prompt(const BlModel *m, const char *text, int **ids, int *n, bool *chat,
                          BlError *err);

// ---- memory (eval_memory.c) -------------------------------------------------

/* The accounting above for m and a student of it (subln / post-attention
 * norm weights count when st has them; st may be NULL). */
void bl_eval_memory(const BlModel *m, const BlStudent *st, BlEvalMemory *out);

// ---- the evaluation (evaluate.c) ----------------------------------------------

/* Evaluates st at mode (`bitlab eval`: λ = 1 and the student's activation
 * width, or --act-bits) against its model on d's examples and opt's prompts,
 * both models on be (eval/student_eval.h's runner; st itself is not
 * changed). r is filled (free with bl_eval_report_free, also after a
 * failure). */
int bl_evaluate(const BlBackend *be, BlStudent *st, BlStudentMode mode, const BlDataset *d,
                const BlEvalOptions *opt, BlEvalReport *r, BlError *err);
/* How many of d's first examples opt evaluates (max_examples, the tokens cap). */
int bl_eval_n_examples(const BlDataset *d, const BlEvalOptions *opt);
void bl_eval_report_free(BlEvalReport *r);

// ---- teacher cache (eval_teacher_cache.c) --------------------------------------
/* The teacher's side of a held-out set and a prompt list never changes with
 * the student, so with opt->teacher_cache set it is computed once and kept
 * in DIR/eval-teacher-<key>.bin; a later evaluation with the same key runs
 * only the student. Representation (student_eval.h, BlEvalTeacherRows): per
 * scored row m_T = Σ_v p_T(v)·W_v (the expected lm_head row), Σ p_T log p_T,
 * the teacher's NLL and top-1, so the full-vocabulary KL is
 * Σ p_T log p_T − h_S·m_T + logZ_S, exact up to float rounding (no top-K
 * cut): 4·dim + 20 bytes per scored token (SmolLM2-135M: 2324, 66 MB for
 * 28.5 k tokens), against 4·vocab (196 KB) for the teacher's logits. Plus the
 * teacher's greedy ids per prompt. Key: sha256 of the model file, the
 * backend's name, seq, the number of examples, every evaluated example's
 * tokens and targets (the data file, its format and the tokenizer), the
 * prompts' ids and max_tokens, and the tokens cap when one is given. The CPU backend only (CUDA's lm_head is bf16,
 * so h_S·m_T would not be its logits' sum): elsewhere it is not used. A
 * missing, corrupt, truncated or mismatched file is named on progress (or
 * stderr) and the teacher recomputed; writing is atomic. */
typedef struct {
    int *ids;
    int n;
} BlEvalTeacherGen;
int bl_eval_teacher_key(const BlEvalOptions *opt, const BlBackend *be, const BlDataset *d,
                        int n_ex, const BlEvalReport *r, char key[65], BlError *err);
char *bl_eval_teacher_cache_path(const char *dir, const char key[65], BlError *err);
/* gen[n_gen] receive malloc'd ids on success. */
int bl_eval_teacher_cache_load(const char *path, const char key[65], int dim,
                               BlEvalTeacherRows *tc, BlEvalTeacherGen *gen, int n_gen,
                               BlError *err);
int bl_eval_teacher_cache_save(const char *dir, const char *path, const char key[65],
                               const BlEvalTeacherRows *tc, const BlEvalTeacherGen *gen,
                               int n_gen, BlError *err);

// ---- output (eval_report.c) -------------------------------------------------

/* The readable table (what `bitlab eval` prints). */
void bl_eval_report_print(FILE *f, const BlEvalOptions *opt, const BlEvalReport *r);
/* Every number, the paths and the definitions as one JSON object. */
cJSON *bl_eval_report_json(const BlEvalOptions *opt, const BlEvalReport *r);
/* Writes that object to path (pretty-printed). */
int bl_eval_report_write_json(const char *path, const BlEvalOptions *opt, const BlEvalReport *r,
                              BlError *err);

#endif
