/* bytebuf.c - the growable byte buffer (see bytebuf.h). */
#include "core/bytebuf.h"

#include <stdlib.h>
#include <string.h>

void bl_bytebuf_put(BlByteBuf *b, const void *src, size_t n) {
    if (b->failed || n == 0) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64; /* doubling: amortised O(1) per byte */
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
