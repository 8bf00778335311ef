/* metrics.c - the metrics stream: one JSON object per line, step records
 * (bitlab.log) and events (bitlab.event, and the runtime's own: knob
 * changes, script errors) interleaved in order. Lines are flushed at once so
 * a dashboard or `tail -f` sees them live and a crash loses nothing.
 * Records only ever gain fields (readers ignore the ones they do not know):
 * the first record, "run", names the backend (device, device_name) and the
 * number of processes (world_size), step records carry its memory
 * (device_mem). Under mpirun the stream is rank 0's: the other ranks open no
 * log and have no dashboard (host.c, cmd_run.c), so their records and
 * events, the same steps, go nowhere. */
#include "script/internal.h"

void bl_metrics_write(BlRuntime *rt, cJSON *obj) {
    if ((rt->log || rt->cfg.dash) && obj) {
        char *s = cJSON_PrintUnformatted(obj);
        if (s) {
            if (rt->log) {
                fputs(s, rt->log);
                fputc('\n', rt->log);
                fflush(rt->log);
            }
            if (rt->cfg.dash) dash_push_line(rt->cfg.dash, s); /* the dashboard reads the same stream */
            cJSON_free(s);
        }
    }
    cJSON_Delete(obj);
}

void bl_metrics_event(BlRuntime *rt, const char *name, cJSON *fields) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", name);
    cJSON_AddNumberToObject(o, "step", (double)rt->step);
    cJSON *f;
    while (fields && (f = fields->child)) { /* move the fields over */
        cJSON_DetachItemViaPointer(fields, f);
        /* a field overrides ours ("step"); not ReplaceItemInObject, which
         * frees f->string before copying it as the key */
        cJSON_DeleteItemFromObjectCaseSensitive(o, f->string);
        cJSON_AddItemToObject(o, f->string, f);
    }
    cJSON_Delete(fields);
    bl_metrics_write(rt, o);
}

/* bitlab.log(record): a step record; the knob values are added under
 * "knobs" and the backend's memory under "device_mem" ({live, peak,
 * device_free, device_total} in bytes, l_device.c; what the dashboard's
 * header shows) unless the record has them. */
static int l_log(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    BlRuntime *rt = bl_rt(L);
    BlError err = {{0}};
    cJSON *o = bl_lua_to_json(L, 1, false, &err);
    if (!o) return luaL_argerror(L, 1, err.msg);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return luaL_argerror(L, 1, "a record needs named fields");
    }
    if (!cJSON_HasObjectItem(o, "knobs")) cJSON_AddItemToObject(o, "knobs", bl_knobs_json(rt));
    if (!cJSON_HasObjectItem(o, "device_mem"))
        cJSON_AddItemToObject(o, "device_mem", bl_rt_device_mem_json(rt));
    rt->steps_logged++;
    bl_metrics_write(rt, o);
    return 0;
}

/* bitlab.event(name [, fields]) */
static int l_event(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    BlError err = {{0}};
    cJSON *f = NULL;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (!(f = bl_lua_to_json(L, 2, false, &err))) return luaL_argerror(L, 2, err.msg);
        if (!cJSON_IsObject(f)) {
            cJSON_Delete(f);
            return luaL_argerror(L, 2, "event fields need names");
        }
    }
    bl_metrics_event(bl_rt(L), name, f);
    return 0;
}

void bl_open_metrics(lua_State *L) {
    static const luaL_Reg fns[] = {{"log", l_log}, {"event", l_event}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
