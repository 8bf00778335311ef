/* lua_json.c - Lua values to and from cJSON, for metrics records and the
 * script state stored in checkpoints. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "script/internal.h"

static cJSON *value_to_json(lua_State *L, int idx, int depth, BlError *err);

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Keys 1..n and nothing else: an array. */
static int is_array(lua_State *L, int idx, lua_Integer *n) {
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) {
            lua_pop(L, 1);
            return 0;
        }
        count++;
    }
    *n = count;
    return count > 0 && (lua_Integer)lua_rawlen(L, idx) == count;
}

static cJSON *table_to_json(lua_State *L, int idx, int depth, BlError *err) {
    lua_Integer n = 0;
    if (is_array(L, idx, &n)) {
        cJSON *a = cJSON_CreateArray();
        for (lua_Integer i = 1; a && i <= n; i++) {
            lua_rawgeti(L, idx, i);
            cJSON *v = value_to_json(L, lua_gettop(L), depth + 1, err);
            lua_pop(L, 1);
            if (!v) {
                cJSON_Delete(a);
                return NULL;
            }
            cJSON_AddItemToArray(a, v);
        }
        return a;
    }
    /* sorted keys: the same table always prints the same line */
    size_t nk = 0, cap = 16;
    char **keys = malloc(cap * sizeof *keys);
    lua_pushnil(L);
    while (keys && lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) continue;
        if (nk == cap) {
            char **k = realloc(keys, (cap *= 2) * sizeof *keys);
            if (!k) break;
            keys = k;
        }
        lua_pushvalue(L, -1);
        keys[nk++] = strdup(lua_tostring(L, -1)); /* tostring on the copy: lua_next safe */
        lua_pop(L, 1);
    }
    cJSON *o = cJSON_CreateObject();
    if (keys) qsort(keys, nk, sizeof *keys, cmp_str);
    for (size_t i = 0; o && keys && i < nk; i++) {
        lua_getfield(L, idx, keys[i]);
        if (lua_isnil(L, -1)) { /* a numeric key: fetch it as a number */
            lua_pop(L, 1);
            lua_pushnumber(L, strtod(keys[i], NULL));
            lua_gettable(L, idx);
        }
        cJSON *v = value_to_json(L, lua_gettop(L), depth + 1, err);
        lua_pop(L, 1);
        if (!v) {
            cJSON_Delete(o);
            o = NULL;
            break;
        }
        cJSON_AddItemToObject(o, keys[i], v);
    }
    for (size_t i = 0; keys && i < nk; i++) free(keys[i]);
    free(keys);
    return o;
}

static cJSON *value_to_json(lua_State *L, int idx, int depth, BlError *err) {
    if (depth > 32) return bl_fail(err, "JSON: tables nested deeper than 32"), NULL;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return cJSON_CreateNull();
    case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER: return cJSON_CreateNumber(lua_tonumber(L, idx));
    case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TTABLE: return table_to_json(L, idx, depth, err);
    default:
        bl_fail(err, "JSON: cannot store a %s", luaL_typename(L, idx));
        return NULL;
    }
}

cJSON *bl_lua_to_json(lua_State *L, int idx, BlError *err) {
    luaL_checkstack(L, 8, "JSON");
    return value_to_json(L, lua_absindex(L, idx), 0, err);
}

void bl_json_push(lua_State *L, const cJSON *j) {
    luaL_checkstack(L, 4, "JSON");
    if (cJSON_IsBool(j)) {
        lua_pushboolean(L, cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) lua_pushinteger(L, (lua_Integer)d);
        else lua_pushnumber(L, d);
    } else if (cJSON_IsString(j)) {
        lua_pushstring(L, j->valuestring);
    } else if (cJSON_IsArray(j) || cJSON_IsObject(j)) {
        lua_newtable(L);
        int i = 1;
        const cJSON *c;
        cJSON_ArrayForEach(c, j) {
            bl_json_push(L, c);
            if (cJSON_IsArray(j)) lua_rawseti(L, -2, i++);
            else lua_setfield(L, -2, c->string);
        }
    } else {
        lua_pushnil(L);
    }
}
