/* plan_report.c - the plan as a table and as JSON (see plan_report.h). */
#include "plan/plan_report.h"

#include <string.h>

// ----------------------------------------------------------------------------
// shared pieces

/* Which side a category belongs to. */
static bool on_cpu(int c) {
    return c != BL_PLAN_CUDA_CONTEXT && c != BL_PLAN_CUBLAS;
}

static bool on_gpu(int c) {
    return c < BL_PLAN_TRAINER_CATS || c == BL_PLAN_DEVICE_STUDENT || c == BL_PLAN_GRAD_ACCUM ||
           c == BL_PLAN_CUDA_CONTEXT ||
           c == BL_PLAN_CUBLAS;
}

/* The notes: what was measured, what assumed. Returns how many were written. */
static int notes(const BlPlan *p, const BlPlanSource *src, char out[][512], int cap) {
    const BlPlanHost *h = &p->host;
    int n = 0;
    snprintf(out[n++], 512,
             "CPU: the trainer's own allocations (its buffer table, src/train/trainer.h, and the "
             "teacher's forward state), equal to bl_trainer_memory; GPU: a design estimate for "
             "the CUDA backend, not measured");
    snprintf(out[n++], 512,
             "student in backend memory: the trainer's copy of the student (LoRA stacks "
             "concatenated; on the CPU also a second copy of the trainable tensors, gradients "
             "and AdamW moments, which bl_trainer_memory does not count); on the GPU the "
             "trainer categories are those arenas, plus the newest adapter's copy here");
    snprintf(out[n++], 512, "%s",
             h->baseline_measured
                 ? "process baseline measured here: resident set at start, the code pages "
                   "reading the model's files touched, and the OpenBLAS buffers a warm-up GEMM "
                   "of the run's shapes touches"
                 : "process baseline given by the caller");
    snprintf(out[n++], 512, "%s",
             src->has_tokenizer ? "tokenizer: measured by building it from the model's files"
                                : "tokenizer: no tokenizer.json beside the config, not counted");
    if (h->weight_files_assumed)
        snprintf(out[n++], 512,
                 "loading: no weights beside the config; assumed a 2-byte (fp16/bf16) "
                 "checkpoint, mapped while it is converted into the fp32 arena");
    else
        snprintf(out[n++], 512,
                 "loading: the weight file is mapped (and read whole) while it is dequantised "
                 "into the fp32 arena, then unmapped");
    if (p->cpu.untouched)
        snprintf(out[n++], 512,
                 "%zu bytes are allocated but never written, so they never become resident",
                 p->cpu.untouched);
    snprintf(out[n++], 512,
             "GPU: weights bf16; adapters, gradients, AdamW fp32; activations, teacher state and "
             "hidden states, block scratch and Weff bf16; logits fp32 in a device's chunks (as "
             "many sequences as keep them within 256 MiB); CUDA context %zu MiB and cuBLAS "
             "workspace %zu MiB are estimates",
             BL_PLAN_CUDA_CONTEXT_BYTES >> 20, BL_PLAN_CUBLAS_BYTES >> 20);
    return n < cap ? n : cap;
}

enum { MAX_NOTES = 8 };

// ----------------------------------------------------------------------------
// JSON

static void add_num(cJSON *o, const char *k, double v) {
    cJSON_AddItemToObject(o, k, cJSON_CreateNumber(v));
}

static cJSON *side_json(const BlPlanSide *s, bool gpu) {
    cJSON *o = cJSON_CreateObject(), *b = cJSON_CreateObject();
    for (int c = 0; c < BL_PLAN_CATS; c++)
        if (gpu ? on_gpu(c) : on_cpu(c))
            add_num(b, bl_plan_category_key((BlPlanCategory)c), (double)s->bytes[c]);
    cJSON_AddItemToObject(o, "bytes", b);
    add_num(o, "trainer", (double)s->trainer);
    add_num(o, "untouched", (double)s->untouched);
    add_num(o, "train_peak", (double)s->train_peak);
    if (!gpu) add_num(o, "load_peak", (double)s->load_peak);
    add_num(o, "peak", (double)s->peak);
    return o;
}

cJSON *bl_plan_to_json(const BlPlan *p, const BlPlanSource *src) {
    const BlConfig *c = &p->cfg;
    const BlPlanRun *r = &p->run;
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;

    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "source", src->path);
    cJSON_AddStringToObject(m, "format", src->format);
    cJSON_AddStringToObject(m, "arch", bl_arch_name(c->arch));
    add_num(m, "params", (double)p->params);
    add_num(m, "n_layers", c->n_layers);
    add_num(m, "dim", c->dim);
    add_num(m, "hidden_dim", c->hidden_dim);
    add_num(m, "n_heads", c->n_heads);
    add_num(m, "n_kv_heads", c->n_kv_heads);
    add_num(m, "head_dim", c->head_dim);
    add_num(m, "vocab_size", c->vocab_size);
    cJSON_AddBoolToObject(m, "tied_embeddings", c->tied_embeddings);
    add_num(m, "block_linears", p->n_linears);

    cJSON *rj = cJSON_AddObjectToObject(root, "run");
    add_num(rj, "batch", r->B);
    add_num(rj, "seq", r->T);
    add_num(rj, "rank", r->rank);
    add_num(rj, "adapters", r->adapters);
    cJSON_AddBoolToObject(rj, "dense", r->dense);
    cJSON_AddBoolToObject(rj, "subln", r->subln);
    cJSON_AddBoolToObject(rj, "post_attn_norm", r->post_attn_norm);
    add_num(rj, "act_bits", r->act_bits);
    add_num(rj, "topk", r->topk);
    cJSON_AddBoolToObject(rj, "teacher_hidden", !r->no_teacher_hidden);
    add_num(rj, "loss_chunk_seqs", r->loss_chunk_seqs);
    add_num(rj, "micro_batches", r->micro > 1 ? r->micro : 1);
    add_num(rj, "ranks", r->ranks > 1 ? r->ranks : 1);

    cJSON *cpu = side_json(&p->cpu, false);
    BlTrainerMemory tm;
    bl_plan_trainer_memory(p, &tm);
    cJSON *t = cJSON_AddObjectToObject(cpu, "trainer_memory");
    add_num(t, "frozen_weights", (double)tm.student.frozen_weights);
    add_num(t, "adapters_frozen", (double)tm.student.adapters_frozen);
    add_num(t, "adapters_trainable", (double)tm.student.adapters_trainable);
    add_num(t, "grads", (double)tm.student.grads);
    add_num(t, "optimizer", (double)tm.student.optimizer);
    add_num(t, "activations", (double)tm.activations);
    add_num(t, "scratch", (double)tm.scratch);
    cJSON *ld = cJSON_AddObjectToObject(cpu, "load");
    add_num(ld, "weight_files", (double)p->host.weight_files);
    cJSON_AddBoolToObject(ld, "weight_files_assumed", p->host.weight_files_assumed);
    add_num(ld, "gguf_metadata", (double)p->host.load_meta);
    cJSON_AddBoolToObject(cpu, "baseline_measured", p->host.baseline_measured);
    cJSON_AddItemToObject(root, "cpu", cpu);

    cJSON *gpu = side_json(&p->gpu, true);
    cJSON_AddBoolToObject(gpu, "design_estimate", true);
    cJSON_AddItemToObject(root, "gpu", gpu);

    cJSON *alt = cJSON_AddObjectToObject(root, "alternatives");
    cJSON *copy = cJSON_AddObjectToObject(alt, "student_weight_copy");
    add_num(copy, "cpu_peak", (double)p->cpu_copy_peak);
    add_num(copy, "gpu_peak", (double)p->gpu_copy_peak);
    cJSON *dense = cJSON_AddObjectToObject(alt, "dense_delta_w");
    add_num(dense, "cpu_peak", (double)p->cpu_dense.peak);
    add_num(dense, "gpu_peak", (double)p->gpu_dense.peak);
    cJSON_AddItemToObject(dense, "cpu", side_json(&p->cpu_dense, false));
    cJSON_AddItemToObject(dense, "gpu", side_json(&p->gpu_dense, true));

    char text[MAX_NOTES][512];
    int n = notes(p, src, text, MAX_NOTES);
    cJSON *nj = cJSON_AddArrayToObject(root, "notes");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(nj, cJSON_CreateString(text[i]));
    return root;
}

// ----------------------------------------------------------------------------
// table

static const char *human(char *buf, size_t n, size_t bytes) {
    double b = (double)bytes;
    if (bytes < 1024) snprintf(buf, n, "%zu B", bytes);
    else if (b < 1024.0 * 1024) snprintf(buf, n, "%.1f KiB", b / 1024);
    else if (b < 1024.0 * 1024 * 1024) snprintf(buf, n, "%.1f MiB", b / (1024.0 * 1024));
    else snprintf(buf, n, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    return buf;
}

/* One row: label, then each side's figure or "-" where it does not apply. */
static void row(FILE *f, const char *label, bool has_cpu, size_t cpu, bool has_gpu, size_t gpu) {
    char a[32], b[32];
    fprintf(f, "  %-44s %14s %14s\n", label, has_cpu ? human(a, sizeof a, cpu) : "-",
            has_gpu ? human(b, sizeof b, gpu) : "-");
}

void bl_plan_print_table(FILE *f, const BlPlan *p, const BlPlanSource *src) {
    const BlConfig *c = &p->cfg;
    const BlPlanRun *r = &p->run;
    char buf[64];
    fprintf(f, "bitlab plan: %s (%s, %s)\n", src->path, src->format, bl_arch_name(c->arch));
    fprintf(f, "  model: %.1f M parameters, %d layers, dim %d, hidden %d, heads %d/%d (head_dim %d), "
               "vocab %d, %s embeddings, %d block linears\n",
            p->params / 1e6, c->n_layers, c->dim, c->hidden_dim, c->n_heads, c->n_kv_heads,
            c->head_dim, c->vocab_size, c->tied_embeddings ? "tied" : "untied", p->n_linears);
    fprintf(f, "  run:   batch %d x seq %d, %d LoRA adapter%s of rank %d on every block linear%s%s%s, "
               "A%d, top-K %s%s; %d micro-batch%s per step on %d process%s\n\n",
            r->B, r->T, r->adapters, r->adapters == 1 ? "" : "s", r->rank,
            r->dense ? " + dense dW" : "", r->subln ? ", SubLN" : "",
            r->post_attn_norm ? ", post-attention norm" : "", r->act_bits,
            r->topk ? (snprintf(buf, sizeof buf, "%d", r->topk), buf) : "off",
            r->no_teacher_hidden ? ", no teacher hidden states" : "",
            r->micro > 1 ? r->micro : 1, r->micro > 1 ? "es" : "", r->ranks > 1 ? r->ranks : 1,
            r->ranks > 1 ? "es" : "");
    fprintf(f, "  %-44s %14s %14s\n", "category", "CPU", "GPU (design)");
    for (int i = 0; i < BL_PLAN_TRAINER_CATS; i++)
        row(f, bl_plan_category_label((BlPlanCategory)i), true, p->cpu.bytes[i], true,
            p->gpu.bytes[i]);
    row(f, "= trainer total (bl_trainer_memory)", true, p->cpu.trainer, true, p->gpu.trainer);
    for (int i = BL_PLAN_TRAINER_CATS; i < BL_PLAN_CATS; i++)
        row(f, bl_plan_category_label((BlPlanCategory)i), on_cpu(i), p->cpu.bytes[i], on_gpu(i),
            p->gpu.bytes[i]);
    if (p->cpu.untouched) row(f, "- never written", true, p->cpu.untouched, false, 0);
    row(f, "peak while training", true, p->cpu.train_peak, true, p->gpu.train_peak);
    snprintf(buf, sizeof buf, "peak while loading (+ %s mapped)",
             human((char[32]){0}, 32, p->host.weight_files));
    row(f, buf, true, p->cpu.load_peak, false, 0);
    row(f, "PEAK", true, p->cpu.peak, true, p->gpu.peak);
    fprintf(f, "\n  compared with (peak):\n");
    row(f, "(a) the student keeps its own weight copy", true, p->cpu_copy_peak, true,
        p->gpu_copy_peak);
    row(f, "(b) dense trainable dW instead of LoRA", true, p->cpu_dense.peak, true,
        p->gpu_dense.peak);
    char text[MAX_NOTES][512];
    int n = notes(p, src, text, MAX_NOTES);
    fprintf(f, "\nnotes:\n");
    for (int i = 0; i < n; i++) fprintf(f, "  - %s\n", text[i]);
}
