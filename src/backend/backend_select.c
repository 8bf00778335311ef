/* backend_select.c - `--device cpu|cuda|auto` to a backend (see backend.h). */
#include <string.h>

#include "backend/backend.h"

const BlBackend *bl_backend_select(const char *name, BlError *err) {
    if (!name || !name[0] || strcmp(name, "cpu") == 0) return bl_backend_cpu();
    if (strcmp(name, "cuda") == 0) return bl_backend_cuda(err);
    if (strcmp(name, "auto") == 0)
        return bl_backend_cuda_available() ? bl_backend_cuda(err) : bl_backend_cpu();
    bl_fail(err, "unknown device '%s' (expected cpu, cuda or auto)", name);
    return NULL;
}
