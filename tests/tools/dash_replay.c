/* dash_replay.c - drives the dashboard without training: a worker thread
 * feeds a metrics JSONL file into it at a given rate, acting as the run loop
 * would. It keeps its own fake knob values (applied from the dashboard's
 * commands and written into every step record it forwards), answers
 * generation requests with fixed teacher/student texts that diverge at token
 * 5, and on quit writes a small JSON checkpoint. Everything it applies is
 * logged as JSON lines to --out, so tests/py/test_dashboard_tmux.py can check
 * what the keys did.
 *
 *   dash_replay --metrics FILE --out LOG --checkpoint PATH [--rate STEPS_PER_S]
 *               [--knob NAME=VALUE:MIN:MAX:STEP]... [--mono] */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "ui/dashboard.h"

#define MAX_KNOBS 8

typedef struct {
    Dash *d;
    const char *metrics, *out_path, *ckpt_path;
    double rate;
    char names[MAX_KNOBS][64];
    double val[MAX_KNOBS], min[MAX_KNOBS], max[MAX_KNOBS], step[MAX_KNOBS];
    int n_knobs;
    FILE *out;
    long cur_step;
    int rotations;
} Replay;

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* One JSON line to the output log. */
static void out_json(Replay *r, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        fprintf(r->out, "%s\n", s);
        fflush(r->out);
        cJSON_free(s);
    }
}

static cJSON *knobs_json(const Replay *r) {
    cJSON *k = cJSON_CreateObject();
    for (int i = 0; i < r->n_knobs; i++) cJSON_AddNumberToObject(k, r->names[i], r->val[i]);
    return k;
}

/* An event to the dashboard (and the log). */
static void event(Replay *r, cJSON *o) {
    cJSON_AddNumberToObject(o, "step", (double)r->cur_step);
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        dash_push_line(r->d, s);
        cJSON_free(s);
    }
    out_json(r, o);
    cJSON_Delete(o);
}

static int save(Replay *r) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", r->ckpt_path);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)r->cur_step);
    cJSON_AddItemToObject(o, "knobs", knobs_json(r));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    FILE *f = fopen(tmp, "w");
    int ok = f && s && fputs(s, f) >= 0;
    if (f) ok &= fclose(f) == 0;
    cJSON_free(s);
    if (!ok || rename(tmp, r->ckpt_path)) return -1;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "event", "checkpoint");
    cJSON_AddStringToObject(e, "path", r->ckpt_path);
    event(r, e);
    return 0;
}

static void generate(Replay *r, int index, const char *prompt) {
    static const char *const T[] = {"The", " capital", " of", " France", " is", " Paris", ",",
                                    " on", " the", " Seine", "."};
    static const char *const S[] = {"The", " capital", " of", " France", " is", " Lyon", ",",
                                    " a", " city", "."};
    static const int TI[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    static const int SI[] = {1, 2, 3, 4, 5, 66, 7, 88, 99, 11};
    DashGeneration g = {.prompt = prompt,
                        .teacher_pieces = T, .teacher_ids = TI, .n_teacher = 11,
                        .student_pieces = S, .student_ids = SI, .n_student = 10};
    dash_set_generation(r->d, index, &g);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "applied", "generate");
    cJSON_AddNumberToObject(o, "index", index);
    cJSON_AddStringToObject(o, "prompt", prompt);
    out_json(r, o);
    cJSON_Delete(o);
}

/* Applies one command; returns true for quit. */
static bool apply(Replay *r, const DashCmd *c) {
    cJSON *e;
    switch (c->type) {
    case DASH_CMD_KNOB:
        for (int i = 0; i < r->n_knobs; i++) {
            if (strcmp(r->names[i], c->name) != 0) continue;
            e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "event", "knob");
            cJSON_AddStringToObject(e, "name", c->name);
            cJSON_AddNumberToObject(e, "old", r->val[i]);
            cJSON_AddNumberToObject(e, "new", c->value);
            cJSON_AddStringToObject(e, "source", "dashboard");
            r->val[i] = c->value;
            event(r, e);
        }
        return false;
    case DASH_CMD_GENERATE:
        generate(r, 0, "What is the capital of France?");
        generate(r, 1, "Name a river in France.");
        return false;
    case DASH_CMD_PROMPT: generate(r, c->index, c->text); return false;
    case DASH_CMD_ROTATE:
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "event", "rotation");
        cJSON_AddNumberToObject(e, "adapter", ++r->rotations);
        cJSON_AddNumberToObject(e, "rank", 16);
        event(r, e);
        return false;
    case DASH_CMD_SAVE: save(r); return false;
    case DASH_CMD_QUIT:
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "applied", "quit");
        cJSON_AddBoolToObject(e, "checkpoint", c->checkpoint);
        if (c->checkpoint) save(r);
        out_json(r, e);
        cJSON_Delete(e);
        return true;
    }
    return false;
}

/* The step boundary: every pending command; true when told to quit. */
static bool boundary(Replay *r) {
    DashCmd c;
    while (dash_next_command(r->d, &c))
        if (apply(r, &c)) return true;
    return false;
}

static void *worker(void *arg) {
    Replay *r = arg;
    FILE *f = fopen(r->metrics, "r");
    char *line = NULL;
    size_t cap = 0;
    long total = 0;
    while (f && getline(&line, &cap, f) > 0) total += strstr(line, "\"event\"") == NULL;
    if (f) rewind(f);
    DashInfo info = {.experiment = "replay", .model = "metrics_sample", .backend = "replay",
                     .total_steps = total, .n_adapters = 1, .rank = 16,
                     .mem_weights = 540e6, .mem_adapters = 12e6, .mem_optimizer = 24e6,
                     .mem_activations = 300e6};
    dash_set_info(r->d, &info);
    for (int i = 0; i < r->n_knobs; i++)
        dash_declare_knob(r->d, r->names[i], r->val[i], r->min[i], r->max[i], r->step[i]);
    bool quit = false;
    while (!quit && f && getline(&line, &cap, f) > 0) {
        cJSON *o = cJSON_Parse(line);
        if (!o) continue;
        if (cJSON_GetObjectItemCaseSensitive(o, "event")) { /* events go straight through */
            dash_push_line(r->d, line);
            cJSON_Delete(o);
            continue;
        }
        if ((quit = boundary(r))) {
            cJSON_Delete(o);
            break;
        }
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
        if (cJSON_IsNumber(st)) r->cur_step = (long)st->valuedouble;
        /* the step ran with our knob values */
        cJSON_DeleteItemFromObjectCaseSensitive(o, "knobs");
        cJSON_AddItemToObject(o, "knobs", knobs_json(r));
        char *s = cJSON_PrintUnformatted(o);
        if (s) dash_push_line(r->d, s);
        cJSON_free(s);
        cJSON *log = cJSON_CreateObject();
        cJSON_AddNumberToObject(log, "step", (double)r->cur_step);
        cJSON_AddItemToObject(log, "knobs", knobs_json(r));
        out_json(r, log);
        cJSON_Delete(log);
        cJSON_Delete(o);
        sleep_s(1.0 / r->rate);
    }
    /* the file is over: keep answering commands until told to quit */
    while (!quit) {
        quit = boundary(r);
        if (!quit) sleep_s(0.05);
    }
    free(line);
    if (f) fclose(f);
    dash_worker_done(r->d);
    return NULL;
}

static int usage(void) {
    fprintf(stderr, "usage: dash_replay --metrics FILE --out LOG --checkpoint PATH [--rate N] "
                    "[--knob NAME=VALUE:MIN:MAX:STEP]... [--mono]\n");
    return 2;
}

int main(int argc, char **argv) {
    Replay r = {.rate = 20.0};
    DashConfig cfg = {.monochrome = false};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--mono")) cfg.monochrome = true;
        else if (!v) return usage();
        else if (!strcmp(a, "--metrics")) r.metrics = argv[++i];
        else if (!strcmp(a, "--out")) r.out_path = argv[++i];
        else if (!strcmp(a, "--checkpoint")) r.ckpt_path = argv[++i];
        else if (!strcmp(a, "--rate")) r.rate = atof(argv[++i]);
        else if (!strcmp(a, "--knob") && r.n_knobs < MAX_KNOBS) {
            int k = r.n_knobs;
            if (sscanf(argv[++i], "%63[^=]=%lf:%lf:%lf:%lf", r.names[k], &r.val[k], &r.min[k],
                       &r.max[k], &r.step[k]) != 5)
                return usage();
            r.n_knobs++;
        } else return usage();
    }
    if (!r.metrics || !r.out_path || !r.ckpt_path || !(r.rate > 0)) return usage();
    r.out = fopen(r.out_path, "w");
    if (!r.out) {
        perror(r.out_path);
        return 1;
    }
    BlError err = {{0}};
    if (dash_create(&r.d, &cfg, &err)) {
        fprintf(stderr, "dash_replay: %s\n", err.msg);
        fclose(r.out);
        return 1;
    }
    pthread_t th;
    if (pthread_create(&th, NULL, worker, &r)) {
        dash_destroy(r.d);
        fclose(r.out);
        return 1;
    }
    while (dash_poll(r.d, 50)) {}
    pthread_join(th, NULL);
    dash_destroy(r.d);
    fclose(r.out);
    return 0;
}
