/* rope.c - the rotary embedding (ops.h) and its tables (rope.h): a list,
 * one entry per (θ, head_dim, positions), a longer entry added when a call
 * needs more positions (the shorter stays, for readers still holding it).
 * The backward rotates by −angle: the forward's arithmetic with −sin, which
 * is exact, so both are one loop. Rows go to the worker pool. */
#include "ops/rope.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "ops/ops.h"
#include "ops/parallel.h"

struct BlRopeTable {
    struct BlRopeTable *next;
    float theta;
    int head_dim, n_pos;
    float *cos, *sin; /* [n_pos][head_dim/2] */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static BlRopeTable *tables;

void bl_rope_angles(float *cs, float *sn, int pos, int head_dim, float theta) {
    for (int i = 0; i < head_dim / 2; i++) {
        /* the angle in double: pos·θ^(-2i/hd) reaches thousands of radians,
         * where a float angle would lose the 1e-4 parity */
        double ang = pos * pow((double)theta, -2.0 * i / head_dim);
        cs[i] = (float)cos(ang);
        sn[i] = (float)sin(ang);
    }
}

static BlRopeTable *build_table(int n_pos, int head_dim, float theta) {
    int half = head_dim / 2 > 0 ? head_dim / 2 : 1;
    BlRopeTable *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->cos = malloc(sizeof(float) * (size_t)n_pos * half);
    t->sin = malloc(sizeof(float) * (size_t)n_pos * half);
    if (!t->cos || !t->sin) {
        free(t->cos);
        free(t->sin);
        free(t);
        return NULL;
    }
    t->theta = theta;
    t->head_dim = head_dim;
    t->n_pos = n_pos;
    for (int p = 0; p < n_pos; p++)
        bl_rope_angles(t->cos + (size_t)p * half, t->sin + (size_t)p * half, p, head_dim, theta);
    return t;
}

const BlRopeTable *bl_rope_table(const int *pos, int M, int head_dim, float theta) {
    int hi = 0;
    for (int m = 0; m < M; m++) {
        if (pos[m] < 0) return NULL;
        hi = pos[m] > hi ? pos[m] : hi;
    }
    if (hi >= BL_ROPE_TABLE_MAX) return NULL;
    pthread_mutex_lock(&lock);
    BlRopeTable *t = tables;
    for (; t; t = t->next)
        if (t->theta == theta && t->head_dim == head_dim && t->n_pos > hi) break;
    if (!t) {
        int n = 256;
        while (n <= hi) n *= 2;
        t = build_table(n, head_dim, theta);
        if (t) {
            t->next = tables;
            tables = t;
        }
    }
    pthread_mutex_unlock(&lock);
    return t;
}

const float *bl_rope_cos(const BlRopeTable *t, int pos) {
    return t->cos + (size_t)pos * (t->head_dim / 2 > 0 ? t->head_dim / 2 : 1);
}

const float *bl_rope_sin(const BlRopeTable *t, int pos) {
    return t->sin + (size_t)pos * (t->head_dim / 2 > 0 ? t->head_dim / 2 : 1);
}

// ----------------------------------------------------------------------------
// the rotation

typedef struct {
    float *x;
    const int *pos;
    const BlRopeTable *tab; /* NULL: angles per row */
    int n_heads, head_dim;
    float theta, sign;      /* sign −1: the inverse rotation */
    bool interleaved;
} RopeJob;

static void rope_rows(void *ctx, long m0, long m1) {
    const RopeJob *j = ctx;
    int hd = j->head_dim, half = hd / 2, row = j->n_heads * hd;
    float cbuf[half > 0 ? half : 1], sbuf[half > 0 ? half : 1];
    for (long m = m0; m < m1; m++) {
        float *xr = j->x + (size_t)m * row;
        const float *cs = cbuf, *sn = sbuf;
        if (j->tab) {
            cs = bl_rope_cos(j->tab, j->pos[m]);
            sn = bl_rope_sin(j->tab, j->pos[m]);
        } else {
            bl_rope_angles(cbuf, sbuf, j->pos[m], hd, j->theta);
        }
        for (int i = 0; i < half; i++) {
            float c = cs[i], s = j->sign * sn[i];
            int i0 = j->interleaved ? 2 * i : i;
            int i1 = j->interleaved ? 2 * i + 1 : i + half;
            for (int h = 0; h < j->n_heads; h++) {
                float *xh = xr + h * hd;
                float a = xh[i0], b = xh[i1];
                xh[i0] = a * c - b * s;
                xh[i1] = a * s + b * c;
            }
        }
    }
}

static void rope_rotate(float *x, const int *pos, int M, int n_heads, int head_dim, float theta,
                        bool interleaved, float sign) {
    if (M <= 0) return;
    RopeJob j = {.x = x, .pos = pos, .tab = bl_rope_table(pos, M, head_dim, theta),
                 .n_heads = n_heads, .head_dim = head_dim, .theta = theta, .sign = sign,
                 .interleaved = interleaved};
    bl_parallel_for(M, (long)M * n_heads * head_dim, rope_rows, &j);
}

void bl_rope(float *x, const int *pos, int M, int n_heads, int head_dim, float theta,
             bool interleaved) {
    rope_rotate(x, pos, M, n_heads, head_dim, theta, interleaved, 1.0f);
}

void bl_rope_backward(float *dx, const int *pos, int M, int n_heads, int head_dim, float theta,
                      bool interleaved) {
    rope_rotate(dx, pos, M, n_heads, head_dim, theta, interleaved, -1.0f);
}
