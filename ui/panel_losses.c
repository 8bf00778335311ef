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

static double series_min(const ChartSeries *s) {
    double m = NAN;
    for (int i = 0; i < s->n; i++)
        if (isfinite(s->val[i]) && (isnan(m) || s->val[i] < m)) m = s->val[i];
    return m;
}

/* Whether a term ever had a nonzero value: records carry every term, and one
 * the loss mix leaves out stays exactly 0 (a chart of it only takes rows). */
static bool active(const DashLoss *l) {
    for (int i = 0; i < l->s.n; i++)
        if (isfinite(l->s.val[i]) && l->s.val[i] != 0.0) return true;
    return false;
}

/* The first stored index whose step is >= step (the series' steps rise). */
static int index_of_step(const ChartSeries *s, long step) {
    int lo = 0, hi = s->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (s->step[mid] < step) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void axis(WINDOW *w, int y, int x, int cw, const ChartSeries *s, const DashState *st) {
    ui_hline(w, y, x, cw, ui_attr(ROLE_BORDER));
    if (!s->n) return;
    for (int r = 0; r < st->n_rot; r++) {
        int i = index_of_step(s, st->rot[r]);
        if (i >= s->n) continue;
        int c = chart_column_of(i, s->n, 2 * cw) / 2;
        ui_put(w, y, x + c, 1, ui_attr(ROLE_MARK), "▲");
    }
    char a[24], b[24];
    snprintf(a, sizeof a, "%ld", s->step[0]);
    snprintf(b, sizeof b, "%ld", s->step[s->n - 1]);
    ui_put(w, y, x, cw, ui_attr(ROLE_DIM), a);
    int bw = (int)strlen(b), last_col = s->n >= 2 * cw ? cw - 1 : (s->n - 1) / 2;
    int bx = x + last_col - bw + 1;
    if (bx < x + (int)strlen(a) + 1) bx = x + (int)strlen(a) + 1;
    if (bx + bw <= x + cw) ui_put(w, y, bx, bw, ui_attr(ROLE_DIM), b);
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
        char v[32], line[64];
        int lx = x + cw + 1;
        ui_fmt_num(v, sizeof v, chart_series_last(&l->s));
        int used = ui_put(w, cy, lx, LABEL_W, ui_attr(role) | A_BOLD, l->name);
        ui_put(w, cy, lx + used + 1, LABEL_W - used - 1, ui_attr(ROLE_VALUE), v);
        ui_fmt_num(v, sizeof v, series_min(&l->s));
        snprintf(line, sizeof line, "min %s", v);
        ui_put(w, cy + 1, lx, LABEL_W, ui_attr(ROLE_DIM), line);
        if (h >= 3) {
            char lo[16], hi[16];
            ui_fmt_num(lo, sizeof lo, sc.lo);
            ui_fmt_num(hi, sizeof hi, sc.hi);
            snprintf(line, sizeof line, "%s…%s", lo, hi);
            ui_put(w, cy + 2, lx, LABEL_W, ui_attr(ROLE_DIM), line);
        }
        cy += h;
    }
    axis(w, y + ih - 1, x, cw, &s->loss[shown[n - 1]].s, s);
    ui_put(w, y + ih - 1, x + cw + 1, LABEL_W, ui_attr(ROLE_MARK), s->n_rot ? "▲ rotation" : "");
}

const PanelClass LossPanel = {.name = "losses", .draw = draw, .key = NULL};
