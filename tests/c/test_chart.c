/* test_chart.c - the dashboard's chart arithmetic (ui/chart.h) on fixed
 * inputs: EMA debias values, downsampling (min/max/mean, NaN and log-scale
 * skips), linear/log scaling, Braille dot bits and UTF-8, sparklines, and a
 * series halving itself past CHART_MAX_POINTS. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "ui/chart.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-12)

static void test_ema(void) {
    const double x[3] = {1, 2, 3};
    double y[3];
    chart_ema(x, 3, 0.5, y);
    /* e1 = .5 → /(1-.5) = 1; e2 = .25+1 = 1.25 → /(1-.25); e3 = .625+1.5 → /(1-.125) */
    CHECK(NEAR(y[0], 1.0), "ema[0] %g", y[0]);
    CHECK(NEAR(y[1], 1.25 / 0.75), "ema[1] %g", y[1]);
    CHECK(NEAR(y[2], 2.125 / 0.875), "ema[2] %g", y[2]);
    const double z[3] = {1, NAN, 3};
    chart_ema(z, 3, 0.5, y);
    CHECK(isnan(y[1]), "a NaN input gives NaN");
    CHECK(NEAR(y[2], 1.75 / 0.75), "NaN leaves the average alone: %g", y[2]);
    chart_ema(x, 3, 0.0, y);
    CHECK(y[0] == 1 && y[1] == 2 && y[2] == 3, "beta 0 copies");
    double a[3] = {4, 4, 4};
    chart_ema(a, 3, 0.99, a); /* in place; debiased, a constant stays constant */
    CHECK(NEAR(a[0], 4) && NEAR(a[2], 4), "debiased constant %g %g", a[0], a[2]);
}

static void test_downsample(void) {
    double x[10];
    for (int i = 0; i < 10; i++) x[i] = i;
    ChartCol c[5];
    CHECK(chart_downsample(x, 10, 5, false, c) == 0, "no skips");
    CHECK(c[0].n == 2 && c[0].min == 0 && c[0].max == 1 && c[0].mean == 0.5, "col 0");
    CHECK(c[4].min == 8 && c[4].max == 9, "col 4");
    x[3] = NAN;
    x[4] = INFINITY;
    CHECK(chart_downsample(x, 10, 5, false, c) == 2, "NaN and Inf counted");
    CHECK(c[1].n == 1 && c[1].mean == 2, "col 1 without the NaN");
    CHECK(c[2].n == 1 && c[2].mean == 5, "col 2 without the Inf");
    const double few[3] = {1, 2, 3};
    CHECK(chart_downsample(few, 3, 5, false, c) == 0, "few points");
    CHECK(c[2].n == 1 && c[2].mean == 3 && c[3].n == 0 && c[4].n == 0, "left-aligned, rest empty");
    const double lg[4] = {-1, 1, 10, 0};
    CHECK(chart_downsample(lg, 4, 4, true, c) == 2, "log skips non-positive");
    CHECK(c[0].n == 0 && c[1].n == 1 && c[3].n == 0, "log columns");
    CHECK(chart_column_of(3, 10, 5) == 1 && chart_column_of(9, 10, 5) == 4, "column_of");
    CHECK(chart_column_of(0, 10, 5) == 0 && chart_column_of(2, 3, 5) == 2, "column_of few");
    for (int i = 0; i < 1000; i++) { /* the inverse holds for every index */
        int col = chart_column_of(i, 1000, 7);
        CHECK((long)col * 1000 / 7 <= i && i < (long)(col + 1) * 1000 / 7, "column_of(%d) = %d", i, col);
    }
}

static void test_scale(void) {
    ChartCol c[2] = {{0, 1, 0.5, 2}, {8, 9, 8.5, 2}};
    ChartScale s;
    CHECK(chart_scale_fit(c, 2, false, &s) && s.lo == 0 && s.hi == 9, "fit %g %g", s.lo, s.hi);
    CHECK(NEAR(chart_scale_pos(&s, 4.5), 0.5), "pos mid");
    CHECK(chart_scale_pos(&s, -5) == 0 && chart_scale_pos(&s, 50) == 1, "clamped");
    CHECK(isnan(chart_scale_pos(&s, NAN)), "NaN unplottable");
    ChartCol flat[1] = {{2, 2, 2, 3}};
    CHECK(chart_scale_fit(flat, 1, false, &s) && NEAR(s.lo, 1.9) && NEAR(s.hi, 2.1), "flat band");
    ChartCol lg[2] = {{1, 1, 1, 1}, {100, 100, 100, 1}};
    CHECK(chart_scale_fit(lg, 2, true, &s) && s.log, "log fit");
    CHECK(NEAR(chart_scale_pos(&s, 10), 0.5), "log pos %g", chart_scale_pos(&s, 10));
    CHECK(isnan(chart_scale_pos(&s, 0)) && isnan(chart_scale_pos(&s, -1)), "log of <= 0");
    ChartCol none[2] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    CHECK(!chart_scale_fit(none, 2, false, &s), "empty");
}

static void test_braille(void) {
    CHECK(chart_braille_bit(0, 0) == 0x01 && chart_braille_bit(1, 0) == 0x08, "row 0 bits");
    CHECK(chart_braille_bit(0, 2) == 0x04 && chart_braille_bit(1, 2) == 0x20, "row 2 bits");
    CHECK(chart_braille_bit(0, 3) == 0x40 && chart_braille_bit(1, 3) == 0x80, "row 3 bits");
    char u[4];
    chart_braille_utf8(0, u);
    CHECK(!strcmp(u, "\xE2\xA0\x80"), "U+2800");
    chart_braille_utf8(0xFF, u);
    CHECK(!strcmp(u, "\xE2\xA3\xBF"), "U+28FF");
    /* a rise from 0 to 1 in one cell: left dot at the bottom, right column
     * joined from just above it to the top */
    ChartCol c[2] = {{0, 0, 0, 1}, {1, 1, 1, 1}};
    ChartScale s = {0, 1, false};
    uint8_t m[1];
    chart_braille(c, &s, 1, 1, m);
    CHECK(m[0] == (0x40 | 0x08 | 0x10 | 0x20), "rise mask %#x", m[0]);
    /* an empty column draws nothing and breaks the stroke */
    ChartCol g[4] = {{1, 1, 1, 1}, {0, 0, 0, 0}, {0, 0, 0, 1}, {0, 0, 0, 0}};
    uint8_t m2[2];
    chart_braille(g, &s, 2, 1, m2);
    CHECK(m2[0] == 0x01 && m2[1] == 0x40, "gap masks %#x %#x", m2[0], m2[1]);
    /* two rows: a constant at the top of the range lands in the top cell */
    ChartCol t[2] = {{1, 1, 1, 1}, {1, 1, 1, 1}};
    uint8_t m3[2];
    chart_braille(t, &s, 1, 2, m3);
    CHECK(m3[0] == 0x09 && m3[1] == 0, "top row %#x %#x", m3[0], m3[1]);
}

static void test_sparkline(void) {
    ChartCol c[3] = {{0, 0, 0, 1}, {0, 0, 0, 0}, {1, 1, 1, 1}};
    ChartScale s = {0, 1, false};
    char out[16];
    chart_sparkline(c, &s, 3, out);
    CHECK(!strcmp(out, "▁ █"), "sparkline '%s'", out);
}

static void test_series(void) {
    ChartSeries s = {0};
    CHECK(isnan(chart_series_last(&s)), "empty last");
    for (int i = 0; i < CHART_MAX_POINTS; i++) chart_series_push(&s, i + 1, i);
    CHECK(s.n == CHART_MAX_POINTS / 2 && s.stride == 2, "halved: n %d stride %d", s.n, s.stride);
    CHECK(s.val[0] == 0.5 && s.step[0] == 2, "pair mean %g step %ld", s.val[0], s.step[0]);
    chart_series_push(&s, 100000, 10);
    CHECK(s.n == CHART_MAX_POINTS / 2, "one raw point waits for its pair");
    chart_series_push(&s, 100001, NAN);
    CHECK(s.n == CHART_MAX_POINTS / 2 + 1 && chart_series_last(&s) == 10, "NaN yields to its partner");
    chart_series_free(&s);
}

int main(void) {
    test_ema();
    test_downsample();
    test_scale();
    test_braille();
    test_sparkline();
    test_series();
    if (failures) fprintf(stderr, "%d failure(s)\n", failures);
    else printf("test_chart: ok\n");
    return failures ? 1 : 0;
}
