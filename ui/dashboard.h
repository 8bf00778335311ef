/* dashboard.h - the live ncurses dashboard of `bitlab SCRIPT.lua`.
 *
 * Two threads: the UI thread owns curses and calls dash_poll() in a loop;
 * the training worker pushes what happens (metrics-stream lines, knob
 * declarations, generations) and, at every step boundary, takes the user's
 * commands with dash_next_command(). Every function but dash_create,
 * dash_destroy and dash_poll may be called from any thread: they only queue
 * a message, and only the UI thread touches the dashboard's state.
 *
 *   UI thread                         worker thread
 *   d = dash_create(&cfg, &err)
 *   start worker ───────────────────▶ dash_set_info / dash_declare_knob ...
 *   while (dash_poll(d, 50)) {}       loop:
 *                                       DashCmd c;
 *                                       while (dash_next_command(d, &c)) apply c
 *                                       (QUIT: save if c.checkpoint, stop)
 *                                       step; dash_push_line(d, metrics_json)
 *                                     dash_worker_done(d)
 *   join worker; dash_destroy(d)
 *
 * Pausing happens inside dash_next_command: while the user has paused, it
 * blocks (still returning commands such as generate, knob or quit) until
 * space resumes or `n` grants exactly one step. */
#ifndef BITLAB_UI_DASHBOARD_H
#define BITLAB_UI_DASHBOARD_H

#include <stdbool.h>

#include "core/error.h"

typedef struct Dash Dash;

typedef struct {
    bool monochrome; /* force no colours (also when the terminal has none) */
} DashConfig;

/* Run facts for the header; NULL strings and numbers <= 0 leave a field as it
 * was ("–" until known), so a zero-initialised DashInfo changes nothing.
 * Memory sizes are bytes. */
typedef struct {
    const char *experiment, *model, *backend;
    const char *budget; /* what bounds the run, as the script words it ("30 min", "2M tokens") */
    long total_steps;
    int n_adapters, rank;
    double mem_weights, mem_adapters, mem_optimizer, mem_activations;
    double mem_dense; /* the dense ΔW's values (within mem_adapters); > 0 shows "dense" */
} DashInfo;

/* One greedy generation pair for a prompt. The texts are given per token
 * (decoded pieces, concatenated they are the text) so the dashboard can
 * highlight the first token where the ids differ. */
typedef struct {
    const char *prompt;
    const char *const *teacher_pieces;
    const int *teacher_ids;
    int n_teacher;
    const char *const *student_pieces;
    const int *student_ids;
    int n_student;
} DashGeneration;

typedef enum {
    DASH_CMD_GENERATE,     /* generate now for the prompts */
    DASH_CMD_ROTATE,       /* rotate the adapter now */
    DASH_CMD_SAVE,         /* save a checkpoint now */
    DASH_CMD_KNOB,         /* set knob `name` to `value` (already clamped to its range) */
    DASH_CMD_PROMPT,       /* prompt `index` is now `text`: generate for it */
    DASH_CMD_QUIT,         /* stop; save a checkpoint first when `checkpoint` */
} DashCmdType;

typedef struct {
    DashCmdType type;
    char name[64];
    double value;
    int index;
    bool checkpoint;
    char text[2048];
} DashCmd;

/* Starts curses on the terminal (stdin/stdout). -1 with err when there is no
 * usable terminal or memory. */
int dash_create(Dash **out, const DashConfig *cfg, BlError *err);
/* Ends curses and frees everything. The worker must have stopped. */
void dash_destroy(Dash *d);

/* UI thread: applies queued messages, handles keys and redraws (at most ~10
 * times a second), returning after about timeout_ms. false once the user
 * has quit and the worker has called dash_worker_done(), or the worker is
 * done and the user pressed q. */
bool dash_poll(Dash *d, int timeout_ms);

// ----------------------------------------------------------------------------
// called by the worker (any thread)

/* One line of the metrics stream: a step record ({"step":..., "ce":...,
 * "knobs":{...}, "device_mem":{"live":, "peak":, "device_free":,
 * "device_total":}} -- the backend's memory, shown in the header beside the
 * backend; "progress" (0..1 of the run's budget) and "eta_seconds", when a
 * budgeted loop knows them better than step / total_steps; "corpus":
 * {"documents":, "tokens":, "tokens_per_s":} from a streamed corpus; "teacher_data":
 * {"kept":, "rejected":, "tokens_per_s":} from a teacher source) or an event
 * ({"event":"rotation", ...}; {"event":"eval", "kl":, "perplexity_ratio":,
 * ...} from bitlab.eval feeds the held-out panel). Unknown fields
 * are ignored, missing ones shown as "–"; an unparsable line is shown as an
 * event. A "script_error"/"error" event pauses the dashboard. */
void dash_push_line(Dash *d, const char *json_line);
void dash_set_info(Dash *d, const DashInfo *info);
void dash_declare_knob(Dash *d, const char *name, double value, double min, double max,
                       double step);
/* Stores the generation shown for prompt `index` (0-based; Tab cycles). */
void dash_set_generation(Dash *d, int index, const DashGeneration *g);
/* Declares the experiment's prompt `index` before anything is generated for
 * it, so Tab cycles the prompts from the start; a generation shown earlier
 * for that index is dropped when the prompt text differs. */
void dash_set_prompt(Dash *d, int index, const char *prompt);
/* At a step boundary: true with the next command to apply, false when the
 * worker should run its next step (blocks while paused, see above). */
bool dash_next_command(Dash *d, DashCmd *cmd);
/* The worker has finished (the run ended or it obeyed DASH_CMD_QUIT). */
void dash_worker_done(Dash *d);

#endif
