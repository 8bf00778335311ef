/* dash_internal.h - what the dashboard's files share: the state the UI
 * thread keeps (DashState), the panel vtable (PanelClass, htop style: each
 * panel draws itself from the state and may handle keys, returning flags
 * instead of drawing), the key table, and the drawing helpers. Not included
 * outside ui/. Files that include it define _XOPEN_SOURCE 700 first, for
 * ncursesw's wide-character functions and wcwidth. */
#ifndef BITLAB_UI_DASH_INTERNAL_H
#define BITLAB_UI_DASH_INTERNAL_H

#ifndef NCURSES_WIDECHAR
#define NCURSES_WIDECHAR 1
#endif
#include <curses.h>
#include <stdbool.h>

#include "ui/chart.h"
#include "ui/dashboard.h"
#include "ui/queue.h"

// ----------------------------------------------------------------------------
// state (touched by the UI thread only)

#define DASH_MAX_LOSSES 8
#define DASH_MAX_KNOBS 32
#define DASH_EVENT_LINES 200

typedef struct {
    char name[16];
    ChartSeries s;
} DashLoss;

typedef struct {
    char name[64];
    double value, min, max, step; /* min/max/step NaN until declared */
    bool pending;                 /* sent, not yet seen in the stream */
} DashKnob;

typedef struct {
    char *prompt;
    char *text[2];      /* teacher, student: the pieces concatenated */
    int *off[2];        /* byte offset of each token in text, n+1 entries */
    int n[2];
    int prefix;         /* tokens the two agree on from the start */
} DashGen;

/* EV_WARN: a "warning" event (long examples cut, a run turning unstable),
 * its message shown whole (wrapped) as errors are; EV_EVAL: a held-out
 * evaluation's measures (bitlab.eval) */
typedef enum { EV_INFO, EV_ROTATION, EV_CHECKPOINT, EV_KNOB, EV_SKIP, EV_EVAL, EV_WARN, EV_ERROR } DashEventKind;

typedef struct {
    char *text;
    DashEventKind kind;
} DashEventLine;

typedef enum {
    MODE_NORMAL,
    MODE_HELP,
    MODE_ERROR,       /* the script error box (any key closes it) */
    MODE_QUIT_ASK,    /* "save a checkpoint before quitting? y/n" */
    MODE_EDIT_KNOB,   /* typing a knob value */
    MODE_EDIT_PROMPT, /* typing a prompt */
    MODE_QUITTING,    /* waiting for the worker to stop */
} DashMode;

typedef struct {
    /* run facts */
    char experiment[128], model[128], backend[128];
    char budget[64]; /* bitlab.info's description of the run's budget ("30 min"); "" = none */
    long total_steps;
    int n_adapters, rank;
    double mem[4]; /* weights, adapters, optimizer, activations (bytes); NaN = unknown */
    double mem_dense; /* the dense ΔW's values (bytes, within mem[1]); NaN = none */
    double dev_mem[4]; /* the backend's live, peak, device free, device total (bytes, the step
                        * records' device_mem); NaN = unknown, free/total 0 = no such figure */
    /* the latest step record (NaN / -1 = missing) */
    long step;
    double lambda, lr, act_bits, adapter, grad_norm, tokens_per_s;
    double progress, eta_s; /* the loop's own budget fraction done and remaining seconds */
    double corpus[3]; /* a streamed corpus (the record's corpus): documents, tokens served,
                       * its reader's tokens/s; NaN = none */
    double teacher[3]; /* a teacher source (the record's teacher_data): examples kept,
                        * answers rejected, the teacher's sampling tokens/s; NaN = none */
    long records;
    DashLoss loss[DASH_MAX_LOSSES];
    int n_loss;
    ChartSeries lambda_s, lr_s, gnorm_s;
    double *blocks;
    int n_blocks, cap_blocks;
    long skipped;  /* non-finite steps skipped */
    long clipped;  /* steps whose gradient was clipped; -1 = not reported */
    long *rot;     /* rotation steps */
    int n_rot, cap_rot;
    DashKnob knobs[DASH_MAX_KNOBS];
    int n_knobs, sel_knob;
    DashGen *gens;
    int n_gens, cur_gen;
    DashEventLine ev[DASH_EVENT_LINES]; /* ring, oldest at ev_first */
    int ev_first, n_ev;
    /* "eval" events (bitlab.eval on a held-out set): one point per record */
    ChartSeries eval_kl, eval_ratio;
    /* timing, for the ETA and the elapsed time */
    double t_start, t_last_rec, sec_per_step; /* monotonic seconds; NaN = unknown */
    long step_last_rec;
    double sum_step_s;   /* the records' own step_seconds, summed */
    long n_step_s;
    /* view */
    bool paused, worker_done, log_scale, color;
    int eval_view; /* the held-out panel: -1 shown once an eval record arrived, 0 hidden, 1 shown */
    double ema_beta;
    DashMode mode;
    char edit[1024];
    char status[256]; /* one transient line in the key bar */
    char error[4096]; /* the last script error: message and traceback */
} DashState;

void dash_state_init(DashState *s);
void dash_state_free(DashState *s);
/* Applies one metrics-stream line (see dash_push_line). */
/* Returns true when the line asks to pause (a script error). */
bool dash_state_line(DashState *s, const char *line, double now);
void dash_state_info(DashState *s, const DashInfo *info);
void dash_state_knob(DashState *s, const DashKnob *k);
/* Takes ownership of g's buffers. */
void dash_state_gen(DashState *s, int index, DashGen *g);
/* Declares prompt `index` (see dash_set_prompt). */
void dash_state_prompt(DashState *s, int index, const char *prompt);
void dash_state_event(DashState *s, DashEventKind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void dash_gen_free(DashGen *g);
double dash_now(void);
/* The header's progress: the fraction done (the record's `progress`, else
 * step / total_steps; NaN when neither is known) and the seconds left (the
 * record's `eta_seconds`, else from total_steps and sec_per_step; NaN). */
void dash_progress(const DashState *s, double *frac, double *eta);
/* Whether the held-out panel takes its rows (the v key, eval_view). */
bool dash_eval_shown(const DashState *s);

// ----------------------------------------------------------------------------
// panels

typedef struct Dash Dash;
typedef struct Panel Panel;

/* What a key handler asks of the loop. */
enum { PK_UNHANDLED = 0, PK_HANDLED = 1, PK_REFRESH = 2, PK_REDRAW = 4 };

typedef struct {
    const char *name;
    void (*draw)(Panel *p, WINDOW *w, const DashState *s);
    int (*key)(Panel *p, Dash *d, int ch); /* NULL: takes no keys */
} PanelClass;

struct Panel {
    const PanelClass *cls;
    int y, x, h, w; /* placement; h == 0 hides it */
};

extern const PanelClass HeaderPanel, LossPanel, EvalPanel, SchedPanel, GradPanel, KnobPanel,
    GenPanel, EventPanel;

typedef enum { P_HEADER, P_LOSS, P_EVAL, P_SCHED, P_GRAD, P_KNOB, P_GEN, P_EVENT, P_COUNT } PanelId;

struct Dash {
    SCREEN *screen; /* newterm's, so a terminal curses cannot use is an error, not exit() */
    DashState st;
    Panel panels[P_COUNT];
    UiQueue *in;   /* worker → UI messages */
    UiQueue *cmds; /* UI → worker commands */
    bool worker_paused;  /* the worker's view of pause (worker thread only) */
    int step_credit;     /* single steps granted while paused (worker thread only) */
    double last_draw;
    bool dirty, full_redraw;
    bool quit_now;       /* dash_poll returns false */
};

/* Queues a command for the worker (UI thread). */
void dash_emit(Dash *d, const DashCmd *cmd);
/* Queues pause/resume/one-step for the worker (UI thread). */
void dash_emit_pause(Dash *d, bool paused);
void dash_emit_step(Dash *d);

/* What the edit line commits to: a typed knob value, a new prompt. */
void knob_commit(Dash *d, const char *text);
void gen_commit(Dash *d, const char *text);

// ----------------------------------------------------------------------------
// keys: the one table `?` shows

typedef struct {
    int key;            /* curses key or character; 0 ends the table */
    const char *label;  /* as the help shows it */
    const char *help;
    int (*action)(Dash *d, int key); /* returns PK_* flags */
} DashKey;

extern const DashKey DASH_KEYS[];
/* Dispatches a key in normal mode through the table. */
int dash_key(Dash *d, int key);

// ----------------------------------------------------------------------------
// drawing helpers (draw.c)

typedef enum {
    ROLE_NORMAL, ROLE_DIM, ROLE_TITLE, ROLE_BORDER, ROLE_VALUE, ROLE_GOOD, ROLE_WARN,
    ROLE_BAD, ROLE_SEL, ROLE_MARK, ROLE_SERIES0, /* ROLE_SERIES0 + i for series i */
    ROLE_COUNT = ROLE_SERIES0 + 6
} UiRole;

/* Colours: 256 when the terminal has them, 8 otherwise; attributes only in
 * monochrome. Returns whether colour is on. */
bool ui_colors_init(bool monochrome);
attr_t ui_attr(UiRole role);
/* Prints UTF-8 text at (y, x) cut to maxw screen columns; returns the columns used. */
int ui_put(WINDOW *w, int y, int x, int maxw, attr_t a, const char *utf8);
/* Screen columns of UTF-8 text. */
int ui_width(const char *utf8);
/* Box-drawing lines of n cells. */
void ui_hline(WINDOW *w, int y, int x, int n, attr_t a);
void ui_vline(WINDOW *w, int y, int x, int n, attr_t a);
/* A panel frame with its title (and an optional right-hand note). */
void ui_frame(WINDOW *w, const Panel *p, const char *title, const char *note);
/* Numbers for humans; "–" for NaN. */
void ui_fmt_num(char *out, size_t cap, double v);
void ui_fmt_bytes(char *out, size_t cap, double bytes);
void ui_fmt_duration(char *out, size_t cap, double seconds);
/* A Braille chart of a series over a w × h cell area, with EMA smoothing;
 * returns the non-finite (or, in log scale, non-positive) points it skipped. */
int ui_chart(WINDOW *w, int y, int x, int cw, int ch, const ChartSeries *s, double ema_beta,
             bool log_scale, attr_t a, ChartScale *scale_out);
/* The label column beside a chart (h rows from y, label_w wide): the name
 * and last value, the minimum, and the chart's y range when h >= 3. */
void ui_chart_labels(WINDOW *w, int y, int x, int h, int label_w, const char *name, double last,
                     double min, const ChartScale *sc, UiRole role);
/* The x axis under a chart of s over cw cells: its first and last step, and
 * ▲ where an adapter rotation falls. */
void ui_step_axis(WINDOW *w, int y, int x, int cw, const ChartSeries *s, const DashState *st);
/* A sparkline of a series over cw cells. */
void ui_sparkline(WINDOW *w, int y, int x, int cw, const ChartSeries *s, attr_t a);

#endif
