/* fuzz_checkpoint.c - libFuzzer harness: the input is a checkpoint
 * (train/checkpoint.c) of the student of fuzz_model.h's model. Before it is
 * written, the header's payload size and FNV-1a checksum are set to match
 * the input, so that mutations reach the payload parser instead of dying at
 * the checksum. Then: info, peek, rebuild a student from it on the model and
 * on the same model with the other q/k row layout (a conversion), load it
 * again into a student that already has an adapter, and save + reload what
 * loaded. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "fuzz_model.h"
#include "train/checkpoint.h"

static BlModel *model, *model_hf; /* llama.cpp's interleaved q/k rows; Hugging Face's */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    model = fz_model();
    model_hf = fz_model();
    model_hf->cfg.rope_interleaved = false;
    return 0;
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    if (size >= 32) {
        uint64_t pn = size - 32, sum = fnv1a(buf + 32, pn);
        memcpy(buf + 16, &pn, 8);
        memcpy(buf + 24, &sum, 8);
    }
    char path[128], again[128];
    fz_write(fz_path(path, sizeof path, "state.ckpt"), buf, size);
    free(buf);
    fz_path(again, sizeof again, "again.ckpt");

    BlError err;
    BlCheckpointInfo info;
    if (bl_checkpoint_info(path, &info, &err) != 0) return fz_note("info", err.msg), 0;
    BlStudentConfig cfg;
    if (bl_checkpoint_peek(path, &cfg, &err) != 0) return fz_note("peek", err.msg), 0;
    BlStudent st;
    char *json = NULL;
    const BlModel *models[2] = {model, model_hf};
    for (int i = 0; i < 2; i++) {
        if (bl_student_from_checkpoint(&st, models[i], path, &json, &err) != 0) {
            fz_note("checkpoint", err.msg);
            continue;
        }
        free(json);
        json = NULL;
        if (bl_checkpoint_save(again, &st, NULL, "{\"step\":1}", &err) != 0) abort();
        BlStudent st2;
        if (bl_student_from_checkpoint(&st2, models[i], again, &json, &err) != 0) {
            fprintf(stderr, "fuzz: a saved checkpoint does not load: %s\n", err.msg);
            abort();
        }
        free(json);
        json = NULL;
        bl_free_student(&st2);
        bl_free_student(&st);
    }
    /* into a student that already has one adapter (ranks must agree) */
    if (bl_build_student(&st, model, &cfg, &err) == 0) {
        if (bl_student_add_adapter(&st, 2, 4.0f, 1, &err) == 0 &&
            bl_checkpoint_load(path, &st, NULL, &json, &err) == 0)
            free(json);
        bl_free_student(&st);
    }
    return 0;
}
