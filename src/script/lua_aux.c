/* lua_aux.c - the argument helpers every binding of the Lua runtime shares:
 * optional fields of option tables and positional arguments, checked for
 * type, finiteness and range *before* anything narrows them (a Lua number
 * is a double or a 64-bit integer; a C int is neither), with messages that
 * name the field or the argument and carry the caller's file:line. */
#include <math.h>
#include <stdio.h>

#include "script/internal.h"

const char *bl_fmt_num(char buf[BL_NUM_BUF], lua_Number v) {
    snprintf(buf, BL_NUM_BUF, "%.9g", (double)v);
    return buf;
}

int bl_lua_fail(lua_State *L, const BlError *err) { return luaL_error(L, "%s", err->msg); }

int bl_opt_table(lua_State *L, int arg) {
    if (lua_isnoneornil(L, arg)) return 0;
    luaL_checktype(L, arg, LUA_TTABLE);
    return lua_absindex(L, arg);
}

/* Pushes field name of the table at idx; 0 (nothing pushed) when idx is 0,
 * not a table, or the field is nil. */
static int get_field(lua_State *L, int idx, const char *name) {
    if (idx == 0 || lua_type(L, idx) != LUA_TTABLE) return 0;
    if (lua_getfield(L, idx, name) == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

lua_Number bl_opt_number(lua_State *L, int idx, const char *name, lua_Number dflt) {
    if (!get_field(L, idx, name)) return dflt;
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "option '%s' must be a number, got %s", name, luaL_typename(L, -1));
    lua_Number v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

lua_Number bl_opt_num(lua_State *L, int idx, const char *name, lua_Number dflt, lua_Number lo,
                      lua_Number hi) {
    lua_Number v = bl_opt_number(L, idx, name, dflt);
    if (!(isfinite(v) && v >= lo && v <= hi)) {
        char a[BL_NUM_BUF], b[BL_NUM_BUF], c[BL_NUM_BUF];
        luaL_error(L, "option '%s' must be a finite number in [%s, %s], got %s", name,
                   bl_fmt_num(a, lo), bl_fmt_num(b, hi), bl_fmt_num(c, v));
    }
    return v;
}

/* An integer value (an integral float included) or a message. */
static int to_int(lua_State *L, int i, lua_Integer *v) {
    int ok = 0;
    *v = lua_tointegerx(L, i, &ok);
    return ok && lua_type(L, i) == LUA_TNUMBER;
}

/* What the value at i is, for a message: the integer, the number or the type. */
static const char *describe(lua_State *L, int i, char got[64]) {
    if (lua_isinteger(L, i)) snprintf(got, 64, "%lld", (long long)lua_tointeger(L, i));
    else if (lua_type(L, i) == LUA_TNUMBER) bl_fmt_num(got, lua_tonumber(L, i));
    else snprintf(got, 64, "a %s", luaL_typename(L, i));
    return got;
}

static void int_error(lua_State *L, int i, const char *what, lua_Integer lo, lua_Integer hi) {
    char msg[256], got[64]; /* lua_pushfstring knows no %lld */
    snprintf(msg, sizeof msg, "%s must be an integer in %lld..%lld, got %s", what, (long long)lo,
             (long long)hi, describe(L, i, got));
    luaL_error(L, "%s", msg);
}

lua_Integer bl_opt_int(lua_State *L, int idx, const char *name, lua_Integer dflt, lua_Integer lo,
                       lua_Integer hi) {
    if (!get_field(L, idx, name)) return dflt;
    lua_Integer v;
    if (!to_int(L, -1, &v) || v < lo || v > hi) {
        char what[96];
        snprintf(what, sizeof what, "option '%s'", name);
        int_error(L, -1, what, lo, hi);
    }
    lua_pop(L, 1);
    return v;
}

lua_Integer bl_opt_integer(lua_State *L, int idx, const char *name, lua_Integer dflt) {
    return bl_opt_int(L, idx, name, dflt, LUA_MININTEGER, LUA_MAXINTEGER);
}

int bl_opt_bool(lua_State *L, int idx, const char *name, int dflt) {
    if (!get_field(L, idx, name)) return dflt;
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

lua_Integer bl_check_int(lua_State *L, int arg, lua_Integer lo, lua_Integer hi) {
    lua_Integer v;
    if (!to_int(L, arg, &v) || v < lo || v > hi) {
        char msg[192], got[64];
        snprintf(msg, sizeof msg, "integer in %lld..%lld expected, got %s", (long long)lo,
                 (long long)hi, describe(L, arg, got));
        luaL_argerror(L, arg, msg);
    }
    return v;
}

lua_Integer bl_optarg_int(lua_State *L, int arg, lua_Integer dflt, lua_Integer lo, lua_Integer hi) {
    return lua_isnoneornil(L, arg) ? dflt : bl_check_int(L, arg, lo, hi);
}

lua_Number bl_check_num(lua_State *L, int arg, lua_Number lo, lua_Number hi) {
    lua_Number v = luaL_checknumber(L, arg);
    if (!(isfinite(v) && v >= lo && v <= hi)) {
        char msg[160], a[BL_NUM_BUF], b[BL_NUM_BUF], c[BL_NUM_BUF];
        snprintf(msg, sizeof msg, "finite number in [%s, %s] expected, got %s", bl_fmt_num(a, lo),
                 bl_fmt_num(b, hi), bl_fmt_num(c, v));
        luaL_argerror(L, arg, msg);
    }
    return v;
}

void bl_field_udata(lua_State *L, int idx, const char *field, const char *tname, bool required) {
    int t = lua_getfield(L, idx, field);
    if (t == LUA_TNIL && !required) return;
    if (!luaL_testudata(L, -1, tname))
        luaL_error(L, "option '%s' must be a %s, got %s", field, tname,
                   t == LUA_TNIL ? "nothing" : luaL_typename(L, -1));
}

void bl_protect_metatable(lua_State *L) {
    /* getmetatable(obj) gives scripts this stand-in, never the real one: a
     * script holding __gc could free a model a student still points into */
    lua_createtable(L, 0, 3);
    lua_getfield(L, -2, "__name");
    lua_setfield(L, -2, "__name");
    if (lua_getfield(L, -2, "__index") == LUA_TTABLE) lua_setfield(L, -2, "__index");
    else lua_pop(L, 1);
    if (lua_getfield(L, -2, "methods") == LUA_TTABLE) lua_setfield(L, -2, "methods");
    else lua_pop(L, 1);
    lua_setfield(L, -2, "__metatable");
}
