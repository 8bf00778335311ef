/* dashboard.c - the dashboard's API (dashboard.h): curses set-up, the two
 * queues between worker and UI, the UI loop (messages, keys, redraws at most
 * ~10 per second), the layout, the key bar and the overlays (help, quit
 * question, edit line), and the worker's step-boundary gate. */
#define _XOPEN_SOURCE 700
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include "ui/dash_internal.h"

#define FRAME_S 0.1  /* at most ~10 redraws a second */
#define KEY_WAIT_MS 25

// ----------------------------------------------------------------------------
// messages: worker → UI

typedef enum { MSG_LINE, MSG_INFO, MSG_KNOB, MSG_GEN, MSG_PROMPT, MSG_DONE } MsgKind;

typedef struct {
    MsgKind kind;
    char *line;
    DashInfo info;
    char strs[4][128]; /* the info's strings, copied */
    DashKnob knob;
    int index;
    DashGen gen;
} Msg;

static void msg_free(void *p) {
    Msg *m = p;
    if (!m) return;
    free(m->line);
    dash_gen_free(&m->gen);
    free(m);
}

static void send_msg(Dash *d, Msg *m) {
    if (uiq_push(d->in, m)) msg_free(m); /* out of memory: dropped, never fatal */
}

void dash_push_line(Dash *d, const char *json_line) {
    Msg *m = calloc(1, sizeof *m);
    if (!m) return;
    m->kind = MSG_LINE;
    m->line = strdup(json_line);
    if (!m->line) {
        free(m);
        return;
    }
    send_msg(d, m);
}

void dash_set_info(Dash *d, const DashInfo *info) {
    Msg *m = calloc(1, sizeof *m);
    if (!m) return;
    m->kind = MSG_INFO;
    m->info = *info;
    const char *src[4] = {info->experiment, info->model, info->backend, info->budget};
    const char **dst[4] = {&m->info.experiment, &m->info.model, &m->info.backend, &m->info.budget};
    for (int i = 0; i < 4; i++) {
        if (!src[i]) continue;
        snprintf(m->strs[i], sizeof m->strs[i], "%s", src[i]);
        *dst[i] = m->strs[i];
    }
    send_msg(d, m);
}

void dash_declare_knob(Dash *d, const char *name, double value, double min, double max,
                       double step) {
    Msg *m = calloc(1, sizeof *m);
    if (!m) return;
    m->kind = MSG_KNOB;
    snprintf(m->knob.name, sizeof m->knob.name, "%s", name);
    m->knob.value = value;
    m->knob.min = min;
    m->knob.max = max;
    m->knob.step = step;
    send_msg(d, m);
}

/* Concatenates the pieces, recording each token's byte offset. */
static int join(const char *const *pieces, int n, char **text, int **off) {
    size_t len = 0;
    for (int i = 0; i < n; i++) len += pieces[i] ? strlen(pieces[i]) : 0;
    *text = malloc(len + 1);
    *off = malloc((size_t)(n + 1) * sizeof **off);
    if (!*text || !*off) return -1;
    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        (*off)[i] = (int)pos;
        size_t l = pieces[i] ? strlen(pieces[i]) : 0;
        memcpy(*text + pos, pieces[i] ? pieces[i] : "", l);
        pos += l;
    }
    (*off)[n] = (int)pos;
    (*text)[pos] = 0;
    return 0;
}

void dash_set_generation(Dash *d, int index, const DashGeneration *g) {
    Msg *m = calloc(1, sizeof *m);
    if (!m) return;
    m->kind = MSG_GEN;
    m->index = index;
    DashGen *o = &m->gen;
    o->prompt = strdup(g->prompt ? g->prompt : "");
    int bad = !o->prompt;
    bad |= join(g->teacher_pieces, g->n_teacher, &o->text[0], &o->off[0]);
    bad |= join(g->student_pieces, g->n_student, &o->text[1], &o->off[1]);
    if (bad) {
        msg_free(m);
        return;
    }
    o->n[0] = g->n_teacher;
    o->n[1] = g->n_student;
    while (o->prefix < g->n_teacher && o->prefix < g->n_student &&
           g->teacher_ids[o->prefix] == g->student_ids[o->prefix])
        o->prefix++;
    send_msg(d, m);
}

void dash_set_prompt(Dash *d, int index, const char *prompt) {
    Msg *m = calloc(1, sizeof *m);
    if (!m) return;
    m->kind = MSG_PROMPT;
    m->index = index;
    if (!(m->line = strdup(prompt ? prompt : ""))) {
        free(m);
        return;
    }
    send_msg(d, m);
}

void dash_worker_done(Dash *d) {
    Msg *m = calloc(1, sizeof *m);
    if (!m) return;
    m->kind = MSG_DONE;
    send_msg(d, m);
}

// ----------------------------------------------------------------------------
// commands: UI → worker

typedef enum { CI_USER, CI_PAUSE, CI_RESUME, CI_STEP } CmdKind;

typedef struct {
    CmdKind kind;
    DashCmd cmd;
} CmdItem;

static void emit(Dash *d, CmdKind kind, const DashCmd *cmd) {
    CmdItem *c = calloc(1, sizeof *c);
    if (!c) return;
    c->kind = kind;
    if (cmd) c->cmd = *cmd;
    if (uiq_push(d->cmds, c)) free(c);
}

void dash_emit(Dash *d, const DashCmd *cmd) { emit(d, CI_USER, cmd); }
void dash_emit_pause(Dash *d, bool paused) { emit(d, paused ? CI_PAUSE : CI_RESUME, NULL); }
void dash_emit_step(Dash *d) { emit(d, CI_STEP, NULL); }

bool dash_next_command(Dash *d, DashCmd *cmd) {
    for (;;) {
        /* paused with no step granted: wait (in slices, so a lost wake-up
         * costs at most one slice) */
        bool wait = d->worker_paused && d->step_credit == 0;
        CmdItem *c = uiq_pop(d->cmds, wait ? 200 : 0);
        if (!c) {
            if (wait) continue;
            if (d->step_credit > 0) d->step_credit--;
            return false;
        }
        CmdKind k = c->kind;
        if (k == CI_USER) *cmd = c->cmd;
        free(c);
        switch (k) {
        case CI_PAUSE: d->worker_paused = true; break;
        case CI_RESUME: d->worker_paused = false; d->step_credit = 0; break;
        case CI_STEP: d->step_credit += d->worker_paused; break;
        case CI_USER: return true;
        }
    }
}

// ----------------------------------------------------------------------------
// create / destroy

int dash_create(Dash **out, const DashConfig *cfg, BlError *err) {
    *out = NULL;
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
        return bl_fail(err, "dashboard: stdin/stdout is not a terminal (use --headless)");
    /* curses draws Braille only in a UTF-8 locale: take the user's, or C.UTF-8 */
    const char *loc = setlocale(LC_CTYPE, "");
    if (!loc || (!strstr(loc, "UTF-8") && !strstr(loc, "utf8"))) setlocale(LC_CTYPE, "C.UTF-8");
    Dash *d = bl_calloc(1, sizeof *d, err);
    if (!d) return -1;
    d->in = uiq_create();
    d->cmds = uiq_create();
    if (!d->in || !d->cmds) {
        uiq_destroy(d->in, NULL);
        uiq_destroy(d->cmds, NULL);
        free(d);
        return bl_fail(err, "dashboard: out of memory");
    }
    dash_state_init(&d->st);
    static const PanelClass *const CLS[P_COUNT] = {&HeaderPanel, &LossPanel, &EvalPanel,
                                                   &SchedPanel,  &GradPanel, &KnobPanel,
                                                   &GenPanel,    &EventPanel};
    for (int i = 0; i < P_COUNT; i++) d->panels[i].cls = CLS[i];
    /* initscr() would exit() on an unknown terminal; newterm reports it */
    if (!(d->screen = newterm(NULL, stdout, stdin))) {
        dash_destroy(d);
        return bl_fail(err, "dashboard: cannot start curses (TERM=%s)", getenv("TERM"));
    }
    set_term(d->screen);
    cbreak();
    noecho();
    nonl(); /* Enter arrives as '\r' and is told apart from Ctrl-J */
    keypad(stdscr, TRUE);
    curs_set(0);
    set_escdelay(25);
    d->st.color = ui_colors_init(cfg && cfg->monochrome);
    d->dirty = d->full_redraw = true;
    *out = d;
    return 0;
}

void dash_destroy(Dash *d) {
    if (!d) return;
    if (d->screen) {
        if (!isendwin()) endwin();
        delscreen(d->screen);
    }
    uiq_destroy(d->in, msg_free);
    uiq_destroy(d->cmds, free);
    dash_state_free(&d->st);
    free(d);
}

// ----------------------------------------------------------------------------
// layout and drawing

static void place(Panel *p, int y, int x, int h, int w) {
    p->y = y;
    p->x = x;
    p->h = h > 0 && w > 0 ? h : 0;
    p->w = w;
}

/* Header (3 rows) and key bar (1) around a body: losses top-left (the
 * held-out curves under them while shown), λ/LR and gradients top-right;
 * generations bottom-left, knobs and events bottom-right. */
static void layout(Dash *d) {
    int H = LINES, W = COLS, bh = H - 4;
    Panel *P = d->panels;
    place(&P[P_HEADER], 0, 0, 3, W);
    int th = bh * 11 / 20, bb = bh - th, lw = W * 3 / 5, rw = W - lw;
    /* the held-out panel: 2/5 of the losses' rows, at least 5 (one chart and its axis) */
    int eh = dash_eval_shown(&d->st) ? (th * 2 / 5 < 5 ? 5 : th * 2 / 5) : 0;
    place(&P[P_LOSS], 3, 0, th - eh, lw);
    place(&P[P_EVAL], 3 + th - eh, 0, eh, lw);
    place(&P[P_SCHED], 3, lw, 4, rw);
    place(&P[P_GRAD], 7, lw, th - 4, rw);
    int gw = W * 3 / 5;
    int kh = d->st.n_knobs + 2;
    if (kh < 3) kh = 3;
    if (kh > bb / 2) kh = bb / 2;
    place(&P[P_GEN], 3 + th, 0, bb, gw);
    place(&P[P_KNOB], 3 + th, gw, kh, W - gw);
    place(&P[P_EVENT], 3 + th + kh, gw, bb - kh, W - gw);
}

static void keybar(const DashState *s) {
    int y = LINES - 1, x = 0;
    move(y, 0);
    clrtoeol();
    if (s->mode == MODE_EDIT_KNOB || s->mode == MODE_EDIT_PROMPT) {
        char label[96];
        if (s->mode == MODE_EDIT_KNOB)
            snprintf(label, sizeof label, " %s = ", s->n_knobs ? s->knobs[s->sel_knob].name : "?");
        else snprintf(label, sizeof label, " prompt: ");
        x += ui_put(stdscr, y, x, COLS, ui_attr(ROLE_TITLE), label);
        /* the end of the line when it is longer than the screen */
        const char *t = s->edit;
        while (ui_width(t) > COLS - x - 20 && *t) t++;
        while ((*t & 0xC0) == 0x80) t++;
        x += ui_put(stdscr, y, x, COLS - x, ui_attr(ROLE_VALUE), t);
        x += ui_put(stdscr, y, x, COLS - x, A_REVERSE, " ");
        ui_put(stdscr, y, x + 1, COLS - x - 1, ui_attr(ROLE_DIM), "⏎ apply · ^U clear · Esc cancel");
        return;
    }
    static const char *const BAR[][2] = {{"space", "pause"}, {"n", "step"}, {"g", "gen"},
                                         {"r", "rotate"}, {"s", "save"}, {"l", "log"},
                                         {"+-", "ema"},    {"?", "help"}, {"q", "quit"},
                                         {"v", "eval"}};
    /* whole entries only, in order of need: at 80 columns the last one (v)
     * does not fit, and the help lists every key anyway */
    for (size_t i = 0; i < sizeof BAR / sizeof BAR[0] && x < COLS; i++) {
        if (x + ui_width(BAR[i][0]) + 1 + ui_width(BAR[i][1]) > COLS) break;
        x += ui_put(stdscr, y, x, COLS - x, ui_attr(ROLE_TITLE), BAR[i][0]) + 1;
        x += ui_put(stdscr, y, x, COLS - x, ui_attr(ROLE_DIM), BAR[i][1]) + 2;
    }
    if (s->status[0] && x + 4 < COLS) ui_put(stdscr, y, x + 1, COLS - x - 1, ui_attr(ROLE_WARN), s->status);
}

/* A centred box with lines of text. */
static void centred_box(const char *title, const char *const *lines, int n) {
    int w = ui_width(title) + 4;
    for (int i = 0; i < n; i++)
        if (ui_width(lines[i]) + 4 > w) w = ui_width(lines[i]) + 4;
    if (w > COLS) w = COLS;
    int h = n + 2 < LINES ? n + 2 : LINES, y = (LINES - h) / 2, x = (COLS - w) / 2;
    Panel p = {.y = y, .x = x, .h = h, .w = w};
    for (int r = 0; r < h; r++) mvhline(y + r, x, ' ', w);
    ui_frame(stdscr, &p, title, NULL);
    for (int i = 0; i < n && i < h - 2; i++) ui_put(stdscr, y + 1 + i, x + 2, w - 4, A_NORMAL, lines[i]);
}

static void help(void) {
    char buf[40][96];
    const char *lines[40];
    int n = 0;
    for (const DashKey *k = DASH_KEYS; k->key && n < 40; k++) {
        if (!k->label) continue;
        snprintf(buf[n], sizeof buf[n], "%-8s %s", k->label, k->help);
        /* %-8s pads bytes, not columns: re-pad the arrows' multibyte labels */
        int pad = 9 - ui_width(k->label);
        snprintf(buf[n], sizeof buf[n], "%s%*s%s", k->label, pad > 1 ? pad : 1, "", k->help);
        lines[n] = buf[n];
        n++;
    }
    lines[n++] = "";
    lines[n++] = "any key closes this help";
    centred_box("keys", lines, n);
}

/* The script error with its traceback, over everything until a key. */
static void error_box(const DashState *s) {
    char buf[sizeof s->error];
    const char *lines[48];
    int n = 0, max = LINES - 6 < 45 ? LINES - 6 : 45;
    snprintf(buf, sizeof buf, "%s", s->error);
    for (char *t = buf, *nl; t && n < max; t = nl) {
        nl = strchr(t, '\n');
        if (nl) *nl++ = 0;
        for (char *c = t; *c; c++) /* a traceback's tabs would move the cursor */
            if (*c == '\t') *c = ' ';
        lines[n++] = t;
    }
    lines[n++] = "";
    lines[n++] = "training is paused · any key closes this · q quits (checkpoint optional)";
    centred_box("script error", lines, n);
}

static void render(Dash *d) {
    if (d->full_redraw) clearok(curscr, TRUE);
    d->full_redraw = false;
    erase();
    if (COLS < 60 || LINES < 16) {
        ui_put(stdscr, 0, 0, COLS, A_BOLD, "bitlab: terminal too small (need 60×16)");
    } else {
        layout(d);
        for (int i = 0; i < P_COUNT; i++) {
            Panel *p = &d->panels[i];
            if (p->h > 0) p->cls->draw(p, stdscr, &d->st);
        }
        keybar(&d->st);
        if (d->st.mode == MODE_HELP) help();
        if (d->st.mode == MODE_ERROR) error_box(&d->st);
        if (d->st.mode == MODE_QUIT_ASK) {
            const char *q[] = {"Save a checkpoint before quitting?", "", "y  yes, save and quit",
                               "n  quit without saving", "Esc  keep running"};
            centred_box("quit", q, 5);
        }
    }
    refresh();
    d->last_draw = dash_now();
    d->dirty = false;
}

// ----------------------------------------------------------------------------
// the UI loop

static void apply_msg(Dash *d, Msg *m) {
    DashState *s = &d->st;
    switch (m->kind) {
    case MSG_LINE:
        if (dash_state_line(s, m->line, dash_now()) && !s->paused) {
            s->paused = true; /* a script error: stop and let the user decide */
            dash_emit_pause(d, true);
            if (s->mode == MODE_NORMAL || s->mode == MODE_HELP) s->mode = MODE_ERROR;
            snprintf(s->status, sizeof s->status, "script error — paused (q quits, checkpoint optional)");
        }
        break;
    case MSG_INFO: dash_state_info(s, &m->info); break;
    case MSG_KNOB: dash_state_knob(s, &m->knob); break;
    case MSG_GEN:
        dash_state_gen(s, m->index, &m->gen);
        memset(&m->gen, 0, sizeof m->gen); /* now owned by the state */
        s->status[0] = 0;                     /* "generating…" is answered */
        break;
    case MSG_PROMPT: dash_state_prompt(s, m->index, m->line); break;
    case MSG_DONE:
        s->worker_done = true;
        if (s->mode == MODE_QUITTING) d->quit_now = true;
        else snprintf(s->status, sizeof s->status, "run finished — q exits");
        break;
    }
    msg_free(m);
    d->dirty = true;
}

/* Edit-line keys; Enter commits through knob_commit / gen_commit. */
static void edit_key(Dash *d, wint_t wc, bool fkey) {
    DashState *s = &d->st;
    size_t len = strlen(s->edit);
    if (!fkey && (wc == '\r' || wc == '\n')) {
        DashMode m = s->mode;
        s->mode = MODE_NORMAL;
        if (m == MODE_EDIT_KNOB) knob_commit(d, s->edit);
        else gen_commit(d, s->edit);
    } else if (!fkey && wc == 27) {
        s->mode = MODE_NORMAL;
    } else if (!fkey && wc == 21) { /* Ctrl-U, as in a shell: start the line over */
        s->edit[0] = 0;
    } else if ((fkey && wc == KEY_BACKSPACE) || (!fkey && (wc == 127 || wc == 8))) {
        while (len > 0 && (s->edit[len - 1] & 0xC0) == 0x80) len--; /* a whole UTF-8 character */
        if (len > 0) len--;
        s->edit[len] = 0;
    } else if (!fkey && wc >= 32) {
        char mb[MB_LEN_MAX];
        mbstate_t st;
        memset(&st, 0, sizeof st);
        size_t n = wcrtomb(mb, (wchar_t)wc, &st);
        if (n != (size_t)-1 && len + n < sizeof s->edit) {
            memcpy(s->edit + len, mb, n);
            s->edit[len + n] = 0;
        }
    }
}

static void on_key(Dash *d, wint_t wc, bool fkey) {
    DashState *s = &d->st;
    int key = (int)wc;
    d->dirty = true;
    if (fkey && key == KEY_RESIZE) {
        d->full_redraw = true;
        return;
    }
    switch (s->mode) {
    case MODE_HELP:
    case MODE_ERROR: s->mode = MODE_NORMAL; return;
    case MODE_QUIT_ASK:
        if (!fkey && (key == 'y' || key == 'Y' || key == 'n' || key == 'N')) {
            DashCmd c = {.type = DASH_CMD_QUIT, .checkpoint = key == 'y' || key == 'Y'};
            dash_emit(d, &c);
            s->mode = MODE_QUITTING;
            snprintf(s->status, sizeof s->status, "%s", c.checkpoint ? "saving a checkpoint and stopping…" : "stopping…");
        } else if (!fkey && (key == 27 || key == 'q')) {
            s->mode = MODE_NORMAL;
        }
        return;
    case MODE_EDIT_KNOB:
    case MODE_EDIT_PROMPT: edit_key(d, wc, fkey); return;
    case MODE_QUITTING:
        if (!fkey && key == 12) d->full_redraw = true;
        return;
    case MODE_NORMAL: break;
    }
    s->status[0] = 0;
    int flags = dash_key(d, key);
    if (flags & PK_REDRAW) d->full_redraw = true;
}

bool dash_poll(Dash *d, int timeout_ms) {
    double end = dash_now() + timeout_ms / 1000.0;
    for (;;) {
        Msg *m;
        while ((m = uiq_pop(d->in, 0))) apply_msg(d, m);
        double now = dash_now();
        /* the clock in the header moves even when nothing arrives */
        if (now - d->last_draw >= 1.0) d->dirty = true;
        if (d->dirty && now - d->last_draw >= FRAME_S) render(d);
        if (d->quit_now) return false;
        double left = end - now;
        if (left <= 0) return true;
        int wait = (int)(left * 1000) < KEY_WAIT_MS ? (int)(left * 1000) : KEY_WAIT_MS;
        timeout(wait > 0 ? wait : 1);
        wint_t wc;
        int rc = get_wch(&wc);
        if (rc != ERR) on_key(d, wc, rc == KEY_CODE_YES);
    }
}
