/* panel_gen.c - teacher and student generations side by side for one
 * prompt: the tokens both agree on from the start, then the first token where
 * the ids differ highlighted in both columns, and the common-prefix length in
 * the title. Tab cycles the prompts, `e` edits the current one. */
#define _XOPEN_SOURCE 700
#include <stdio.h>
#include <string.h>
#include <wchar.h>

#include "ui/dash_internal.h"

/* The next character of text at pos (a broken byte reads as '?', one byte). */
static size_t next_char(const char *text, int pos, int len, mbstate_t *st, wchar_t *wc) {
    size_t n = mbrtowc(wc, text + pos, (size_t)(len - pos), st);
    if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
        memset(st, 0, sizeof *st);
        *wc = L'?';
        n = 1;
    }
    return n;
}

/* Screen columns of the word starting at pos (up to a space or newline). */
static int word_width(const char *text, int pos, int len) {
    mbstate_t st;
    memset(&st, 0, sizeof st);
    int cols = 0;
    while (pos < len) {
        wchar_t wc;
        size_t n = next_char(text, pos, len, &st, &wc);
        if (wc == L' ' || wc == L'\n') break;
        int cw = wcwidth(wc);
        cols += cw > 0 ? cw : 1;
        pos += (int)n;
    }
    return cols;
}

/* Wraps text into the column (y, x, cw, rows) at word boundaries (a word
 * longer than the column is broken); bytes before `from` are the agreed
 * prefix, [from, to) the divergent token. */
static void column(WINDOW *w, int y, int x, int cw, int rows, const char *text, int from, int to) {
    mbstate_t st;
    memset(&st, 0, sizeof st);
    int len = (int)strlen(text), pos = 0, r = 0, c = 0;
    bool word_start = true;
    while (pos < len && r < rows) {
        wchar_t wc;
        size_t n = next_char(text, pos, len, &st, &wc);
        int cwid = wcwidth(wc);
        bool space = wc == L' ';
        int ww = !space && word_start ? word_width(text, pos, len) : 0;
        word_start = space || wc == L'\n';
        bool wrap = wc == L'\n' || c + (cwid > 0 ? cwid : 1) > cw || (c > 0 && ww <= cw && c + ww > cw);
        if (wrap) {
            r++;
            c = 0;
            /* the newline or the space the line broke at is not drawn, unless
             * it is the divergent token (its highlight must stay visible) */
            if ((wc == L'\n' || space) && !(pos >= from && pos < to)) {
                pos += (int)n;
                continue;
            }
            if (wc == L'\n') wc = L' ';
            if (r >= rows) break;
        }
        if (cwid < 0 || wc == L'\t') { /* control characters as a space */
            wc = L' ';
            cwid = 1;
        }
        attr_t a = pos < from ? ui_attr(ROLE_GOOD)
                   : pos < to ? ui_attr(ROLE_BAD) | A_REVERSE
                              : ui_attr(ROLE_NORMAL);
        wchar_t ws[2] = {wc, 0};
        wattron(w, a);
        mvwaddnwstr(w, y + r, x + c, ws, 1);
        wattroff(w, a);
        c += cwid;
        pos += (int)n;
    }
}

static void draw(Panel *p, WINDOW *w, const DashState *s) {
    char note[96] = "";
    const DashGen *g = s->n_gens ? &s->gens[s->cur_gen] : NULL;
    if (g && g->text[0])
        snprintf(note, sizeof note, "common prefix %d/%d · %d/%d", g->prefix,
                 g->n[0] > g->n[1] ? g->n[0] : g->n[1], s->cur_gen + 1, s->n_gens);
    ui_frame(w, p, "teacher ⇄ student", note);
    int iw = p->w - 2, ih = p->h - 2, x = p->x + 1, y = p->y + 1;
    char line[256];
    if (g && g->prompt) {
        snprintf(line, sizeof line, "› %s", g->prompt);
        ui_put(w, y, x, iw, ui_attr(ROLE_DIM), line);
    }
    if (!g || !g->text[0]) {
        if (ih < 2 && g && g->prompt) return;
        ui_put(w, g && g->prompt ? y + 1 : y, x + 1, iw - 1, ui_attr(ROLE_DIM), "no generation yet — g generates now");
        return;
    }
    if (ih < 3) return;
    int half = (iw - 1) / 2;
    ui_put(w, y + 1, x, half, ui_attr(ROLE_TITLE), "teacher");
    ui_put(w, y + 1, x + half + 1, iw - half - 1, ui_attr(ROLE_TITLE), "student");
    ui_vline(w, y + 1, x + half, ih - 1, ui_attr(ROLE_BORDER));
    for (int k = 0; k < 2; k++) {
        int from = g->off[k][g->prefix < g->n[k] ? g->prefix : g->n[k]];
        int to = g->prefix < g->n[k] ? g->off[k][g->prefix + 1] : from;
        column(w, y + 2, k ? x + half + 1 : x, k ? iw - half - 1 : half, ih - 2, g->text[k], from, to);
    }
}

void gen_commit(Dash *d, const char *text) {
    DashState *s = &d->st;
    if (!*text) return;
    DashCmd c = {.type = DASH_CMD_PROMPT, .index = s->n_gens ? s->cur_gen : 0};
    snprintf(c.text, sizeof c.text, "%s", text);
    dash_emit(d, &c);
    snprintf(s->status, sizeof s->status, "generating for the new prompt at the next step…");
}

static int key(Panel *p, Dash *d, int ch) {
    (void)p;
    DashState *s = &d->st;
    if (ch == '\t') {
        if (s->n_gens > 1) s->cur_gen = (s->cur_gen + 1) % s->n_gens;
        return PK_HANDLED | PK_REFRESH;
    }
    /* e: edit the prompt, starting from the current one */
    const DashGen *g = s->n_gens ? &s->gens[s->cur_gen] : NULL;
    snprintf(s->edit, sizeof s->edit, "%s", g && g->prompt ? g->prompt : "");
    s->mode = MODE_EDIT_PROMPT;
    return PK_HANDLED | PK_REFRESH;
}

const PanelClass GenPanel = {.name = "generations", .draw = draw, .key = key};
