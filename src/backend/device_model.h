/* device_model.h - a model whose weights live in a backend's memory, built
 * once from the host model, so that the forward (nn/forward.h) and the
 * decoder (nn/generate.h) run on that backend unchanged: they only pass the
 * model's weight pointers to the backend's ops.
 *
 * Matrices (every block linear, the embedding table, the lm head) go through
 * be->weights_upload (CUDA: bf16, rounded once; the tied lm head shares the
 * table's upload); norms and biases stay fp32 (be->alloc + upload). With the
 * CPU backend nothing is copied: the host's weights already are its memory.
 *
 * `model` borrows the host's tokenizer, chat template, name and path: it is
 * valid while the host model is, and must never be given to bl_model_free. */
#ifndef BITLAB_DEVICE_MODEL_H
#define BITLAB_DEVICE_MODEL_H

#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"

typedef struct {
    BlModel model;           /* the view to pass to bl_forward / bl_generate_greedy */
    const BlBackend *be;
    const BlModel *host;
    bool uploaded;           /* false: model is a plain copy of the host's (CPU backend) */
} BlDeviceModel;

int bl_device_model_build(BlDeviceModel *dm, const BlModel *host, const BlBackend *be,
                          BlError *err);
void bl_device_model_free(BlDeviceModel *dm);

#endif
