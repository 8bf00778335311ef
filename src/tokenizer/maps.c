/* maps.c - the two hash tables the tokenizer needs (token text -> id and
 * token pair -> merge), plus the growable buffer and piece list. Open
 * addressing with linear probing at load factor <= 1/2. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static size_t table_cap(size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2 + 1)
        cap <<= 1;
    return cap;
}

int tokmap_init(TokMap *m, size_t expected, BlError *err)
{
    m->cap = table_cap(expected);
    m->n = 0;
    m->slots = bl_malloc(m->cap * sizeof *m->slots, err);
    if (!m->slots)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        m->slots[i].id = -1;
    return 0;
}

void tokmap_free(TokMap *m)
{
    free(m->slots);
    m->slots = NULL;
}

static TokSlot *tokmap_slot(const TokMap *m, const char *s, size_t len)
{
    size_t i = hash_bytes(s, len) & (m->cap - 1);
    for (;;) {
        TokSlot *sl = &m->slots[i];
        if (sl->id < 0 || ((size_t)sl->len == len && memcmp(sl->s, s, len) == 0))
            return sl;
        i = (i + 1) & (m->cap - 1);
    }
}

int tokmap_put(TokMap *m, const char *s, int len, int id, BlError *err)
{
    if ((m->n + 1) * 2 > m->cap) {
        TokMap big;
        if (tokmap_init(&big, m->cap, err) < 0)
            return -1;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].id >= 0)
                *tokmap_slot(&big, m->slots[i].s, (size_t)m->slots[i].len) = m->slots[i];
        big.n = m->n;
        free(m->slots);
        *m = big;
    }
    TokSlot *sl = tokmap_slot(m, s, (size_t)len);
    if (sl->id < 0)
        m->n++;
    sl->s = s;
    sl->len = len;
    sl->id = id;
    return 0;
}

int tokmap_get(const TokMap *m, const char *s, size_t len)
{
    if (!m->slots)
        return -1;
    return tokmap_slot(m, s, len)->id;
}

int mergemap_init(MergeMap *m, size_t expected, BlError *err)
{
    m->cap = table_cap(expected);
    m->n = 0;
    m->slots = bl_malloc(m->cap * sizeof *m->slots, err);
    if (!m->slots)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        m->slots[i].key = UINT64_MAX;
    return 0;
}

void mergemap_free(MergeMap *m)
{
    free(m->slots);
    m->slots = NULL;
}

static MergeSlot *mergemap_slot(const MergeMap *m, uint64_t key)
{
    size_t i = hash_u64(key) & (m->cap - 1);
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key)
        i = (i + 1) & (m->cap - 1);
    return &m->slots[i];
}

static uint64_t pair_key(int a, int b)
{
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

int mergemap_put(MergeMap *m, int a, int b, int rank, int merged, BlError *err)
{
    if ((m->n + 1) * 2 > m->cap) {
        MergeMap big;
        if (mergemap_init(&big, m->cap, err) < 0)
            return -1;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].key != UINT64_MAX)
                *mergemap_slot(&big, m->slots[i].key) = m->slots[i];
        big.n = m->n;
        free(m->slots);
        *m = big;
    }
    uint64_t key = pair_key(a, b);
    MergeSlot *sl = mergemap_slot(m, key);
    if (sl->key != key)
        m->n++;
    sl->key = key;
    sl->rank = rank;
    sl->merged = merged;
    return 0;
}

const MergeSlot *mergemap_get(const MergeMap *m, int a, int b)
{
    if (!m->slots)
        return NULL;
    uint64_t key = pair_key(a, b);
    const MergeSlot *sl = mergemap_slot(m, key);
    return sl->key == key ? sl : NULL;
}

int tokbuf_add(TokBuf *b, const char *s, size_t n, BlError *err)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return bl_fail(err, "out of memory (%zu bytes)", cap);
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int pieces_push(PieceList *l, const char *s, size_t len, bool at_start, BlError *err)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        Piece *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v)
            return bl_fail(err, "out of memory (%d pieces)", cap);
        l->v = v;
        l->cap = cap;
    }
    char *c = bl_malloc(len + 1, err);
    if (!c)
        return -1;
    memcpy(c, s, len);
    c[len] = '\0';
    l->v[l->n++] = (Piece){c, len, at_start};
    return 0;
}

void pieces_free(PieceList *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i].s);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}
