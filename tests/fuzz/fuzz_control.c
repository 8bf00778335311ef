/* fuzz_control.c - libFuzzer harness: the input is a knob control file
 * (`name=value` lines, script/knobs.c). One runtime (script/host.c) with
 * three knobs and a metrics stream to /dev/null; each input is written to
 * the control file and applied by bitlab.poll, as at a step boundary. The
 * knobs must stay inside their ranges and finite. */
#include <math.h>
#include <stdlib.h>

#include "fuzz_common.h"
#include "script/internal.h"

static BlRuntime *rt;
static char control[128];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_path(control, sizeof control, "control");
    BlRuntimeConfig cfg = {.script = "fuzz_control.lua", .log_path = "/dev/null",
                           .control_path = control, .lua_dir = ".", .headless = true};
    BlError err;
    if (bl_runtime_create(&rt, &cfg, &err) != 0) {
        fprintf(stderr, "fuzz: runtime: %s\n", err.msg);
        abort();
    }
    if (luaL_dostring(rt->L, "bitlab.knob{name='lr', value=1e-3, min=0, max=1}\n"
                             "bitlab.knob{name='w_kl', value=1, min=-2, max=2, step=0.1}\n"
                             "bitlab.knob{name='bits', value=8}\n") != LUA_OK) {
        fprintf(stderr, "fuzz: knobs: %s\n", lua_tostring(rt->L, -1));
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_write(control, data, size);
    lua_State *L = rt->L;
    lua_getglobal(L, "bitlab");
    lua_getfield(L, -1, "poll");
    lua_pushinteger(L, 1);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        fprintf(stderr, "fuzz: poll raised: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    /* frees what this input allocated in Lua, so that libFuzzer's per-input
     * leak check (mallocs != frees) does not scan the heap every time */
    lua_gc(L, LUA_GCCOLLECT, 0);
    for (int i = 0; i < rt->n_knobs; i++) {
        const BlKnob *k = &rt->knobs[i];
        if (!isfinite(k->value) || k->value < k->min || k->value > k->max) {
            fprintf(stderr, "fuzz: knob %s = %g outside [%g, %g]\n", k->name, k->value, k->min,
                    k->max);
            abort();
        }
    }
    return 0;
}
