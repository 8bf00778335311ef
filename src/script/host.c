/* host.c - the Lua host: interpreter creation with a chosen set of standard
 * libraries, the bitlab module table, package.path pointing at the repo's
 * lua/ folder, protected execution with a traceback, and Ctrl-C handling
 * (see runtime.h). Under mpirun (dist/comm.h) every rank runs the script;
 * rank 0 alone writes the metrics stream and print()s. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lualib.h>

#include "dist/comm.h"
#include "train/checkpoint.h"
#include "script/internal.h"

static const char RT_KEY = 'r'; /* registry key: its address */

BlRuntime *bl_rt(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &RT_KEY);
    BlRuntime *rt = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return rt;
}

// ----------------------------------------------------------------------------
// bitlab.random: splitmix64, its state checkpointed with the run

static uint64_t next_rng(BlRuntime *rt) {
    uint64_t z = (rt->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* bitlab.random() → [0, 1); bitlab.random(n) → 1..n */
static int l_random(lua_State *L) {
    uint64_t r = next_rng(bl_rt(L));
    if (lua_isnoneornil(L, 1)) {
        lua_pushnumber(L, (double)(r >> 11) * 0x1.0p-53);
    } else {
        lua_Integer n = bl_check_int(L, 1, 1, LUA_MAXINTEGER);
        lua_pushinteger(L, (lua_Integer)(r % (uint64_t)n) + 1);
    }
    return 1;
}

static int l_seed(lua_State *L) {
    bl_rt(L)->rng = (uint64_t)luaL_checkinteger(L, 1);
    return 0;
}

/* bitlab.clock() → seconds (monotonic), for timing in scripts */
static int l_clock(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, ts.tv_sec + ts.tv_nsec * 1e-9);
    return 1;
}

/* The bitlab table: C functions, run options, and lazy loading of the Lua
 * standard library (bitlab.schedule → require "bitlab.schedule"). */
static const char LAZY[] =
    "local bitlab = ...\n"
    "setmetatable(bitlab, {__index = function(t, k)\n"
    "  if type(k) ~= 'string' then return nil end\n"
    "  local ok, mod = pcall(require, 'bitlab.' .. k)\n"
    "  if not ok then\n"
    "    if tostring(mod):find(\"module 'bitlab.\" .. k .. \"' not found\", 1, true) then return nil end\n"
    "    error(mod, 2)\n"
    "  end\n"
    "  rawset(t, k, mod)\n"
    "  return mod\n"
    "end})\n";

static void open_bitlab(lua_State *L, BlRuntime *rt) {
    lua_newtable(L);
    bl_open_model(L);
    bl_open_dataset(L);
    bl_open_corpus(L);
    bl_open_train(L);
    bl_open_knobs(L);
    bl_open_metrics(L);
    bl_open_dash(L);
    bl_open_export(L);
    bl_open_evaluate(L);
    bl_open_trace(L);
    bl_open_plan(L);
    bl_open_device(L);
    bl_open_sample(L);
    bl_open_dist(L);
    static const luaL_Reg fns[] = {{"random", l_random}, {"seed", l_seed}, {"clock", l_clock},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
    lua_pushboolean(L, rt->cfg.headless);
    lua_setfield(L, -2, "headless");
    if (rt->cfg.resume_path) {
        lua_pushstring(L, rt->cfg.resume_path);
        lua_setfield(L, -2, "resume_path");
    }
    lua_pushstring(L, rt->cfg.script);
    lua_setfield(L, -2, "script");
    lua_createtable(L, rt->cfg.n_args, 0);
    for (int i = 0; i < rt->cfg.n_args; i++) {
        lua_pushstring(L, rt->cfg.args[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "args");
    if (luaL_loadbuffer(L, LAZY, sizeof LAZY - 1, "=bitlab") == LUA_OK) {
        lua_pushvalue(L, -2);
        lua_call(L, 1, 0);
    }
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "bitlab");
    lua_pop(L, 2);
    lua_setglobal(L, "bitlab");
}

// ----------------------------------------------------------------------------
// finding lua/

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* BITLAB_LUA_PATH, else ../lua beside the executable (build/bitlab), else
 * ./lua. */
static char *find_lua_dir(const BlRuntimeConfig *cfg) {
    if (cfg->lua_dir) return strdup(cfg->lua_dir);
    const char *env = getenv("BITLAB_LUA_PATH");
    if (env && *env) return strdup(env);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            char cand[PATH_MAX + 16];
            for (int up = 1; up <= 2; up++) { /* build/bitlab and build/x/bitlab */
                snprintf(cand, sizeof cand, "%s/%s", exe, up == 1 ? "../lua" : "../../lua");
                if (is_dir(cand)) return realpath(cand, NULL);
            }
        }
    }
    return strdup("lua");
}

static void set_package_path(lua_State *L, const char *lua_dir, const char *script) {
    char sdir[PATH_MAX];
    const char *slash = strrchr(script, '/');
    size_t n = slash ? (size_t)(slash - script) : 0;
    if (n >= sizeof sdir) n = 0;
    memcpy(sdir, script, n);
    sdir[n] = 0;
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s%s?.lua", lua_dir, lua_dir, sdir, n ? "/" : "");
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, ""); /* no native modules: scripts cannot load arbitrary .so files */
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
}

// ----------------------------------------------------------------------------
// lifetime

static void open_libs(lua_State *L) {
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},          {LUA_LOADLIBNAME, luaopen_package},
        {LUA_COLIBNAME, luaopen_coroutine}, {LUA_TABLIBNAME, luaopen_table},
        {LUA_IOLIBNAME, luaopen_io},        {LUA_OSLIBNAME, luaopen_os},
        {LUA_STRLIBNAME, luaopen_string},   {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},    {NULL, NULL}};
    for (const luaL_Reg *l = libs; l->func; l++) {
        luaL_requiref(L, l->name, l->func, 1);
        lua_pop(L, 1);
    }
}

/* print() on ranks other than 0: N copies of every progress line would
 * say nothing more (errors still reach stderr, naming the rank) */
static int quiet_print(lua_State *L) {
    (void)L;
    return 0;
}

/* Runs in protected mode so a memory error during set-up is reported. */
static int setup(lua_State *L) {
    BlRuntime *rt = lua_touserdata(L, 1);
    open_libs(L);
    set_package_path(L, rt->lua_dir, rt->cfg.script);
    open_bitlab(L, rt);
    if (bl_comm_rank() > 0) {
        lua_pushcfunction(L, quiet_print);
        lua_setglobal(L, "print");
    }
    /* arg, as lua.c: arg[0] the script, arg[1..] its arguments */
    lua_createtable(L, rt->cfg.n_args, 1);
    lua_pushstring(L, rt->cfg.script);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < rt->cfg.n_args; i++) {
        lua_pushstring(L, rt->cfg.args[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    return 0;
}

int bl_runtime_create(BlRuntime **out, const BlRuntimeConfig *cfg, BlError *err) {
    *out = NULL;
    BlRuntime *rt = bl_calloc(1, sizeof *rt, err);
    if (!rt) return -1;
    rt->cfg = *cfg;
    if (!rt->cfg.be) rt->cfg.be = bl_backend_cpu();
    rt->rng = 0x2545f4914f6cdd1dull;
    if (!(rt->lua_dir = find_lua_dir(cfg))) {
        free(rt);
        return bl_fail(err, "out of memory");
    }
    /* the metrics stream is rank 0's (the others' records are the same steps) */
    if (cfg->log_path && bl_comm_rank() == 0 && !(rt->log = fopen(cfg->log_path, "w"))) {
        bl_fail(err, "%s: cannot open the metrics log", cfg->log_path);
        bl_runtime_free(rt);
        return -1;
    }
    if (!(rt->L = luaL_newstate())) {
        bl_runtime_free(rt);
        return bl_fail(err, "cannot create the Lua state (out of memory)");
    }
    lua_pushlightuserdata(rt->L, rt);
    lua_rawsetp(rt->L, LUA_REGISTRYINDEX, &RT_KEY);
    lua_pushcfunction(rt->L, setup);
    lua_pushlightuserdata(rt->L, rt);
    if (lua_pcall(rt->L, 1, 0, 0) != LUA_OK) {
        bl_fail(err, "Lua set-up: %s", lua_tostring(rt->L, -1));
        bl_runtime_free(rt);
        return -1;
    }
    { /* the stream's first record: what produced the run (step results depend on the BLAS) */
        char core[BL_CKPT_CORE_LEN];
        int threads;
        bl_blas_info(core, &threads);
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "blas_core", core);
        cJSON_AddNumberToObject(f, "blas_threads", threads);
        cJSON_AddStringToObject(f, "device", rt->cfg.be->name);
        cJSON_AddStringToObject(f, "device_name", rt->cfg.be->device_name());
        cJSON_AddNumberToObject(f, "world_size", bl_comm_size());
        bl_metrics_event(rt, "run", f);
    }
    if (cfg->dash) { /* the header's identity line before the script says more */
        const char *slash = strrchr(cfg->script, '/');
        const BlBackend *be = rt->cfg.be;
        char backend[160]; /* "cuda · NVIDIA H200", or "cpu" where the device is the name */
        const char *dev = be->device_name();
        if (!dev || !dev[0] || strcmp(dev, be->name) == 0)
            snprintf(backend, sizeof backend, "%s", be->name);
        else
            snprintf(backend, sizeof backend, "%s · %s", be->name, dev);
        dash_set_info(cfg->dash, &(DashInfo){.experiment = slash ? slash + 1 : cfg->script, .backend = backend});
    }
    *out = rt;
    return 0;
}

void bl_runtime_free(BlRuntime *rt) {
    if (!rt) return;
    if (rt->L) lua_close(rt->L); /* finalizers free models, students, trainers */
    if (rt->log) fclose(rt->log);
    for (int i = 0; i < rt->n_knobs; i++) free(rt->knobs[i].name);
    free(rt->knobs);
    free(rt->control_seen);
    for (int i = 0; i < rt->n_prompts; i++) free(rt->prompts[i]);
    free(rt->prompts);
    free(rt->lua_dir);
    free(rt);
}

long bl_runtime_steps_logged(const BlRuntime *rt) { return rt->steps_logged; }

const BlBackend *bl_rt_backend(const BlRuntime *rt) {
    return rt && rt->cfg.be ? rt->cfg.be : bl_backend_cpu();
}

// ----------------------------------------------------------------------------
// running, errors and Ctrl-C

static const char INTERRUPTED[] = "interrupted!";

/* Message handler: appends the traceback (as lua.c's msghandler). */
static int msghandler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Instructions between two looks at the Ctrl-C count while nothing is
 * pending: the watch hook every thread inherits (coroutines included). */
#define WATCH_COUNT 1000

/* Raises "interrupted!" once two Ctrl-Cs came. It stays armed, now at every
 * instruction of this thread, until the script ends: a pcall (or
 * coroutine.resume) that swallows the error runs straight into the next
 * one. Only count events re-arm it, so the C message handler and the
 * traceback it writes run undisturbed. */
static void stop_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    BlRuntime *rt = bl_rt(L);
    if (!rt || rt->sigints < 2) return;
    lua_sethook(L, stop_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, INTERRUPTED);
}

void bl_runtime_interrupt(BlRuntime *rt) {
    /* the first Ctrl-C is a request honoured at the next step boundary; a
     * second one stops whatever Lua code runs (lua.c's trick: setting a hook
     * is safe from a signal handler; other threads see the count through
     * the watch hook within WATCH_COUNT instructions) */
    if (++rt->sigints >= 2)
        lua_sethook(rt->L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

int bl_runtime_run(BlRuntime *rt, bool *interrupted, BlError *err) {
    lua_State *L = rt->L;
    *interrupted = false;
    lua_pushcfunction(L, msghandler);
    int base = lua_gettop(L);
    lua_sethook(L, stop_hook, LUA_MASKCOUNT, WATCH_COUNT); /* coroutines made from here inherit it */
    int rc = luaL_loadfilex(L, rt->cfg.script, "t"); /* text only: no binary chunks */
    if (rc == LUA_OK) rc = lua_pcall(L, 0, 0, base);
    lua_sethook(L, NULL, 0, 0); /* the script is over: what runs later (finalizers) runs in peace */
    if (rc == LUA_OK) {
        lua_settop(L, base - 1);
        *interrupted = rt->sigints > 0;
        return 0;
    }
    if (rt->quit) { /* the dashboard's quit (l_dash.c): a stop, not an error */
        lua_settop(L, base - 1);
        return 0;
    }
    const char *msg = lua_tostring(L, -1);
    bl_fail(err, "%s", msg ? msg : "(no message)");
    *interrupted = rt->sigints > 0 && msg && strstr(msg, INTERRUPTED);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "message", msg ? msg : "");
    bl_metrics_event(rt, *interrupted ? "interrupted" : "script_error", f);
    lua_settop(L, base - 1);
    return -1;
}
