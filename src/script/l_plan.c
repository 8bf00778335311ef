/* l_plan.c - bitlab.plan{config= | model=, batch=, seq=, rank=, adapters=,
 * dense=, subln=, post_attn_norm=, act_bits=, topk=, baseline_mib=}: the
 * memory plan of `bitlab plan` (src/plan/) as a table, without loading any
 * weight. Without baseline_mib the baseline is this process's resident set
 * at the call (what the script already holds) plus the OpenBLAS buffers. */
#include <stdlib.h>

#include "plan/plan_host.h"
#include "plan/plan_report.h"
#include "script/internal.h"

/* A string option of the table at index 1, or NULL. */
static const char *opt_path(lua_State *L, const char *name) {
    lua_getfield(L, 1, name);
    const char *s = lua_isnil(L, -1) ? NULL : lua_tostring(L, -1);
    if (!s && !lua_isnil(L, -1)) luaL_error(L, "bitlab.plan: option '%s' must be a path", name);
    lua_pop(L, 1); /* the string stays alive in the options table */
    return s;
}

static int l_plan(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *config = opt_path(L, "config"), *model = opt_path(L, "model");
    if (!config == !model) return luaL_error(L, "bitlab.plan: give exactly one of config= and model=");
    BlPlanRun run = {
        .B = (int)bl_opt_int(L, 1, "batch", 4, 1, 1 << 16),
        .T = (int)bl_opt_int(L, 1, "seq", 128, 2, 1 << 24),
        .rank = (int)bl_opt_int(L, 1, "rank", 16, 0, 1 << 16),
        .adapters = (int)bl_opt_int(L, 1, "adapters", 1, 0, 1 << 16),
        .dense = bl_opt_bool(L, 1, "dense", 0),
        .subln = bl_opt_bool(L, 1, "subln", 0),
        .post_attn_norm = bl_opt_bool(L, 1, "post_attn_norm", 0),
        .act_bits = (int)bl_opt_int(L, 1, "act_bits", 8, 4, 16),
        .topk = (int)bl_opt_int(L, 1, "topk", 0, 0, 1 << 20),
    };
    double mib = bl_opt_num(L, 1, "baseline_mib", -1.0, -1.0, 1e12);
    BlPlan *p = lua_newuserdatauv(L, sizeof *p, 0);             /* large: off the C stack */
    BlPlanSource *src = lua_newuserdatauv(L, sizeof *src, 0);
    BlError err = {{0}};
    if (bl_plan_make(p, src, config, model, &run, mib >= 0.0 ? mib * 1024.0 * 1024.0 : -1.0, &err))
        return bl_lua_fail(L, &err);
    cJSON *j = bl_plan_to_json(p, src);
    if (!j) return luaL_error(L, "bitlab.plan: out of memory");
    bl_json_push(L, j);
    cJSON_Delete(j);
    return 1;
}

void bl_open_plan(lua_State *L) {
    lua_pushcfunction(L, l_plan);
    lua_setfield(L, -2, "plan");
}
