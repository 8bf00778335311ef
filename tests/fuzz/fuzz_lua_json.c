/* fuzz_lua_json.c - libFuzzer harness: the Lua JSON bridge
 * (script/lua_json.c). The input is a JSON text; when cJSON parses it, it
 * is pushed as a Lua value into a fresh lua_State, converted back to JSON,
 * and that text must survive a second round trip unchanged (the bridge is
 * idempotent after the first pass: key order, arrays vs objects, integers).
 * The strict mode of checkpoint state (finite_only) refuses a number that
 * overflows to ±inf (1e999) rather than writing it as null, so every text it
 * accepts round-trips exactly (tests/lua/api.lua checks the refusal). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "fuzz_common.h"
#include "script/internal.h"

/* JSON -> Lua -> JSON text, or NULL when the bridge refuses (too deep, or
 * a non-finite number in the strict mode). */
static char *round_trip(lua_State *L, const cJSON *j) {
    BlError err;
    bl_json_push(L, j);
    cJSON *back = bl_lua_to_json(L, -1, true, &err);
    lua_pop(L, 1);
    if (!back) return NULL;
    char *text = cJSON_PrintUnformatted(back);
    cJSON_Delete(back);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    if (!j) return 0;
    lua_State *L = luaL_newstate();
    if (!L) abort();
    int top = lua_gettop(L);
    char *once = round_trip(L, j);
    cJSON_Delete(j);
    if (lua_gettop(L) != top) abort(); /* the bridge leaves the stack as it was */
    if (once) {
        cJSON *j2 = cJSON_Parse(once);
        if (!j2) {
            fprintf(stderr, "fuzz: the bridge wrote JSON that does not parse: %s\n", once);
            abort();
        }
        char *twice = round_trip(L, j2);
        cJSON_Delete(j2);
        if (!twice || strcmp(once, twice) != 0) {
            fprintf(stderr, "fuzz: not idempotent:\n  %s\n  %s\n", once, twice ? twice : "(refused)");
            abort();
        }
        free(twice);
    }
    free(once);
    lua_close(L);
    return 0;
}
