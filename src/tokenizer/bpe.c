/* bpe.c - the BPE model on one pre-token, as HF's BPE::merge_word: start
 * from one symbol per character (unknown characters become <0xXX> byte
 * tokens with byte_fallback, else the unk token), then repeatedly apply the
 * lowest-ranked merge, leftmost first. Pre-tokens are short, so a plain
 * O(n^2) scan beats a priority queue here. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static int push_id(int **ids, int *n, int *cap, int id, BlError *err)
{
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 64;
        int *p = realloc(*ids, (size_t)c * sizeof *p);
        if (!p)
            return bl_fail(err, "out of memory (%d token ids)", c);
        *ids = p;
        *cap = c;
    }
    (*ids)[(*n)++] = id;
    return 0;
}

/* Initial symbols of s, one per character. */
static int initial_symbols(const BlTokenizer *t, const char *s, size_t n, int **sym, int *ns,
                           int *cap, BlError *err)
{
    bool last_unk = false;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = utf8_next(s + i, n - i, &cp);
        if (!k)
            k = 1; /* byte-level pieces are always valid; be safe anyway */
        int id = tokmap_get(&t->vocab, s + i, (size_t)k);
        bool have_bytes = t->byte_fallback;
        for (int j = 0; id < 0 && have_bytes && j < k; j++)
            have_bytes = t->byte_tok[(unsigned char)s[i + j]] >= 0;
        if (id >= 0) {
            if (push_id(sym, ns, cap, id, err) < 0)
                return -1;
            last_unk = false;
        } else if (have_bytes) {
            for (int j = 0; j < k; j++)
                if (push_id(sym, ns, cap, t->byte_tok[(unsigned char)s[i + j]], err) < 0)
                    return -1;
            last_unk = false;
        } else if (t->unk_id >= 0) {
            if (!(t->fuse_unk && last_unk) && push_id(sym, ns, cap, t->unk_id, err) < 0)
                return -1;
            last_unk = true;
        }
        i += (size_t)k;
    }
    return 0;
}

int bpe_encode_piece(const BlTokenizer *t, const char *s, size_t n, int **ids, int *n_ids,
                     int *cap, BlError *err)
{
    if (n == 0)
        return 0;
    if (t->ignore_merges) {
        int id = tokmap_get(&t->vocab, s, n);
        if (id >= 0)
            return push_id(ids, n_ids, cap, id, err);
    }
    int *sym = NULL, ns = 0, scap = 0;
    if (initial_symbols(t, s, n, &sym, &ns, &scap, err) < 0) {
        free(sym);
        return -1;
    }
    for (;;) {
        int best = -1, best_rank = INT_MAX, merged = -1;
        for (int i = 0; i + 1 < ns; i++) {
            const MergeSlot *m = mergemap_get(&t->merges, sym[i], sym[i + 1]);
            if (m && m->rank < best_rank) {
                best = i;
                best_rank = m->rank;
                merged = m->merged;
            }
        }
        if (best < 0)
            break;
        sym[best] = merged;
        memmove(sym + best + 1, sym + best + 2, (size_t)(ns - best - 2) * sizeof *sym);
        ns--;
    }
    int rc = 0;
    for (int i = 0; i < ns && rc == 0; i++)
        rc = push_id(ids, n_ids, cap, sym[i], err);
    free(sym);
    return rc;
}
