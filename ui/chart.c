/* chart.c - series, smoothing, downsampling, scaling and Braille/sparkline
 * rendering for the dashboard (see chart.h). Pure functions, no curses. */
#include "ui/chart.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// series

static int store(ChartSeries *s, long step, double v) {
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 256;
        long *st = realloc(s->step, (size_t)cap * sizeof *st);
        if (!st) return -1;
        s->step = st;
        double *va = realloc(s->val, (size_t)cap * sizeof *va);
        if (!va) return -1;
        s->val = va;
        s->cap = cap;
    }
    s->step[s->n] = step;
    s->val[s->n] = v;
    s->n++;
    return 0;
}

/* Averages neighbouring pairs (a non-finite one yields to its partner) and
 * doubles the stride; keeps the later step of each pair. */
static void halve(ChartSeries *s) {
    int m = 0;
    for (int i = 0; i + 1 < s->n; i += 2, m++) {
        double a = s->val[i], b = s->val[i + 1];
        s->val[m] = isfinite(a) && isfinite(b) ? 0.5 * (a + b) : isfinite(a) ? a : b;
        s->step[m] = s->step[i + 1];
    }
    if (s->n % 2) { /* an odd last point stays as it is */
        s->val[m] = s->val[s->n - 1];
        s->step[m] = s->step[s->n - 1];
        m++;
    }
    s->n = m;
    s->stride *= 2;
}

int chart_series_push(ChartSeries *s, long step, double v) {
    if (s->stride < 1) s->stride = 1;
    if (s->stride > 1) { /* average raw points into one stored point */
        s->pend_n++;
        s->pend_step = step;
        if (isfinite(v)) {
            s->pend_sum += v;
            s->pend_finite++;
        }
        if (s->pend_n < s->stride) return 0;
        v = s->pend_finite ? s->pend_sum / s->pend_finite : NAN;
        s->pend_n = s->pend_finite = 0;
        s->pend_sum = 0.0;
    }
    if (store(s, step, v)) return -1;
    if (s->n >= CHART_MAX_POINTS) halve(s);
    return 0;
}

void chart_series_free(ChartSeries *s) {
    free(s->step);
    free(s->val);
    memset(s, 0, sizeof *s);
}

double chart_series_last(const ChartSeries *s) {
    return s->n ? s->val[s->n - 1] : NAN;
}

double chart_series_min(const ChartSeries *s) {
    double m = NAN;
    for (int i = 0; i < s->n; i++)
        if (isfinite(s->val[i]) && (isnan(m) || s->val[i] < m)) m = s->val[i];
    return m;
}

int chart_index_of_step(const ChartSeries *s, long step) {
    int lo = 0, hi = s->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (s->step[mid] < step) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

void chart_series_at(const ChartSeries *s, const long *steps, int n, double *out) {
    int next = 0, prev = -1; /* the first point after steps[i]; the last finite one up to it */
    for (int i = 0; i < n; i++) {
        for (; next < s->n && s->step[next] <= steps[i]; next++)
            if (isfinite(s->val[next])) prev = next;
        int k = next; /* the first finite point after steps[i] */
        while (k < s->n && !isfinite(s->val[k])) k++;
        if (prev >= 0 && s->step[prev] == steps[i]) out[i] = s->val[prev];
        else if (prev < 0 || k >= s->n) out[i] = NAN;
        else {
            double t = (double)(steps[i] - s->step[prev]) / (double)(s->step[k] - s->step[prev]);
            out[i] = s->val[prev] + t * (s->val[k] - s->val[prev]);
        }
    }
}

// ----------------------------------------------------------------------------
// smoothing

void chart_ema(const double *x, int n, double beta, double *out) {
    double e = 0.0, bt = 1.0; /* bt = beta^t */
    for (int i = 0; i < n; i++) {
        double v = x[i];
        if (!isfinite(v)) {
            out[i] = NAN;
            continue;
        }
        e = beta * e + (1.0 - beta) * v;
        bt *= beta;
        out[i] = bt < 1.0 ? e / (1.0 - bt) : v;
    }
}

// ----------------------------------------------------------------------------
// downsampling

int chart_column_of(int index, int n, int width) {
    if (n <= width) return index;
    /* the largest c with c·n/width <= index */
    int c = (int)(((long long)index * width + width - 1) / n);
    while (c > 0 && (long long)c * n / width > index) c--;
    while (c + 1 < width && (long long)(c + 1) * n / width <= index) c++;
    return c;
}

int chart_column_steps(const ChartSeries *s, int width, long *out) {
    int cols = s->n < width ? s->n : width;
    for (int c = 0; c < cols; c++)
        out[c] = s->step[s->n >= width ? (int)((long long)(c + 1) * s->n / width) - 1 : c];
    return cols;
}

int chart_downsample(const double *x, int n, int width, bool log_scale, ChartCol *cols) {
    int skipped = 0;
    for (int c = 0; c < width; c++) {
        ChartCol *col = &cols[c];
        col->n = 0;
        col->min = col->max = col->mean = NAN;
        long long a, b;
        if (n >= width) {
            a = (long long)c * n / width;
            b = (long long)(c + 1) * n / width;
        } else {
            a = c;
            b = c < n ? c + 1 : c;
        }
        double sum = 0.0;
        for (long long i = a; i < b; i++) {
            double v = x[i];
            if (!isfinite(v) || (log_scale && v <= 0.0)) {
                skipped++;
                continue;
            }
            if (col->n == 0 || v < col->min) col->min = v;
            if (col->n == 0 || v > col->max) col->max = v;
            sum += v;
            col->n++;
        }
        if (col->n) col->mean = sum / col->n;
    }
    return skipped;
}

// ----------------------------------------------------------------------------
// scaling

bool chart_scale_fit(const ChartCol *cols, int width, bool log_scale, ChartScale *sc) {
    bool any = false;
    double lo = 0.0, hi = 0.0;
    for (int c = 0; c < width; c++) {
        if (!cols[c].n) continue;
        if (!any || cols[c].min < lo) lo = cols[c].min;
        if (!any || cols[c].max > hi) hi = cols[c].max;
        any = true;
    }
    sc->log = log_scale;
    if (!any) {
        sc->lo = log_scale ? 0.1 : 0.0;
        sc->hi = 1.0;
        return false;
    }
    if (hi <= lo) {
        if (log_scale) {
            lo /= 1.1;
            hi *= 1.1;
        } else {
            double pad = lo != 0.0 ? 0.05 * fabs(lo) : 1.0;
            lo -= pad;
            hi += pad;
        }
    }
    sc->lo = lo;
    sc->hi = hi;
    return true;
}

double chart_scale_pos(const ChartScale *sc, double v) {
    if (!isfinite(v) || (sc->log && v <= 0.0)) return NAN;
    double p = sc->log ? (log(v) - log(sc->lo)) / (log(sc->hi) - log(sc->lo))
                       : (v - sc->lo) / (sc->hi - sc->lo);
    return p < 0.0 ? 0.0 : p > 1.0 ? 1.0 : p;
}

// ----------------------------------------------------------------------------
// Braille and blocks

uint8_t chart_braille_bit(int dx, int dy) {
    static const uint8_t bits[4][2] = {{0x01, 0x08}, {0x02, 0x10}, {0x04, 0x20}, {0x40, 0x80}};
    return bits[dy & 3][dx & 1];
}

/* Dot row (0 = top) of a scale position over `rows` dot rows, or -1. */
static int dot_row(const ChartScale *sc, double v, int rows) {
    double p = chart_scale_pos(sc, v);
    if (isnan(p)) return -1;
    return (rows - 1) - (int)lround(p * (rows - 1));
}

void chart_braille(const ChartCol *cols, const ChartScale *sc, int width, int height,
                   uint8_t *masks) {
    int rows = height * 4;
    memset(masks, 0, (size_t)width * height);
    int prev = -1;
    for (int x = 0; x < 2 * width; x++) {
        const ChartCol *c = &cols[x];
        if (!c->n) { /* a gap (no finite points) breaks the stroke */
            prev = -1;
            continue;
        }
        int r_hi = dot_row(sc, c->max, rows), r_lo = dot_row(sc, c->min, rows);
        int r_mean = dot_row(sc, c->mean, rows);
        if (r_hi < 0 || r_lo < 0 || r_mean < 0) continue;
        int top = r_hi, bot = r_lo;
        /* extend the span up to the row next to the previous column's mean,
         * so a jump draws as a connected stroke */
        if (prev >= 0 && prev + 1 < top) top = prev + 1;
        if (prev >= 0 && prev - 1 > bot) bot = prev - 1;
        for (int r = top; r <= bot; r++)
            masks[(r / 4) * width + x / 2] |= chart_braille_bit(x & 1, r & 3);
        prev = r_mean;
    }
}

void chart_braille_utf8(uint8_t mask, char out[4]) {
    unsigned cp = 0x2800u + mask;
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    out[3] = 0;
}

void chart_sparkline(const ChartCol *cols, const ChartScale *sc, int width, char *out) {
    char *o = out;
    for (int c = 0; c < width; c++) {
        double p = cols[c].n ? chart_scale_pos(sc, cols[c].mean) : NAN;
        if (isnan(p)) {
            *o++ = ' ';
            continue;
        }
        int level = (int)lround(p * 7.0); /* U+2581 ▁ .. U+2588 █ */
        unsigned cp = 0x2581u + (unsigned)level;
        *o++ = (char)(0xE0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    *o = 0;
}
