/* eval_memory.c - weight bytes of the teacher and of the packed ternary
 * student, as evaluate.h defines them: the student's bytes are the tensor
 * data of the default packed safetensors export. Counted from the model's
 * tensors (not from the config) so every bias and norm is included exactly
 * once and tied embeddings once. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "eval/evaluate.h"

/* The model file's size; for a Hugging Face folder, its .safetensors files. */
static long long source_bytes(const char *path) {
    struct stat sb;
    if (!path || stat(path, &sb) != 0) return -1;
    if (!S_ISDIR(sb.st_mode)) return (long long)sb.st_size;
    DIR *dir = opendir(path);
    if (!dir) return -1;
    long long total = 0;
    struct dirent *e;
    char full[4096];
    while ((e = readdir(dir))) {
        size_t n = strlen(e->d_name);
        if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors") != 0) continue;
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        if (stat(full, &sb) == 0) total += (long long)sb.st_size;
    }
    closedir(dir);
    return total;
}

void bl_eval_memory(const BlModel *m, const BlStudent *st, BlEvalMemory *out) {
    const BlConfig *c = &m->cfg;
    long long embd = (long long)c->vocab_size * c->dim;
    long long matrix = embd;  /* embedding (+ untied LM head): F16 in the export */
    long long vector = c->dim; /* final norm; + block norms and biases: F32 */
    if (m->lm_head != m->tok_embd) matrix += embd;
    long long ternary = 0, ternary_bytes = 0, extra = 0;
    int tensors = 0;
    for (int l = 0; l < c->n_layers; l++) {
        vector += 2LL * c->dim; /* attention and MLP norms */
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlLinear *w = &m->layers[l].lin[k];
            if (!w->w) continue;
            ternary += (long long)w->out * w->in;
            /* rows padded to 4 codes, as the packed export stores them */
            ternary_bytes += (long long)w->out * ((w->in + 3) / 4);
            tensors++;
            if (w->b) vector += w->out;
            if (st && st->cfg.subln) extra += w->in;
        }
        if (st && st->cfg.post_attn_norm) extra += c->dim;
    }
    long long teacher = ternary + matrix + vector;
    *out = (BlEvalMemory){
        .teacher_params = teacher,
        .teacher_bytes = 2 * teacher,
        .source_bytes = source_bytes(m->path),
        .ternary_weights = ternary,
        .ternary_tensors = tensors,
        .ternary_bytes = ternary_bytes,
        .scale_bytes = 4LL * tensors,
        .matrix_params = matrix,
        .matrix_bytes = 2 * matrix,
        .vector_params = vector + extra,
        .vector_bytes = 4 * (vector + extra),
    };
    out->other_params = out->matrix_params + out->vector_params;
    out->other_bytes = out->matrix_bytes + out->vector_bytes;
    out->student_bytes = out->ternary_bytes + out->scale_bytes + out->other_bytes;
}
