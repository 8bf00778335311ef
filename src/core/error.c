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
        int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        if (n < 0) return -1;
        size_t plen = strlen(prefix), cap = sizeof err->msg;
        /* shift the old message right to make room for "prefix: " */
        if (plen + 2 < cap) {
            size_t keep = strnlen(err->msg, cap - 1);
            if (plen + 2 + keep > cap - 1) keep = cap - 1 - plen - 2;
            memmove(err->msg + plen + 2, err->msg, keep);
            err->msg[plen + 2 + keep] = '\0';
            memcpy(err->msg, prefix, plen);
            err->msg[plen] = ':';
            err->msg[plen + 1] = ' ';
        }
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
