/* l_export.c - bitlab.export{}: a student as GGUF or a packed safetensors
 * folder, with its training_manifest.json (src/export/export.h).
 *
 *   bitlab.export{student=, out=, format=, ternary="tq2_0", embed="keep",
 *                 manifest=run.manifest}
 *     → {path=, format=, manifest=, tensors={name = type}}
 *
 * embed ("keep", "f32", "f16") stores the token embedding and LM head: for
 * GGUF "keep" copies a GGUF source's bytes; for safetensors only "f32" keeps
 * fp32, "keep" and "f16" store F16 (safetensors has no ggml block types).
 * Under mpirun only rank 0 writes; every rank returns rank 0's result (or
 * raises its error).
 *
 * manifest is the table of training facts merged into the manifest:
 * bitlab.train returns it as result.manifest (steps, tokens_seen,
 * lambda_schedule, loss_mix, final_metrics, ...); a script's own keys may be
 * added to it. */
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "export/export.h"
#include "io/quants.h"
#include "script/internal.h"
#include "train/student.h"

static const char *opt_string(lua_State *L, const char *name, const char *dflt) {
    lua_getfield(L, 1, name);
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "bitlab.export: option '%s' must be a string, got %s", name, luaL_typename(L, -1));
    const char *s = lua_isnil(L, -1) ? dflt : lua_tostring(L, -1);
    lua_pop(L, 1); /* the string stays alive: the option table holds it */
    return s;
}

/* The call's result, {path, format, manifest, tensors = {name = type}}, as
 * JSON text (malloc'ed; NULL when out of memory): what every rank returns. */
static char *result_json(const char *out, const BlExportResult *res) {
    cJSON *o = cJSON_CreateObject(), *t = cJSON_AddObjectToObject(o, "tensors");
    cJSON_AddStringToObject(o, "path", out);
    cJSON_AddStringToObject(o, "format", res->format == BL_EXPORT_GGUF ? "gguf" : "safetensors");
    cJSON_AddStringToObject(o, "manifest", res->manifest_path);
    for (int i = 0; i < res->gguf.n_tensors; i++)
        cJSON_AddStringToObject(t, res->gguf.tensors[i].name, bl_ggml_type_name(res->gguf.tensors[i].type));
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

static int l_export(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    bl_field_udata(L, 1, "student", BL_MT_STUDENT, true);
    BlStudent *st = bl_lua_check_student(L, -1);
    lua_pop(L, 1);
    const char *out = opt_string(L, "out", NULL);
    if (!out) return luaL_error(L, "bitlab.export: out= (the file or folder to write) is required");
    BlExportRequest req = {.format = opt_string(L, "format", NULL)};
    const char *tern = opt_string(L, "ternary", "tq2_0"), *embed = opt_string(L, "embed", "keep");
    if (strcmp(tern, "tq2_0") == 0) req.gguf.ternary_type = BL_GGML_TQ2_0;
    else if (strcmp(tern, "tq1_0") == 0) req.gguf.ternary_type = BL_GGML_TQ1_0;
    else return luaL_error(L, "bitlab.export: ternary must be \"tq2_0\" or \"tq1_0\", got \"%s\"", tern);
    if (strcmp(embed, "keep") == 0) req.gguf.embed = BL_EMBED_KEEP;
    else if (strcmp(embed, "f32") == 0) req.gguf.embed = BL_EMBED_F32;
    else if (strcmp(embed, "f16") == 0) req.gguf.embed = BL_EMBED_F16;
    else return luaL_error(L, "bitlab.export: embed must be \"keep\", \"f32\" or \"f16\", got \"%s\"", embed);
    BlError err = {{0}};
    cJSON *run = NULL;
    lua_getfield(L, 1, "manifest");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1)) return luaL_error(L, "bitlab.export: manifest must be a table");
        if (!(run = bl_lua_to_json(L, -1, false, &err)))
            return luaL_error(L, "bitlab.export: option 'manifest': %s", err.msg);
    }
    lua_pop(L, 1);
    req.run = run;
    /* Under mpirun rank 0 writes and every rank returns what it wrote: its
     * outcome (the result as JSON, or its error) is broadcast, so a script
     * that exports inside a data-parallel run needs no rank test, the file is
     * written once, and it is complete before any rank goes on. One process
     * takes the same path (the broadcasts are no-ops). */
    int rc = 0;
    char *outcome = NULL;
    if (bl_comm_rank() == 0) {
        BlExportResult res;
        rc = bl_export_student(st, out, &req, &res, &err);
        if (rc == 0) {
            outcome = result_json(out, &res);
            bl_export_result_free(&res);
            if (!outcome) rc = bl_fail(&err, "bitlab.export: out of memory formatting the result");
        }
        if (rc && !(outcome = strdup(err.msg))) rc = bl_fail(&err, "out of memory");
    }
    cJSON_Delete(run);
    BlError cerr = {{0}};
    if (bl_comm_bcast(&rc, sizeof rc, &cerr) || bl_comm_bcast_string(&outcome, &cerr)) {
        free(outcome);
        return luaL_error(L, "bitlab.export: sharing rank 0's result: %s", cerr.msg);
    }
    cJSON *j = rc == 0 && outcome ? cJSON_Parse(outcome) : NULL;
    if (rc || !j) {
        snprintf(err.msg, sizeof err.msg, "%s", rc && outcome ? outcome : "bitlab.export: out of memory");
        free(outcome);
        return bl_lua_fail(L, &err);
    }
    free(outcome);
    bl_json_push(L, j);
    cJSON_Delete(j);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "path", out);
    bl_metrics_event(bl_rt(L), "export", f);
    return 1;
}

void bl_open_export(lua_State *L) {
    static const luaL_Reg fns[] = {{"export", l_export}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
