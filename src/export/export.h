/* export.h - one entry point for `bitlab export` and bitlab.export{}: writes
 * the student in the requested format (GGUF: export/export_gguf.h; packed
 * safetensors folder: export/packed_safetensors.h), then its
 * training_manifest.json (export/manifest.h). */
#ifndef BITLAB_EXPORT_H
#define BITLAB_EXPORT_H

#include <cjson/cJSON.h>

#include "core/error.h"
#include "export/export_gguf.h"
#include "train/student.h"

typedef enum { BL_EXPORT_GGUF, BL_EXPORT_SAFETENSORS } BlExportFormat;

typedef struct {
    const char *format;       /* "gguf", "safetensors", or NULL: by out (".gguf" → gguf) */
    BlGgufExportOptions gguf; /* GGUF; gguf.embed also for safetensors (F32, else F16) */
    const cJSON *run;         /* training facts for the manifest, or NULL */
} BlExportRequest;

typedef struct {
    BlExportFormat format;
    BlExportSummary gguf;  /* GGUF: the tensors written */
    char *manifest_path;   /* malloc'd */
} BlExportResult;

/* Parses "gguf" / "safetensors" (NULL: from out's extension). */
int bl_export_format(const char *name, const char *out, BlExportFormat *f, BlError *err);

int bl_export_student(BlStudent *st, const char *out, const BlExportRequest *req,
                      BlExportResult *res, BlError *err);
void bl_export_result_free(BlExportResult *res);

#endif
