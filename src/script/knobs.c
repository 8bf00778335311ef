/* knobs.c - named live-tweakable values (bitlab.knob) and the step boundary
 * (bitlab.poll): a Ctrl-C stop request, the control file and the
 * dashboard's commands (l_dash.c) are honoured there, so a change takes
 * effect exactly at the next step and the metrics stream records the step it
 * applied to.
 *
 * The control file holds `name=value` lines (# comments and blank lines
 * ignored) and optionally a line `stop`: the run ends at the boundary as at
 * a first Ctrl-C (the loop writes its checkpoint; the exit code is 0). It is
 * re-applied only when its content changes, so a script may still set a
 * knob itself between edits (a resumed run reads it anew: remove `stop`
 * first). Values are clamped to [min, max]; unknown names and malformed
 * values are reported as events, never errors.
 *
 * Under mpirun (dist/comm.h) rank 0 alone decides at the boundary: its
 * Ctrl-C stop, its reading of the control file and its dashboard's commands
 * (pause included: the others wait for it) are broadcast, and every rank
 * applies them in the same order before the same step, so knobs, rotations
 * and quit stay the same on all ranks. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "io/textfile.h"
#include "script/internal.h"

typedef struct {
    int index; /* into rt->knobs, which may move as knobs are added */
} KnobRef;

static BlKnob *find(BlRuntime *rt, const char *name) {
    for (int i = 0; i < rt->n_knobs; i++)
        if (strcmp(rt->knobs[i].name, name) == 0) return &rt->knobs[i];
    return NULL;
}

static double clamp(const BlKnob *k, double v) {
    return v < k->min ? k->min : v > k->max ? k->max : v;
}

/* Sets a knob, logging a "knob" event when the value changes. */
static void set_knob(BlRuntime *rt, BlKnob *k, double v, const char *source) {
    if (isnan(v)) return; /* the callers refuse it; never let one through */
    v = clamp(k, v);
    if (v == k->value) return;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "name", k->name);
    cJSON_AddNumberToObject(f, "old", k->value);
    cJSON_AddNumberToObject(f, "new", v);
    cJSON_AddStringToObject(f, "source", source);
    k->value = v;
    bl_metrics_event(rt, "knob", f);
}

int bl_knob_set(BlRuntime *rt, const char *name, double v, const char *source) {
    BlKnob *k = find(rt, name);
    if (!k) return -1;
    set_knob(rt, k, v, source);
    return 0;
}

cJSON *bl_knobs_json(const BlRuntime *rt) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < rt->n_knobs; i++)
        cJSON_AddNumberToObject(o, rt->knobs[i].name, rt->knobs[i].value);
    return o;
}

void bl_knobs_restore(BlRuntime *rt, const cJSON *obj) {
    const cJSON *c;
    cJSON_ArrayForEach(c, obj) {
        BlKnob *k = cJSON_IsNumber(c) ? find(rt, c->string) : NULL;
        if (k) set_knob(rt, k, c->valuedouble, "checkpoint");
    }
}

// ----------------------------------------------------------------------------
// the control file

static void control_event(BlRuntime *rt, const char *what, const char *line, int lineno) {
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "file", rt->cfg.control_path);
    cJSON_AddNumberToObject(f, "line", lineno);
    cJSON_AddStringToObject(f, "text", line);
    bl_metrics_event(rt, what, f);
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && strchr(" \t\r", e[-1])) *--e = 0;
    return s;
}

static void apply_control(BlRuntime *rt, char *text) {
    int lineno = 0;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        if (strcmp(s, "stop") == 0) {
            if (!rt->control_stop) control_event(rt, "control_stop", s, lineno);
            rt->control_stop = true;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            control_event(rt, "knob_invalid", s, lineno);
            continue;
        }
        *eq = 0;
        char *name = trim(s), *val = trim(eq + 1), *end;
        errno = 0;
        double v = strtod(val, &end);
        BlKnob *k = find(rt, name);
        if (!k) {
            control_event(rt, "knob_unknown", name, lineno);
        } else if (end == val || *end || errno || !isfinite(v)) {
            control_event(rt, "knob_invalid", val, lineno);
        } else {
            set_knob(rt, k, v, "control");
        }
    }
}

/* The control file's text when it changed since last applied, else NULL. */
static char *read_control(BlRuntime *rt) {
    if (!rt->cfg.control_path) return NULL;
    BlError err;
    char *text = bl_read_text_file(rt->cfg.control_path, NULL, &err);
    if (!text) return NULL; /* absent until someone writes it */
    if (rt->control_seen && strcmp(text, rt->control_seen) == 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* Applies a changed control text (and frees it). */
static void take_control(BlRuntime *rt, char *text) {
    if (!text) return;
    free(rt->control_seen);
    rt->control_seen = strdup(text);
    apply_control(rt, text);
    free(text);
}

/* The boundary of a multi-process run: rank 0's stop and control text to
 * every rank; false when the run stops. */
static bool shared_boundary(lua_State *L, BlRuntime *rt) {
    BlError err = {{0}};
    bool root = bl_comm_rank() == 0;
    unsigned char stop = root && rt->sigints > 0;
    if (bl_comm_bcast(&stop, 1, &err)) luaL_error(L, "step boundary: %s", err.msg);
    if (stop) {
        if (!rt->stop_reported) {
            rt->stop_reported = true;
            bl_metrics_event(rt, "interrupt", NULL);
        }
        return false;
    }
    char *text = root ? read_control(rt) : NULL;
    if (bl_comm_bcast_string(&text, &err)) {
        free(text);
        luaL_error(L, "step boundary: %s", err.msg);
    }
    take_control(rt, text);
    if (rt->control_stop) return false;
    bl_dash_step_boundary(L, rt); /* rank 0's dashboard commands, one at a time */
    return true;
}

/* bitlab.poll(step) → false when the run should stop (Ctrl-C, a control-file
 * `stop`); with the dashboard up it also applies the user's commands and
 * waits while paused. */
static int l_poll(lua_State *L) {
    BlRuntime *rt = bl_rt(L);
    rt->step = (long)bl_check_int(L, 1, 0, LONG_MAX);
    if (bl_comm_size() > 1) {
        lua_pushboolean(L, shared_boundary(L, rt));
        return 1;
    }
    if (rt->sigints > 0) {
        if (!rt->stop_reported) {
            rt->stop_reported = true;
            bl_metrics_event(rt, "interrupt", NULL);
        }
        lua_pushboolean(L, 0);
        return 1;
    }
    take_control(rt, read_control(rt));
    if (rt->control_stop) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rt->cfg.dash) bl_dash_step_boundary(L, rt);
    lua_pushboolean(L, 1);
    return 1;
}

// ----------------------------------------------------------------------------
// the Knob userdata

static BlKnob *check_knob(lua_State *L, int idx) {
    KnobRef *r = luaL_checkudata(L, idx, BL_MT_KNOB);
    return &bl_rt(L)->knobs[r->index];
}

/* A number field of the declaration; NaN is refused (±inf only for min/max). */
static double opt_field(lua_State *L, const char *knob, const char *name, double dflt, bool inf_ok) {
    double v = bl_opt_number(L, 1, name, dflt);
    if (isnan(v) || (!inf_ok && !isfinite(v))) {
        char got[BL_NUM_BUF];
        luaL_error(L, "knob %s: option '%s' must be a %snumber, got %s", knob, name,
                   inf_ok ? "non-NaN " : "finite ", bl_fmt_num(got, v));
    }
    return v;
}

/* A knob's new value from Lua argument arg: a number, not NaN. */
static double check_value(lua_State *L, int arg) {
    double v = luaL_checknumber(L, arg);
    if (isnan(v)) luaL_argerror(L, arg, "a knob value cannot be NaN");
    return v;
}

/* bitlab.knob{name=, value=, min=, max=, step=}; declaring an existing name
 * returns the existing knob (its current value wins). */
static int l_knob(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    BlRuntime *rt = bl_rt(L);
    if (lua_getfield(L, 1, "name") != LUA_TSTRING)
        return luaL_error(L, "knob: option 'name' must be a string, got %s", luaL_typename(L, -1));
    const char *name = lua_tostring(L, -1);
    if (!*name || strpbrk(name, "= \t\n#")) return luaL_error(L, "knob name '%s' is not a plain word", name);
    BlKnob *k = find(rt, name);
    if (!k) {
        double v = opt_field(L, name, "value", 0.0, false);
        double mn = opt_field(L, name, "min", -HUGE_VAL, true), mx = opt_field(L, name, "max", HUGE_VAL, true);
        double st = opt_field(L, name, "step", 0.0, false);
        char a[BL_NUM_BUF], b[BL_NUM_BUF], c[BL_NUM_BUF]; /* lua_pushfstring knows no %g */
        if (!(mn <= mx))
            return luaL_error(L, "knob %s: min %s > max %s", name, bl_fmt_num(a, mn), bl_fmt_num(b, mx));
        if (v < mn || v > mx)
            return luaL_error(L, "knob %s: value %s outside [%s, %s]", name, bl_fmt_num(a, v),
                              bl_fmt_num(b, mn), bl_fmt_num(c, mx));
        if (st < 0) return luaL_error(L, "knob %s: step %s must be >= 0", name, bl_fmt_num(a, st));
        if (rt->n_knobs == rt->cap_knobs) {
            int cap = rt->cap_knobs ? rt->cap_knobs * 2 : 8;
            BlKnob *kn = realloc(rt->knobs, sizeof *kn * cap);
            if (!kn) return luaL_error(L, "out of memory");
            rt->knobs = kn;
            rt->cap_knobs = cap;
        }
        char *nm = strdup(name);
        if (!nm) return luaL_error(L, "out of memory");
        k = &rt->knobs[rt->n_knobs++];
        *k = (BlKnob){.name = nm, .value = v, .min = mn, .max = mx, .step = st};
        if (rt->cfg.dash) dash_declare_knob(rt->cfg.dash, k->name, k->value, k->min, k->max, k->step);
    }
    KnobRef *r = lua_newuserdatauv(L, sizeof *r, 0);
    r->index = (int)(k - rt->knobs);
    luaL_setmetatable(L, BL_MT_KNOB);
    return 1;
}

static int knob_index(lua_State *L) {
    BlKnob *k = check_knob(L, 1);
    const char *key = luaL_checkstring(L, 2);
    if (strcmp(key, "value") == 0) lua_pushnumber(L, k->value);
    else if (strcmp(key, "name") == 0) lua_pushstring(L, k->name);
    else if (strcmp(key, "min") == 0) lua_pushnumber(L, k->min);
    else if (strcmp(key, "max") == 0) lua_pushnumber(L, k->max);
    else if (strcmp(key, "step") == 0) lua_pushnumber(L, k->step);
    else if (luaL_getmetafield(L, 1, "methods") && lua_getfield(L, -1, key)) return 1;
    else lua_pushnil(L);
    return 1;
}

/* knob.value = v (clamped, logged) */
static int knob_newindex(lua_State *L) {
    BlKnob *k = check_knob(L, 1);
    if (strcmp(luaL_checkstring(L, 2), "value") != 0)
        return luaL_error(L, "knob %s: only .value can be set", k->name);
    set_knob(bl_rt(L), k, check_value(L, 3), "script");
    return 0;
}

static int knob_get(lua_State *L) {
    lua_pushnumber(L, check_knob(L, 1)->value);
    return 1;
}

static int knob_set(lua_State *L) {
    set_knob(bl_rt(L), check_knob(L, 1), check_value(L, 2), "script");
    return 0;
}

static int knob_tostring(lua_State *L) {
    BlKnob *k = check_knob(L, 1);
    lua_pushfstring(L, "knob %s = %f", k->name, k->value);
    return 1;
}

/* bitlab.knobs() → {name = value} */
static int l_knobs(lua_State *L) {
    cJSON *o = bl_knobs_json(bl_rt(L));
    bl_json_push(L, o);
    cJSON_Delete(o);
    return 1;
}

void bl_open_knobs(lua_State *L) {
    luaL_newmetatable(L, BL_MT_KNOB);
    static const luaL_Reg meta[] = {{"__index", knob_index}, {"__newindex", knob_newindex},
                                    {"__tostring", knob_tostring}, {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    static const luaL_Reg methods[] = {{"get", knob_get}, {"set", knob_set}, {NULL, NULL}};
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "methods");
    bl_protect_metatable(L);
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"knob", l_knob}, {"knobs", l_knobs}, {"poll", l_poll}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
