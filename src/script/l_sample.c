/* l_sample.c - bitlab.sample: batched teacher sampling (nn/sample.h) on the
 * run's backend, from a prompt list or from the BOS token alone. */
#include <stdlib.h>
#include <string.h>

#include "backend/device_model.h"
#include "nn/sample.h"
#include "script/internal.h"
#include "tokenizer/tokenizer.h"

/* What a request's prompt came from, to hand back with its answer. */
typedef struct {
    const int **prompts;
    int *n_prompt;
    int *out, *n_out;
    BlDeviceModel dm;
    bool have_dm;
} SampleCall;

/* The C buffers of a call live in this userdata so that a Lua error (raised
 * anywhere after they are made) cannot leak them. */
static void free_call(SampleCall *c) {
    free(c->prompts);
    free(c->n_prompt);
    free(c->out);
    free(c->n_out);
    if (c->have_dm) bl_device_model_free(&c->dm);
    c->have_dm = false;
    c->prompts = NULL;
    c->n_prompt = c->out = c->n_out = NULL;
}

static int call_gc(lua_State *L) {
    free_call(lua_touserdata(L, 1));
    return 0;
}

static const char *const OPTIONS[] = {"model", "prompts", "bos", "n", "max_tokens", "temperature",
                                      "top_p", "seed", "batch", "chat", "system", NULL};

/* A misspelt option would otherwise be silently ignored (temprature = 0). */
static void check_option_names(lua_State *L, int idx) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        int known = 0;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (int i = 0; OPTIONS[i] && !known; i++) known = !strcmp(lua_tostring(L, -1), OPTIONS[i]);
        if (!known)
            luaL_error(L, "bitlab.sample: unknown option '%s'", luaL_tolstring(L, -1, NULL));
    }
}

static void *checked_alloc(lua_State *L, size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) luaL_error(L, "bitlab.sample: out of memory");
    return p;
}

/* bitlab.sample{model =, prompts = {...} | bos = true, n =, max_tokens =,
 * temperature =, top_p =, seed =, batch =, chat =, system =}
 * → {{prompt =, text =, tokens =, ids =, stopped =}, ...}, stats */
static int l_sample(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    check_option_names(L, 1);
    bl_field_udata(L, 1, "model", BL_MT_MODEL, true);
    BlModel *m = bl_lua_check_model(L, -1);
    lua_pop(L, 1); /* the options table keeps the model alive */
    int t_prompts = lua_getfield(L, 1, "prompts");
    int from_bos = bl_opt_bool(L, 1, "bos", 0);
    if (t_prompts != LUA_TNIL && t_prompts != LUA_TTABLE)
        luaL_error(L, "option 'prompts' must be a list of prompts, got %s",
                   lua_typename(L, t_prompts));
    if ((t_prompts == LUA_TTABLE) == from_bos)
        luaL_error(L, "bitlab.sample needs either option 'prompts' (a list) or 'bos = true'");
    int prompts_idx = lua_gettop(L);
    int n_src = from_bos ? 1 : (int)luaL_len(L, prompts_idx);
    if (!from_bos && (n_src < 1 || n_src > 1 << 20))
        luaL_error(L, "option 'prompts' must hold 1..%d prompts, got %d", 1 << 20, n_src);
    int per = (int)bl_opt_int(L, 1, "n", 1, 1, 1 << 20);
    if ((long long)n_src * per > 1 << 20)
        luaL_error(L, "option 'n': %d prompts x %d samples is over %d", n_src, per, 1 << 20);
    int n_req = n_src * per;
    int ctx = m->cfg.max_seq_len > 0 ? m->cfg.max_seq_len : 1 << 20;
    BlSampleOptions o = {
        .max_new = (int)bl_opt_int(L, 1, "max_tokens", 256 < ctx ? 256 : ctx, 1, ctx),
        .batch = (int)bl_opt_int(L, 1, "batch", 16, 1, 4096),
        .temperature = (float)bl_opt_num(L, 1, "temperature", 0.8, 0.0, 1e6),
        .top_p = (float)bl_opt_num(L, 1, "top_p", 0.95, 0.0, 1.0),
        .seed = (uint64_t)bl_opt_integer(L, 1, "seed", 1),
    };
    if (!(o.top_p > 0.0f)) luaL_error(L, "option 'top_p' must be in (0, 1], got 0");

    SampleCall *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, call_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_createtable(L, n_src, 0); /* keeps the prompts' token buffers alive */
    int bufs_idx = lua_gettop(L);
    c->prompts = checked_alloc(L, sizeof *c->prompts * (size_t)n_src);
    c->n_prompt = checked_alloc(L, sizeof(int) * (size_t)n_req);

    int bos[1] = {bl_tokenizer_bos_id(m->tokenizer)};
    if (from_bos) {
        if (bos[0] < 0) luaL_error(L, "option 'bos': the model's tokenizer has no BOS token");
        c->prompts[0] = bos;
        c->n_prompt[0] = 1;
    } else {
        for (int i = 0; i < n_src; i++) {
            lua_rawgeti(L, prompts_idx, i + 1);
            int t = lua_type(L, -1);
            if (t != LUA_TSTRING && t != LUA_TTABLE)
                luaL_error(L, "option 'prompts': entry %d must be a string, a message list or "
                           "token ids, got %s", i + 1, lua_typename(L, t));
            int n;
            c->prompts[i] = bl_lua_prompt(L, m, -1, 1, &n);
            c->n_prompt[i] = n;
            if ((long long)n + o.max_new > ctx)
                luaL_error(L, "option 'max_tokens': prompt %d (%d tokens) + max_tokens %d exceed "
                           "the model's context of %d", i + 1, n, o.max_new, ctx);
            lua_rawseti(L, bufs_idx, i + 1);
            lua_pop(L, 1);
        }
    }
    const int **req_prompts = checked_alloc(L, sizeof *req_prompts * (size_t)n_req);
    for (int r = n_req - 1; r >= 0; r--) { /* downwards: n_prompt[r / per] is still a source's */
        req_prompts[r] = c->prompts[r / per];
        c->n_prompt[r] = c->n_prompt[r / per];
    }
    free(c->prompts); /* the per-request list replaces the per-source one */
    c->prompts = req_prompts;
    c->out = checked_alloc(L, sizeof(int) * (size_t)n_req * o.max_new);
    c->n_out = checked_alloc(L, sizeof(int) * (size_t)n_req);

    const BlBackend *be = bl_rt_backend(bl_rt(L));
    BlError err = {{0}};
    if (bl_device_model_build(&c->dm, m, be, &err)) {
        bl_fail_prefix(&err, "bitlab.sample: the model on %s", be->name);
        return bl_lua_fail(L, &err);
    }
    c->have_dm = true;
    BlSampleStats st;
    if (bl_sample(&c->dm.model, be, c->prompts, c->n_prompt, n_req, &o, c->out, c->n_out, &st,
                  &err))
        return bl_lua_fail(L, &err); /* "sample: ..." */

    lua_createtable(L, n_req, 0);
    for (int r = 0; r < n_req; r++) {
        const int *ids = c->out + (size_t)r * o.max_new;
        int n = c->n_out[r];
        char *text = NULL;
        if (n > 0 && bl_tokenizer_decode(m->tokenizer, ids, n, true, &text, &err))
            return bl_lua_fail(L, &err);
        lua_createtable(L, 0, 5);
        if (from_bos) lua_pushliteral(L, "");
        else lua_rawgeti(L, prompts_idx, r / per + 1);
        lua_setfield(L, -2, "prompt");
        lua_pushstring(L, text ? text : "");
        free(text);
        lua_setfield(L, -2, "text");
        lua_pushinteger(L, n);
        lua_setfield(L, -2, "tokens");
        bl_lua_push_ids(L, ids, n);
        lua_setfield(L, -2, "ids");
        lua_pushboolean(L, n < o.max_new); /* ended on a stop token, not on max_tokens */
        lua_setfield(L, -2, "stopped");
        lua_rawseti(L, -2, r + 1);
    }
    double secs = st.prefill_s + st.decode_s;
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, st.tokens);
    lua_setfield(L, -2, "tokens");
    lua_pushinteger(L, st.prompt_tokens);
    lua_setfield(L, -2, "prompt_tokens");
    lua_pushinteger(L, st.steps);
    lua_setfield(L, -2, "steps");
    lua_pushnumber(L, secs);
    lua_setfield(L, -2, "seconds");
    lua_pushnumber(L, secs > 0 ? (double)st.tokens / secs : 0.0);
    lua_setfield(L, -2, "tokens_per_s");
    free_call(c); /* now rather than at the next collection */
    return 2;
}

void bl_open_sample(lua_State *L) {
    lua_pushcfunction(L, l_sample);
    lua_setfield(L, -2, "sample");
}
