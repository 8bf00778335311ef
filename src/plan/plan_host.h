/* plan_host.h - what `bitlab plan` reads and measures besides the
 * arithmetic of plan.h: the model's hyper-parameters (from a config.json, a
 * Hugging Face folder or a GGUF file's metadata; weights are never read or
 * dequantised) and the process around the trainer — the tokenizer's heap
 * (built from the model's files and measured), the GGUF metadata heap, the
 * bytes of the weight files the loader maps while loading, and the process
 * baseline (resident memory plus the OpenBLAS buffers a GEMM touches).
 *
 * Measurements read /proc/self/status (VmRSS, RssAnon); where it is missing
 * they are 0. */
#ifndef BITLAB_PLAN_HOST_H
#define BITLAB_PLAN_HOST_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "model/config.h"
#include "plan/plan.h"

typedef struct {
    BlConfig cfg;          /* checked (bl_config_check): arch flags set */
    char path[4096];       /* the config.json or GGUF file read */
    char format[8];        /* "hf" or "gguf" */
    BlPlanHost host;       /* baseline left 0 (see bl_plan_blas_buffers) */
    bool has_tokenizer;    /* a tokenizer was found, built and measured */
} BlPlanSource;

/* Exactly one of config_path (a config.json, a folder holding one, or a GGUF
 * file) and model_path (a GGUF file or a Hugging Face folder) is non-NULL.
 * Errors name the file and the field. */
int bl_plan_source_open(BlPlanSource *s, const char *config_path, const char *model_path,
                        BlError *err);

/* The process's resident set now (VmRSS), in bytes. */
size_t bl_plan_rss_now(void);

/* How much the resident set grows across one warm-up GEMM pair of the run's
 * shapes (y = x·Wᵀ and its dx = dy·W; M = B·T ≤ 256, N = vocab ≤ 2048,
 * K = max(dim, hidden) ≤ 1024): OpenBLAS's thread buffers, which a training
 * step touches too. Its own matrices are unmapped before measuring. */
size_t bl_plan_blas_buffers(const BlConfig *c, const BlPlanRun *r);

/* The whole planner: reads the source, measures the baseline (the resident
 * set when called, the code pages reading the source touched, and
 * bl_plan_blas_buffers) unless baseline_bytes >= 0 gives it, and computes
 * the plan. From the command line the resident set at the
 * call is a fresh process's; inside a script it is what the script holds. */
int bl_plan_make(BlPlan *p, BlPlanSource *src, const char *config_path, const char *model_path,
                 const BlPlanRun *run, double baseline_bytes, BlError *err);

#endif
