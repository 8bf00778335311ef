/* internal.h - what the files of the Lua runtime share: the runtime struct,
 * the userdata type names, and each file's registration function. Not
 * included outside src/script. */
#ifndef BITLAB_SCRIPT_INTERNAL_H
#define BITLAB_SCRIPT_INTERNAL_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>

#include "data/dataset.h"
#include "model/model.h"
#include "script/runtime.h"

#define BL_MT_MODEL "bitlab.Model"
#define BL_MT_DATASET "bitlab.Dataset"
#define BL_MT_BATCH "bitlab.Batch"
#define BL_MT_STUDENT "bitlab.Student"
#define BL_MT_TRAINER "bitlab.Trainer"
#define BL_MT_KNOB "bitlab.Knob"
#define BL_MT_TRACE "bitlab.Trace"

typedef struct {
    char *name;
    double value, min, max, step;
} BlKnob;

struct BlRuntime {
    lua_State *L;
    BlRuntimeConfig cfg;
    char *lua_dir;
    FILE *log;                 /* metrics stream or NULL */
    volatile sig_atomic_t sigints;
    bool stop_reported;        /* the step-boundary stop was handed to the script */
    long step;                 /* the step of the last bitlab.poll */
    long steps_logged;
    BlKnob *knobs;
    int n_knobs, cap_knobs;
    char *control_seen;        /* the control file's content when last applied */
    uint64_t rng;              /* bitlab.random state (splitmix64), checkpointed */
    char **prompts;            /* the experiment's prompts (bitlab.prompts), dashboard edits included */
    int n_prompts;
    bool quit;                 /* the dashboard's quit command ended the run */
};

/* The runtime of a Lua state (stored in the registry). */
BlRuntime *bl_rt(lua_State *L);

/* Raises a Lua error with err's message. */
int bl_lua_fail(lua_State *L, const BlError *err);

/* Lua value at idx → cJSON (tables with keys 1..n become arrays, other
 * tables objects with sorted keys; functions/userdata are an error). */
cJSON *bl_lua_to_json(lua_State *L, int idx, BlError *err);
/* Pushes a cJSON value as Lua. */
void bl_json_push(lua_State *L, const cJSON *j);

/* Metrics: writes one JSON object line (takes ownership of obj). */
void bl_metrics_write(BlRuntime *rt, cJSON *obj);
/* An event line {"event": name, "step": rt->step, ...fields} (fields may be NULL). */
void bl_metrics_event(BlRuntime *rt, const char *name, cJSON *fields);

/* Sets the knob `name` (clamped, logged with source); -1 when there is none. */
int bl_knob_set(BlRuntime *rt, const char *name, double v, const char *source);

/* The dashboard at a step boundary (bitlab.poll): applies the user's
 * commands, blocking while paused. Raises the quit error after a quit. */
void bl_dash_step_boundary(lua_State *L, BlRuntime *rt);
/* The message of the error that ends a run on the dashboard's quit. */
extern const char BL_QUIT_MSG[];

/* Knob values as a JSON object {name: value}. */
cJSON *bl_knobs_json(const BlRuntime *rt);
/* Restores knob values from such an object (unknown names ignored). */
void bl_knobs_restore(BlRuntime *rt, const cJSON *obj);

/* Token id lists: a Lua array of integers (checked against the model's
 * vocabulary) → a buffer pushed as a userdata (so a Lua error cannot leak
 * it); and back. */
int *bl_lua_check_ids(lua_State *L, int idx, const BlModel *m, int *n);
void bl_lua_push_ids(lua_State *L, const int *ids, int n);

/* A prompt at idx as token ids (pushes the buffer): a string is wrapped in
 * the chat template as a user turn unless opts.chat == false (then encoded
 * with the tokenizer's special tokens); opts.system adds a system turn; a
 * list of {role=, content=} is rendered as is; a list of integers is used
 * as given. opts may be 0 (none). */
int *bl_lua_prompt(lua_State *L, const BlModel *m, int idx, int opts, int *n);

BlModel *bl_lua_check_model(lua_State *L, int idx);
BlDataset *bl_lua_check_dataset(lua_State *L, int idx);
/* A teacher trace at idx: a Trace userdata, or a path opened as one; pushes
 * the userdata (for the caller to keep alive) and returns its BlTrace. */
struct BlTrace *bl_lua_push_trace(lua_State *L, int idx);
struct BlStudent *bl_lua_check_student(lua_State *L, int idx);

/* The arrays of the Batch userdata at idx. */
void bl_lua_batch(lua_State *L, int idx, int *B, int *T, int **tokens, int **lens, uint8_t **mask);

/* Reads an optional field of the table at idx. */
lua_Number bl_opt_number(lua_State *L, int idx, const char *name, lua_Number dflt);
lua_Integer bl_opt_integer(lua_State *L, int idx, const char *name, lua_Integer dflt);
int bl_opt_bool(lua_State *L, int idx, const char *name, int dflt);

/* Registration of each file's functions into the module table at -1. */
void bl_open_model(lua_State *L);
void bl_open_dataset(lua_State *L);
void bl_open_train(lua_State *L);
void bl_open_knobs(lua_State *L);
void bl_open_metrics(lua_State *L);
void bl_open_dash(lua_State *L);
void bl_open_export(lua_State *L);
void bl_open_evaluate(lua_State *L);
void bl_open_trace(lua_State *L);
void bl_open_plan(lua_State *L);

#endif
