/* l_dist.c - the processes of a data-parallel run, for scripts:
 *   bitlab.rank()          this process's rank, 0-based (0 without mpirun)
 *   bitlab.world_size()    the number of processes (1 without mpirun)
 *   bitlab.broadcast(v)    rank 0's v on every rank: nil, a boolean, a number
 *                          (its exact bits; integers stay integers), a string,
 *                          or a JSON-able table; every rank must call it at
 *                          the same point. What a script decides from the
 *                          clock or the outside world (a time budget, a stop
 *                          condition) goes through here, so that all ranks
 *                          decide alike.
 * Under mpirun rank 0 owns the metrics stream, the dashboard, checkpoints
 * and exports, and print() writes only there (host.c); bitlab.train and
 * trainer:step shard the batch and reduce the gradients (l_train.c). */
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "script/internal.h"

static int l_rank(lua_State *L) {
    lua_pushinteger(L, bl_comm_rank());
    return 1;
}

static int l_world_size(lua_State *L) {
    lua_pushinteger(L, bl_comm_size());
    return 1;
}

/* what travels first: the value's kind and, for scalars, the value */
typedef struct {
    int type;           /* LUA_TNIL, LUA_TBOOLEAN, LUA_TNUMBER, LUA_TSTRING, LUA_TTABLE */
    int is_int, boolean;
    lua_Integer i;
    lua_Number n;
} Head;

static int l_broadcast(lua_State *L) {
    luaL_checkany(L, 1);
    int t = lua_type(L, 1);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER && t != LUA_TSTRING && t != LUA_TTABLE)
        return luaL_argerror(L, 1, lua_pushfstring(L, "nil, a boolean, a number, a string or a table "
                                                      "expected, got %s", luaL_typename(L, 1)));
    if (bl_comm_size() <= 1) {
        lua_settop(L, 1);
        return 1;
    }
    BlError err = {{0}};
    bool root = bl_comm_rank() == 0;
    Head h;
    memset(&h, 0, sizeof h);
    char *text = NULL; /* strings and tables (as JSON) */
    if (root) {
        h.type = t;
        if (t == LUA_TBOOLEAN) h.boolean = lua_toboolean(L, 1);
        if (t == LUA_TNUMBER && (h.is_int = lua_isinteger(L, 1))) h.i = lua_tointeger(L, 1);
        else if (t == LUA_TNUMBER) h.n = lua_tonumber(L, 1);
        if (t == LUA_TSTRING && !(text = strdup(lua_tostring(L, 1)))) return luaL_error(L, "out of memory");
        if (t == LUA_TTABLE) {
            cJSON *j = bl_lua_to_json(L, 1, true, &err);
            /* the other ranks wait for this value: a table that cannot go ends the job */
            if (!j) return luaL_argerror(L, 1, err.msg);
            text = cJSON_PrintUnformatted(j);
            cJSON_Delete(j);
            if (!text) return luaL_error(L, "out of memory");
        }
    }
    if (bl_comm_bcast(&h, sizeof h, &err) ||
        ((h.type == LUA_TSTRING || h.type == LUA_TTABLE) && bl_comm_bcast_string(&text, &err))) {
        free(text);
        return luaL_error(L, "bitlab.broadcast: %s", err.msg);
    }
    switch (h.type) {
    case LUA_TBOOLEAN: lua_pushboolean(L, h.boolean); break;
    case LUA_TNUMBER:
        if (h.is_int) lua_pushinteger(L, h.i);
        else lua_pushnumber(L, h.n);
        break;
    case LUA_TSTRING: lua_pushstring(L, text ? text : ""); break;
    case LUA_TTABLE: {
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        if (!j) {
            free(text);
            return luaL_error(L, "bitlab.broadcast: the table did not arrive whole");
        }
        bl_json_push(L, j);
        cJSON_Delete(j);
        break;
    }
    default: lua_pushnil(L);
    }
    free(text);
    return 1;
}

void bl_open_dist(lua_State *L) {
    static const luaL_Reg fns[] = {{"rank", l_rank}, {"world_size", l_world_size},
                                   {"broadcast", l_broadcast}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
