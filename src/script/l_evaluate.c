/* l_evaluate.c - bitlab.eval{...}: the evaluation of eval/evaluate.h from
 * Lua, returning the JSON report as a table and the printed table as text.
 *
 *   bitlab.eval{model=, student= | checkpoint=, data=, prompts=,
 *               max_tokens=64, seq=256, max_examples=0, tokens=, act_bits=,
 *               json=, teacher_cache=DIR, step=}
 *     → report, text
 *
 * student= evaluates a live Student (at λ = 1, its activation width or
 * act_bits=; the Student itself is not changed); checkpoint= builds one from
 * a file; neither evaluates a fresh
 * student (no adapters): the before-training baseline. data= is a file
 * path (.txt plain text, .jsonl chat/text) or a Dataset; prompts= a file
 * path or a list of strings. Both models run on the run's backend
 * (`--device`). teacher_cache= a directory (default: none): the teacher's
 * side is computed once per model, data and options and read back by later
 * calls (eval/evaluate.h, "teacher cache"; CPU backend only). tokens=N (an
 * integer >= 1): the held-out set is its examples in order up to the first
 * that brings the scored tokens to N (whole examples: the same set as
 * max_examples = k, and the same as `bitlab eval --tokens N`); the report's
 * scored_tokens says how many were scored, tokens_cap the cap.
 *
 * Every evaluation also logs one "eval" event to the metrics stream (the
 * only place the dashboard's held-out curve comes from): the report's
 * measures under the report's own names (EVENT_FIELDS) and "step": step= (an
 * integer >= 0) when given, else the step of the last bitlab.poll once a
 * step record has been logged (the training loop polls, then logs, the same
 * step), else none -- a standalone evaluation belongs to no step.
 *
 * Under mpirun every rank evaluates (the same student, the same report) and
 * only rank 0 writes json= (and the metrics stream, as always).
 *
 * Every Lua argument is checked before anything is allocated, and the C
 * resources are freed before an evaluation failure is raised. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "eval/evaluate.h"
#include "train/checkpoint.h"
#include "script/internal.h"
#include "ops/quant.h"

/* Optional string field of the table at 1 (NULL when absent). */
static const char *opt_string(lua_State *L, const char *name) {
    lua_getfield(L, 1, name);
    const char *s = lua_isnil(L, -1) ? NULL : lua_tostring(L, -1);
    if (!s && !lua_isnil(L, -1)) luaL_error(L, "bitlab.eval: %s must be a string", name);
    lua_pop(L, 1); /* the string stays alive: the argument table holds it */
    return s;
}

/* prompts = {"...", ...}: an array of pointers kept in a userdata on the stack. */
static const char **prompt_list(lua_State *L, int idx, int *n) {
    lua_Integer len = luaL_len(L, idx);
    const char **p = lua_newuserdatauv(L, sizeof *p * (size_t)(len ? len : 1), 0);
    for (lua_Integer i = 1; i <= len; i++) {
        lua_rawgeti(L, idx, i);
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "bitlab.eval: prompts[%d] is not a string", (int)i);
        p[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    if (len == 0) luaL_error(L, "bitlab.eval: prompts is an empty list");
    *n = (int)len;
    return p;
}

/* The report's fields an "eval" event carries (agreement_firstN are added
 * from bl_eval_pos_cuts, as the report names them). */
static const char *const EVENT_FIELDS[] = {
    "teacher_perplexity", "student_perplexity", "perplexity_ratio", "kl", "agreement",
    "agreement_top5", "scored_tokens", "teacher_cache", "seconds"};

static void add_copy(cJSON *ev, const cJSON *report, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(report, name);
    if (v) cJSON_AddItemToObject(ev, name, cJSON_Duplicate(v, false));
}

/* The "eval" event of a report: copied from the report's JSON object, so the
 * stream and the returned table cannot disagree. step < 0: none given. */
static void log_event(BlRuntime *rt, const cJSON *report, long step) {
    cJSON *ev = cJSON_CreateObject();
    if (!ev) return; /* out of memory: the record is lost, the evaluation is not */
    cJSON_AddStringToObject(ev, "event", "eval");
    if (step >= 0 || rt->steps_logged > 0)
        cJSON_AddNumberToObject(ev, "step", (double)(step >= 0 ? step : rt->step));
    for (size_t i = 0; i < sizeof EVENT_FIELDS / sizeof EVENT_FIELDS[0]; i++)
        add_copy(ev, report, EVENT_FIELDS[i]);
    for (int i = 0; i < BL_EVAL_N_POS; i++) {
        char k[32];
        snprintf(k, sizeof k, "agreement_first%d", bl_eval_pos_cuts[i]);
        add_copy(ev, report, k);
    }
    bl_metrics_write(rt, ev);
}

/* The table report and its printed form, and the "eval" event; the C side
 * is done by now. */
static int push_results(lua_State *L, const BlEvalOptions *opt, const BlEvalReport *r, long step) {
    cJSON *j = bl_eval_report_json(opt, r);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f) {
        bl_eval_report_print(f, opt, r);
        fclose(f);
    }
    if (!j || !text) {
        cJSON_Delete(j);
        free(text);
        return 0;
    }
    log_event(bl_rt(L), j, step);
    bl_json_push(L, j);
    lua_pushlstring(L, text, len);
    cJSON_Delete(j);
    free(text);
    return 2;
}

static int l_eval(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    BlEvalOptions opt = {.max_tokens = (int)bl_opt_int(L, 1, "max_tokens", BL_EVAL_DEFAULT_MAX_TOKENS, 1, 1 << 20),
                         .seq = (int)bl_opt_int(L, 1, "seq", BL_EVAL_DEFAULT_SEQ, 2, 1 << 20),
                         .max_examples = (int)bl_opt_int(L, 1, "max_examples", 0, 0, INT_MAX),
                         .tokens = (long long)bl_opt_int(L, 1, "tokens", 0, 1, LLONG_MAX),
                         .checkpoint_path = opt_string(L, "checkpoint"),
                         .teacher_cache = opt_string(L, "teacher_cache")};
    int act_bits = (int)bl_opt_int(L, 1, "act_bits", 0, 0, 16);
    long step = (long)bl_opt_int(L, 1, "step", -1, 0, LONG_MAX); /* -1: not given */
    const char *json = opt_string(L, "json");
    if (opt.max_tokens < 1 || opt.seq < 2 || opt.max_examples < 0 ||
        (act_bits && bl_actq_levels(act_bits) < 0))
        return luaL_error(L, "bitlab.eval: max_tokens must be >= 1, seq >= 2, max_examples >= 0, "
                             "act_bits 4, 8 or 16");

    bl_field_udata(L, 1, "student", BL_MT_STUDENT, false);
    BlStudent *live = lua_isnil(L, -1) ? NULL : bl_lua_check_student(L, -1);
    bl_field_udata(L, 1, "model", BL_MT_MODEL, false);
    const BlModel *m = lua_isnil(L, -1) ? NULL : bl_lua_check_model(L, -1);
    if (live && m && live->model != m) return luaL_error(L, "bitlab.eval: student is of another model");
    if (live && opt.checkpoint_path) return luaL_error(L, "bitlab.eval: give student= or checkpoint=, not both");
    if (!m && !live) return luaL_error(L, "bitlab.eval: model= (or student=) is required");
    if (!m) m = live->model;
    opt.model_path = m->path;

    lua_getfield(L, 1, "data");
    BlDataset *given = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) {
        opt.data_path = lua_tostring(L, -1);
        opt.format = bl_eval_format_of(opt.data_path);
    } else if (luaL_testudata(L, -1, BL_MT_DATASET)) {
        given = bl_lua_check_dataset(L, -1);
        opt.format = BL_EVAL_DATASET;
        if (given->model != m) return luaL_error(L, "bitlab.eval: data is a dataset of another model");
    } else {
        return luaL_error(L, "bitlab.eval: data= (a .txt/.jsonl path or a Dataset) is required");
    }

    lua_getfield(L, 1, "prompts");
    const char **list = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) opt.prompts_path = lua_tostring(L, -1);
    else if (lua_istable(L, -1)) list = prompt_list(L, lua_gettop(L), &opt.n_prompts);
    else if (!lua_isnil(L, -1)) return luaL_error(L, "bitlab.eval: prompts must be a path or a list");

    /* from here on nothing raises until every C resource is freed */
    BlError err = {{0}};
    BlStudent own = {0}, *st = live;
    BlDataset loaded = {0};
    const BlDataset *data = given;
    BlEvalReport rep = {0};
    char **file_prompts = NULL;
    int rc = 0, have_own = 0, have_data = 0;
    if (!live) {
        BlStudentConfig c = {.lambda = 1.0f, .act_bits = 8};
        rc = opt.checkpoint_path ? bl_student_from_checkpoint(&own, m, opt.checkpoint_path, NULL, &err)
                                 : bl_build_student(&own, m, &c, &err);
        have_own = rc == 0;
        st = &own;
    }
    if (rc == 0 && !given) {
        rc = bl_eval_load_data(&loaded, m, opt.data_path, opt.format, opt.seq, &err);
        have_data = rc == 0;
        data = &loaded;
    }
    if (rc == 0 && opt.prompts_path) {
        rc = bl_eval_read_prompts(opt.prompts_path, &file_prompts, &opt.n_prompts, &err);
        list = (const char **)file_prompts;
    }
    opt.prompts = list;
    if (rc == 0) {
        BlStudentMode mode = {.lambda = 1.0f, .act_bits = act_bits ? act_bits : st->cfg.act_bits};
        rc = bl_evaluate(bl_rt_backend(bl_rt(L)), st, mode, data, &opt, &rep, &err);
    }
    /* every rank evaluates (the same weights, the same figures); one writes */
    if (rc == 0 && json && bl_comm_rank() == 0) rc = bl_eval_report_write_json(json, &opt, &rep, &err);
    int pushed = rc == 0 ? push_results(L, &opt, &rep, step) : 0;
    bl_eval_report_free(&rep);
    bl_eval_free_prompts(file_prompts, file_prompts ? opt.n_prompts : 0);
    if (have_data) bl_dataset_free(&loaded);
    if (have_own) bl_free_student(&own);
    if (rc) return bl_lua_fail(L, &err);
    if (!pushed) return luaL_error(L, "bitlab.eval: out of memory formatting the report");
    return 2;
}

void bl_open_evaluate(lua_State *L) {
    lua_pushcfunction(L, l_eval);
    lua_setfield(L, -2, "eval");
}
