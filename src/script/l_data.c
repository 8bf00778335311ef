/* l_data.c - the Dataset and Batch userdata: building datasets from inline
 * chat pairs, texts and JSONL files, shuffling, batching, and the resumable
 * position. A Dataset keeps its Model alive (user value 1). bitlab.dataset
 * {teacher = MODEL} hands over to the teacher-fed source in Lua. */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "script/internal.h"

typedef struct {
    BlDataset d;
    int live;
    bool warned; /* the long-example warning was given (once per dataset) */
} LDataset;


static LDataset *check_ldataset(lua_State *L, int idx) {
    LDataset *u = luaL_checkudata(L, idx, BL_MT_DATASET);
    if (!u->live) luaL_error(L, "the dataset was freed");
    return u;
}

BlDataset *bl_lua_check_dataset(lua_State *L, int idx) {
    return &check_ldataset(L, idx)->d;
}

// ----------------------------------------------------------------------------
// the long-example warning

/* Cut or dropped tokens are lost without a trace otherwise, so the first
 * time it happens the user hears it: on stderr (unless the dashboard owns
 * the terminal) and as a "warning" event in the metrics stream, which the
 * dashboard's events panel shows. Once per dataset, with the counts. */
static void warn_long(lua_State *L, LDataset *u, const char *msg, const char *policy, int seq,
                      long examples, long n_long, long dropped) {
    u->warned = true;
    BlRuntime *rt = bl_rt(L);
    if (!rt->cfg.dash) {
        fprintf(stderr, "bitlab: warning: %s\n", msg);
        fflush(stderr);
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "kind", "long_examples");
    cJSON_AddStringToObject(f, "message", msg);
    cJSON_AddStringToObject(f, "long", policy);
    cJSON_AddNumberToObject(f, "seq", seq);
    cJSON_AddNumberToObject(f, "examples", (double)examples);
    cJSON_AddNumberToObject(f, "long_examples", (double)n_long);
    cJSON_AddNumberToObject(f, "tokens_dropped", (double)dropped);
    bl_metrics_event(rt, "warning", f);
}

/* After examples were added: examples truncated or skipped to fit seq. */
static void warn_added(lua_State *L, LDataset *u) {
    const BlDataset *d = &u->d;
    if (u->warned || (d->n_cut == 0 && d->n_skipped == 0)) return;
    char msg[400];
    long lost = d->n_cut + d->n_skipped, added = d->n + d->n_skipped;
    if (d->long_policy == BL_LONG_SKIP)
        snprintf(msg, sizeof msg, "bitlab.dataset: %ld of %ld examples were longer than seq = %d "
                 "tokens and were skipped (%ld tokens); long = \"split\" keeps them as pieces",
                 lost, added, d->seq, d->tokens_dropped);
    else
        snprintf(msg, sizeof msg, "bitlab.dataset: %ld of %ld examples were longer than seq = %d "
                 "tokens and were truncated to it (%ld tokens dropped); long = \"split\" keeps "
                 "them as pieces, a larger seq keeps them whole", lost, added, d->seq,
                 d->tokens_dropped);
    warn_long(L, u, msg, bl_long_policy_name(d->long_policy), d->seq, added, lost,
              d->tokens_dropped);
}

/* After a batch of length T cut rows: how many examples T cuts. */
static void warn_batch(lua_State *L, LDataset *u, int T) {
    if (u->warned || u->d.n_truncated == 0) return;
    long excess;
    int n = bl_dataset_count_longer(&u->d, T, &excess);
    char msg[400];
    snprintf(msg, sizeof msg, "bitlab.dataset: %d of %d examples are longer than the batch length "
             "%d and lose their tails (%ld tokens never trained on); a longer seq, or "
             "bitlab.dataset{seq = %d, long = \"split\"}, keeps them", n, u->d.n, T, excess, T);
    warn_long(L, u, msg, "truncate", T, u->d.n, n, excess);
}

/* One conversation from a Lua value: {user=, assistant=[, system=]} or a
 * list of {role=, content=}. */
static void add_chat(lua_State *L, BlDataset *d, int idx) {
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    BlChatMessage msgs[BL_MAX_MESSAGES];
    int n = 0;
    lua_getfield(L, idx, "user");
    int pair = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (pair) {
        static const char *const roles[] = {"system", "user", "assistant"};
        for (int r = 0; r < 3; r++) {
            lua_getfield(L, idx, roles[r]);
            if (!lua_isnil(L, -1)) {
                if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "chat pair field '%s' must be a string", roles[r]);
                msgs[n++] = (BlChatMessage){roles[r], lua_tostring(L, -1)};
            }
            lua_pop(L, 1); /* the table keeps the string alive */
        }
    } else {
        lua_Integer len = luaL_len(L, idx);
        if (len <= 0 || len > BL_MAX_MESSAGES)
            luaL_error(L, "a conversation needs 1..%d messages", BL_MAX_MESSAGES);
        for (lua_Integer i = 1; i <= len; i++) {
            if (lua_rawgeti(L, idx, i) != LUA_TTABLE)
                luaL_error(L, "message %d is not a {role=, content=} table", (int)i);
            lua_getfield(L, -1, "role");
            lua_getfield(L, -2, "content");
            /* strings only: a number converted here would die with the stack slot */
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "message %d needs string role and content", (int)i);
            msgs[n++] = (BlChatMessage){lua_tostring(L, -2), lua_tostring(L, -1)};
            lua_pop(L, 3);
        }
    }
    BlError err = {{0}};
    if (bl_dataset_add_chat(d, msgs, n, &err)) bl_lua_fail(L, &err);
}

/* Calls fn(L, d, item) for each entry of the list field `name` of opts. */
static void each_field(lua_State *L, BlDataset *d, const char *name,
                       void (*fn)(lua_State *, BlDataset *, int)) {
    lua_getfield(L, 1, name);
    if (lua_istable(L, -1)) {
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            int t = lua_rawgeti(L, -1, i);
            if (fn != add_chat && t != LUA_TSTRING)
                luaL_error(L, "dataset option '%s': entry %d must be a string, got %s", name, (int)i,
                           lua_typename(L, t));
            fn(L, d, lua_gettop(L));
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "dataset option '%s' must be a list", name);
    }
    lua_pop(L, 1);
}

static void add_text(lua_State *L, BlDataset *d, int idx) {
    BlError err = {{0}};
    if (bl_dataset_add_text(d, luaL_checkstring(L, idx), &err)) bl_lua_fail(L, &err);
}

static void add_file(lua_State *L, BlDataset *d, int idx) {
    BlError err = {{0}};
    if (bl_dataset_load_jsonl(d, luaL_checkstring(L, idx), &err)) bl_lua_fail(L, &err);
}

/* bitlab.dataset{teacher = MODEL, ...}: the teacher-fed source of
 * lua/bitlab/teacher_data.lua (M.source), which samples its examples as
 * the trainer asks for them; it lives in Lua with the rest of the teacher
 * data (bitlab.sample, bitlab.filters), so this only hands the options on. */
static int teacher_source(lua_State *L) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "bitlab.teacher_data");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "source");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

/* bitlab.dataset{model=, chat={...}, text={...}, file=PATH, files={...},
 * response_only=true, template=NAME, seed=0, seq=N, long="truncate"}
 * seq: fit each example to N tokens as it is added, by `long`: "truncate"
 * (its first N tokens), "split" (pieces overlapping by one token) or "skip";
 * without seq examples stay whole and batches cut rows longer than their T
 * ("truncate" is then the only policy). Cuts and skips warn once.
 * teacher = MODEL instead: teacher_source above. */
static int l_dataset(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "teacher") != LUA_TNIL) return teacher_source(L);
    lua_pop(L, 1);
    int seq = (int)bl_opt_int(L, 1, "seq", 0, 2, 1 << 20);
    BlLongPolicy policy = BL_LONG_TRUNCATE;
    int lt = lua_getfield(L, 1, "long");
    if (lt != LUA_TNIL) {
        if (lt != LUA_TSTRING)
            return luaL_error(L, "dataset option 'long' must be \"truncate\", \"split\" or \"skip\", "
                              "got %s", lua_typename(L, lt));
        if (bl_long_policy_parse(lua_tostring(L, -1), &policy))
            return luaL_error(L, "dataset option 'long' must be \"truncate\", \"split\" or \"skip\", "
                              "got \"%s\"", lua_tostring(L, -1));
        if (policy != BL_LONG_TRUNCATE && seq == 0)
            return luaL_error(L, "dataset option 'long' = \"%s\" needs option 'seq' (the length "
                              "examples are fitted to)", lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    bl_field_udata(L, 1, "model", BL_MT_MODEL, true);
    BlModel *m = bl_lua_check_model(L, -1);
    int tt = lua_getfield(L, 1, "template");
    if (tt != LUA_TNIL && tt != LUA_TSTRING)
        return luaL_error(L, "dataset option 'template' must be a string, got %s", lua_typename(L, tt));
    const char *tpl = lua_tostring(L, -1);
    LDataset *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->live = 0;
    u->warned = false;
    luaL_setmetatable(L, BL_MT_DATASET);
    lua_pushvalue(L, -3);
    lua_setiuservalue(L, -2, 1); /* the model outlives the dataset */
    BlError err = {{0}};
    if (bl_dataset_init(&u->d, m, tpl, bl_opt_bool(L, 1, "response_only", 1), &err))
        return bl_lua_fail(L, &err);
    u->live = 1;
    if (seq > 0 && bl_dataset_set_long(&u->d, seq, policy, &err)) return bl_lua_fail(L, &err);
    each_field(L, &u->d, "chat", add_chat);
    each_field(L, &u->d, "text", add_text);
    each_field(L, &u->d, "files", add_file);
    int ft = lua_getfield(L, 1, "file");
    if (ft != LUA_TNIL && ft != LUA_TSTRING)
        return luaL_error(L, "dataset option 'file' must be a path, got %s", lua_typename(L, ft));
    if (ft != LUA_TNIL) add_file(L, &u->d, lua_gettop(L));
    lua_pop(L, 1);
    lua_Integer seed = bl_opt_integer(L, 1, "seed", 0); /* any integer: its 64 bits seed */
    if (u->d.n > 0 && bl_dataset_shuffle(&u->d, (uint64_t)seed, &err)) return bl_lua_fail(L, &err);
    u->d.seed = (uint64_t)seed;
    warn_added(L, u);
    return 1;
}

static int d_gc(lua_State *L) {
    LDataset *u = luaL_checkudata(L, 1, BL_MT_DATASET);
    if (u->live) bl_dataset_free(&u->d);
    u->live = 0;
    return 0;
}

static int d_tostring(lua_State *L) {
    LDataset *u = luaL_checkudata(L, 1, BL_MT_DATASET);
    lua_pushfstring(L, "bitlab.Dataset (%d examples)", u->live ? u->d.n : 0);
    return 1;
}

static int d_size(lua_State *L) {
    lua_pushinteger(L, bl_lua_check_dataset(L, 1)->n);
    return 1;
}

static int d_max_len(lua_State *L) {
    lua_pushinteger(L, bl_dataset_max_len(bl_lua_check_dataset(L, 1)));
    return 1;
}

/* Starts visiting order afresh after examples were added. */
static void restart(lua_State *L, BlDataset *d) {
    BlError err = {{0}};
    if (bl_dataset_shuffle(d, d->seed, &err)) bl_lua_fail(L, &err);
}

static int d_add_chat(lua_State *L) {
    LDataset *u = check_ldataset(L, 1);
    add_chat(L, &u->d, 2);
    restart(L, &u->d);
    warn_added(L, u);
    return 0;
}

static int d_add_text(lua_State *L) {
    LDataset *u = check_ldataset(L, 1);
    luaL_checktype(L, 2, LUA_TSTRING);
    add_text(L, &u->d, 2);
    restart(L, &u->d);
    warn_added(L, u);
    return 0;
}

/* ds:add_tokens(ids [, n_prompt]): the first n_prompt tokens are not targets */
static int d_add_tokens(lua_State *L) {
    LDataset *u = check_ldataset(L, 1);
    BlDataset *d = &u->d;
    int n;
    int *ids = bl_lua_check_ids(L, 2, d->model, &n);
    lua_Integer np = bl_optarg_int(L, 3, 0, 0, n - 1); /* must leave a target token */
    uint8_t *tg = lua_newuserdatauv(L, (size_t)n, 0);
    for (int i = 0; i < n; i++) tg[i] = i >= np;
    BlError err = {{0}};
    if (bl_dataset_add_tokens(d, ids, tg, n, &err)) return bl_lua_fail(L, &err);
    restart(L, d);
    warn_added(L, u);
    return 0;
}

/* ds:example(i) → ids, targets (1-based i, insertion order) */
static int d_example(lua_State *L) {
    BlDataset *d = bl_lua_check_dataset(L, 1);
    if (d->n == 0) return luaL_argerror(L, 2, "the dataset has no examples");
    lua_Integer i = bl_check_int(L, 2, 1, d->n);
    int n;
    const uint8_t *tg;
    const int *ids = bl_dataset_example(d, (int)i - 1, &n, &tg);
    bl_lua_push_ids(L, ids, n);
    lua_createtable(L, n, 0);
    for (int t = 0; t < n; t++) {
        lua_pushinteger(L, tg[t]);
        lua_rawseti(L, -2, t + 1);
    }
    return 2;
}

static int d_position(lua_State *L) {
    BlDataset *d = bl_lua_check_dataset(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, d->epoch);
    lua_setfield(L, -2, "epoch");
    lua_pushinteger(L, d->pos);
    lua_setfield(L, -2, "pos");
    lua_pushinteger(L, (lua_Integer)d->seed);
    lua_setfield(L, -2, "seed");
    return 1;
}

/* ds:seek(epoch, pos) or ds:seek{epoch=, pos=} */
static int d_seek(lua_State *L) {
    BlDataset *d = bl_lua_check_dataset(L, 1);
    lua_Integer e, p;
    if (lua_istable(L, 2)) {
        e = bl_opt_int(L, 2, "epoch", 0, 0, LONG_MAX);
        p = bl_opt_int(L, 2, "pos", 0, 0, LONG_MAX);
    } else {
        e = bl_check_int(L, 2, 0, LONG_MAX);
        p = bl_check_int(L, 3, 0, LONG_MAX);
    }
    BlError err = {{0}};
    if (bl_dataset_seek(d, (long)e, (long)p, &err)) return bl_lua_fail(L, &err);
    return 0;
}

/* ds:stats() → {examples, tokens, longest, seq, long, long_examples,
 * truncated, truncated_rows, split, skipped, tokens_dropped, rows,
 * padding_fraction}:
 *   examples, tokens   held now (a split example counts once per piece)
 *   longest            the longest example, in tokens
 *   seq, long          the fitting length (nil without one) and the policy
 *   long_examples      examples added that were longer than seq
 *   truncated          examples cut to seq when added, plus batch rows cut to
 *                      a shorter batch length (truncated_rows, each time one
 *                      is served)
 *   split, skipped     examples split into pieces / left out (seq given)
 *   tokens_dropped     tokens the cuts to seq and the skips removed
 *   rows               batch rows served so far
 *   padding_fraction   padding positions / all positions of the batches
 *                      served so far; before the first batch, that of one
 *                      example per row at seq (else at the longest example) */
static int d_stats(lua_State *L) {
    const BlDataset *d = bl_lua_check_dataset(L, 1);
    lua_createtable(L, 0, 13);
    static const char *const names[] = {"examples", "tokens", "longest", "long_examples",
                                        "truncated", "truncated_rows", "split", "skipped",
                                        "tokens_dropped", "rows"};
    const lua_Integer vals[] = {d->n, (lua_Integer)d->n_tok, bl_dataset_max_len(d), d->n_long,
                                d->n_cut + d->n_truncated, d->n_truncated, d->n_split,
                                d->n_skipped, d->tokens_dropped, d->rows_served};
    for (int i = 0; i < (int)(sizeof vals / sizeof *vals); i++) {
        lua_pushinteger(L, vals[i]);
        lua_setfield(L, -2, names[i]);
    }
    if (d->seq > 0) {
        lua_pushinteger(L, d->seq);
        lua_setfield(L, -2, "seq");
    }
    lua_pushstring(L, bl_long_policy_name(d->long_policy));
    lua_setfield(L, -2, "long");
    lua_pushnumber(L, bl_dataset_padding_fraction(d));
    lua_setfield(L, -2, "padding_fraction");
    return 1;
}

/* ds:batch(B [, T]) → Batch; T defaults to the longest example */
static int d_batch(lua_State *L) {
    LDataset *u = check_ldataset(L, 1);
    BlDataset *d = &u->d;
    lua_Integer B = bl_check_int(L, 2, 1, 4096);
    lua_Integer T = bl_optarg_int(L, 3, bl_dataset_max_len(d), 2, 1 << 20);
    if (T < 2) return luaL_argerror(L, 3, "the dataset is empty: give the length");
    BlLuaBatch *b = bl_lua_new_batch(L, (int)B, (int)T, false);
    BlError err = {{0}};
    if (bl_dataset_next_batch(d, b->B, b->T, b->tokens, b->lens, b->mask, &err))
        return bl_lua_fail(L, &err);
    warn_batch(L, u, b->T);
    return 1;
}

// ----------------------------------------------------------------------------
// Batch

static void push_int_array(lua_State *L, const int *v, size_t n) {
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* batch:arrays() → {tokens = [B·T], lens = [B], mask = [B·T] (0/1), doc_start
 * = [B·T] (packed batches only)}: row-major, 1-based Lua lists, for tests and
 * scripts that inspect what a step trains on. */
static int b_arrays(lua_State *L) {
    const BlLuaBatch *b = bl_lua_check_batch(L, 1);
    size_t M = (size_t)b->B * b->T;
    lua_createtable(L, 0, 4);
    push_int_array(L, b->tokens, M);
    lua_setfield(L, -2, "tokens");
    push_int_array(L, b->lens, (size_t)b->B);
    lua_setfield(L, -2, "lens");
    lua_createtable(L, (int)M, 0);
    for (size_t i = 0; i < M; i++) {
        lua_pushinteger(L, b->mask[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "mask");
    if (b->doc_start) {
        push_int_array(L, b->doc_start, M);
        lua_setfield(L, -2, "doc_start");
    }
    return 1;
}

static int b_index(lua_State *L) {
    const BlLuaBatch *b = bl_lua_check_batch(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "B") == 0) lua_pushinteger(L, b->B);
    else if (strcmp(k, "T") == 0) lua_pushinteger(L, b->T);
    else if (strcmp(k, "tokens") == 0) { /* total of the lens */
        long s = 0;
        for (int i = 0; i < b->B; i++) s += b->lens[i];
        lua_pushinteger(L, s);
    } else if (strcmp(k, "targets") == 0) {
        long s = 0;
        for (size_t i = 0; i < (size_t)b->B * b->T; i++) s += b->mask[i];
        lua_pushinteger(L, s);
    } else if (strcmp(k, "packed") == 0) lua_pushboolean(L, b->doc_start != NULL);
    else if (strcmp(k, "arrays") == 0) lua_pushcfunction(L, b_arrays);
    else lua_pushnil(L);
    return 1;
}

static int b_tostring(lua_State *L) {
    const BlLuaBatch *b = bl_lua_check_batch(L, 1);
    lua_pushfstring(L, "bitlab.Batch %d x %d%s", b->B, b->T, b->doc_start ? " (packed)" : "");
    return 1;
}

void bl_open_dataset(lua_State *L) {
    luaL_newmetatable(L, BL_MT_DATASET);
    static const luaL_Reg meta[] = {{"__gc", d_gc}, {"__tostring", d_tostring}, {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    static const luaL_Reg methods[] = {
        {"size", d_size},         {"max_len", d_max_len}, {"add_chat", d_add_chat},
        {"add_text", d_add_text}, {"add_tokens", d_add_tokens}, {"example", d_example},
        {"position", d_position}, {"seek", d_seek},       {"batch", d_batch},
        {"stats", d_stats},       {NULL, NULL}};
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    bl_protect_metatable(L);
    lua_pop(L, 1);
    luaL_newmetatable(L, BL_MT_BATCH);
    static const luaL_Reg bmeta[] = {{"__index", b_index}, {"__tostring", b_tostring}, {NULL, NULL}};
    luaL_setfuncs(L, bmeta, 0);
    bl_protect_metatable(L);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_dataset);
    lua_setfield(L, -2, "dataset");
}

BlLuaBatch *bl_lua_new_batch(lua_State *L, int B, int T, bool packed) {
    size_t M = (size_t)B * T;
    size_t bytes = sizeof(BlLuaBatch) + (M + (size_t)B + (packed ? M : 0)) * sizeof(int) + M;
    BlLuaBatch *b = lua_newuserdatauv(L, bytes, 0);
    memset(b, 0, bytes); /* the arrays follow the struct in the same userdata */
    b->B = B;
    b->T = T;
    b->tokens = (int *)(b + 1);
    b->lens = b->tokens + M;
    b->doc_start = packed ? b->lens + B : NULL;
    b->mask = (uint8_t *)((packed ? b->doc_start + M : b->lens + B));
    luaL_setmetatable(L, BL_MT_BATCH);
    return b;
}

BlLuaBatch *bl_lua_check_batch(lua_State *L, int idx) {
    return luaL_checkudata(L, idx, BL_MT_BATCH);
}
