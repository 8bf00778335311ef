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
 * gets the backend in its config and keeps it for the whole run.
 *
 * Under mpirun (dist/comm.h) every process runs the script; rank 0 alone
 * opens the dashboard, writes the metrics and prints the summary. A script
 * error on any rank prints "rank R: ..." and ends the whole job
 * (bl_comm_abort: the others would wait for it forever at the next
 * all-reduce); the last checkpoint is whole (written atomically by rank 0).
 * A build without MPI started by mpirun says so and runs one process. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "dist/comm.h"
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
    /* not under mpirun: the other ranks wait for this one, the job must end */
    if (w->rc && !w->interrupted && bl_comm_size() <= 1) bl_runtime_serve_after_error(w->rt);
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
               "changes (a line `stop` ends the run there, checkpointed). --device picks the\n"
               "backend the script runs on: cpu (the default), cuda, or auto (CUDA when a\n"
               "device is present, else the CPU); it is fixed for the whole run\n"
               "(bitlab.device() says which), and a CUDA that cannot run here (built without\n"
               "it, no device, the module does not load) exits 2 before the script starts. In\n"
               "a terminal the live dashboard opens (? lists its keys); --headless, or no tty,\n"
               "prints progress lines instead. Exit 0 on success (or q in the dashboard), 1 on\n"
               "a script error, 130 when stopped by Ctrl-C, 2 on a bad command line. The Lua\n"
               "library is found in ../lua beside the executable or $BITLAB_LUA_PATH.\n"
               "`mpirun -np N bitlab SCRIPT.lua` trains data-parallel on N processes\n"
               "(bitlab.train shards each batch; rank 0 writes the metrics and checkpoints and\n"
               "prints; an error on any rank ends the job)",
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
    BlError err = {{0}};
    const char *launcher_var;
    int launched = bl_comm_launcher_size(&launcher_var);
    if (bl_comm_init(NULL, NULL, &err)) {
        fprintf(stderr, "bitlab: %s\n", err.msg);
        return 1;
    }
    if (launched > 1 && !bl_comm_built_with_mpi())
        fprintf(stderr, "bitlab: started as one of %d processes (%s) but built without MPI: "
                "running alone, as a single process (rebuild with libopenmpi-dev for "
                "data-parallel runs)\n", launched, launcher_var);
    int rank = bl_comm_rank(), world = bl_comm_size();
    if (!(cfg.be = cli_backend(&a, "cpu"))) return 2; /* before curses takes the terminal */
    Dash *dash = NULL;
    if (!cfg.headless && rank == 0 && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO) &&
        dash_create(&dash, &(DashConfig){.monochrome = getenv("NO_COLOR") != NULL}, &err)) {
        fprintf(stderr, "bitlab: %s; running headless\n", err.msg);
        dash = NULL;
    }
    cfg.headless = dash == NULL;
    cfg.dash = dash;
    BlRuntime *rt = NULL;
    if (bl_runtime_create(&rt, &cfg, &err)) {
        dash_destroy(dash);
        if (world > 1) fprintf(stderr, "bitlab: rank %d: %s\n", rank, err.msg);
        else fprintf(stderr, "bitlab: %s\n", err.msg);
        bl_comm_abort(1);
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
    if (rc && world > 1) {
        /* the other ranks wait for this one at their next collective: end them all */
        fprintf(stderr, "bitlab: rank %d of %d: %s: %s\n", rank, world,
                interrupted ? "interrupted" : "script error", err.msg);
        fprintf(stderr, "bitlab: rank %d ends the job (the last checkpoint rank 0 wrote is whole)\n",
                rank);
        fflush(stderr);
        bl_comm_abort(interrupted ? 130 : 1);
    }
    if (rc) fprintf(stderr, "bitlab: %s: %s\n", interrupted ? "interrupted" : "script error", err.msg);
    if (rank > 0) { /* rank 0 prints the summary */
        bl_comm_finalize();
        return rc ? 1 : 0;
    }
    fprintf(stderr, "bitlab: %s %s after %.1f s, %ld step record(s)%s%s\n", cfg.script,
            rc ? "failed" : interrupted ? "stopped (Ctrl-C)" : quit ? "stopped from the dashboard" : "finished",
            dt, steps,
            cfg.log_path ? ", metrics in " : "", cfg.log_path ? cfg.log_path : "");
    bl_comm_finalize();
    return interrupted ? 130 : rc ? 1 : 0;
}
