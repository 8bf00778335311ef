/* cmd_bench.c - `bitlab bench forward|step`: teacher-forward and
 * distillation-step throughput. The reference implementations run beside
 * them from bench/ (bench_forward.py, bench_step.py). */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "backend/backend.h"
#include "cli/cli.h"
#include "nn/forward.h"
#include "train/step.h"

/* --batch, --seq and --iters, all positive */
static int bench_sizes(const CliArgs *a, int iters_dflt, int *B, int *T, int *iters) {
    if (cli_int(a, "--batch", 4, B) || cli_int(a, "--seq", 128, T) ||
        cli_int(a, "--iters", iters_dflt, iters))
        return -1;
    if (*B < 1 || *T < 1 || *iters < 1) {
        fprintf(stderr, "bitlab bench: --batch, --seq and --iters must be positive\n");
        return -1;
    }
    return 0;
}

static int bench_forward(const CliArgs *a) {
    int B, T, iters;
    if (bench_sizes(a, 3, &B, &T, &iters)) return 2;
    BlModel *m = cli_load_model(a);
    if (!m) return 1;
    BlForwardBench r;
    BlError err = {{0}};
    int rc = bl_bench_forward(m, bl_backend_cpu(), B, T, iters, &r, &err);
    if (rc == 0)
        printf("{\"bench\": \"forward\", \"impl\": \"bitlab\", \"backend\": \"cpu\", \"batch\": %d, "
               "\"seq\": %d, \"seconds\": %.4f, \"tokens_per_s\": %.1f, \"gemm_gflops\": %.2f}\n",
               r.B, r.T, r.seconds, r.tokens_per_s, r.gemm_gflops);
    else
        fprintf(stderr, "bitlab bench: %s\n", err.msg);
    bl_model_free(m);
    return rc ? 1 : 0;
}

/* One JSON line: throughput, peak RSS and the trainer's memory breakdown. */
static int bench_step(const CliArgs *a) {
    int B, T, iters, warmup;
    if (bench_sizes(a, 5, &B, &T, &iters) || cli_int(a, "--warmup", 2, &warmup)) return 2;
    BlModel *m = cli_load_model(a);
    if (!m) return 1;
    BlStepBench b;
    BlError err = {{0}};
    int rc = bl_bench_step(m, B, T, warmup, iters, &b, &err);
    if (rc == 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double MiB = 1024.0 * 1024.0;
        printf("{\"bench\": \"step\", \"impl\": \"bitlab\", \"backend\": \"cpu\", \"batch\": %d, "
               "\"seq\": %d, \"steps\": %d, \"tokens_per_s\": %.2f, \"step_s_median\": %.4f, "
               "\"step_s_min\": %.4f, \"last_loss\": %.5f, \"peak_rss_mib\": %.1f, "
               "\"mem_mib\": {\"frozen_weights\": %.1f, \"adapters_frozen\": %.2f, "
               "\"trainable\": %.2f, \"grads\": %.2f, \"optimizer\": %.2f, "
               "\"activations\": %.1f, \"scratch\": %.1f}}\n",
               B, T, b.steps, b.tokens_per_s, b.step_s_median, b.step_s_min, b.last_total,
               ru.ru_maxrss / 1024.0, b.mem.student.frozen_weights / MiB,
               b.mem.student.adapters_frozen / MiB, b.mem.student.adapters_trainable / MiB,
               b.mem.student.grads / MiB, b.mem.student.optimizer / MiB, b.mem.activations / MiB,
               b.mem.scratch / MiB);
    } else {
        fprintf(stderr, "bitlab bench: %s\n", err.msg);
    }
    bl_model_free(m);
    return rc ? 1 : 0;
}

int cmd_bench(const CliArgs *a) {
    static const char *const known[] = {"--model", "--batch", "--seq", "--iters", "--warmup", NULL};
    const char *what = a->argc >= 1 ? a->argv[0] : "";
    int (*run)(const CliArgs *) = !strcmp(what, "forward") ? bench_forward
                                  : !strcmp(what, "step")  ? bench_step
                                                           : NULL;
    if (!run) {
        fprintf(stderr, "bitlab bench: expected 'forward' or 'step' (see bitlab --help)\n");
        return 2;
    }
    CliArgs rest = {a->argc - 1, a->argv + 1};
    if (cli_check_known(&rest, known) != 0) return 2;
    return run(&rest);
}
