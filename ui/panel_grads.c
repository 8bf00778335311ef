/* panel_grads.c - gradient norms: the global norm over the run (Braille),
 * and the latest step's per-block norms as vertical bars (eighth blocks),
 * with the clip and non-finite-skip counts in the title. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdio.h>

#include "ui/dash_internal.h"

static void bars(WINDOW *w, int y, int x, int cw, int ch, const DashState *s) {
    static const char *const EIGHTHS[9] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
    int n = s->n_blocks, cols = n < cw ? n : cw;
    double mx = 0.0;
    for (int i = 0; i < n; i++)
        if (isfinite(s->blocks[i]) && s->blocks[i] > mx) mx = s->blocks[i];
    for (int c = 0; c < cols; c++) {
        /* a column shows the largest norm of the blocks it covers */
        int a = (int)((long)c * n / cols), b = (int)((long)(c + 1) * n / cols);
        double v = NAN;
        for (int i = a; i < b; i++)
            if (isfinite(s->blocks[i]) && (isnan(v) || s->blocks[i] > v)) v = s->blocks[i];
        if (isnan(v)) {
            ui_put(w, y + ch - 1, x + c, 1, ui_attr(ROLE_BAD), "!");
            continue;
        }
        int level = mx > 0 ? (int)lround(v / mx * ch * 8) : 0;
        for (int r = 0; r < ch; r++) {
            int l = level - r * 8;
            l = l < 0 ? 0 : l > 8 ? 8 : l;
            ui_put(w, y + ch - 1 - r, x + c, 1, ui_attr(ROLE_SERIES0 + 1), EIGHTHS[l]);
        }
    }
}

static void draw(Panel *p, WINDOW *w, const DashState *s) {
    char note[64], clip[24] = "–";
    if (s->clipped >= 0) snprintf(clip, sizeof clip, "%ld", s->clipped);
    snprintf(note, sizeof note, "clip %s · skip %ld", clip, s->skipped);
    ui_frame(w, p, "grad norm", note);
    int iw = p->w - 2, ih = p->h - 2, x = p->x + 1, y = p->y + 1, vw = 9;
    if (ih < 1) return;
    int gh = s->n_blocks && ih >= 3 ? (ih + 1) / 2 - 1 : ih; /* rows for the global chart */
    if (gh < 1) gh = 1;
    char v[32];
    ui_chart(w, y, x, iw - vw - 1, gh, &s->gnorm_s, 0.0, false, ui_attr(ROLE_SERIES0), NULL);
    ui_fmt_num(v, sizeof v, s->grad_norm);
    ui_put(w, y, x + iw - vw, vw, ui_attr(ROLE_VALUE), v);
    int by = y + gh, bh = ih - gh - 1;
    if (!s->n_blocks || bh < 1) return;
    double mx = NAN;
    for (int i = 0; i < s->n_blocks; i++)
        if (isfinite(s->blocks[i]) && (isnan(mx) || s->blocks[i] > mx)) mx = s->blocks[i];
    ui_fmt_num(v, sizeof v, mx);
    char label[64];
    snprintf(label, sizeof label, "%d blocks, max %s", s->n_blocks, v);
    ui_put(w, by, x, iw, ui_attr(ROLE_DIM), label);
    bars(w, by + 1, x, iw, bh, s);
}

const PanelClass GradPanel = {.name = "gradients", .draw = draw, .key = NULL};
