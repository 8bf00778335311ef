/* panel_sched.c - λ and the learning rate over the run as sparklines, so
 * the λ ramp and ReLoRA's LR restarts are visible at a glance. */
#define _XOPEN_SOURCE 700
#include "ui/dash_internal.h"

static void line(WINDOW *w, const Panel *p, int y, const char *label, const ChartSeries *s,
                 UiRole role) {
    char v[32];
    ui_fmt_num(v, sizeof v, chart_series_last(s));
    int x = p->x + 1, end = p->x + p->w - 1;
    ui_put(w, y, x, 3, ui_attr(ROLE_DIM), label);
    int vw = 9;
    ui_sparkline(w, y, x + 3, end - x - 3 - vw - 1, s, ui_attr(role));
    ui_put(w, y, end - vw, vw, ui_attr(ROLE_VALUE), v);
}

static void draw(Panel *p, WINDOW *w, const DashState *s) {
    ui_frame(w, p, "λ · lr", NULL);
    if (p->h >= 3) line(w, p, p->y + 1, "λ", &s->lambda_s, ROLE_SERIES0 + 3);
    if (p->h >= 4) line(w, p, p->y + 2, "lr", &s->lr_s, ROLE_SERIES0 + 2);
}

const PanelClass SchedPanel = {.name = "schedule", .draw = draw, .key = NULL};
