/* panel_header.c - the three header lines: what runs (experiment, model,
 * backend) with the backend's memory, and whether it is running; progress
 * (step / total, the budget, the bar and ETA -- dash_progress: the loop's
 * own progress / eta_seconds when its records carry them --, tokens/s,
 * elapsed, and a streamed corpus's documents, tokens and reader tok/s, or a
 * teacher source's kept / rejected answers and sampling tok/s); and
 * the student's state (λ, LR,
 * activation bits, adapter, dense ΔW, memory). */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ui/dash_internal.h"

/* Prints "label value  " segments left to right while they fit. */
static int seg(WINDOW *w, int y, int x, int end, const char *label, const char *value) {
    if (x >= end) return x;
    x += ui_put(w, y, x, end - x, ui_attr(ROLE_DIM), label);
    x += ui_put(w, y, x, end - x, ui_attr(ROLE_VALUE), value);
    return x + 2;
}

/* A data source's three figures, "label N1 unit1 N2 unit2 N3 unit3": a
 * streamed corpus's documents and tokens served and its reader's tok/s, or
 * teacher-written data's kept and rejected answers and the teacher's tok/s. */
static int source_seg(WINDOW *w, int y, int x, int end, const char *label, const double v[3],
                      const char *const unit[3]) {
    char n[3][32], c[128];
    for (int i = 0; i < 3; i++) ui_fmt_num(n[i], sizeof n[i], v[i]);
    snprintf(c, sizeof c, "%s %s %s %s %s %s", n[0], unit[0], n[1], unit[1], n[2], unit[2]);
    return seg(w, y, x, end, label, c);
}

static void draw(Panel *p, WINDOW *w, const DashState *s) {
    int y = p->y, x0 = p->x + 1, end = p->x + p->w - 1;
    char buf[400], a[48], b[48];

    /* line 1: identity and run state */
    const char *state = s->mode == MODE_QUITTING ? " STOPPING "
                        : s->worker_done        ? " FINISHED "
                        : s->paused             ? " PAUSED "
                                                : " RUNNING ";
    UiRole role = s->worker_done || s->mode == MODE_QUITTING ? ROLE_DIM
                  : s->paused                               ? ROLE_WARN
                                                            : ROLE_GOOD;
    int sw = ui_width(state);
    ui_put(w, y, end - sw, sw, ui_attr(role) | A_REVERSE, state);
    int x = x0 + ui_put(w, y, x0, end - x0, ui_attr(ROLE_TITLE), "bitlab ");
    snprintf(buf, sizeof buf, "%s · %s · %s", s->experiment[0] ? s->experiment : "–",
             s->model[0] ? s->model : "–", s->backend[0] ? s->backend : "–");
    int idend = end - sw - 1;
    x += ui_put(w, y, x, idend - x, ui_attr(ROLE_NORMAL), buf) + 2;
    /* the backend's memory once a step record brought it: held now, its peak,
     * and the device's free / total where the driver knows them */
    if (isfinite(s->dev_mem[0])) {
        ui_fmt_bytes(a, sizeof a, s->dev_mem[0]);
        x = seg(w, y, x, idend, "dev-mem ", a);
        ui_fmt_bytes(a, sizeof a, s->dev_mem[1]);
        x = seg(w, y, x, idend, "peak ", a);
        if (isfinite(s->dev_mem[3]) && s->dev_mem[3] > 0) {
            char t[48], ft[100];
            ui_fmt_bytes(b, sizeof b, s->dev_mem[2]);
            ui_fmt_bytes(t, sizeof t, s->dev_mem[3]);
            snprintf(ft, sizeof ft, "%s/%s", b, t);
            seg(w, y, x, idend, "free ", ft);
        }
    }

    /* line 2: progress */
    y++;
    x = x0;
    if (s->step < 0) snprintf(a, sizeof a, "–");
    else if (s->total_steps > 0) snprintf(a, sizeof a, "%ld/%ld", s->step, s->total_steps);
    else snprintf(a, sizeof a, "%ld", s->step);
    x = seg(w, y, x, end, "step ", a);
    if (s->budget[0]) x = seg(w, y, x, end, "budget ", s->budget);
    double f, eta;
    dash_progress(s, &f, &eta);
    if (isfinite(f) && end - x > 16) { /* a progress bar */
        int bw = (end - x) / 5 < 20 ? (end - x) / 5 : 20;
        int full = (int)lround(f * bw);
        wattron(w, ui_attr(ROLE_TITLE));
        for (int i = 0; i < bw; i++) mvwaddstr(w, y, x + i, i < full ? "█" : "░");
        wattroff(w, ui_attr(ROLE_TITLE));
        snprintf(b, sizeof b, " %3.0f%%", 100 * f);
        x += bw + ui_put(w, y, x + bw, end - x - bw, ui_attr(ROLE_NORMAL), b) + 2;
    }
    ui_fmt_duration(a, sizeof a, eta);
    x = seg(w, y, x, end, "ETA ", a);
    ui_fmt_num(a, sizeof a, s->tokens_per_s);
    x = seg(w, y, x, end, "tok/s ", a);
    ui_fmt_duration(a, sizeof a, dash_now() - s->t_start);
    x = seg(w, y, x, end, "elapsed ", a);
    static const char *const CORPUS[3] = {"docs", "tok", "tok/s"};
    static const char *const TEACHER[3] = {"kept", "rejected", "tok/s"};
    if (isfinite(s->corpus[0])) source_seg(w, y, x, end, "corpus ", s->corpus, CORPUS);
    else if (isfinite(s->teacher[0])) source_seg(w, y, x, end, "teacher ", s->teacher, TEACHER);

    /* line 3: the student and memory */
    y++;
    x = x0;
    ui_fmt_num(a, sizeof a, s->lambda);
    x = seg(w, y, x, end, "λ ", a);
    ui_fmt_num(a, sizeof a, s->lr);
    x = seg(w, y, x, end, "lr ", a);
    if (isfinite(s->act_bits)) snprintf(a, sizeof a, "%g-bit", s->act_bits);
    else snprintf(a, sizeof a, "–");
    x = seg(w, y, x, end, "act ", a);
    char na[16] = "–", rk[16] = "–";
    if (s->n_adapters > 0) snprintf(na, sizeof na, "%d", s->n_adapters);
    if (s->rank > 0) snprintf(rk, sizeof rk, "%d", s->rank);
    if (isfinite(s->adapter)) snprintf(a, sizeof a, "%g/%s r%s", s->adapter, na, rk);
    else snprintf(a, sizeof a, "–/%s r%s", na, rk);
    x = seg(w, y, x, end, "adapter ", a);
    if (isfinite(s->mem_dense)) { /* a dense ΔW trains beside the adapters: its size */
        ui_fmt_bytes(a, sizeof a, s->mem_dense);
        x = seg(w, y, x, end, "dense ", a);
    }
    static const char *const MEM[4] = {"w ", "a ", "opt ", "act "};
    x = seg(w, y, x, end, "mem", "");
    for (int i = 0; i < 4; i++) {
        ui_fmt_bytes(a, sizeof a, s->mem[i]);
        x = seg(w, y, x - 1, end, MEM[i], a);
    }
}

const PanelClass HeaderPanel = {.name = "header", .draw = draw, .key = NULL};
