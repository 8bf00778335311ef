/* panel_events.c - the latest events, newest at the bottom: rotations,
 * checkpoints, knob changes, non-finite skips and script errors (each line of
 * a traceback is its own line, so the whole traceback stays readable). */
#define _XOPEN_SOURCE 700
#include <stdio.h>

#include "ui/dash_internal.h"

static void draw(Panel *p, WINDOW *w, const DashState *s) {
    char note[32];
    snprintf(note, sizeof note, "%d", s->n_ev);
    ui_frame(w, p, "events", note);
    int rows = p->h - 2, first = s->n_ev > rows ? s->n_ev - rows : 0;
    static const UiRole ROLE_OF[] = {[EV_INFO] = ROLE_NORMAL, [EV_ROTATION] = ROLE_MARK,
                                     [EV_CHECKPOINT] = ROLE_GOOD, [EV_KNOB] = ROLE_TITLE,
                                     [EV_SKIP] = ROLE_WARN, [EV_ERROR] = ROLE_BAD};
    for (int i = first; i < s->n_ev; i++) {
        const DashEventLine *e = &s->ev[(s->ev_first + i) % DASH_EVENT_LINES];
        ui_put(w, p->y + 1 + i - first, p->x + 1, p->w - 2, ui_attr(ROLE_OF[e->kind]), e->text);
    }
    if (!s->n_ev) ui_put(w, p->y + 1, p->x + 2, p->w - 3, ui_attr(ROLE_DIM), "none yet");
}

const PanelClass EventPanel = {.name = "events", .draw = draw, .key = NULL};
