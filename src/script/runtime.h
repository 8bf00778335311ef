/* runtime.h - the embedded Lua 5.4 experiment runtime: one interpreter with
 * the `bitlab` module, a metrics stream, live knobs and a control file.
 *
 * The host runs a script under lua_pcall with a traceback handler, so a
 * script error becomes a message (file:line and traceback) and a
 * "script_error" event, never a crash. Ctrl-C (bl_runtime_interrupt, from
 * the CLI's signal handler) first asks the loop to stop at the next step
 * boundary (bitlab.poll returns false); a second one raises "interrupted"
 * inside running Lua code through a count hook, as lua.c does.
 *
 * The run has one backend (cfg.be, from `--device`), chosen before the
 * runtime is created and never switched: bitlab.device() reports it, the
 * metrics stream names it in its first record ("run": device, device_name)
 * and every step record carries its memory ("device_mem"). */
#ifndef BITLAB_RUNTIME_H
#define BITLAB_RUNTIME_H

#include <stdbool.h>

#include "backend/backend.h"
#include "core/error.h"
#include "ui/dashboard.h"

typedef struct BlRuntime BlRuntime;

typedef struct {
    const char *script;       /* path of the script */
    char **args;              /* script arguments (arg[1..n]) */
    int n_args;
    const char *log_path;     /* metrics JSONL, or NULL */
    const char *resume_path;  /* checkpoint to resume from, or NULL */
    const char *control_path; /* knob control file, or NULL */
    const char *lua_dir;      /* the Lua library folder (lua/), or NULL to search */
    bool headless;
    Dash *dash;               /* the live dashboard, or NULL (headless) */
    const BlBackend *be;      /* the backend --device chose (NULL: the CPU); fixed for the
                               * run: bindings read it with bl_rt_backend (internal.h) */
} BlRuntimeConfig;

/* Creates the interpreter (base, package, coroutine, table, io, os, string,
 * math, utf8; no debug library) and the bitlab module. */
int bl_runtime_create(BlRuntime **out, const BlRuntimeConfig *cfg, BlError *err);
void bl_runtime_free(BlRuntime *rt);

/* Runs the script. 0 on success; -1 with err holding the message and
 * traceback. *interrupted tells a Ctrl-C stop apart from an error. */
int bl_runtime_run(BlRuntime *rt, bool *interrupted, BlError *err);

/* After bl_runtime_run failed with a script error under the dashboard: the
 * script's stack is gone but its objects live on, so keep serving the
 * dashboard's commands (knobs, generate, save...) until the user quits,
 * checkpointing first when asked. Returns at once without a dashboard. */
void bl_runtime_serve_after_error(BlRuntime *rt);

/* Whether the run was ended by the dashboard's quit command. */
bool bl_runtime_quit_requested(const BlRuntime *rt);

/* Async-signal-safe: counts a Ctrl-C (see above). */
void bl_runtime_interrupt(BlRuntime *rt);

/* Steps logged so far (bitlab.log records), for the summary. */
long bl_runtime_steps_logged(const BlRuntime *rt);

#endif
