/* queue.h - a small mutex-protected FIFO between the training worker and
 * the UI thread. Items are opaque pointers; whoever pops one owns it. A pop
 * can wait (with a timeout) so the worker can sleep while paused and still
 * wake at once when a command arrives. */
#ifndef BITLAB_UI_QUEUE_H
#define BITLAB_UI_QUEUE_H

typedef struct UiQueue UiQueue;

/* NULL when out of memory. */
UiQueue *uiq_create(void);
/* Frees the queue and, with free_item, the items still in it. */
void uiq_destroy(UiQueue *q, void (*free_item)(void *));

/* 0, or -1 when out of memory (the item is not taken). */
int uiq_push(UiQueue *q, void *item);
/* The oldest item, waiting up to timeout_ms (0: do not wait; < 0: forever);
 * NULL when none came. */
void *uiq_pop(UiQueue *q, int timeout_ms);

#endif
