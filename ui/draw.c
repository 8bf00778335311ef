/* draw.c - what every panel draws with: colour roles (256 colours, 8
 * colours, or attributes only), UTF-8 text cut to a width, frames, number
 * formats, and Braille charts / sparklines from ui/chart.h. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "ui/dash_internal.h"

static attr_t role_attr[ROLE_COUNT];

bool ui_colors_init(bool monochrome) {
    /* attributes that also read in monochrome */
    for (int r = 0; r < ROLE_COUNT; r++) role_attr[r] = A_NORMAL;
    role_attr[ROLE_DIM] = A_DIM;
    role_attr[ROLE_TITLE] = A_BOLD;
    role_attr[ROLE_VALUE] = A_BOLD;
    role_attr[ROLE_BAD] = A_BOLD | A_REVERSE;
    role_attr[ROLE_SEL] = A_REVERSE;
    role_attr[ROLE_MARK] = A_BOLD;
    if (monochrome || !has_colors() || start_color() == ERR) return false;
    use_default_colors();
    bool c256 = COLORS >= 256;
    /* role → foreground: 256-colour index, 8-colour fallback */
    static const short fg[ROLE_COUNT][2] = {
        [ROLE_NORMAL] = {-1, -1},       [ROLE_DIM] = {244, COLOR_WHITE},
        [ROLE_TITLE] = {75, COLOR_CYAN}, [ROLE_BORDER] = {239, COLOR_BLUE},
        [ROLE_VALUE] = {255, COLOR_WHITE}, [ROLE_GOOD] = {114, COLOR_GREEN},
        [ROLE_WARN] = {214, COLOR_YELLOW}, [ROLE_BAD] = {203, COLOR_RED},
        [ROLE_SEL] = {16, COLOR_BLACK},   [ROLE_MARK] = {213, COLOR_MAGENTA},
        [ROLE_SERIES0 + 0] = {81, COLOR_CYAN}, [ROLE_SERIES0 + 1] = {215, COLOR_YELLOW},
        [ROLE_SERIES0 + 2] = {150, COLOR_GREEN}, [ROLE_SERIES0 + 3] = {183, COLOR_MAGENTA},
        [ROLE_SERIES0 + 4] = {210, COLOR_RED}, [ROLE_SERIES0 + 5] = {231, COLOR_WHITE},
    };
    for (int r = 1; r < ROLE_COUNT; r++) {
        short bg = r == ROLE_SEL ? (c256 ? 75 : COLOR_CYAN) : -1;
        if (init_pair((short)r, fg[r][c256 ? 0 : 1], bg) == ERR) continue;
        attr_t extra = r == ROLE_TITLE || r == ROLE_VALUE || r == ROLE_MARK ? A_BOLD : A_NORMAL;
        if (r == ROLE_BAD) extra = A_BOLD;
        role_attr[r] = COLOR_PAIR(r) | extra;
    }
    return true;
}

attr_t ui_attr(UiRole role) {
    return role >= 0 && role < ROLE_COUNT ? role_attr[role] : A_NORMAL;
}

/* Walks UTF-8 text; returns the bytes that fit in maxw columns and their width. */
static size_t fit(const char *s, int maxw, int *width) {
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t len = strlen(s), pos = 0;
    int w = 0;
    while (pos < len) {
        wchar_t wc;
        size_t n = mbrtowc(&wc, s + pos, len - pos, &st);
        if (n == (size_t)-1 || n == (size_t)-2) { /* invalid bytes: stop, never garble */
            break;
        }
        if (n == 0) break;
        int cw = wc == L'\t' ? 1 : wcwidth(wc);
        if (cw < 0) cw = 1;
        if (w + cw > maxw) break;
        w += cw;
        pos += n;
    }
    *width = w;
    return pos;
}

int ui_width(const char *utf8) {
    int w;
    fit(utf8, 1 << 30, &w);
    return w;
}

int ui_put(WINDOW *w, int y, int x, int maxw, attr_t a, const char *utf8) {
    if (maxw <= 0 || y < 0 || x < 0) return 0;
    int width;
    size_t n = fit(utf8, maxw, &width);
    if (!n) return 0;
    wattron(w, a);
    mvwaddnstr(w, y, x, utf8, (int)n);
    wattroff(w, a);
    return width;
}

void ui_hline(WINDOW *w, int y, int x, int n, attr_t a) {
    wattron(w, a);
    for (int i = 0; i < n; i++) mvwaddstr(w, y, x + i, "─");
    wattroff(w, a);
}

void ui_vline(WINDOW *w, int y, int x, int n, attr_t a) {
    wattron(w, a);
    for (int i = 0; i < n; i++) mvwaddstr(w, y + i, x, "│");
    wattroff(w, a);
}

/* Unicode box drawing rather than the ACS alternate character set: it reads
 * the same on screen and stays box drawing in `tmux capture-pane` text. */
void ui_frame(WINDOW *w, const Panel *p, const char *title, const char *note) {
    attr_t b = ui_attr(ROLE_BORDER);
    ui_hline(w, p->y, p->x + 1, p->w - 2, b);
    ui_hline(w, p->y + p->h - 1, p->x + 1, p->w - 2, b);
    ui_vline(w, p->y + 1, p->x, p->h - 2, b);
    ui_vline(w, p->y + 1, p->x + p->w - 1, p->h - 2, b);
    ui_put(w, p->y, p->x, 1, b, "╭");
    ui_put(w, p->y, p->x + p->w - 1, 1, b, "╮");
    ui_put(w, p->y + p->h - 1, p->x, 1, b, "╰");
    ui_put(w, p->y + p->h - 1, p->x + p->w - 1, 1, b, "╯");
    int used = ui_put(w, p->y, p->x + 2, p->w - 4, ui_attr(ROLE_TITLE), title);
    if (note && *note) {
        int nw = ui_width(note), room = p->w - 4 - used - 2;
        if (nw > room) nw = room;
        if (nw > 0) ui_put(w, p->y, p->x + p->w - 2 - nw, nw, ui_attr(ROLE_DIM), note);
    }
}

void ui_fmt_num(char *out, size_t cap, double v) {
    if (isnan(v)) snprintf(out, cap, "–");
    else if (isinf(v)) snprintf(out, cap, v > 0 ? "inf" : "-inf");
    else if (v != 0.0 && (fabs(v) < 1e-3 || fabs(v) >= 1e5)) snprintf(out, cap, "%.2e", v);
    else snprintf(out, cap, "%.4g", v);
}

void ui_fmt_bytes(char *out, size_t cap, double b) {
    static const char *const U[] = {"B", "K", "M", "G", "T"};
    if (!isfinite(b)) {
        snprintf(out, cap, "–");
        return;
    }
    int u = 0;
    while (b >= 1024.0 && u < 4) {
        b /= 1024.0;
        u++;
    }
    snprintf(out, cap, b < 10 && u ? "%.1f%s" : "%.0f%s", b, U[u]);
}

void ui_fmt_duration(char *out, size_t cap, double s) {
    if (!isfinite(s) || s < 0) {
        snprintf(out, cap, "–");
        return;
    }
    long t = lround(s);
    if (t >= 3600) snprintf(out, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(out, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(out, cap, "%lds", t);
}

int ui_chart(WINDOW *w, int y, int x, int cw, int ch, const ChartSeries *s, double ema_beta,
             bool log_scale, attr_t a, ChartScale *scale_out) {
    if (cw <= 0 || ch <= 0) return 0;
    int n = s->n, skipped = 0;
    double *sm = malloc((size_t)(n ? n : 1) * sizeof *sm);
    ChartCol *cols = malloc((size_t)cw * 2 * sizeof *cols);
    uint8_t *masks = malloc((size_t)cw * ch);
    if (sm && cols && masks) {
        chart_ema(s->val, n, ema_beta, sm);
        /* count what the raw series loses: the smoothed one hides NaNs' neighbours */
        for (int i = 0; i < n; i++) skipped += !isfinite(s->val[i]) || (log_scale && s->val[i] <= 0);
        chart_downsample(sm, n, 2 * cw, log_scale, cols);
        ChartScale sc;
        chart_scale_fit(cols, 2 * cw, log_scale, &sc);
        if (scale_out) *scale_out = sc;
        chart_braille(cols, &sc, cw, ch, masks);
        wattron(w, a);
        for (int r = 0; r < ch; r++)
            for (int c = 0; c < cw; c++) {
                char cell[4];
                chart_braille_utf8(masks[r * cw + c], cell);
                mvwaddstr(w, y + r, x + c, cell);
            }
        wattroff(w, a);
    }
    free(sm);
    free(cols);
    free(masks);
    return skipped;
}

void ui_chart_labels(WINDOW *w, int y, int x, int h, int label_w, const char *name, double last,
                     double min, const ChartScale *sc, UiRole role) {
    char v[32], line[64];
    ui_fmt_num(v, sizeof v, last);
    int used = ui_put(w, y, x, label_w, ui_attr(role) | A_BOLD, name);
    ui_put(w, y, x + used + 1, label_w - used - 1, ui_attr(ROLE_VALUE), v);
    ui_fmt_num(v, sizeof v, min);
    snprintf(line, sizeof line, "min %s", v);
    ui_put(w, y + 1, x, label_w, ui_attr(ROLE_DIM), line);
    if (h >= 3) {
        char lo[16], hi[16];
        ui_fmt_num(lo, sizeof lo, sc->lo);
        ui_fmt_num(hi, sizeof hi, sc->hi);
        snprintf(line, sizeof line, "%s…%s", lo, hi);
        ui_put(w, y + 2, x, label_w, ui_attr(ROLE_DIM), line);
    }
}

void ui_step_axis(WINDOW *w, int y, int x, int cw, const ChartSeries *s, const DashState *st) {
    ui_hline(w, y, x, cw, ui_attr(ROLE_BORDER));
    if (!s->n) return;
    for (int r = 0; r < st->n_rot; r++) {
        int i = chart_index_of_step(s, st->rot[r]);
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

void ui_sparkline(WINDOW *w, int y, int x, int cw, const ChartSeries *s, attr_t a) {
    if (cw <= 0) return;
    ChartCol *cols = malloc((size_t)cw * sizeof *cols);
    char *out = malloc((size_t)cw * 3 + 1);
    if (cols && out) {
        chart_downsample(s->val, s->n, cw, false, cols);
        ChartScale sc;
        chart_scale_fit(cols, cw, false, &sc);
        chart_sparkline(cols, &sc, cw, out);
        wattron(w, a);
        mvwaddstr(w, y, x, out);
        wattroff(w, a);
    }
    free(cols);
    free(out);
}
