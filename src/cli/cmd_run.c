/* cmd_run.c - `bitlab SCRIPT.lua [options] [-- script args]`: runs an
 * experiment script in the embedded Lua runtime.
 *
 * In a terminal the live dashboard (ui/dashboard.h) takes the screen: this
 * (main) thread owns curses and runs its loop while a worker thread runs the
 * script, which touches the Lua state alone; the two talk only through the
 * dashboard's queues. With --headless, or when stdin/stdout is not a
 * terminal, no curses starts and progress lines come from the script's loop
 * (bitlab.train prints one every N steps). This file prints the final
 * summary and maps the outcome to the exit code: 0 success (or quit from the
 * dashboard), 1 script error, 130 stopped by Ctrl-C, 2 bad command line.
 *
 * --device is resolved here, once, before the script starts (an unknown
 * name or an unusable CUDA is a command-line error, exit 2): the runtime
 * gets the backend in its config and keeps it for the whole run. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "script/runtime.h"

static BlRuntime *g_rt; /* for the signal handler only */

static void on_sigint(int sig) {
    (void)sig;
    if (g_rt) bl_runtime_interrupt(g_rt);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    BlRuntime *rt;
    Dash *dash;
    int rc;
    bool interrupted;
    BlError err;
} Worker;

/* The worker thread under the dashboard: the script, then (after a script
 * error) the dashboard's commands until the user quits. */
static void *worker_main(void *arg) {
    Worker *w = arg;
    w->rc = bl_runtime_run(w->rt, &w->interrupted, &w->err);
    if (w->rc && !w->interrupted) bl_runtime_serve_after_error(w->rt);
    dash_worker_done(w->dash);
    return NULL;
}

/* Runs the script; under the dashboard in a worker thread while this thread
 * drives curses. */
static int run_script(BlRuntime *rt, Dash *dash, bool *interrupted, BlError *err) {
    if (!dash) return bl_runtime_run(rt, interrupted, err);
    Worker w = {.rt = rt, .dash = dash};
    pthread_t th;
    if (pthread_create(&th, NULL, worker_main, &w)) {
        *interrupted = false;
        return bl_fail(err, "cannot start the worker thread");
    }
    while (dash_poll(dash, 50)) {
    }
    pthread_join(th, NULL);
    *interrupted = w.interrupted;
    *err = w.err;
    return w.rc;
}

static const CliOpt OPTS[] = {CLI_FLAG_OPT("headless"),
                               CLI_STR_OPT("log"),
                               CLI_STR_OPT("resume"),
                               CLI_STR_OPT("control"),
                               CLI_STR_OPT("device"),
                               CLI_END};

const CliSpec cli_run_spec = {
    .name = "SCRIPT.lua",
    .synopsis = "bitlab SCRIPT.lua [--headless] [--log FILE] [--resume CKPT] [--control FILE]\n"
                "                  [--device cpu|cuda|auto] [-- SCRIPT ARGS]",
    .summary = "runs a Lua experiment (e.g. experiments/overfit.lua); the arguments after --\n"
               "are the script's own. `bitlab run SCRIPT ...` runs a script of any name",
    .details = "--log writes the metrics stream (one JSON object per line); --resume continues\n"
               "from a checkpoint; --control FILE is polled at each step for name=value knob\n"
               "changes. --device picks the backend the script runs on: cpu (the default),\n"
               "cuda, or auto (CUDA when a device is present, else the CPU); it is fixed for\n"
               "the whole run (bitlab.device() says which), and a CUDA that cannot run here\n"
               "(built without it, no device, the module does not load) exits 2 before the\n"
               "script starts. In a terminal the live dashboard opens (? lists its keys);\n"
               "--headless, or no tty, prints progress lines instead. Exit 0 on success (or q\n"
               "in the dashboard), 1 on a script error, 130 when stopped by Ctrl-C, 2 on a bad\n"
               "command line. The Lua library is found in ../lua beside the executable or\n"
               "$BITLAB_LUA_PATH",
    .opts = OPTS,
    .takes_args = true,
};

/* argv[0] is the script. */
int cmd_run(int argc, char **argv) {
    CliSpec spec = cli_run_spec;
    spec.name = argv[0]; /* messages name the script */
    CliArgs a;
    int prc = cli_parse(&a, &spec, argc, argv);
    if (prc >= 0) return prc;
    BlRuntimeConfig cfg = {.script = argv[0],
                           .headless = cli_flag(&a, "--headless"),
                           .log_path = cli_str(&a, "--log", NULL),
                           .resume_path = cli_str(&a, "--resume", NULL),
                           .control_path = cli_str(&a, "--control", NULL),
                           .args = a.rest,
                           .n_args = a.n_rest};
    if (access(cfg.script, R_OK) != 0) {
        fprintf(stderr, "bitlab: cannot read script %s\n", cfg.script);
        return 2;
    }
    if (!(cfg.be = cli_backend(&a, "cpu"))) return 2; /* before curses takes the terminal */
    BlError err = {{0}};
    Dash *dash = NULL;
    if (!cfg.headless && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO) &&
        dash_create(&dash, &(DashConfig){.monochrome = getenv("NO_COLOR") != NULL}, &err)) {
        fprintf(stderr, "bitlab: %s; running headless\n", err.msg);
        dash = NULL;
    }
    cfg.headless = dash == NULL;
    cfg.dash = dash;
    BlRuntime *rt = NULL;
    if (bl_runtime_create(&rt, &cfg, &err)) {
        dash_destroy(dash);
        fprintf(stderr, "bitlab: %s\n", err.msg);
        return 1;
    }
    g_rt = rt;
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    double t0 = now_s();
    bool interrupted = false;
    int rc = run_script(rt, dash, &interrupted, &err);
    double dt = now_s() - t0;
    sigaction(SIGINT, &old, NULL);
    long steps = bl_runtime_steps_logged(rt);
    bool quit = bl_runtime_quit_requested(rt);
    g_rt = NULL;
    bl_runtime_free(rt);
    dash_destroy(dash); /* the terminal is back: the summary can be printed */
    fflush(stdout);
    if (rc) fprintf(stderr, "bitlab: %s: %s\n", interrupted ? "interrupted" : "script error", err.msg);
    fprintf(stderr, "bitlab: %s %s after %.1f s, %ld step record(s)%s%s\n", cfg.script,
            rc ? "failed" : interrupted ? "stopped (Ctrl-C)" : quit ? "stopped from the dashboard" : "finished",
            dt, steps,
            cfg.log_path ? ", metrics in " : "", cfg.log_path ? cfg.log_path : "");
    return interrupted ? 130 : rc ? 1 : 0;
}
