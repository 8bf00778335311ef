/* keys.c - every key of the dashboard in one table (the `?` help is drawn
 * from it). Actions change the state or queue a command for the worker and
 * return PK_* flags; the loop decides when to draw. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdio.h>

#include "ui/dash_internal.h"

static int act_pause(Dash *d, int key) {
    (void)key;
    d->st.paused = !d->st.paused;
    d->st.t_last_rec = NAN; /* the pause must not count as a slow step in the ETA */
    dash_emit_pause(d, d->st.paused);
    snprintf(d->st.status, sizeof d->st.status, "%s", d->st.paused ? "paused — n steps once, space resumes" : "resumed");
    return PK_HANDLED | PK_REFRESH;
}

static int act_step(Dash *d, int key) {
    (void)key;
    if (!d->st.paused) {
        snprintf(d->st.status, sizeof d->st.status, "n single-steps while paused (space pauses)");
        return PK_HANDLED | PK_REFRESH;
    }
    dash_emit_step(d);
    snprintf(d->st.status, sizeof d->st.status, "one step");
    return PK_HANDLED | PK_REFRESH;
}

static int act_command(Dash *d, int key) {
    DashCmd c = {.type = key == 'g' ? DASH_CMD_GENERATE : key == 'r' ? DASH_CMD_ROTATE : DASH_CMD_SAVE};
    dash_emit(d, &c);
    snprintf(d->st.status, sizeof d->st.status, "%s at the next step boundary",
             key == 'g' ? "generating" : key == 'r' ? "rotating the adapter" : "saving a checkpoint");
    return PK_HANDLED | PK_REFRESH;
}

static int act_knobs(Dash *d, int key) {
    Panel *p = &d->panels[P_KNOB];
    return p->cls->key(p, d, key);
}

static int act_gen(Dash *d, int key) {
    Panel *p = &d->panels[P_GEN];
    return p->cls->key(p, d, key);
}

static int act_eval(Dash *d, int key) {
    Panel *p = &d->panels[P_EVAL];
    return p->cls->key(p, d, key);
}

static int act_log(Dash *d, int key) {
    (void)key;
    d->st.log_scale = !d->st.log_scale;
    return PK_HANDLED | PK_REFRESH;
}

static int act_smooth(Dash *d, int key) {
    static const double BETAS[] = {0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999};
    int n = (int)(sizeof BETAS / sizeof BETAS[0]), i = 0;
    while (i + 1 < n && BETAS[i] < d->st.ema_beta - 1e-9) i++;
    i += key == '-' ? -1 : 1;
    d->st.ema_beta = BETAS[i < 0 ? 0 : i >= n ? n - 1 : i];
    snprintf(d->st.status, sizeof d->st.status, "smoothing: EMA β = %g", d->st.ema_beta);
    return PK_HANDLED | PK_REFRESH;
}

static int act_help(Dash *d, int key) {
    (void)key;
    d->st.mode = MODE_HELP;
    return PK_HANDLED | PK_REFRESH;
}

static int act_quit(Dash *d, int key) {
    (void)key;
    if (d->st.worker_done) d->quit_now = true; /* nothing left to checkpoint */
    else d->st.mode = MODE_QUIT_ASK;
    return PK_HANDLED | PK_REFRESH;
}

static int act_redraw(Dash *d, int key) {
    (void)d;
    (void)key;
    return PK_HANDLED | PK_REDRAW;
}

/* Entries with a NULL label share the line of the entry before them. */
const DashKey DASH_KEYS[] = {
    {' ', "space", "pause / resume training", act_pause},
    {'n', "n", "one step while paused", act_step},
    {'g', "g", "generate now (teacher and student)", act_command},
    {'r', "r", "rotate the adapter now", act_command},
    {'s', "s", "save a checkpoint now", act_command},
    {'\t', "Tab", "next prompt", act_gen},
    {'e', "e", "edit the prompt (generates for both)", act_gen},
    {KEY_UP, "↑/↓", "select a knob", act_knobs},
    {KEY_DOWN, NULL, NULL, act_knobs},
    {KEY_LEFT, "←/→", "change the knob by its step", act_knobs},
    {KEY_RIGHT, NULL, NULL, act_knobs},
    {'\n', "Enter", "type a knob value", act_knobs},
    {'\r', NULL, NULL, act_knobs},
    {KEY_ENTER, NULL, NULL, act_knobs},
    {'l', "l", "linear / log loss scale", act_log},
    {'v', "v", "show / hide the held-out eval panel", act_eval},
    {'+', "+/-", "more / less smoothing (EMA)", act_smooth},
    {'=', NULL, NULL, act_smooth},
    {'-', NULL, NULL, act_smooth},
    {'?', "?", "this help", act_help},
    {'h', NULL, NULL, act_help},
    {'q', "q", "quit (asks whether to checkpoint)", act_quit},
    {12, "Ctrl-L", "redraw the screen", act_redraw},
    {KEY_RESIZE, NULL, NULL, act_redraw},
    {0, NULL, NULL, NULL},
};

int dash_key(Dash *d, int key) {
    for (const DashKey *k = DASH_KEYS; k->key; k++)
        if (k->key == key) return k->action(d, key);
    return PK_UNHANDLED;
}
