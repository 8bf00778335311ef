/* panel_knobs.c - the script's knobs with value and range: ↑/↓ select,
 * ←/→ change by the knob's step, Enter types a value. A change is sent to
 * the worker (it applies at the next step boundary) and shown with a `*`
 * until the metrics stream reports the knob's new value. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ui/dash_internal.h"

static void draw(Panel *p, WINDOW *w, const DashState *s) {
    ui_frame(w, p, "knobs", "↑↓ ←→ ⏎");
    int rows = p->h - 2, iw = p->w - 2;
    if (!s->n_knobs) {
        ui_put(w, p->y + 1, p->x + 2, iw - 1, ui_attr(ROLE_DIM), "none declared");
        return;
    }
    int first = s->sel_knob >= rows ? s->sel_knob - rows + 1 : 0;
    for (int r = 0; r < rows && first + r < s->n_knobs; r++) {
        int i = first + r;
        const DashKnob *k = &s->knobs[i];
        char v[32], lo[16], hi[16], range[48], line[160];
        ui_fmt_num(v, sizeof v, k->value);
        ui_fmt_num(lo, sizeof lo, k->min);
        ui_fmt_num(hi, sizeof hi, k->max);
        if (isnan(k->min) && isnan(k->max)) range[0] = 0;
        else snprintf(range, sizeof range, "[%s,%s]", lo, hi);
        bool sel = i == s->sel_knob;
        int vw = (int)strlen(v) + 1, rw = ui_width(range), nw = iw - 2 - vw - rw - 2;
        if (nw < 4) { /* a narrow panel drops the range first */
            range[0] = 0;
            nw = iw - 2 - vw - 1;
        }
        snprintf(line, sizeof line, "%s%-*.*s %*s%s %s", sel ? "▸" : " ", nw, nw, k->name,
                 vw - 1, v, k->pending ? "*" : " ", range);
        if (sel) { /* the selected row reversed across the whole width */
            wattron(w, ui_attr(ROLE_SEL));
            mvwhline(w, p->y + 1 + r, p->x + 1, ' ', iw);
            wattroff(w, ui_attr(ROLE_SEL));
        }
        ui_put(w, p->y + 1 + r, p->x + 1, iw, sel ? ui_attr(ROLE_SEL) : ui_attr(ROLE_NORMAL), line);
    }
}

static void send(Dash *d, DashKnob *k, double v) {
    if (isfinite(k->min) && v < k->min) v = k->min;
    if (isfinite(k->max) && v > k->max) v = k->max;
    DashCmd c = {.type = DASH_CMD_KNOB, .value = v};
    snprintf(c.name, sizeof c.name, "%s", k->name);
    dash_emit(d, &c);
    k->value = v;
    k->pending = true;
    snprintf(d->st.status, sizeof d->st.status, "%s → %g at the next step", k->name, v);
}

void knob_commit(Dash *d, const char *text) {
    DashState *s = &d->st;
    if (s->sel_knob >= s->n_knobs) return;
    char *end;
    double v = strtod(text, &end);
    while (*end == ' ') end++;
    if (end == text || *end || !isfinite(v)) {
        snprintf(s->status, sizeof s->status, "not a number: %.60s", text);
        return;
    }
    send(d, &s->knobs[s->sel_knob], v);
}

static int key(Panel *p, Dash *d, int ch) {
    (void)p;
    DashState *s = &d->st;
    if (!s->n_knobs) return PK_HANDLED;
    DashKnob *k = &s->knobs[s->sel_knob];
    switch (ch) {
    case KEY_UP:
        s->sel_knob = (s->sel_knob + s->n_knobs - 1) % s->n_knobs;
        return PK_HANDLED | PK_REFRESH;
    case KEY_DOWN:
        s->sel_knob = (s->sel_knob + 1) % s->n_knobs;
        return PK_HANDLED | PK_REFRESH;
    case KEY_LEFT:
    case KEY_RIGHT: {
        if (!isfinite(k->value)) return PK_HANDLED;
        /* without a declared step, 10% of the value (0.1 at zero) */
        double st = isfinite(k->step) && k->step > 0 ? k->step
                    : k->value != 0            ? fabs(k->value) * 0.1
                                               : 0.1;
        send(d, k, k->value + (ch == KEY_RIGHT ? st : -st));
        return PK_HANDLED | PK_REFRESH;
    }
    default: /* Enter: type a value */
        s->mode = MODE_EDIT_KNOB;
        if (isfinite(k->value)) snprintf(s->edit, sizeof s->edit, "%g", k->value);
        else s->edit[0] = 0;
        return PK_HANDLED | PK_REFRESH;
    }
}

const PanelClass KnobPanel = {.name = "knobs", .draw = draw, .key = key};
