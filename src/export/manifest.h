/* manifest.h - training_manifest.json: what an exported student is and how
 * it was made, written beside every export (GGUF and packed safetensors).
 *
 * Location: <directory of the export file>/training_manifest.json for a file
 * export (as issue #6 specifies: one manifest per export folder, which also
 * names its export in "export"); <folder>/training_manifest.json for a
 * folder export.
 *
 * Fields: bitlab_version, created (UTC ISO-8601), format, export (the file
 * or folder name), base_model {path, sha256, name, architecture}, student
 * {lambda, act_bits, lambda_acts, dense}, adapters {count, ranks[], alpha[]}, every field
 * of the run facts (steps, tokens_seen, lambda_schedule, act_bits_schedule,
 * loss_mix, final_metrics, ... as bitlab.train records them; absent when
 * unknown), compression_ready (λ was 1 at the end, activations 8 or 4 bits
 * and every block linear ternary) and tensor_types {name: type}. */
#ifndef BITLAB_MANIFEST_H
#define BITLAB_MANIFEST_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "train/student.h"

typedef struct {
    const char *name;
    const char *type;  /* storage type, e.g. "TQ2_0", "F32", "ternary_2bit" */
    bool block_linear; /* one of the student's BitLinears */
    bool ternary;      /* its values are ternary codes × one scale */
} BlManifestTensor;

/* The path the manifest of export_path goes to (malloc'd), or NULL on OOM. */
char *bl_manifest_path(const char *export_path, bool folder_export);

/* Writes the manifest (atomically). run: the training facts to merge in (a
 * JSON object, may be NULL); its keys never override the ones computed here.
 * *written (may be NULL) receives the malloc'd manifest path. */
int bl_manifest_write(const char *export_path, bool folder_export, const char *format,
                      const BlStudent *st, const cJSON *run, const BlManifestTensor *tensors,
                      int n_tensors, char **written, BlError *err);

/* The run facts a checkpoint carries: its script state's user.manifest
 * (bitlab.train records it), else {steps: user.step} when the state has a
 * step, else an empty object. NULL (err set) when json is not JSON. */
cJSON *bl_manifest_run_from_checkpoint(const char *json, const char *ckpt_path, BlError *err);

#endif
