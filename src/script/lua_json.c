/* lua_json.c - Lua values to and from cJSON, for metrics records and the
 * script state stored in checkpoints. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "script/internal.h"

/* How deep a table may nest (state.a.b... counts one per table). Each level
 * takes a few Lua stack slots (grown per level) and a C frame. */
#define BL_JSON_MAX_DEPTH 64

typedef struct {
    int seen;       /* stack index of the {table = true} set of the tables being visited */
    char path[256]; /* where we are, for messages: "state.a[3].b" */
    bool finite_only; /* refuse NaN / ±inf instead of writing null */
    BlError *err;
} JsonCtx;

static cJSON *value_to_json(lua_State *L, JsonCtx *c, int idx, int depth);

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Keys 1..n and nothing else: an array. (n distinct integer keys, all >= 1,
 * the largest n; not lua_rawlen, which may stop at any hole: {1, nil, 3, 4,
 * nil, 6} has a border at 4.) */
static int is_array(lua_State *L, int idx, lua_Integer *n) {
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        lua_Integer k = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
        if (k < 1) {
            lua_pop(L, 1);
            return 0;
        }
        if (k > max) max = k;
        count++;
    }
    *n = count;
    return count > 0 && max == count;
}

/* Appends a path component; returns the length to cut back to. */
static size_t path_push(JsonCtx *c, const char *fmt, const char *key, lua_Integer i) {
    size_t n = strlen(c->path);
    if (n < sizeof c->path - 1) {
        if (key) snprintf(c->path + n, sizeof c->path - n, fmt, key);
        else snprintf(c->path + n, sizeof c->path - n, fmt, (long long)i);
    }
    return n;
}

static cJSON *child_to_json(lua_State *L, JsonCtx *c, int depth, const char *key, lua_Integer i) {
    size_t cut = key ? path_push(c, ".%s", key, 0) : path_push(c, "[%lld]", NULL, i);
    cJSON *v = value_to_json(L, c, lua_gettop(L), depth + 1);
    if (v) c->path[cut] = 0; /* on an error the path names the culprit */
    return v;
}

static cJSON *table_to_json(lua_State *L, JsonCtx *c, int idx, int depth) {
    lua_Integer n = 0;
    if (is_array(L, idx, &n)) {
        cJSON *a = cJSON_CreateArray();
        for (lua_Integer i = 1; a && i <= n; i++) {
            lua_rawgeti(L, idx, i);
            cJSON *v = child_to_json(L, c, depth, NULL, i);
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
            if (!k) {
                lua_pop(L, 1); /* the key: the traversal ends here */
                break;
            }
            keys = k;
        }
        lua_pushvalue(L, -1);
        char *k = strdup(lua_tostring(L, -1)); /* tostring on the copy: lua_next safe */
        lua_pop(L, 1);
        if (!k) {
            lua_pop(L, 1);
            break;
        }
        keys[nk++] = k;
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
        cJSON *v = child_to_json(L, c, depth, keys[i], 0);
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
    if (!o && !c->err->msg[0]) bl_fail(c->err, "JSON: out of memory");
    return o;
}

/* Never raises (the caller owns C memory): every failure is a message. */
static cJSON *value_to_json(lua_State *L, JsonCtx *c, int idx, int depth) {
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return cJSON_CreateNull();
    case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (c->finite_only && !isfinite(lua_tonumber(L, idx)))
            return bl_fail(c->err, "JSON: %g at %s cannot be stored (JSON has no NaN or infinity; "
                                   "it would come back as nil)", lua_tonumber(L, idx), c->path),
                   NULL;
        return cJSON_CreateNumber(lua_tonumber(L, idx));
    case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TTABLE: break;
    default:
        bl_fail(c->err, "JSON: cannot store a %s (at %s)", luaL_typename(L, idx), c->path);
        return NULL;
    }
    if (depth >= BL_JSON_MAX_DEPTH)
        return bl_fail(c->err, "JSON: tables nested deeper than %d (at %s)", BL_JSON_MAX_DEPTH,
                       c->path), NULL;
    if (!lua_checkstack(L, 8))
        return bl_fail(c->err, "JSON: out of Lua stack (at %s)", c->path), NULL;
    lua_pushvalue(L, idx);
    if (lua_rawget(L, c->seen) != LUA_TNIL) {
        lua_pop(L, 1);
        return bl_fail(c->err, "JSON: the table at %s contains itself (a cycle)", c->path), NULL;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, idx); /* mark it while its contents are visited */
    lua_pushboolean(L, 1);
    lua_rawset(L, c->seen);
    cJSON *j = table_to_json(L, c, idx, depth);
    lua_pushvalue(L, idx); /* a table shared (not nested) twice is fine */
    lua_pushnil(L);
    lua_rawset(L, c->seen);
    return j;
}

cJSON *bl_lua_to_json(lua_State *L, int idx, bool finite_only, BlError *err) {
    idx = lua_absindex(L, idx);
    if (!lua_checkstack(L, 8)) return bl_fail(err, "JSON: out of Lua stack"), NULL;
    JsonCtx c = {.finite_only = finite_only, .err = err};
    err->msg[0] = 0;
    snprintf(c.path, sizeof c.path, "%s", "value");
    lua_newtable(L);
    c.seen = lua_gettop(L);
    cJSON *j = value_to_json(L, &c, idx, 0);
    lua_settop(L, c.seen - 1);
    return j;
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
