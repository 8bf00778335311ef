/* l_trace.c - teacher traces from Lua: bitlab.trace{...} makes one from a
 * model and a Dataset, bitlab.load_trace(path) opens one as a Trace userdata
 * (what bitlab.trainer{trace=} takes, besides a path). Format and meaning in
 * src/trace/trace.h. */
#include <string.h>

#include "script/internal.h"
#include "trace/trace.h"

typedef struct {
    BlTrace *t;
} LTrace;

static void set_num(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* hidden = false | true (f32) | "f32" | "f16" */
static BlTraceHidden opt_hidden(lua_State *L, int idx) {
    lua_getfield(L, idx, "hidden");
    BlTraceHidden h = BL_TRACE_HIDDEN_NONE;
    if (lua_isboolean(L, -1)) {
        h = lua_toboolean(L, -1) ? BL_TRACE_HIDDEN_F32 : BL_TRACE_HIDDEN_NONE;
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        const char *s = lua_tostring(L, -1);
        if (strcmp(s, "f32") == 0) h = BL_TRACE_HIDDEN_F32;
        else if (strcmp(s, "f16") == 0) h = BL_TRACE_HIDDEN_F16;
        else luaL_error(L, "trace: hidden must be false, true, \"f32\" or \"f16\", got \"%s\"", s);
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "trace: hidden must be false, true, \"f32\" or \"f16\"");
    }
    lua_pop(L, 1);
    return h;
}

/* bitlab.trace{model=, data=, k=, out=, tau=1, seq=<longest>, batch=1,
 * hidden=false} → {path, records, positions, rows, bytes, seconds,
 * model_sha256, data_sha256} */
static int l_trace(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    bl_field_udata(L, 1, "model", BL_MT_MODEL, true);
    BlModel *m = bl_lua_check_model(L, -1);
    bl_field_udata(L, 1, "data", BL_MT_DATASET, true);
    BlDataset *d = bl_lua_check_dataset(L, -1);
    if (lua_getfield(L, 1, "out") != LUA_TSTRING && !lua_isnil(L, -1))
        return luaL_error(L, "trace: option 'out' must be a path, got %s", luaL_typename(L, -1));
    const char *out = lua_tostring(L, -1);
    if (!out) return luaL_error(L, "trace: out= (the trace file's path) is required");
    lua_Integer K = bl_opt_int(L, 1, "k", 0, 0, 1 << 20);
    if (K <= 0) return luaL_error(L, "trace: k= (the top-K size, >= 1) is required");
    BlTraceConfig c = {.K = (int)K, .tau = (float)bl_opt_num(L, 1, "tau", 1.0, 1e-2, 1e2),
                       .seq = (int)bl_opt_int(L, 1, "seq", bl_dataset_max_len(d), 2, 1 << 20),
                       .batch = (int)bl_opt_int(L, 1, "batch", 1, 1, 4096), .hidden = opt_hidden(L, 1),
                       .be = bl_rt_backend(bl_rt(L))}; /* the teacher forward on the run's device */
    BlTraceSummary s;
    BlError err = {{0}};
    if (bl_trace_write(m, d, &c, out, &s, &err)) return bl_lua_fail(L, &err);
    lua_createtable(L, 0, 8);
    set_str(L, "path", out);
    set_num(L, "records", s.records);
    set_num(L, "positions", (double)s.positions);
    set_num(L, "rows", (double)s.rows);
    set_num(L, "bytes", (double)s.bytes);
    set_num(L, "seconds", s.seconds);
    set_str(L, "model_sha256", s.model_sha256);
    set_str(L, "data_sha256", s.data_sha256);
    return 1;
}

static LTrace *check_trace(lua_State *L, int idx) {
    LTrace *u = luaL_checkudata(L, idx, BL_MT_TRACE);
    if (!u->t) luaL_error(L, "the trace was closed");
    return u;
}

static LTrace *open_trace(lua_State *L, const char *path) {
    LTrace *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->t = NULL;
    luaL_setmetatable(L, BL_MT_TRACE);
    BlError err = {{0}};
    if (bl_trace_open(&u->t, path, &err)) bl_lua_fail(L, &err);
    return u;
}

struct BlTrace *bl_lua_push_trace(lua_State *L, int idx) {
    if (lua_type(L, idx) == LUA_TSTRING) return open_trace(L, lua_tostring(L, idx))->t;
    LTrace *u = check_trace(L, idx);
    lua_pushvalue(L, idx);
    return u->t;
}

/* bitlab.load_trace(path) → Trace */
static int l_load_trace(lua_State *L) {
    open_trace(L, luaL_checkstring(L, 1));
    return 1;
}

/* trace:info() → {path, k, tau, seq, records, positions, rows, hidden, n_layers,
 * dim, vocab, bytes, model_sha256, data_sha256} */
static int tr_info(lua_State *L) {
    const BlTrace *t = check_trace(L, 1)->t;
    lua_createtable(L, 0, 14);
    set_str(L, "path", t->path);
    set_num(L, "k", t->K);
    set_num(L, "tau", t->tau);
    set_num(L, "seq", t->seq);
    set_num(L, "records", t->records);
    set_num(L, "positions", (double)t->positions);
    set_num(L, "rows", (double)t->rows);
    if (t->hidden == BL_TRACE_HIDDEN_NONE) lua_pushboolean(L, 0);
    else lua_pushstring(L, bl_trace_hidden_name(t->hidden));
    lua_setfield(L, -2, "hidden");
    set_num(L, "n_layers", t->n_layers);
    set_num(L, "dim", t->dim);
    set_num(L, "vocab", t->vocab);
    set_num(L, "bytes", (double)t->bytes);
    set_str(L, "model_sha256", t->model_sha256);
    set_str(L, "data_sha256", t->data_sha256);
    return 1;
}

static int tr_gc(lua_State *L) {
    LTrace *u = luaL_checkudata(L, 1, BL_MT_TRACE);
    bl_trace_close(u->t);
    u->t = NULL;
    return 0;
}

static int tr_tostring(lua_State *L) {
    LTrace *u = luaL_checkudata(L, 1, BL_MT_TRACE);
    if (!u->t) lua_pushliteral(L, "bitlab.Trace (closed)");
    else lua_pushfstring(L, "bitlab.Trace %s (%d records, top-%d at tau %f, hidden %s)",
                         u->t->path, u->t->records, u->t->K, (double)u->t->tau,
                         bl_trace_hidden_name(u->t->hidden));
    return 1;
}

void bl_open_trace(lua_State *L) {
    static const luaL_Reg meta[] = {{"__gc", tr_gc}, {"__tostring", tr_tostring}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"info", tr_info}, {NULL, NULL}};
    luaL_newmetatable(L, BL_MT_TRACE);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    bl_protect_metatable(L);
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"trace", l_trace}, {"load_trace", l_load_trace}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
