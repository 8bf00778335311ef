/* error.h - how library code reports failure.
 *
 * Library functions never exit(): they return 0 on success and -1 on failure,
 * filling a caller-owned BlError with one human-readable line that names the
 * file, field or line at fault. Callers add context by prefixing. */
#ifndef BITLAB_ERROR_H
#define BITLAB_ERROR_H

#include <stddef.h>

typedef struct BlError {
    char msg[1024];
} BlError;

/* Formats msg into err (if err != NULL) and returns -1, so that
 * `return bl_fail(err, "...")` reads as one statement. */
int bl_fail(BlError *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to an error already set, e.g. to add a file name. */
int bl_fail_prefix(BlError *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Checked allocation: returns NULL and sets err on failure. */
void *bl_malloc(size_t n, BlError *err);
void *bl_calloc(size_t count, size_t size, BlError *err);

#endif
