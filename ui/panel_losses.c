/* panel_losses.c - one Braille line chart per loss term, stacked, sharing
 * one x axis (the whole run compressed to the panel width) on which adapter
 * rotations are marked. Beside each chart: the last raw value, the minimum
 * and the y range; the title says the smoothing, the scale and how many
 * non-finite points were left out. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ui/dash_internal.h"

#define LABEL_W 16

/* Whether a term ever had a nonzero value: records carry every term, and one
 * the loss mix leaves out stays exactly 0 (a chart of it only takes rows). */
static bool active(const DashLoss *l) {
    for (int i = 0; i < l->s.n; i++)
        if (isfinite(l->s.val[i]) && l->s.val[i] != 0.0) return true;
    return false;
}

static void draw(Panel *p, WINDOW *w, const DashState *s) {
    int iw = p->w - 2, ih = p->h - 2, x = p->x + 1, y = p->y + 1;
    int cw = iw - LABEL_W - 1;
    long skipped = 0;
    for (int i = 0; i < s->n_loss; i++)
        for (int j = 0; j < s->loss[i].s.n; j++) skipped += !isfinite(s->loss[i].s.val[j]);
    char note[64];
    snprintf(note, sizeof note, "EMA %.3g · %s%s", s->ema_beta, s->log_scale ? "log" : "linear",
             skipped ? " · " : "");
    if (skipped) snprintf(note + strlen(note), sizeof note - strlen(note), "%ld NaN skipped", skipped);
    ui_frame(w, p, "losses", note);
    if (!s->n_loss || cw < 8 || ih < 3) {
        ui_put(w, y, x + 1, iw - 1, ui_attr(ROLE_DIM), "waiting for the first step…");
        return;
    }
    /* which terms fit (2 rows each at least): the total always, then the
     * active terms in order; inactive ones only while nothing is active */
    int fit = (ih - 1) / 2, shown[DASH_MAX_LOSSES], n = 0;
    if (fit > s->n_loss) fit = s->n_loss;
    bool has_total = false;
    for (int i = 0; i < s->n_loss; i++) has_total |= strcmp(s->loss[i].name, "total") == 0;
    for (int i = 0; i < s->n_loss && n < fit - has_total; i++)
        if (strcmp(s->loss[i].name, "total") != 0 && active(&s->loss[i])) shown[n++] = i;
    for (int i = 0; i < s->n_loss && n < fit; i++)
        if (strcmp(s->loss[i].name, "total") == 0) shown[n++] = i;
    if (n == 0)
        for (int i = 0; i < s->n_loss && n < fit; i++) shown[n++] = i;
    int rh = (ih - 1) / n, extra = (ih - 1) % n, cy = y;
    for (int k = 0; k < n; k++) {
        const DashLoss *l = &s->loss[shown[k]];
        int h = rh + (k < extra);
        UiRole role = strcmp(l->name, "total") == 0 ? ROLE_SERIES0 + 5 : ROLE_SERIES0 + shown[k] % 5;
        ChartScale sc = {0.0, 1.0, s->log_scale};
        ui_chart(w, cy, x, cw, h, &l->s, s->ema_beta, s->log_scale, ui_attr(role), &sc);
        ui_chart_labels(w, cy, x + cw + 1, h, LABEL_W, l->name, chart_series_last(&l->s),
                        chart_series_min(&l->s), &sc, role);
        cy += h;
    }
    ui_step_axis(w, y + ih - 1, x, cw, &s->loss[shown[n - 1]].s, s);
    ui_put(w, y + ih - 1, x + cw + 1, LABEL_W, ui_attr(ROLE_MARK), s->n_rot ? "▲ rotation" : "");
}

const PanelClass LossPanel = {.name = "losses", .draw = draw, .key = NULL};
