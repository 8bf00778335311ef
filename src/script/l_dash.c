/* l_dash.c - the runtime's side of the live dashboard (ui/dashboard.h).
 *
 * The script runs in the worker thread; the dashboard only ever sees what
 * this file (and the metrics stream) hands it. Scripts talk to it through:
 *   bitlab.dashboard            true when the dashboard is up
 *   bitlab.prompts([list])      the experiment's prompts (Tab cycles them);
 *                               returns the current list, edits included
 *   bitlab.info{...}            header facts: model, total_steps, budget (text),
 *                               adapters, rank, mem = {weights, adapters, optimizer, activations}
 *   bitlab.on_command{generate = function(index, prompt), save = function(),
 *                     rotate = function()}
 *                               what the g / e, s and r keys do (a loop such
 *                               as bitlab.train registers these: only it
 *                               holds the student and the trainer)
 *   bitlab.show_generation{index=, prompt=, model=, teacher=ids, student=ids}
 * All of them are harmless no-ops in headless runs, so a script need not
 * care which mode it is in. Knob commands and quit are handled here in C;
 * the rest call the script's handlers, at a step boundary (bitlab.poll) or,
 * after a script error, from bl_runtime_serve_after_error.
 *
 * Under mpirun only rank 0 has the dashboard: each command it takes at a
 * step boundary is broadcast and run on every rank (a rotation, a knob or
 * quit must happen everywhere; generations only where they are shown), so
 * the ranks' students stay the same. */
#include <float.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/comm.h"
#include "script/internal.h"
#include "tokenizer/tokenizer.h"

const char BL_QUIT_MSG[] = "stopped from the dashboard";

static const char HANDLERS_KEY = 'h'; /* registry key of the on_command table: its address */

// ----------------------------------------------------------------------------
// prompts

/* Replaces prompt i (0-based; i == n_prompts appends). */
static int set_prompt(BlRuntime *rt, int i, const char *text) {
    if (i < 0 || i > rt->n_prompts) return -1;
    char *t = strdup(text);
    if (!t) return -1;
    if (i == rt->n_prompts) {
        char **p = realloc(rt->prompts, sizeof *p * (size_t)(rt->n_prompts + 1));
        if (!p) {
            free(t);
            return -1;
        }
        rt->prompts = p;
        rt->n_prompts++;
    } else {
        free(rt->prompts[i]);
    }
    rt->prompts[i] = t;
    if (rt->cfg.dash) dash_set_prompt(rt->cfg.dash, i, t);
    return 0;
}

/* bitlab.prompts([list]) → the prompts. A list replaces those the script set
 * before; a prompt the user edited in the dashboard survives as long as the
 * script passes the same list again (train loops register theirs once). */
static int l_prompts(lua_State *L) {
    BlRuntime *rt = bl_rt(L);
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_Integer n = luaL_len(L, 1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, 1, i);
            if (lua_type(L, -1) != LUA_TSTRING) {
                char msg[64];
                snprintf(msg, sizeof msg, "prompt %d is not a string", (int)i);
                return luaL_argerror(L, 1, msg);
            }
            lua_pop(L, 1);
        }
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, 1, i);
            if (set_prompt(rt, (int)i - 1, lua_tostring(L, -1))) return luaL_error(L, "out of memory");
            lua_pop(L, 1);
        }
    }
    lua_createtable(L, rt->n_prompts, 0);
    for (int i = 0; i < rt->n_prompts; i++) {
        lua_pushstring(L, rt->prompts[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

// ----------------------------------------------------------------------------
// header facts and generations

static const char *opt_string(lua_State *L, int idx, const char *name) {
    lua_getfield(L, idx, name);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1); /* still referenced by the table at idx */
    return s;
}

/* bitlab.info{model=, experiment=, backend=, budget=, total_steps=, adapters=, rank=,
 *              mem={weights=, adapters=, optimizer=, activations=, dense=}} */
static int l_info(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    BlRuntime *rt = bl_rt(L);
    if (!rt->cfg.dash) return 0;
    DashInfo in = {.experiment = opt_string(L, 1, "experiment"),
                   .model = opt_string(L, 1, "model"),
                   .backend = opt_string(L, 1, "backend"),
                   .budget = opt_string(L, 1, "budget"),
                   .total_steps = (long)bl_opt_int(L, 1, "total_steps", 0, 0, LONG_MAX),
                   .n_adapters = (int)bl_opt_int(L, 1, "adapters", 0, 0, INT_MAX),
                   .rank = (int)bl_opt_int(L, 1, "rank", 0, 0, INT_MAX)};
    if (lua_getfield(L, 1, "mem") == LUA_TTABLE) {
        int mem = lua_gettop(L);
        in.mem_weights = bl_opt_num(L, mem, "weights", 0, 0, DBL_MAX);
        in.mem_adapters = bl_opt_num(L, mem, "adapters", 0, 0, DBL_MAX);
        in.mem_optimizer = bl_opt_num(L, mem, "optimizer", 0, 0, DBL_MAX);
        in.mem_activations = bl_opt_num(L, mem, "activations", 0, 0, DBL_MAX);
        in.mem_dense = bl_opt_num(L, mem, "dense", 0, 0, DBL_MAX);
    }
    lua_pop(L, 1);
    dash_set_info(rt->cfg.dash, &in);
    return 0;
}

/* Decodes ids into one piece per token such that the pieces concatenated are
 * the decoded text: piece i is decode(ids[0..i]) minus decode(ids[0..i-1]),
 * so a character split over tokens lands on the token that completes it.
 * The array is a userdata pushed on the stack and the strings are kept in
 * the table at `anchor`, so a Lua error leaks nothing. */
static char **push_pieces(lua_State *L, int anchor, const BlModel *m, const int *ids, int n) {
    char **pieces = lua_newuserdatauv(L, sizeof *pieces * (size_t)(n > 0 ? n : 1), 0);
    BlError err = {{0}};
    char *prev = NULL;
    size_t prev_len = 0;
    for (int i = 0; i < n; i++) {
        char *text = NULL;
        if (bl_tokenizer_decode(m->tokenizer, ids, i + 1, true, &text, &err)) {
            free(prev);
            bl_lua_fail(L, &err);
        }
        size_t len = strlen(text);
        /* a prefix's decoding is normally a prefix of the longer one; should
         * a tokenizer rewrite it, the token gets the whole new text */
        size_t from = prev && len >= prev_len && memcmp(text, prev, prev_len) == 0 ? prev_len : 0;
        pieces[i] = (char *)lua_pushlstring(L, text + from, len - from);
        lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
        free(prev);
        prev = text;
        prev_len = len;
    }
    free(prev);
    return pieces;
}

/* bitlab.show_generation{index=1, prompt=, model=, teacher=ids, student=ids} */
static int l_show_generation(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    BlRuntime *rt = bl_rt(L);
    if (!rt->cfg.dash) return 0;
    lua_Integer index = bl_opt_int(L, 1, "index", 1, 1, INT_MAX);
    const char *prompt = opt_string(L, 1, "prompt");
    bl_field_udata(L, 1, "model", BL_MT_MODEL, true);
    BlModel *m = bl_lua_check_model(L, -1);
    lua_newtable(L); /* anchors the piece strings */
    int anchor = lua_gettop(L);
    static const char *const SIDE[2] = {"teacher", "student"};
    int n[2] = {0, 0}, *ids[2] = {NULL, NULL};
    char **pieces[2];
    for (int k = 0; k < 2; k++) {
        lua_getfield(L, 1, SIDE[k]);
        if (lua_type(L, -1) == LUA_TTABLE && lua_rawlen(L, -1) > 0) ids[k] = bl_lua_check_ids(L, -1, m, &n[k]);
        pieces[k] = push_pieces(L, anchor, m, ids[k], n[k]);
    }
    DashGeneration g = {.prompt = prompt,
                        .teacher_pieces = (const char *const *)pieces[0], .teacher_ids = ids[0],
                        .n_teacher = n[0],
                        .student_pieces = (const char *const *)pieces[1], .student_ids = ids[1],
                        .n_student = n[1]};
    dash_set_generation(rt->cfg.dash, (int)index - 1, &g); /* copies everything */
    return 0;
}

/* bitlab.on_command{generate=, save=, rotate=} */
static int l_on_command(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushvalue(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &HANDLERS_KEY);
    return 0;
}

/* print() while curses owns the screen: each call becomes a "print" event
 * in the metrics stream (and so in the dashboard's events panel). */
static int l_print_event(lua_State *L) {
    int n = lua_gettop(L); /* before luaL_buffinit, which may push its box */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "text", lua_tostring(L, -1));
    bl_metrics_event(bl_rt(L), "print", f);
    return 0;
}

void bl_open_dash(lua_State *L) {
    BlRuntime *rt = bl_rt(L);
    static const luaL_Reg fns[] = {{"prompts", l_prompts},
                                   {"info", l_info},
                                   {"show_generation", l_show_generation},
                                   {"on_command", l_on_command},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
    lua_pushboolean(L, rt->cfg.dash != NULL);
    lua_setfield(L, -2, "dashboard");
    if (rt->cfg.dash) {
        lua_pushcfunction(L, l_print_event);
        lua_setglobal(L, "print");
    }
}

// ----------------------------------------------------------------------------
// commands

/* Calls handler `name` with nargs arguments below it on the stack; a missing
 * handler is reported as an event, not an error (a script with its own loop
 * may not register one). */
static void call_handler(lua_State *L, const char *name, int nargs) {
    int below = lua_gettop(L) - nargs;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &HANDLERS_KEY);
    if (lua_type(L, -1) != LUA_TTABLE || lua_getfield(L, -1, name) != LUA_TFUNCTION) {
        lua_settop(L, below);
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "command", name);
        cJSON_AddStringToObject(f, "text", "the script registered no handler (bitlab.on_command)");
        bl_metrics_event(bl_rt(L), "dashboard_unhandled", f);
        return;
    }
    lua_remove(L, -2);
    lua_insert(L, -1 - nargs);
    lua_call(L, nargs, 0);
}

static void generate(lua_State *L, BlRuntime *rt, int i) {
    lua_pushinteger(L, i + 1);
    lua_pushstring(L, rt->prompts[i]);
    call_handler(L, "generate", 2);
}

/* Runs one command (lightuserdata DashCmd at 1); a Lua function so that the
 * after-error loop can run it protected. */
static int run_command(lua_State *L) {
    const DashCmd *c = lua_touserdata(L, 1);
    BlRuntime *rt = bl_rt(L);
    switch (c->type) {
    case DASH_CMD_KNOB:
        if (bl_knob_set(rt, c->name, c->value, "dashboard")) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "text", c->name);
            bl_metrics_event(rt, "knob_unknown", f);
        }
        break;
    case DASH_CMD_GENERATE:
        if (rt->n_prompts == 0) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "text", "no prompts yet (bitlab.prompts); e types one");
            bl_metrics_event(rt, "dashboard_unhandled", f);
        }
        for (int i = 0; i < rt->n_prompts; i++) generate(L, rt, i);
        break;
    case DASH_CMD_PROMPT: {
        int i = c->index < rt->n_prompts ? c->index : rt->n_prompts;
        if (set_prompt(rt, i, c->text)) return luaL_error(L, "out of memory");
        generate(L, rt, i);
        break;
    }
    case DASH_CMD_SAVE: call_handler(L, "save", 0); break;
    case DASH_CMD_ROTATE: call_handler(L, "rotate", 0); break;
    case DASH_CMD_QUIT:
        if (c->checkpoint) call_handler(L, "save", 0);
        rt->quit = true;
        bl_metrics_event(rt, "quit", NULL);
        break;
    }
    return 0;
}

/* Rank 0's next command (blocking while paused) on every rank of a
 * multi-process run; false: none, run the step. */
static bool next_command(lua_State *L, BlRuntime *rt, DashCmd *c) {
    if (bl_comm_size() <= 1) return !rt->quit && dash_next_command(rt->cfg.dash, c);
    struct {
        unsigned char has;
        DashCmd c;
    } m;
    memset(&m, 0, sizeof m);
    if (bl_comm_rank() == 0) {
        m.has = !rt->quit && rt->cfg.dash && dash_next_command(rt->cfg.dash, &m.c);
    }
    BlError err = {{0}};
    if (bl_comm_bcast(&m, sizeof m, &err)) luaL_error(L, "dashboard command: %s", err.msg);
    *c = m.c;
    return m.has;
}

void bl_dash_step_boundary(lua_State *L, BlRuntime *rt) {
    DashCmd c;
    while (next_command(L, rt, &c)) {
        /* a generation changes nothing a step reads: only the rank that shows it runs it */
        if (bl_comm_rank() > 0 && (c.type == DASH_CMD_GENERATE || c.type == DASH_CMD_PROMPT)) continue;
        lua_pushcfunction(L, run_command);
        lua_pushlightuserdata(L, &c);
        lua_call(L, 1, 0); /* a handler's error is the script's error */
    }
    /* quitting ends the script here, as an error nothing catches but the
     * host: the loop must not go on to its own end-of-run work */
    if (rt->quit) luaL_error(L, "%s", BL_QUIT_MSG);
}

void bl_runtime_serve_after_error(BlRuntime *rt) {
    if (!rt->cfg.dash) return;
    lua_State *L = rt->L;
    while (!rt->quit) {
        DashCmd c;
        if (!dash_next_command(rt->cfg.dash, &c)) {
            /* resumed: there is no step to run; wait for the next command */
            nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
            continue;
        }
        lua_pushcfunction(L, run_command);
        lua_pushlightuserdata(L, &c);
        if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "message", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
            bl_metrics_event(rt, "script_error", f);
            lua_pop(L, 1);
        }
    }
}

bool bl_runtime_quit_requested(const BlRuntime *rt) { return rt->quit; }
