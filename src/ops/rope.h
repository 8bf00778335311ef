/* rope.h - the rotary embedding's tables (bl_rope and bl_rope_backward of
 * ops.h are in rope.c). The angles' cosines and sines are computed once per
 * (θ, head_dim) and position instead of once per call: a table of
 * (float)cos(p·θ^(-2i/hd)) and sin, with the angle in double as bl_rope
 * always took it, so the values are the same bits. Tables only grow and are
 * never freed while the process runs, so a pointer stays valid. */
#ifndef BITLAB_ROPE_H
#define BITLAB_ROPE_H

typedef struct BlRopeTable BlRopeTable;

/* A table covering every position in pos[0..M); NULL when the positions are
 * beyond what is kept (BL_ROPE_TABLE_MAX) or memory runs out: then use
 * bl_rope_angles. Thread-safe. */
const BlRopeTable *bl_rope_table(const int *pos, int M, int head_dim, float theta);
const float *bl_rope_cos(const BlRopeTable *t, int pos);
const float *bl_rope_sin(const BlRopeTable *t, int pos);

/* cos and sin of position pos's head_dim/2 angles, without a table */
void bl_rope_angles(float *cs, float *sn, int pos, int head_dim, float theta);

enum { BL_ROPE_TABLE_MAX = 1 << 16 };

#endif
