/* fuzz_hf.c - libFuzzer harness: a Hugging Face folder. The input is three
 * files behind u32 LE length prefixes (fuzz_common.h: fz_split):
 * config.json, model.safetensors, and the rest tokenizer.json. Opens the
 * safetensors file alone (io/safetensors.c: every tensor converted), parses
 * config.json alone (bl_config_read_hf), then loads the folder as a model
 * (model/load_hf.c). */
#include <stdlib.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FzPart part[3];
    fz_split(data, size, part, 3);
    char dir[128], cfg[160], st_path[160], tok[160];
    fz_path(dir, sizeof dir, "hf");
    mkdir(dir, 0700);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    snprintf(tok, sizeof tok, "%s/tokenizer.json", dir);
    fz_write(cfg, part[0].p, part[0].n);
    fz_write(st_path, part[1].p, part[1].n);
    fz_write(tok, part[2].p, part[2].n);

    BlError err;
    BlSafetensors *st = NULL;
    if (bl_st_open(&st, st_path, &err) == 0) {
        for (size_t i = 0; i < st->n_tensors; i++) {
            const BlStTensor *t = &st->tensors[i];
            if (bl_st_tensor(st, t->name) == NULL) abort();
            if (t->n_elements > (1u << 16)) continue;
            float *dst = malloc(sizeof(float) * (t->n_elements ? t->n_elements : 1));
            if (dst) bl_st_to_f32(st, t, dst, &err);
            free(dst);
        }
        bl_st_close(st);
    } else {
        fz_note("safetensors", err.msg);
    }
    BlConfig c;
    if (bl_config_read_hf(&c, cfg, &err) != 0) fz_note("config", err.msg);

    BlModel *m = NULL;
    if (bl_model_load(&m, dir, &err) == 0) bl_model_free(m);
    else fz_note("model", err.msg);
    return 0;
}
