/* state.c - the dashboard's model of the run: folds metrics-stream lines
 * (step records and events) into series, latest values, knob values and a
 * ring of event lines. Tolerant by design: unknown fields are ignored, a
 * missing field reads as NaN ("–" on screen), and a line that is not a JSON
 * object becomes an event instead of an error. cJSON writes NaN/Inf as null,
 * so null in a numeric field is read as a non-finite point. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "ui/dash_internal.h"

/* The loss terms a step record may carry, in display order (total last). */
static const char *const LOSS_NAMES[] = {"ce", "kl", "topk", "cos", "mag", "rel", "mse", "total"};
#define N_LOSS_NAMES ((int)(sizeof LOSS_NAMES / sizeof LOSS_NAMES[0]))

double dash_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void dash_state_init(DashState *s) {
    memset(s, 0, sizeof *s);
    s->total_steps = -1;
    s->n_adapters = s->rank = -1;
    for (int i = 0; i < 4; i++) s->mem[i] = s->dev_mem[i] = NAN;
    s->mem_dense = NAN;
    s->step = -1;
    s->lambda = s->lr = s->act_bits = s->adapter = s->grad_norm = s->tokens_per_s = NAN;
    s->progress = s->eta_s = NAN;
    for (int i = 0; i < 3; i++) s->corpus[i] = s->teacher[i] = NAN;
    s->clipped = -1;
    s->eval_view = -1;
    s->t_start = dash_now();
    s->t_last_rec = s->sec_per_step = NAN;
    s->ema_beta = 0.9;
}

void dash_gen_free(DashGen *g) {
    free(g->prompt);
    for (int k = 0; k < 2; k++) {
        free(g->text[k]);
        free(g->off[k]);
    }
    memset(g, 0, sizeof *g);
}

void dash_state_free(DashState *s) {
    for (int i = 0; i < s->n_loss; i++) chart_series_free(&s->loss[i].s);
    chart_series_free(&s->lambda_s);
    chart_series_free(&s->lr_s);
    chart_series_free(&s->gnorm_s);
    chart_series_free(&s->eval_kl);
    chart_series_free(&s->eval_ratio);
    free(s->blocks);
    free(s->rot);
    for (int i = 0; i < s->n_gens; i++) dash_gen_free(&s->gens[i]);
    free(s->gens);
    for (int i = 0; i < s->n_ev; i++) free(s->ev[(s->ev_first + i) % DASH_EVENT_LINES].text);
    memset(s, 0, sizeof *s);
}

void dash_state_event(DashState *s, DashEventKind kind, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (char *c = buf; *c; c++) /* one screen line: a tab or newline would move the cursor */
        if ((unsigned char)*c < 32) *c = ' ';
    char *text = strdup(buf);
    if (!text) return; /* out of memory: the line is lost, the run is not */
    if (s->n_ev == DASH_EVENT_LINES) { /* drop the oldest */
        free(s->ev[s->ev_first].text);
        s->ev_first = (s->ev_first + 1) % DASH_EVENT_LINES;
        s->n_ev--;
    }
    DashEventLine *e = &s->ev[(s->ev_first + s->n_ev) % DASH_EVENT_LINES];
    e->text = text;
    e->kind = kind;
    s->n_ev++;
}

// ----------------------------------------------------------------------------
// field access

static double num(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (cJSON_IsNumber(v)) return v->valuedouble;
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v) ? 1.0 : 0.0;
    return NAN; /* missing, null (a non-finite number), or not a number */
}

static const char *str(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static DashLoss *loss_named(DashState *s, const char *name) {
    for (int i = 0; i < s->n_loss; i++)
        if (strcmp(s->loss[i].name, name) == 0) return &s->loss[i];
    if (s->n_loss == DASH_MAX_LOSSES) return NULL;
    DashLoss *l = &s->loss[s->n_loss++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    return l;
}

static DashKnob *knob_named(DashState *s, const char *name, bool create) {
    for (int i = 0; i < s->n_knobs; i++)
        if (strcmp(s->knobs[i].name, name) == 0) return &s->knobs[i];
    if (!create || s->n_knobs == DASH_MAX_KNOBS) return NULL;
    DashKnob *k = &s->knobs[s->n_knobs++];
    snprintf(k->name, sizeof k->name, "%s", name);
    k->value = NAN;
    k->min = k->max = k->step = NAN;
    k->pending = false;
    return k;
}

static void knob_seen(DashState *s, const char *name, double v) {
    DashKnob *k = knob_named(s, name, true);
    if (!k) return;
    k->value = v;
    k->pending = false;
}

void dash_state_knob(DashState *s, const DashKnob *decl) {
    DashKnob *k = knob_named(s, decl->name, true);
    if (!k) return;
    k->value = decl->value;
    k->min = decl->min;
    k->max = decl->max;
    k->step = decl->step;
}

// ----------------------------------------------------------------------------
// step records

/* A loss column: a term that was seen before but is absent now gets NaN, so
 * every loss series stays aligned with the step count. */
static void record_losses(DashState *s, const cJSON *o) {
    bool seen[DASH_MAX_LOSSES] = {false};
    const cJSON *losses = cJSON_GetObjectItemCaseSensitive(o, "losses");
    for (int pass = 0; pass < 2; pass++) {
        const cJSON *src = pass == 0 ? o : losses;
        if (!cJSON_IsObject(src)) continue;
        for (int i = 0; i < N_LOSS_NAMES; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, LOSS_NAMES[i]);
            if (!v || !(cJSON_IsNumber(v) || cJSON_IsNull(v))) continue;
            DashLoss *l = loss_named(s, LOSS_NAMES[i]);
            if (!l || seen[l - s->loss]) continue;
            seen[l - s->loss] = true;
            chart_series_push(&l->s, s->step, cJSON_IsNumber(v) ? v->valuedouble : NAN);
        }
    }
    for (int i = 0; i < s->n_loss; i++)
        if (!seen[i]) chart_series_push(&s->loss[i].s, s->step, NAN);
}

static void record_blocks(DashState *s, const cJSON *o) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "block_grad_norms");
    if (!cJSON_IsArray(a)) a = cJSON_GetObjectItemCaseSensitive(o, "block_grad_norm");
    if (!cJSON_IsArray(a)) return;
    int n = cJSON_GetArraySize(a);
    if (n > s->cap_blocks) {
        double *b = realloc(s->blocks, (size_t)n * sizeof *b);
        if (!b) return;
        s->blocks = b;
        s->cap_blocks = n;
    }
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) s->blocks[i++] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    s->n_blocks = n;
}

static void record(DashState *s, const cJSON *o, double now) {
    double step = num(o, "step");
    long prev_step = s->step;
    s->step = isfinite(step) ? (long)step : s->step + 1;
    s->records++;
    record_losses(s, o);
    s->lambda = num(o, "lambda");
    s->lr = num(o, "lr");
    s->act_bits = num(o, "act_bits");
    double adapter = num(o, "adapter");
    if (isfinite(adapter)) s->adapter = adapter;
    s->grad_norm = num(o, "grad_norm");
    s->tokens_per_s = num(o, "tokens_per_s");
    /* a budgeted loop's own view (bitlab.train{tokens= | seconds= | steps=}) */
    s->progress = num(o, "progress");
    s->eta_s = num(o, "eta_seconds");
    chart_series_push(&s->lambda_s, s->step, s->lambda);
    chart_series_push(&s->lr_s, s->step, s->lr);
    chart_series_push(&s->gnorm_s, s->step, s->grad_norm);
    record_blocks(s, o);
    const cJSON *corpus = cJSON_GetObjectItemCaseSensitive(o, "corpus");
    static const char *const CORPUS[3] = {"documents", "tokens", "tokens_per_s"};
    for (int i = 0; i < 3 && cJSON_IsObject(corpus); i++) s->corpus[i] = num(corpus, CORPUS[i]);
    const cJSON *teacher = cJSON_GetObjectItemCaseSensitive(o, "teacher_data");
    static const char *const TEACHER[3] = {"kept", "rejected", "tokens_per_s"};
    for (int i = 0; i < 3 && cJSON_IsObject(teacher); i++) s->teacher[i] = num(teacher, TEACHER[i]);

    double skipped_total = num(o, "skipped_total");
    if (isfinite(skipped_total)) s->skipped = (long)skipped_total;
    else if (num(o, "skipped") > 0) s->skipped++;
    double clipped = num(o, "clipped_total");
    if (isfinite(clipped)) s->clipped = (long)clipped;
    else if (isfinite(num(o, "clipped"))) s->clipped = (s->clipped < 0 ? 0 : s->clipped) + (num(o, "clipped") > 0);

    const cJSON *knobs = cJSON_GetObjectItemCaseSensitive(o, "knobs"), *k;
    cJSON_ArrayForEach(k, knobs) if (cJSON_IsNumber(k)) knob_seen(s, k->string, k->valuedouble);

    const cJSON *mem = cJSON_GetObjectItemCaseSensitive(o, "mem");
    static const char *const MEM[4] = {"weights", "adapters", "optimizer", "activations"};
    for (int i = 0; i < 4 && cJSON_IsObject(mem); i++) {
        double v = num(mem, MEM[i]);
        if (isfinite(v)) s->mem[i] = v;
    }
    /* the backend's memory (bitlab.log adds it to every step record) */
    const cJSON *dm = cJSON_GetObjectItemCaseSensitive(o, "device_mem");
    static const char *const DEV_MEM[4] = {"live", "peak", "device_free", "device_total"};
    for (int i = 0; i < 4 && cJSON_IsObject(dm); i++) {
        double v = num(dm, DEV_MEM[i]);
        if (isfinite(v) && v >= 0) s->dev_mem[i] = v;
    }
    double v;
    if (isfinite(v = num(o, "adapters"))) s->n_adapters = (int)v;
    if (isfinite(v = num(o, "rank"))) s->rank = (int)v;
    if (isfinite(v = num(o, "total_steps"))) s->total_steps = (long)v;

    /* seconds per step: when records carry their own step_seconds (the
     * loop's time, periodic generations and checkpoints included, time
     * paused excluded), their mean over the run, so periodic work is
     * amortised rather than swinging the ETA; else an EMA of the arrival
     * times (so the ETA settles), where pausing resets t_last_rec so a pause
     * never counts as a slow step */
    double own = num(o, "step_seconds");
    if (isfinite(own) && own >= 0) {
        s->sum_step_s += own;
        s->n_step_s++;
        s->sec_per_step = s->sum_step_s / (double)s->n_step_s;
    } else if (isfinite(s->t_last_rec) && s->step > prev_step && prev_step >= 0) {
        double dt = (now - s->t_last_rec) / (double)(s->step - s->step_last_rec);
        s->sec_per_step = isfinite(s->sec_per_step) ? 0.8 * s->sec_per_step + 0.2 * dt : dt;
    }
    s->t_last_rec = now;
    s->step_last_rec = s->step;
}

// ----------------------------------------------------------------------------
// events

static void rotation(DashState *s, long step) {
    if (s->n_rot == s->cap_rot) {
        int cap = s->cap_rot ? 2 * s->cap_rot : 16;
        long *r = realloc(s->rot, (size_t)cap * sizeof *r);
        if (!r) return;
        s->rot = r;
        s->cap_rot = cap;
    }
    s->rot[s->n_rot++] = step;
}

/* Appends to out (cap bytes, *len used so far) while it fits; false once
 * it no longer does (out keeps what fitted, NUL-terminated). */
static bool appendf(char *out, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool appendf(char *out, size_t cap, size_t *len, const char *fmt, ...) {
    if (*len >= cap) return false;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len) {
        out[*len] = 0; /* a cut field would read as a wrong number */
        *len = cap;
        return false;
    }
    *len += (size_t)n;
    return true;
}

/* A short "k=v k=v" summary of an event's scalar fields, for events the
 * dashboard has no special line for. */
static void summary(const cJSON *o, char *out, size_t cap) {
    size_t len = 0;
    out[0] = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, o) {
        if (!strcmp(f->string, "event") || !strcmp(f->string, "step")) continue;
        char val[64];
        if (cJSON_IsNumber(f)) snprintf(val, sizeof val, "%g", f->valuedouble);
        else if (cJSON_IsString(f)) snprintf(val, sizeof val, "%s", f->valuestring);
        else if (cJSON_IsBool(f)) snprintf(val, sizeof val, "%s", cJSON_IsTrue(f) ? "true" : "false");
        else continue;
        if (!appendf(out, cap, &len, " %s=%s", f->string, val)) break;
    }
}

/* An "eval" event (bitlab.eval): a point on the held-out curves and one
 * line of its measures, each left out when the record lacks it:
 *   120 eval: ppl 812 (×24.2 teacher) KL 3.88 top-1 15.0% top-5 31.2% first-8 22% */
static void eval_event(DashState *s, const cJSON *o, const char *at, long step) {
    double ppl = num(o, "student_perplexity"), ratio = num(o, "perplexity_ratio");
    double kl = num(o, "kl"), top1 = num(o, "agreement"), top5 = num(o, "agreement_top5");
    double first8 = num(o, "agreement_first8");
    chart_series_push(&s->eval_kl, step, kl);
    chart_series_push(&s->eval_ratio, step, ratio);
    char buf[256] = "";
    size_t len = 0;
    /* perplexities run from ~1 to 10^5: whole numbers once they are large */
    if (isfinite(ppl)) appendf(buf, sizeof buf, &len, ppl >= 100 ? " ppl %.0f" : " ppl %.3g", ppl);
    if (isfinite(ratio)) appendf(buf, sizeof buf, &len, "%s(×%.3g teacher)", isfinite(ppl) ? " " : " ppl ", ratio);
    if (isfinite(kl)) appendf(buf, sizeof buf, &len, " KL %.3g", kl);
    if (isfinite(top1)) appendf(buf, sizeof buf, &len, " top-1 %.1f%%", 100 * top1);
    if (isfinite(top5)) appendf(buf, sizeof buf, &len, " top-5 %.1f%%", 100 * top5);
    if (isfinite(first8)) appendf(buf, sizeof buf, &len, " first-8 %.0f%%", 100 * first8);
    dash_state_event(s, EV_EVAL, "%s eval:%s", at, len ? buf : " (no measures)");
}

/* One event line per line of text (a traceback, a multi-line print). */
static void lines(DashState *s, DashEventKind kind, const char *indent, const char *text) {
    while (text && *text) {
        const char *nl = strchr(text, '\n');
        int n = nl ? (int)(nl - text) : (int)strlen(text);
        dash_state_event(s, kind, "%s%.*s", indent, n, text);
        text = nl ? nl + 1 : NULL;
    }
}

/* Returns true when the event should pause the dashboard (a script error). */
static bool event(DashState *s, const cJSON *o, const char *name) {
    double st = num(o, "step");
    long step = isfinite(st) ? (long)st : s->step;
    char at[24];
    if (step >= 0) snprintf(at, sizeof at, "%6ld", step);
    else snprintf(at, sizeof at, "     –"); /* nothing has a step yet */
    if (!strcmp(name, "rotation")) {
        rotation(s, step);
        double a = num(o, "adapter"), r = num(o, "rank");
        if (isfinite(a)) s->adapter = a;
        if (isfinite(r)) s->rank = (int)r;
        if (isfinite(a) && (s->n_adapters < 0 || (int)a + 1 > s->n_adapters)) s->n_adapters = (int)a + 1;
        dash_state_event(s, EV_ROTATION, "%s rotation → adapter %g (rank %g)", at, a, r);
    } else if (!strcmp(name, "eval")) {
        eval_event(s, o, at, step < 0 ? 0 : step);
    } else if (!strcmp(name, "checkpoint")) {
        const char *path = str(o, "path");
        dash_state_event(s, EV_CHECKPOINT, "%s checkpoint %s", at, path ? path : "saved");
    } else if (!strcmp(name, "knob")) {
        const char *k = str(o, "name"), *src = str(o, "source");
        double nv = num(o, "new");
        if (k && isfinite(nv)) knob_seen(s, k, nv);
        dash_state_event(s, EV_KNOB, "%s knob %s %g → %g%s%s", at, k ? k : "?", num(o, "old"), nv,
                         src ? " by " : "", src ? src : "");
    } else if (!strcmp(name, "nonfinite_skip") || !strcmp(name, "nonfinite")) {
        double tot = num(o, "skipped_total");
        if (isfinite(tot)) s->skipped = (long)tot;
        dash_state_event(s, EV_SKIP, "%s non-finite step skipped (%ld so far)", at, s->skipped);
    } else if (!strcmp(name, "script_error") || !strcmp(name, "error")) {
        const char *msg = str(o, "message");
        if (!msg) msg = str(o, "error");
        if (!msg) msg = "(no message)";
        const char *tb0 = str(o, "traceback");
        snprintf(s->error, sizeof s->error, "%s%s%s", msg, tb0 ? "\n" : "", tb0 ? tb0 : "");
        /* the runtime's message carries its traceback after the first line */
        const char *nl = strchr(msg, '\n');
        dash_state_event(s, EV_ERROR, "%s script error: %.*s", at, nl ? (int)(nl - msg) : (int)strlen(msg), msg);
        lines(s, EV_ERROR, "       ", nl ? nl + 1 : NULL);
        lines(s, EV_ERROR, "       ", str(o, "traceback"));
        return true;
    } else if (!strcmp(name, "warning")) { /* its message says what to do: shown whole */
        const char *msg = str(o, "message");
        char sum[256];
        if (!msg) summary(o, sum, sizeof sum);
        dash_state_event(s, EV_WARN, "%s warning: %s", at, msg ? msg : sum + (sum[0] == ' '));
    } else if (!strcmp(name, "print")) { /* the script's print() while curses owns the screen */
        const char *text = str(o, "text");
        const char *nl = text ? strchr(text, '\n') : NULL;
        dash_state_event(s, EV_INFO, "%s %.*s", at, nl ? (int)(nl - text) : text ? (int)strlen(text) : 0,
                         text ? text : "");
        lines(s, EV_INFO, "       ", nl ? nl + 1 : NULL);
    } else {
        char sum[256];
        summary(o, sum, sizeof sum);
        dash_state_event(s, EV_INFO, "%s %s%s", at, name, sum);
    }
    return false;
}

bool dash_state_line(DashState *s, const char *line, double now) {
    cJSON *o = cJSON_Parse(line);
    bool pause = false;
    if (!cJSON_IsObject(o)) {
        dash_state_event(s, EV_ERROR, "unreadable metrics line: %.80s", line);
    } else {
        const char *ev = str(o, "event");
        if (ev) pause = event(s, o, ev);
        else record(s, o, now);
    }
    cJSON_Delete(o);
    return pause;
}

void dash_state_info(DashState *s, const DashInfo *in) {
    if (in->experiment) snprintf(s->experiment, sizeof s->experiment, "%s", in->experiment);
    if (in->model) snprintf(s->model, sizeof s->model, "%s", in->model);
    if (in->backend) snprintf(s->backend, sizeof s->backend, "%s", in->backend);
    if (in->budget) snprintf(s->budget, sizeof s->budget, "%s", in->budget);
    if (in->total_steps > 0) s->total_steps = in->total_steps;
    if (in->n_adapters > 0) s->n_adapters = in->n_adapters;
    if (in->rank > 0) s->rank = in->rank;
    const double m[4] = {in->mem_weights, in->mem_adapters, in->mem_optimizer, in->mem_activations};
    for (int i = 0; i < 4; i++)
        if (m[i] > 0) s->mem[i] = m[i];
    if (in->mem_dense > 0) s->mem_dense = in->mem_dense;
}

void dash_progress(const DashState *s, double *frac, double *eta) {
    bool by_steps = s->total_steps > 0 && s->step >= 0;
    double f = isfinite(s->progress) ? s->progress
               : by_steps            ? (double)s->step / (double)s->total_steps
                                     : NAN;
    *frac = isnan(f) ? f : f < 0 ? 0 : f > 1 ? 1 : f;
    *eta = isfinite(s->eta_s)                    ? s->eta_s
           : by_steps && isfinite(s->sec_per_step) ? (double)(s->total_steps - s->step) * s->sec_per_step
                                                   : NAN;
}

bool dash_eval_shown(const DashState *s) {
    return s->eval_view < 0 ? s->eval_kl.n > 0 : s->eval_view == 1;
}

/* Makes gens[index] exist; false when out of memory (or a negative index). */
static bool gen_slot(DashState *s, int index) {
    if (index < 0) return false;
    if (index >= s->n_gens) {
        DashGen *gs = realloc(s->gens, (size_t)(index + 1) * sizeof *gs);
        if (!gs) return false;
        memset(gs + s->n_gens, 0, (size_t)(index + 1 - s->n_gens) * sizeof *gs);
        s->gens = gs;
        s->n_gens = index + 1;
    }
    return true;
}

void dash_state_gen(DashState *s, int index, DashGen *g) {
    if (!gen_slot(s, index)) {
        dash_gen_free(g);
        return;
    }
    dash_gen_free(&s->gens[index]);
    s->gens[index] = *g; /* the prompt on screen stays: Tab is the user's */
}

void dash_state_prompt(DashState *s, int index, const char *prompt) {
    if (!gen_slot(s, index)) return;
    DashGen *g = &s->gens[index];
    if (g->prompt && strcmp(g->prompt, prompt) == 0) return; /* keep its generation */
    char *p = strdup(prompt);
    if (!p) return;
    dash_gen_free(g); /* a generation for another prompt would mislead */
    g->prompt = p;
}
