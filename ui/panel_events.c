/* panel_events.c - the latest events, newest at the bottom: rotations,
 * checkpoints, knob changes, held-out evaluations, non-finite skips,
 * warnings and script errors
 * (each line of a traceback is its own line, and error, warning and eval
 * lines wrap rather than being cut, so the message, its advice, the whole
 * traceback and every measure stay readable). */
#define _XOPEN_SOURCE 700
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <wchar.h>

#include "ui/dash_internal.h"

/* Bytes of text that fit in cw screen columns (at least one character, so
 * wrapping always advances). */
static int fit(const char *text, int cw) {
    mbstate_t st;
    memset(&st, 0, sizeof st);
    int len = (int)strlen(text), pos = 0, cols = 0;
    while (pos < len) {
        wchar_t wc;
        size_t n = mbrtowc(&wc, text + pos, (size_t)(len - pos), &st);
        if (n == (size_t)-1 || n == (size_t)-2 || n == 0) { /* a broken byte counts as one column */
            memset(&st, 0, sizeof st);
            n = 1;
            wc = L'?';
        }
        int w = wcwidth(wc);
        if (w < 0) w = 1;
        if (cols + w > cw && pos > 0) break;
        cols += w;
        pos += (int)n;
    }
    return pos;
}

/* errors and warnings say what to do; an evaluation's measures are read
 * side by side: all of them wrap rather than being cut at the panel's edge */
static bool wraps(const DashEventLine *e) {
    return e->kind == EV_ERROR || e->kind == EV_WARN || e->kind == EV_EVAL;
}

static int rows_of(const DashEventLine *e, int cw) {
    if (!wraps(e) || cw <= 0) return 1;
    int rows = 0;
    for (const char *t = e->text; *t || rows == 0; t += fit(t, cw)) {
        rows++;
        if (!*t) break;
    }
    return rows;
}

static void draw(Panel *p, WINDOW *w, const DashState *s) {
    char note[32];
    snprintf(note, sizeof note, "%d", s->n_ev);
    ui_frame(w, p, "events", note);
    int rows = p->h - 2, cw = p->w - 2;
    static const UiRole ROLE_OF[] = {[EV_INFO] = ROLE_NORMAL, [EV_ROTATION] = ROLE_MARK,
                                     [EV_CHECKPOINT] = ROLE_GOOD, [EV_KNOB] = ROLE_TITLE,
                                     [EV_SKIP] = ROLE_WARN, [EV_EVAL] = ROLE_VALUE,
                                     [EV_WARN] = ROLE_WARN,
                                     [EV_ERROR] = ROLE_BAD};
    /* the newest events that fit, counting wrapped rows from the bottom */
    int first = s->n_ev, used = 0;
    while (first > 0) {
        int r = rows_of(&s->ev[(s->ev_first + first - 1) % DASH_EVENT_LINES], cw);
        if (used + r > rows && used > 0) break;
        used += r;
        first--;
    }
    int y = p->y + 1 + (used > rows ? rows - used : 0); /* a lone overlong event: its end shows */
    for (int i = first; i < s->n_ev; i++) {
        const DashEventLine *e = &s->ev[(s->ev_first + i) % DASH_EVENT_LINES];
        attr_t a = ui_attr(ROLE_OF[e->kind]);
        if (!wraps(e)) {
            ui_put(w, y++, p->x + 1, cw, a, e->text);
            continue;
        }
        char line[512];
        const char *t = e->text;
        do {
            int n = fit(t, cw);
            snprintf(line, sizeof line, "%.*s", n, t);
            if (y > p->y) ui_put(w, y, p->x + 1, cw, a, line);
            y++;
            t += n;
        } while (*t);
    }
    if (!s->n_ev) ui_put(w, p->y + 1, p->x + 2, p->w - 3, ui_attr(ROLE_DIM), "none yet");
}

const PanelClass EventPanel = {.name = "events", .draw = draw, .key = NULL};
