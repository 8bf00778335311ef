/* test_dash_state.c - the dashboard's model of the run (ui/state.c) fed
 * metrics lines directly, no terminal: an "eval" event becomes one events
 * line with exactly the measures it carries and a point on each held-out
 * series; the held-out panel's visibility (shown by the first eval record,
 * then the v key's choice); the header's progress and ETA from a budgeted
 * loop's `progress` / `eta_seconds`, and today's step / total_steps and
 * sec_per_step rule without them; bitlab.info's budget text; the series
 * helpers the chart panels share. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <string.h>

#include "check.h"
#include "ui/dash_internal.h"

static const DashEventLine *last_event(const DashState *s) {
    return s->n_ev ? &s->ev[(s->ev_first + s->n_ev - 1) % DASH_EVENT_LINES] : NULL;
}

static void test_eval_line(void) {
    DashState s;
    dash_state_init(&s);
    CHECK(!dash_eval_shown(&s), "no eval record: the held-out panel takes no rows");
    dash_state_line(&s, "{\"step\":119,\"kl\":4.1}", 0.0);
    dash_state_line(&s,
                    "{\"event\":\"eval\",\"step\":120,\"teacher_perplexity\":33.6,"
                    "\"student_perplexity\":812.3,\"perplexity_ratio\":24.17,\"kl\":3.881,"
                    "\"agreement\":0.15,\"agreement_top5\":0.312,\"agreement_first8\":0.22,"
                    "\"agreement_first32\":null,\"scored_tokens\":1000,\"teacher_cache\":\"off\"}",
                    0.0);
    const DashEventLine *e = last_event(&s);
    const char *want = "   120 eval: ppl 812 (×24.2 teacher) KL 3.88 top-1 15.0% top-5 31.2% first-8 22%";
    CHECK(e && e->kind == EV_EVAL && strcmp(e->text, want) == 0, "eval line: '%s'", e ? e->text : "(none)");
    CHECK(s.eval_kl.n == 1 && s.eval_kl.step[0] == 120 && s.eval_kl.val[0] == 3.881,
          "a held-out KL point at step 120");
    CHECK(s.eval_ratio.n == 1 && s.eval_ratio.val[0] == 24.17, "a perplexity-ratio point");
    CHECK(s.step == 119, "an event is no step record (step %ld)", s.step);
    CHECK(dash_eval_shown(&s), "the first eval record shows the held-out panel");

    /* absent measures are left out; a small perplexity keeps its decimals;
     * no step: the latest step record's */
    dash_state_line(&s, "{\"event\":\"eval\",\"kl\":2.5,\"student_perplexity\":7.25}", 0.0);
    e = last_event(&s);
    CHECK(e && strcmp(e->text, "   119 eval: ppl 7.25 KL 2.5") == 0, "partial eval line: '%s'",
          e ? e->text : "(none)");
    CHECK(s.eval_kl.n == 2 && s.eval_kl.step[1] == 119 && s.eval_ratio.n == 2 &&
              isnan(s.eval_ratio.val[1]),
          "every record is a point on both series (NaN where absent)");
    dash_state_line(&s, "{\"event\":\"eval\"}", 0.0);
    e = last_event(&s);
    CHECK(e && strcmp(e->text, "   119 eval: (no measures)") == 0, "empty eval line: '%s'",
          e ? e->text : "(none)");

    s.eval_view = 0; /* what v does while it is shown */
    CHECK(!dash_eval_shown(&s), "hidden by the user's choice");
    s.eval_view = 1;
    CHECK(dash_eval_shown(&s), "shown by the user's choice");
    dash_state_free(&s);

    /* before any step record an event has no step to show */
    dash_state_init(&s);
    dash_state_line(&s, "{\"event\":\"eval\",\"kl\":1}", 0.0);
    e = last_event(&s);
    CHECK(e && strcmp(e->text, "     – eval: KL 1") == 0, "stepless eval line: '%s'", e ? e->text : "(none)");
    CHECK(s.eval_kl.n == 1 && s.eval_kl.step[0] == 0, "its point at step 0");
    dash_state_free(&s);
}

/* The header's progress once the line is applied. */
static void after(DashState *s, const char *line, double *f, double *eta) {
    dash_state_line(s, line, 0.0);
    dash_progress(s, f, eta);
}

static void test_progress(void) {
    DashState s;
    double f, eta;
    dash_state_init(&s);
    dash_progress(&s, &f, &eta);
    CHECK(isnan(f) && isnan(eta), "nothing known: no bar, no ETA");

    /* today's rule: step / total_steps, (total - step) · mean step_seconds */
    dash_state_info(&s, &(DashInfo){.total_steps = 10});
    after(&s, "{\"step\":4,\"step_seconds\":2}", &f, &eta);
    CHECK(f == 0.4 && eta == 12.0, "from total_steps: %g, ETA %g", f, eta);

    /* a budgeted loop's own figures win */
    after(&s, "{\"step\":5,\"step_seconds\":2,\"progress\":0.75,\"eta_seconds\":42}", &f, &eta);
    CHECK(f == 0.75 && eta == 42.0, "from the record: %g, ETA %g", f, eta);
    /* only while the latest record carries them */
    after(&s, "{\"step\":6,\"step_seconds\":2,\"progress\":0.8}", &f, &eta);
    CHECK(f == 0.8 && eta == 8.0, "progress alone: %g, ETA from the steps %g", f, eta);
    after(&s, "{\"step\":7,\"step_seconds\":2}", &f, &eta);
    CHECK(f == 0.7 && eta == 6.0, "neither: back to the steps: %g, ETA %g", f, eta);
    after(&s, "{\"step\":8,\"progress\":1.02,\"eta_seconds\":0}", &f, &eta);
    CHECK(f == 1.0 && eta == 0.0, "an overshoot shows as done: %g, ETA %g", f, eta);
    dash_state_free(&s);

    /* no total_steps (a tokens = or seconds = budget) */
    dash_state_init(&s);
    after(&s, "{\"step\":3,\"step_seconds\":1}", &f, &eta);
    CHECK(isnan(f) && isnan(eta), "no total, no progress: '–' as today");
    after(&s, "{\"step\":4,\"progress\":0.25,\"eta_seconds\":90.5}", &f, &eta);
    CHECK(f == 0.25 && eta == 90.5, "no total: the record's %g, ETA %g", f, eta);
    after(&s, "{\"step\":5,\"progress\":null,\"eta_seconds\":\"soon\"}", &f, &eta);
    CHECK(isnan(f) && isnan(eta), "null / non-numeric fields read as missing");

    CHECK(s.budget[0] == 0, "no budget until bitlab.info gives one");
    dash_state_info(&s, &(DashInfo){.budget = "30 min"});
    dash_state_info(&s, &(DashInfo){.model = "m"});
    CHECK(strcmp(s.budget, "30 min") == 0, "budget kept: '%s'", s.budget);
    dash_state_free(&s);
}

/* the series helpers the chart panels share (ui/chart.h) */
static void test_series_helpers(void) {
    ChartSeries c = {0};
    CHECK(isnan(chart_series_min(&c)) && chart_index_of_step(&c, 5) == 0, "empty series");
    chart_series_push(&c, 10, NAN);
    chart_series_push(&c, 20, 3.0);
    chart_series_push(&c, 30, -1.5);
    chart_series_push(&c, 40, 2.0);
    CHECK(chart_series_min(&c) == -1.5, "min skips NaN: %g", chart_series_min(&c));
    CHECK(chart_index_of_step(&c, 0) == 0 && chart_index_of_step(&c, 20) == 1 &&
              chart_index_of_step(&c, 21) == 2 && chart_index_of_step(&c, 41) == 4,
          "index of step");
    /* a sparse series at a dense one's steps: interpolated across the NaN,
     * NaN outside its finite range */
    const long at[6] = {5, 20, 25, 35, 40, 50};
    double v[6];
    chart_series_at(&c, at, 6, v);
    CHECK(isnan(v[0]) && v[1] == 3.0 && v[2] == 0.75 && v[3] == 0.25 && v[4] == 2.0 && isnan(v[5]),
          "series at steps: %g %g %g %g %g %g", v[0], v[1], v[2], v[3], v[4], v[5]);
    long cols[8];
    CHECK(chart_column_steps(&c, 8, cols) == 4 && cols[0] == 10 && cols[3] == 40,
          "fewer points than columns: one each");
    CHECK(chart_column_steps(&c, 2, cols) == 2 && cols[0] == 20 && cols[1] == 40,
          "more points than columns: each column's last step");
    chart_series_free(&c);
}

int main(void) {
    test_series_helpers();
    test_eval_line();
    test_progress();
    if (failures) fprintf(stderr, "test_dash_state: %d failure(s)\n", failures);
    else printf("test_dash_state: ok\n");
    return failures != 0;
}
