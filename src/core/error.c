/* error.c - the BlError helpers and checked allocation. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bl_fail(BlError *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int bl_fail_prefix(BlError *err, const char *fmt, ...) {
    if (err) {
        char prefix[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        char old[sizeof err->msg];
        memcpy(old, err->msg, sizeof old);
        snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
    }
    return -1;
}

void *bl_malloc(size_t n, BlError *err) {
    void *p = malloc(n ? n : 1);
    if (!p) bl_fail(err, "out of memory allocating %zu bytes", n);
    return p;
}

void *bl_calloc(size_t count, size_t size, BlError *err) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) bl_fail(err, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}
