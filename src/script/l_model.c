/* l_model.c - the Model userdata: loading, tokenising, chat prompts, teacher
 * greedy generation and the teacher forward's next-token statistics (both
 * eval/student_eval.h's, on the run's backend). */
#include <stdlib.h>
#include <string.h>

#include "eval/student_eval.h"
#include "model/model.h"
#include "script/internal.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    BlModel *m;
} LModel;

BlModel *bl_lua_check_model(lua_State *L, int idx) {
    LModel *u = luaL_checkudata(L, idx, BL_MT_MODEL);
    if (!u->m) luaL_error(L, "the model was freed");
    return u->m;
}

// ----------------------------------------------------------------------------
// shared helpers

int *bl_lua_check_ids(lua_State *L, int idx, const BlModel *m, int *n) {
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer len = luaL_len(L, idx);
    if (len <= 0 || len > 1 << 24) luaL_argerror(L, idx, "a non-empty list of token ids expected");
    int *ids = lua_newuserdatauv(L, sizeof(int) * (size_t)len, 0);
    for (lua_Integer i = 1; i <= len; i++) {
        lua_rawgeti(L, idx, i);
        int ok = 0;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok || v < 0 || v >= m->cfg.vocab_size)
            luaL_error(L, "token list entry %d is not an id in 0..%d", (int)i, m->cfg.vocab_size - 1);
        ids[i - 1] = (int)v;
    }
    *n = (int)len;
    return ids;
}

void bl_lua_push_ids(lua_State *L, const int *ids, int n) {
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* Renders messages and tokenises them into a pushed buffer. */
static int *render_ids(lua_State *L, const BlModel *m, const BlChatMessage *msgs, int n_msgs,
                       int *n) {
    BlError err = {{0}};
    BlChatTemplate tpl;
    if (!m->chat_template) luaL_error(L, "the model has no chat template");
    if (bl_chat_template_detect(&tpl, m->chat_template, bl_tokenizer_bos_text(m->tokenizer),
                                bl_tokenizer_eos_text(m->tokenizer), &err))
        bl_lua_fail(L, &err);
    char *text = NULL;
    int rc = bl_chat_render(&tpl, msgs, n_msgs, true, &text, &err);
    bl_chat_template_free(&tpl);
    int *ids = NULL;
    if (rc == 0) rc = bl_tokenizer_encode(m->tokenizer, text, strlen(text), false, &ids, n, &err);
    free(text);
    if (rc) bl_lua_fail(L, &err);
    int *buf = lua_newuserdatauv(L, sizeof(int) * (size_t)(*n ? *n : 1), 0);
    memcpy(buf, ids, sizeof(int) * (size_t)*n);
    free(ids);
    return buf;
}

int *bl_lua_prompt(lua_State *L, const BlModel *m, int idx, int opts, int *n) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TTABLE) {
        lua_rawgeti(L, idx, 1);
        int is_msgs = lua_type(L, -1) == LUA_TTABLE;
        lua_pop(L, 1);
        if (!is_msgs) return bl_lua_check_ids(L, idx, m, n);
        lua_Integer len = luaL_len(L, idx);
        if (len < 1 || len > BL_MAX_MESSAGES)
            luaL_error(L, "a prompt needs 1..%d messages, got %I", BL_MAX_MESSAGES, len);
        int nm = (int)len;
        BlChatMessage *msgs = lua_newuserdatauv(L, sizeof *msgs * (size_t)nm, 0);
        for (int i = 0; i < nm; i++) { /* strings stay referenced by the table */
            if (lua_rawgeti(L, idx, i + 1) != LUA_TTABLE)
                luaL_error(L, "message %d is not a {role=, content=} table", i + 1);
            lua_getfield(L, -1, "role");
            lua_getfield(L, -2, "content");
            /* strings only: a number converted here would die with the stack slot */
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "message %d needs string role and content", i + 1);
            msgs[i] = (BlChatMessage){lua_tostring(L, -2), lua_tostring(L, -1)};
            lua_pop(L, 3);
        }
        int *ids = render_ids(L, m, msgs, nm, n);
        lua_remove(L, -2);
        return ids;
    }
    size_t len;
    const char *text = luaL_checklstring(L, idx, &len);
    if (opts && !bl_opt_bool(L, opts, "chat", 1)) {
        BlError err = {{0}};
        int *ids = NULL;
        if (bl_tokenizer_encode(m->tokenizer, text, len, true, &ids, n, &err)) bl_lua_fail(L, &err);
        int *buf = lua_newuserdatauv(L, sizeof(int) * (size_t)(*n ? *n : 1), 0);
        memcpy(buf, ids, sizeof(int) * (size_t)*n);
        free(ids);
        if (*n == 0) luaL_error(L, "the prompt encodes to no tokens");
        return buf;
    }
    BlChatMessage msgs[2];
    int nm = 0;
    const char *system = NULL;
    if (opts && lua_type(L, opts) == LUA_TTABLE) {
        int t = lua_getfield(L, opts, "system");
        if (t != LUA_TNIL && t != LUA_TSTRING)
            luaL_error(L, "option 'system' must be a string, got %s", lua_typename(L, t));
        system = lua_tostring(L, -1); /* stays alive: opts holds it */
        lua_pop(L, 1);
    }
    if (system) msgs[nm++] = (BlChatMessage){"system", system};
    msgs[nm++] = (BlChatMessage){"user", text};
    return render_ids(L, m, msgs, nm, n);
}

int bl_lua_max_tokens(lua_State *L, const BlModel *m, int opts) {
    int ctx = m->cfg.max_seq_len > 0 ? m->cfg.max_seq_len : 1 << 20;
    return (int)bl_opt_int(L, opts, "max_tokens", 128 < ctx ? 128 : ctx, 1, ctx);
}

void bl_lua_check_context(lua_State *L, const BlModel *m, int n_prompt, int max_new) {
    /* as `bitlab generate`: the prompt and the answer must fit the context */
    if (m->cfg.max_seq_len > 0 && (long)n_prompt + max_new > m->cfg.max_seq_len)
        luaL_error(L, "the prompt (%d tokens) + max_tokens %d exceed the model's context of %d",
                   n_prompt, max_new, m->cfg.max_seq_len);
}

// ----------------------------------------------------------------------------
// methods

/* bitlab.load_model(path) */
static int l_load_model(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    LModel *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->m = NULL;
    luaL_setmetatable(L, BL_MT_MODEL);
    BlError err = {{0}};
    if (bl_model_load(&u->m, path, &err)) return bl_lua_fail(L, &err);
    return 1;
}

static int m_gc(lua_State *L) {
    LModel *u = luaL_checkudata(L, 1, BL_MT_MODEL);
    bl_model_free(u->m);
    u->m = NULL;
    return 0;
}

static int m_tostring(lua_State *L) {
    LModel *u = luaL_checkudata(L, 1, BL_MT_MODEL);
    if (!u->m) lua_pushliteral(L, "bitlab.Model (freed)");
    else lua_pushfstring(L, "bitlab.Model %s (%d layers, dim %d)", u->m->name ? u->m->name : "?",
                         u->m->cfg.n_layers, u->m->cfg.dim);
    return 1;
}

static int m_info(lua_State *L) {
    BlModel *m = bl_lua_check_model(L, 1);
    lua_newtable(L);
    lua_pushstring(L, m->name ? m->name : "");
    lua_setfield(L, -2, "name");
    lua_pushstring(L, m->path ? m->path : "");
    lua_setfield(L, -2, "path");
    lua_pushinteger(L, m->cfg.n_layers);
    lua_setfield(L, -2, "n_layers");
    lua_pushinteger(L, m->cfg.dim);
    lua_setfield(L, -2, "dim");
    lua_pushinteger(L, m->cfg.hidden_dim);
    lua_setfield(L, -2, "hidden_dim");
    lua_pushinteger(L, m->cfg.vocab_size);
    lua_setfield(L, -2, "vocab_size");
    lua_pushinteger(L, (lua_Integer)(bl_model_weight_bytes(m) / sizeof(float)));
    lua_setfield(L, -2, "params");
    bl_lua_push_ids(L, m->stop_tokens, m->n_stop_tokens);
    lua_setfield(L, -2, "stop_tokens");
    return 1;
}

/* model:encode(text [, add_special]) → ids */
static int m_encode(lua_State *L) {
    BlModel *m = bl_lua_check_model(L, 1);
    size_t len;
    const char *text = luaL_checklstring(L, 2, &len);
    BlError err = {{0}};
    int *ids = NULL, n = 0;
    if (bl_tokenizer_encode(m->tokenizer, text, len, lua_toboolean(L, 3), &ids, &n, &err))
        return bl_lua_fail(L, &err);
    bl_lua_push_ids(L, ids, n);
    free(ids);
    return 1;
}

/* model:decode(ids [, keep_special]) → text */
static int m_decode(lua_State *L) {
    BlModel *m = bl_lua_check_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (luaL_len(L, 2) == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    int n;
    int *ids = bl_lua_check_ids(L, 2, m, &n);
    BlError err = {{0}};
    char *text = NULL;
    if (bl_tokenizer_decode(m->tokenizer, ids, n, !lua_toboolean(L, 3), &text, &err))
        return bl_lua_fail(L, &err);
    lua_pushstring(L, text);
    free(text);
    return 1;
}

/* model:prompt(prompt [, opts]) → ids as bitlab would feed them */
static int m_prompt(lua_State *L) {
    BlModel *m = bl_lua_check_model(L, 1);
    int n;
    int *ids = bl_lua_prompt(L, m, 2, bl_opt_table(L, 3), &n);
    bl_lua_push_ids(L, ids, n);
    return 1;
}

/* model:generate(prompt [, {max_tokens=, chat=, system=}]) → text, ids */
static int m_generate(lua_State *L) {
    BlModel *m = bl_lua_check_model(L, 1);
    int opts = bl_opt_table(L, 3);
    int n, max_new = bl_lua_max_tokens(L, m, opts);
    int *prompt = bl_lua_prompt(L, m, 2, opts, &n);
    bl_lua_check_context(L, m, n, max_new);
    int *out = lua_newuserdatauv(L, sizeof(int) * (size_t)max_new, 0);
    int n_out = 0;
    BlError err = {{0}};
    if (bl_eval_generate(bl_rt_backend(bl_rt(L)), m, NULL, (BlStudentMode){0}, prompt, n,
                         max_new, NULL, NULL, out, &n_out, &err))
        return bl_lua_fail(L, &err);
    char *text = NULL;
    if (bl_tokenizer_decode(m->tokenizer, out, n_out, true, &text, &err)) return bl_lua_fail(L, &err);
    lua_pushstring(L, text);
    free(text);
    bl_lua_push_ids(L, out, n_out);
    return 2;
}

/* model:forward(ids) → argmax per position, mean next-token NLL */
static int m_forward(lua_State *L) {
    BlModel *m = bl_lua_check_model(L, 1);
    int n;
    int *ids = bl_lua_check_ids(L, 2, m, &n);
    int *am = lua_newuserdatauv(L, sizeof(int) * (size_t)n, 0);
    double nll = 0.0;
    long cnt = 0;
    BlError err = {{0}};
    if (bl_eval_sequence(bl_rt_backend(bl_rt(L)), m, NULL, (BlStudentMode){0}, ids, n, NULL, am,
                         &nll, &cnt, &err))
        return bl_lua_fail(L, &err);
    bl_lua_push_ids(L, am, n);
    lua_pushnumber(L, cnt ? nll / cnt : 0.0);
    return 2;
}

void bl_open_model(lua_State *L) {
    luaL_newmetatable(L, BL_MT_MODEL);
    static const luaL_Reg meta[] = {{"__gc", m_gc}, {"__tostring", m_tostring},
                                    {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    static const luaL_Reg methods[] = {{"info", m_info},         {"encode", m_encode},
                                       {"decode", m_decode},     {"prompt", m_prompt},
                                       {"generate", m_generate}, {"forward", m_forward},
                                       {NULL, NULL}};
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    bl_protect_metatable(L);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_load_model);
    lua_setfield(L, -2, "load_model");
}
