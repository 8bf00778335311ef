/* internal.h - what the files of the Lua runtime share: the runtime struct,
 * the userdata type names, and each file's registration function. Not
 * included outside src/script. */
#ifndef BITLAB_SCRIPT_INTERNAL_H
#define BITLAB_SCRIPT_INTERNAL_H

#include <signal.h>
#include <stdbool.h>
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
#define BL_MT_CORPUS "bitlab.Corpus"

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
    bool control_stop;         /* a `stop` line of the control file: the loop ends at the boundary */
};

/* The runtime of a Lua state (stored in the registry). */
BlRuntime *bl_rt(lua_State *L);

/* The backend of the run (`--device`; the CPU when the config named none),
 * never NULL and the same for the whole run: what bindings build device
 * state on (bl_device_model_build, the trainer, eval). */
const BlBackend *bl_rt_backend(const BlRuntime *rt);
/* Its memory (be->mem_stats without resetting the peak) as a JSON object
 * {live, peak, device_free, device_total} in bytes (0: no such figure). */
cJSON *bl_rt_device_mem_json(const BlRuntime *rt);

/* Raises a Lua error with err's message. */
int bl_lua_fail(lua_State *L, const BlError *err);

/* Lua value at idx → cJSON (tables with keys 1..n become arrays, other
 * tables objects with sorted keys; functions/userdata are an error).
 * NaN / ±inf: an error with finite_only (state that must come back as it
 * went, e.g. a checkpoint's), else null (a metrics record's NaN loss). */
cJSON *bl_lua_to_json(lua_State *L, int idx, bool finite_only, BlError *err);
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

/* The most messages a prompt or a conversation may have. */
#define BL_MAX_MESSAGES 64

/* generate's max_tokens option (1..the context, default 128) and the check
 * that prompt + answer fit the context, as `bitlab generate` refuses. */
int bl_lua_max_tokens(lua_State *L, const BlModel *m, int opts);
void bl_lua_check_context(lua_State *L, const BlModel *m, int n_prompt, int max_new);

BlModel *bl_lua_check_model(lua_State *L, int idx);
BlDataset *bl_lua_check_dataset(lua_State *L, int idx);
/* A teacher trace at idx: a Trace userdata, or a path opened as one; pushes
 * the userdata (for the caller to keep alive) and returns its BlTrace. */
struct BlTrace *bl_lua_push_trace(lua_State *L, int idx);
struct BlStudent *bl_lua_check_student(lua_State *L, int idx);

/* A Batch userdata: B rows of T tokens, lens [B], the row mask [B·T] (row t
 * selected when token t+1 is a target, data/dataset.h) and, for a packed
 * batch (several documents per row), doc_start [B·T]: the index in its row
 * of the first token of the document token t belongs to (positions restart
 * there and attention does not reach before it); NULL when every row is one
 * example. bl_lua_new_batch pushes one with zeroed arrays. */
typedef struct {
    int B, T;
    int *tokens, *lens;
    uint8_t *mask;
    int *doc_start;
} BlLuaBatch;
BlLuaBatch *bl_lua_new_batch(lua_State *L, int B, int T, bool packed);
BlLuaBatch *bl_lua_check_batch(lua_State *L, int idx);

/* Argument helpers (lua_aux.c). Every number is checked as a lua_Number /
 * lua_Integer, before any narrowing cast; errors name the field ("option
 * 'rank' must be an integer in 1..64, got 1000000000000") or the argument
 * ("bad argument #2 to 'batch' (...)"), with the caller's file:line. */
#define BL_NUM_BUF 32
/* v as "%.9g" (lua_pushfstring knows no %g). */
const char *bl_fmt_num(char buf[BL_NUM_BUF], lua_Number v);
/* An optional options table at arg: its absolute index, 0 when none or nil
 * (the bl_opt_* readers then return their defaults), else an argument error. */
int bl_opt_table(lua_State *L, int arg);
/* Optional fields of the table at idx (idx 0 or a non-table: the default).
 * bl_opt_num: finite and in [lo, hi]; bl_opt_int: an integer in lo..hi. */
lua_Number bl_opt_number(lua_State *L, int idx, const char *name, lua_Number dflt);
lua_Number bl_opt_num(lua_State *L, int idx, const char *name, lua_Number dflt, lua_Number lo,
                      lua_Number hi);
lua_Integer bl_opt_int(lua_State *L, int idx, const char *name, lua_Integer dflt, lua_Integer lo,
                       lua_Integer hi);
lua_Integer bl_opt_integer(lua_State *L, int idx, const char *name, lua_Integer dflt);
int bl_opt_bool(lua_State *L, int idx, const char *name, int dflt);
/* Positional arguments: an integer in lo..hi (optional: dflt when none/nil),
 * a finite number in [lo, hi]. */
lua_Integer bl_check_int(lua_State *L, int arg, lua_Integer lo, lua_Integer hi);
lua_Integer bl_optarg_int(lua_State *L, int arg, lua_Integer dflt, lua_Integer lo, lua_Integer hi);
lua_Number bl_check_num(lua_State *L, int arg, lua_Number lo, lua_Number hi);
/* Sets __metatable of the metatable at -1 (after its methods are set) to
 * a stand-in {__name, __index = methods, methods}: scripts can list the
 * methods (the API torture test does) but never reach __gc. */
void bl_protect_metatable(lua_State *L);
/* Pushes field `field` of the table at idx, checked to be a tname userdata
 * (or nil when not required): "option 'model' must be a bitlab.Model". */
void bl_field_udata(lua_State *L, int idx, const char *field, const char *tname, bool required);

/* Registration of each file's functions into the module table at -1. */
void bl_open_model(lua_State *L);
void bl_open_dataset(lua_State *L);
void bl_open_corpus(lua_State *L);
void bl_open_train(lua_State *L);
void bl_open_knobs(lua_State *L);
void bl_open_metrics(lua_State *L);
void bl_open_dash(lua_State *L);
void bl_open_export(lua_State *L);
void bl_open_evaluate(lua_State *L);
void bl_open_trace(lua_State *L);
void bl_open_plan(lua_State *L);
void bl_open_device(lua_State *L);
void bl_open_sample(lua_State *L);
void bl_open_dist(lua_State *L);

#endif
