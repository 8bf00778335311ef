/* bytebuf.h - a growable byte buffer for serialising a file in memory
 * before it is written in one go (the GGUF writer's header and values, the
 * training checkpoint). A failed allocation is remembered rather than
 * reported at each append, so a serialiser checks once at the end. */
#ifndef BL_BYTEBUF_H
#define BL_BYTEBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct BlByteBuf {
    uint8_t *p;  /* n bytes written, cap allocated; free(p) when done */
    size_t n, cap;
    bool failed; /* an append ran out of memory: the content is incomplete */
} BlByteBuf;

/* Appends n bytes of src (nothing once failed). Zero-initialise first. */
void bl_bytebuf_put(BlByteBuf *b, const void *src, size_t n);

#endif
