/* panel_eval.c - the held-out curves, under the losses: KL(teacher‖student)
 * and the student / teacher perplexity ratio of every "eval" event
 * (bitlab.eval, which the training loop calls every eval.every steps), one
 * point per evaluation, against step. KL first: it is the quantity the
 * distillation minimises, measured on text the student never trains on, so
 * its gap to the training kl curve above is the overfitting signal; the
 * perplexity ratio (1 = the teacher's) says what the gap costs in quality.
 * Drawn on the losses' x axis, a line joining the evaluations; no
 * smoothing: each point is already a mean over the whole held-out set.
 * It appears with the first eval record; `v` hides and shows it. */
#define _XOPEN_SOURCE 700
#include <stdio.h>
#include <stdlib.h>

#include "ui/dash_internal.h"

#define LABEL_W 16

/* One held-out series drawn at the columns' steps (NaN outside the
 * evaluated range), labelled with its own last value and minimum. */
static void series(WINDOW *w, int y, int x, int cw, int h, const char *name, const ChartSeries *ev,
                   const ChartSeries *cols, bool log_scale, UiRole role) {
    ChartScale sc = {0.0, 1.0, log_scale};
    double *val = malloc((size_t)(cols->n ? cols->n : 1) * sizeof *val);
    if (val) {
        chart_series_at(ev, cols->step, cols->n, val);
        ChartSeries at = {.step = cols->step, .val = val, .n = cols->n};
        ui_chart(w, y, x, cw, h, &at, 0.0, log_scale, ui_attr(role), &sc);
    }
    free(val);
    ui_chart_labels(w, y, x + cw + 1, h, LABEL_W, name, chart_series_last(ev), chart_series_min(ev),
                    &sc, role);
}

static void draw(Panel *p, WINDOW *w, const DashState *s) {
    int iw = p->w - 2, ih = p->h - 2, x = p->x + 1, y = p->y + 1;
    int cw = iw - LABEL_W - 1, n_eval = s->eval_kl.n;
    char note[48];
    snprintf(note, sizeof note, "%d eval%s · v hides", n_eval, n_eval == 1 ? "" : "s");
    ui_frame(w, p, "held-out eval", note);
    if (!n_eval) {
        ui_put(w, y, x + 1, iw - 1, ui_attr(ROLE_DIM), "no eval records yet (bitlab.eval logs one)");
        return;
    }
    if (cw < 8 || ih < 3) return;
    /* the x axis of the losses above (every loss series has the same steps),
     * so an evaluation sits under the training step it was made at; with no
     * step records, the evaluations' own */
    const ChartSeries *ref = s->n_loss ? &s->loss[0].s : &s->eval_kl;
    long *steps = malloc((size_t)cw * 2 * sizeof *steps);
    if (!steps) return;
    ChartSeries cols = {.step = steps, .n = chart_column_steps(ref, 2 * cw, steps)};
    const struct {
        const char *name;
        const ChartSeries *s;
        UiRole role;
    } SERIES[] = {{"KL", &s->eval_kl, ROLE_SERIES0 + 1}, /* the colour of the losses' kl */
                  {"ppl ratio", &s->eval_ratio, ROLE_SERIES0 + 3}};
    int n = (ih - 1) / 2 >= 2 ? 2 : 1; /* 2 rows each at least; KL when only one fits */
    int rh = (ih - 1) / n, extra = (ih - 1) % n, cy = y;
    for (int k = 0; k < n; k++) {
        int h = rh + (k < extra);
        series(w, cy, x, cw, h, SERIES[k].name, SERIES[k].s, &cols, s->log_scale, SERIES[k].role);
        cy += h;
    }
    ui_step_axis(w, y + ih - 1, x, cw, ref, s);
    free(steps);
}

/* v: shows or hides it; from then on the user's choice holds */
static int key(Panel *p, Dash *d, int ch) {
    (void)p;
    (void)ch;
    DashState *s = &d->st;
    s->eval_view = !dash_eval_shown(s);
    snprintf(s->status, sizeof s->status, "held-out eval panel %s", s->eval_view ? "shown" : "hidden");
    return PK_HANDLED | PK_REFRESH;
}

const PanelClass EvalPanel = {.name = "eval", .draw = draw, .key = key};
