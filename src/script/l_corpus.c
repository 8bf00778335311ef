/* l_corpus.c - the Corpus userdata: a streaming, packing corpus
 * (data/corpus.h) read from text files, folders and globs or from
 * pre-tokenised shards; packed batches, the resumable position, statistics.
 * A Corpus keeps its Model alive (user value 1). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "data/corpus.h"
#include "script/internal.h"

typedef struct {
    BlCorpus *c;
    int seq;
    uint64_t seed;
} LCorpus;

/* Sets t[names[i]] = vals[i] on the table at -1. */
static void set_ints(lua_State *L, const char *const *names, const lua_Integer *vals, int n) {
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, vals[i]);
        lua_setfield(L, -2, names[i]);
    }
}

static LCorpus *check_corpus(lua_State *L, int idx) {
    LCorpus *u = luaL_checkudata(L, idx, BL_MT_CORPUS);
    if (!u->c) luaL_error(L, "the corpus was freed");
    return u;
}

/* The paths of opts.path (a string) or opts.paths (a list of strings), as a
 * userdata-held array so a Lua error leaks nothing; the strings stay in opts. */
static const char **check_paths(lua_State *L, int *n) {
    int pt = lua_getfield(L, 1, "path");
    int lt = lua_getfield(L, 1, "paths");
    if (pt != LUA_TNIL && lt != LUA_TNIL)
        luaL_error(L, "corpus options 'path' and 'paths' exclude each other");
    if (pt != LUA_TNIL && pt != LUA_TSTRING)
        luaL_error(L, "corpus option 'path' must be a string, got %s", lua_typename(L, pt));
    if (lt != LUA_TNIL && lt != LUA_TTABLE)
        luaL_error(L, "corpus option 'paths' must be a list of strings, got %s", lua_typename(L, lt));
    lua_Integer k = lt == LUA_TTABLE ? luaL_len(L, -1) : pt == LUA_TSTRING;
    if (lt == LUA_TTABLE && k == 0) luaL_error(L, "corpus option 'paths' is empty");
    if (k > 1 << 20) luaL_error(L, "corpus option 'paths' has %d entries (at most 2^20)", (int)k);
    const char **v = lua_newuserdatauv(L, sizeof *v * (size_t)(k > 0 ? k : 1), 0);
    if (pt == LUA_TSTRING) v[0] = lua_tostring(L, -3);
    for (lua_Integer i = 1; lt == LUA_TTABLE && i <= k; i++) {
        int t = lua_rawgeti(L, -2, i);
        if (t != LUA_TSTRING)
            luaL_error(L, "corpus option 'paths': entry %d must be a string, got %s", (int)i,
                       lua_typename(L, t));
        v[i - 1] = lua_tostring(L, -1); /* kept alive by the list in opts */
        lua_pop(L, 1);
    }
    *n = (int)k;
    return v; /* the userdata stays on the stack */
}

/* bitlab.corpus{model=, path=PATH | paths={...} | shards=DIR, seq=T, seed=0,
 * piece_bytes=1 MiB, queue_tokens=256 Ki} */
static int l_corpus(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    bl_field_udata(L, 1, "model", BL_MT_MODEL, true);
    BlModel *m = bl_lua_check_model(L, -1);
    int model_idx = lua_gettop(L);
    int seq = (int)bl_opt_int(L, 1, "seq", 0, 2, 1 << 20);
    if (seq == 0) return luaL_error(L, "corpus option 'seq' (the row length, tokens) is required");
    lua_Integer seed = bl_opt_integer(L, 1, "seed", 0); /* any integer: its 64 bits seed */
    BlCorpusOptions o = {.model = m, .seed = (uint64_t)seed,
                         .piece_bytes = (size_t)bl_opt_int(L, 1, "piece_bytes", 0, 64, 1 << 30),
                         .queue_tokens = (size_t)bl_opt_int(L, 1, "queue_tokens", 0, 1, 1 << 30)};
    int st = lua_getfield(L, 1, "shards");
    if (st != LUA_TNIL && st != LUA_TSTRING)
        return luaL_error(L, "corpus option 'shards' must be a folder path, got %s", lua_typename(L, st));
    o.shards = lua_tostring(L, -1);
    int n = 0;
    const char **paths = check_paths(L, &n);
    if (o.shards && n > 0)
        return luaL_error(L, "corpus option 'shards' excludes 'path' and 'paths'");
    if (!o.shards && n == 0)
        return luaL_error(L, "corpus needs option 'path', 'paths' or 'shards'");
    o.paths = paths;
    o.n_paths = n;
    LCorpus *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->c = NULL;
    u->seq = seq;
    u->seed = (uint64_t)seed;
    luaL_setmetatable(L, BL_MT_CORPUS);
    lua_pushvalue(L, model_idx);
    lua_setiuservalue(L, -2, 1); /* the model outlives the corpus (its reader tokenises) */
    BlError err = {{0}};
    if (bl_corpus_open(&u->c, &o, &err)) return bl_lua_fail(L, &err);
    return 1;
}

static int c_gc(lua_State *L) {
    LCorpus *u = luaL_checkudata(L, 1, BL_MT_CORPUS);
    bl_corpus_free(u->c);
    u->c = NULL;
    return 0;
}

static int c_tostring(lua_State *L) {
    LCorpus *u = luaL_checkudata(L, 1, BL_MT_CORPUS);
    if (!u->c) return (lua_pushliteral(L, "bitlab.Corpus (freed)"), 1);
    lua_pushfstring(L, "bitlab.Corpus (%d %s, seq %d)", bl_corpus_n_files(u->c),
                    bl_corpus_is_shards(u->c) ? "shards" : "files", u->seq);
    return 1;
}

/* corpus:batch(B [, T]) → a packed Batch (T defaults to the corpus's seq) */
static int c_batch(lua_State *L) {
    LCorpus *u = check_corpus(L, 1);
    lua_Integer B = bl_check_int(L, 2, 1, 4096);
    lua_Integer T = bl_optarg_int(L, 3, u->seq, 2, 1 << 20);
    BlLuaBatch *b = bl_lua_new_batch(L, (int)B, (int)T, true);
    BlError err = {{0}};
    if (bl_corpus_next_batch(u->c, b->B, b->T, b->tokens, b->lens, b->mask, b->doc_start, &err))
        return bl_lua_fail(L, &err);
    return 1;
}

static int c_seq(lua_State *L) {
    lua_pushinteger(L, check_corpus(L, 1)->seq);
    return 1;
}

/* corpus:files() → the source files (or shards) in sorted order */
static int c_files(lua_State *L) {
    LCorpus *u = check_corpus(L, 1);
    int n = bl_corpus_n_files(u->c);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, bl_corpus_file(u->c, i));
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* corpus:position() → {epoch, file, offset, line, consumed, seed, files,
 * documents, rows, tokens, slots}: the last four what had been served */
static int c_position(lua_State *L) {
    LCorpus *u = check_corpus(L, 1);
    BlCorpusPos p;
    bl_corpus_position(u->c, &p);
    lua_createtable(L, 0, 11);
    static const char *const names[] = {"epoch", "file", "offset", "line", "consumed", "seed",
                                        "files", "documents", "rows", "tokens", "slots"};
    const lua_Integer vals[] = {p.epoch, p.file, (lua_Integer)p.offset, p.line,
                                (lua_Integer)p.consumed, (lua_Integer)u->seed,
                                bl_corpus_n_files(u->c), p.documents, p.rows,
                                (lua_Integer)p.tokens, (lua_Integer)p.slots};
    set_ints(L, names, vals, (int)(sizeof vals / sizeof *vals));
    return 1;
}

/* corpus:seek(position): a table from corpus:position(), of a corpus of the
 * same sources and seed */
static int c_seek(lua_State *L) {
    LCorpus *u = check_corpus(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int files = bl_corpus_n_files(u->c);
    lua_Integer nf = bl_opt_int(L, 2, "files", files, 0, INT_MAX);
    if (nf != files)
        return luaL_error(L, "corpus:seek: the position is of a corpus of %d files, this one has %d",
                          (int)nf, files);
    if (lua_getfield(L, 2, "seed") != LUA_TNIL &&
        (uint64_t)bl_opt_integer(L, 2, "seed", 0) != u->seed)
        return luaL_error(L, "corpus:seek: the position is of a corpus of seed %I, this one has seed %I",
                          bl_opt_integer(L, 2, "seed", 0), (lua_Integer)u->seed);
    lua_pop(L, 1);
    /* epochs and lines count up from here: bounds far from overflow */
    BlCorpusPos p = {.epoch = (long)bl_opt_int(L, 2, "epoch", 0, 0, (lua_Integer)1 << 40),
                     .file = (long)bl_opt_int(L, 2, "file", 0, 0, files - 1),
                     .offset = (uint64_t)bl_opt_int(L, 2, "offset", 0, 0, LUA_MAXINTEGER),
                     .line = (long)bl_opt_int(L, 2, "line", 0, 0, (lua_Integer)1 << 50),
                     .consumed = (uint64_t)bl_opt_int(L, 2, "consumed", 0, 0, LUA_MAXINTEGER),
                     /* absent in positions saved before they were kept: the
                      * statistics then count from the resume */
                     .documents = (long)bl_opt_int(L, 2, "documents", 0, 0, LONG_MAX),
                     .rows = (long)bl_opt_int(L, 2, "rows", 0, 0, LONG_MAX),
                     .tokens = (uint64_t)bl_opt_int(L, 2, "tokens", 0, 0, LUA_MAXINTEGER),
                     .slots = (uint64_t)bl_opt_int(L, 2, "slots", 0, 0, LUA_MAXINTEGER)};
    BlError err = {{0}};
    if (bl_corpus_seek(u->c, &p, &err)) return bl_lua_fail(L, &err);
    return 0;
}

/* corpus:stats() → {files, epoch, documents, tokens, rows, padding_fraction,
 * bytes_read, tokens_read, tokens_per_s, stall_seconds}: documents, tokens
 * and rows served by the batches since the start (a seek restores the
 * counts its position carries); padding_fraction of their
 * positions; bytes_read / tokens_read by the reader (ahead of what was
 * served), tokens_per_s its throughput while busy; stall_seconds the time
 * batches waited on it. */
static int c_stats(lua_State *L) {
    LCorpus *u = check_corpus(L, 1);
    BlCorpusStats s;
    bl_corpus_stats(u->c, &s);
    lua_createtable(L, 0, 10);
    static const char *const names[] = {"files", "epoch", "documents", "tokens", "rows",
                                        "bytes_read", "tokens_read"};
    const lua_Integer vals[] = {s.files, s.epoch, s.documents, (lua_Integer)s.tokens, s.rows,
                                (lua_Integer)s.bytes_read, (lua_Integer)s.tokens_read};
    set_ints(L, names, vals, (int)(sizeof vals / sizeof *vals));
    lua_pushnumber(L, s.slots ? 1.0 - (double)s.tokens / (double)s.slots : 0.0);
    lua_setfield(L, -2, "padding_fraction");
    lua_pushnumber(L, s.tokens_per_s);
    lua_setfield(L, -2, "tokens_per_s");
    lua_pushnumber(L, s.stall_seconds);
    lua_setfield(L, -2, "stall_seconds");
    return 1;
}

void bl_open_corpus(lua_State *L) {
    luaL_newmetatable(L, BL_MT_CORPUS);
    static const luaL_Reg meta[] = {{"__gc", c_gc}, {"__close", c_gc}, {"__tostring", c_tostring},
                                    {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    static const luaL_Reg methods[] = {{"batch", c_batch},   {"seq", c_seq},
                                       {"files", c_files},   {"position", c_position},
                                       {"seek", c_seek},     {"stats", c_stats},
                                       {NULL, NULL}};
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    bl_protect_metatable(L);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_corpus);
    lua_setfield(L, -2, "corpus");
}
