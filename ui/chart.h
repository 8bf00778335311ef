/* chart.h - the numbers behind the dashboard's charts, with no curses in
 * sight so that every rule is unit-testable (tests/c/test_chart.c):
 * growable series of (step, value) points, EMA smoothing with a debiased
 * start, downsampling to a column count (min/max/mean per column), linear
 * and log y scaling, and rendering to Braille dot masks and sparkline
 * blocks as UTF-8.
 *
 * Non-finite values (NaN, ±Inf) are never plotted: they are skipped and
 * counted, so a chart shows the honest finite curve and the panel can say
 * how many points it left out. In log scale, non-positive values are
 * skipped the same way. */
#ifndef BITLAB_UI_CHART_H
#define BITLAB_UI_CHART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// ----------------------------------------------------------------------------
// series

/* Past this many points a series halves itself by averaging neighbours, so a
 * 1M-step run costs a bounded amount of memory; the merge factor (stride)
 * doubles and later pushes are averaged by the same factor. */
#define CHART_MAX_POINTS 65536

typedef struct {
    long *step;
    double *val;
    int n, cap;
    int stride;         /* raw points per stored point */
    int pend_n;         /* raw points waiting to fill the next stored one */
    double pend_sum;    /* their sum (finite ones) */
    int pend_finite;
    long pend_step;
} ChartSeries;

/* Appends a point; 0, or -1 when out of memory (the point is dropped). */
int chart_series_push(ChartSeries *s, long step, double v);
void chart_series_free(ChartSeries *s);
/* The last stored value, or NaN when empty. */
double chart_series_last(const ChartSeries *s);
/* The smallest finite value, or NaN when there is none. */
double chart_series_min(const ChartSeries *s);
/* The first stored index whose step is >= step (n when none; steps rise). */
int chart_index_of_step(const ChartSeries *s, long step);
/* The values of s at the given rising steps, linearly interpolated between
 * its finite points and NaN before the first and after the last: a sparse
 * series (one point per evaluation) drawn on a dense one's x axis. */
void chart_series_at(const ChartSeries *s, const long *steps, int n, double *out);

// ----------------------------------------------------------------------------
// smoothing

/* Exponential moving average with bias correction:
 *   e_t = beta·e_{t-1} + (1−beta)·x_t,  e_0 = 0,  out_t = e_t / (1 − beta^t)
 * where t counts the finite inputs seen so far (a NaN input gives NaN out
 * and leaves the average untouched). beta = 0 copies the input. out may
 * alias x. */
void chart_ema(const double *x, int n, double beta, double *out);

// ----------------------------------------------------------------------------
// downsampling

typedef struct {
    double min, max, mean;
    int n;              /* finite points in the column; 0 = empty */
} ChartCol;

/* Compresses n points to `width` columns: with n >= width, column c holds
 * points [c·n/width, (c+1)·n/width); with fewer points each point gets its
 * own column from the left and the rest stay empty. Non-finite points (and,
 * with log_scale, non-positive ones) are skipped; returns how many. */
int chart_downsample(const double *x, int n, int width, bool log_scale, ChartCol *cols);

/* The column a point index lands in (the inverse of the rule above). */
int chart_column_of(int index, int n, int width);
/* The step each of the columns a chart of s draws stands for (the last of
 * its points, by the rule above) into out (width entries); returns how many
 * columns are drawn: min(n, width). */
int chart_column_steps(const ChartSeries *s, int width, long *out);

// ----------------------------------------------------------------------------
// scaling

typedef struct {
    double lo, hi;
    bool log;
} ChartScale;

/* Fits lo/hi to the columns' min and max; a flat series gets a ±5% (or ±1
 * around zero) band so it draws mid-height. Returns false when no column
 * has a plottable point. */
bool chart_scale_fit(const ChartCol *cols, int width, bool log_scale, ChartScale *sc);

/* Where v falls in the scale: 0 at lo, 1 at hi (clamped), or NaN when v
 * cannot be plotted (non-finite; non-positive in log scale). */
double chart_scale_pos(const ChartScale *sc, double v);

// ----------------------------------------------------------------------------
// Braille and blocks

/* Braille cells are 2 dots wide and 4 high; bit layout of U+2800 + mask:
 *   row 0: 0x01 0x08 / row 1: 0x02 0x10 / row 2: 0x04 0x20 / row 3: 0x40 0x80 */
uint8_t chart_braille_bit(int dx, int dy);

/* Plots 2·width columns into a width × height grid of Braille masks
 * (row-major, row 0 at the top). Each column draws its min..max span and a
 * stroke joining the previous column's mean, so a line stays connected. */
void chart_braille(const ChartCol *cols, const ChartScale *sc, int width, int height,
                   uint8_t *masks);

/* UTF-8 of U+2800 + mask into out (4 bytes with the NUL). */
void chart_braille_utf8(uint8_t mask, char out[4]);

/* One block (▁▂▃▄▅▆▇█) per column for its mean, a space for an empty one;
 * out needs 3·width + 1 bytes. */
void chart_sparkline(const ChartCol *cols, const ChartScale *sc, int width, char *out);

#endif
