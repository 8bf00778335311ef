/* l_device.c - the run's backend as scripts see it:
 *
 *   bitlab.device() → {name = "cpu"|"cuda", device = "<device name>",
 *                      memory = {live =, peak =, device_free =, device_total =}}
 *
 * The backend is chosen once, by `bitlab SCRIPT.lua --device cpu|cuda|auto`
 * (cmd_run.c), before the script starts; a script cannot switch it, so
 * bitlab.device takes no arguments (bitlab.device("cuda") is an error, not
 * a silent no-op). memory is the backend's mem_stats in bytes: what bitlab
 * holds in the backend's memory (alloc, weight uploads, its scratch) now
 * and at its high-water mark, and the device's free / total memory from the
 * driver, 0 where there is no such figure (the CPU). Each call reads them
 * afresh; the peak is never reset here (benchmarks and the trainer own
 * that). The same figures go into every step record as "device_mem"
 * (metrics.c), which is where the dashboard's header takes them from. */
#include "script/internal.h"

cJSON *bl_rt_device_mem_json(const BlRuntime *rt) {
    const BlBackend *be = bl_rt_backend(rt);
    BlMemStats ms = {0};
    be->mem_stats(&ms, false);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "live", (double)ms.live);
    cJSON_AddNumberToObject(o, "peak", (double)ms.peak);
    cJSON_AddNumberToObject(o, "device_free", (double)ms.device_free);
    cJSON_AddNumberToObject(o, "device_total", (double)ms.device_total);
    return o;
}

static void set_size(lua_State *L, const char *name, size_t v) {
    lua_pushinteger(L, v > (size_t)LUA_MAXINTEGER ? LUA_MAXINTEGER : (lua_Integer)v);
    lua_setfield(L, -2, name);
}

/* bitlab.device() → the table above */
static int l_device(lua_State *L) {
    if (!lua_isnone(L, 1))
        return luaL_argerror(L, 1, "no value expected: the device is chosen for the whole run "
                                   "with --device cpu|cuda|auto");
    const BlBackend *be = bl_rt_backend(bl_rt(L));
    BlMemStats ms = {0};
    be->mem_stats(&ms, false);
    const char *dev = be->device_name();
    lua_createtable(L, 0, 3);
    lua_pushstring(L, be->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, dev ? dev : be->name);
    lua_setfield(L, -2, "device");
    lua_createtable(L, 0, 4);
    set_size(L, "live", ms.live);
    set_size(L, "peak", ms.peak);
    set_size(L, "device_free", ms.device_free);
    set_size(L, "device_total", ms.device_total);
    lua_setfield(L, -2, "memory");
    return 1;
}

void bl_open_device(lua_State *L) {
    static const luaL_Reg fns[] = {{"device", l_device}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
