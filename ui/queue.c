/* queue.c - the worker ↔ UI FIFO (see queue.h): a singly linked list under
 * one mutex, with a condition variable for waiting pops. */
#include "ui/queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

typedef struct Node {
    void *item;
    struct Node *next;
} Node;

struct UiQueue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Node *head, *tail;
};

UiQueue *uiq_create(void) {
    UiQueue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    return q;
}

void uiq_destroy(UiQueue *q, void (*free_item)(void *)) {
    if (!q) return;
    for (Node *n = q->head, *next; n; n = next) {
        next = n->next;
        if (free_item) free_item(n->item);
        free(n);
    }
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

int uiq_push(UiQueue *q, void *item) {
    Node *n = malloc(sizeof *n);
    if (!n) return -1;
    n->item = item;
    n->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->tail) q->tail->next = n;
    else q->head = n;
    q->tail = n;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

void *uiq_pop(UiQueue *q, int timeout_ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until); /* pthread_cond_timedwait's clock */
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&q->mu);
    while (!q->head && timeout_ms != 0) {
        int rc = timeout_ms < 0 ? pthread_cond_wait(&q->cv, &q->mu)
                                : pthread_cond_timedwait(&q->cv, &q->mu, &until);
        if (rc == ETIMEDOUT) break;
    }
    Node *n = q->head;
    void *item = NULL;
    if (n) {
        q->head = n->next;
        if (!q->head) q->tail = NULL;
        item = n->item;
    }
    pthread_mutex_unlock(&q->mu);
    free(n);
    return item;
}
