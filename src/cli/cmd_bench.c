/* cmd_bench.c - `bitlab bench forward|step|ternary|sample`: teacher-forward and
 * distillation-step throughput on the backend --device picks (the step: the
 * trainer, train/trainer.h), and the λ = 1 student linear's fp32 path against
 * its integer path, and batched teacher sampling (cmd_bench_sample.c). The
 * reference implementations run beside them from bench/ (bench_forward.py,
 * bench_step.py). */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "backend/backend.h"
#include "backend/device_model.h"
#include "cli/cli.h"
#include "nn/forward.h"
#include "ops/parallel.h"
#include "train/trainer.h"

/* both benches: the model, the shape, the timed iterations and the backend */
#define SIZE_OPTS                                                                         \
    CLI_STR_REQ("model"), CLI_INT_OPT("batch", 1, 4096), CLI_INT_OPT("seq", 1, 1 << 20), \
        CLI_INT_OPT("iters", 1, 1000000), CLI_STR_OPT("device")

static const CliOpt FORWARD_OPTS[] = {SIZE_OPTS, CLI_END};
static const CliOpt STEP_OPTS[] = {SIZE_OPTS,
                                   CLI_INT_OPT("warmup", 0, 1000000),
                                   CLI_FLAG_OPT("ternary-fast-path"),
                                   CLI_NUM_OPT("peak-tflops", 0.001, 1e6),
                                   CLI_END};

const CliSpec cli_bench_forward_spec = {
    .name = "bench forward",
    .synopsis = "bitlab bench forward --model PATH [--batch B] [--seq T] [--iters N]\n"
                "                     [--device cpu|cuda|auto]",
    .summary = "teacher-forward throughput: tokens/s and GEMM GFLOP/s (defaults 4 x 128,\n"
               "3 iterations); one JSON line",
    .opts = FORWARD_OPTS,
};

const CliSpec cli_bench_step_spec = {
    .name = "bench step",
    .synopsis = "bitlab bench step --model PATH [--batch B] [--seq T] [--iters N] [--warmup N]\n"
                "                  [--device cpu|cuda|auto] [--ternary-fast-path] [--peak-tflops X]",
    .summary = "one distillation step (teacher fwd + student fwd + backward + AdamW; lambda 1,\n"
               "8-bit activations, LoRA r=16): tokens/s, peak memory and the memory breakdown;\n"
               "on a GPU also model FLOP utilisation against the card's bf16 peak",
    .details = "Defaults 4 x 128, 5 timed steps after 2 warm-up steps. --ternary-fast-path\n"
               "runs the lambda-1 A8 student forward as an int8 product; --peak-tflops X\n"
               "overrides the card's bf16 peak (TFLOP/s) that the utilisation is measured\n"
               "against. One JSON line",
    .opts = STEP_OPTS,
};

static int bench_forward(const CliArgs *a) {
    int B = cli_int(a, "--batch", 4), T = cli_int(a, "--seq", 128), iters = cli_int(a, "--iters", 3);
    const BlBackend *be = cli_backend(a, "cpu");
    if (!be) return 2;
    BlModel *m = cli_load_model(a);
    if (!m) return 1;
    BlForwardBench r;
    BlError err = {{0}};
    BlDeviceModel dm;
    /* the weights are copied to the device once, outside the timed forwards */
    int rc = bl_device_model_build(&dm, m, be, &err);
    if (rc == 0) rc = bl_bench_forward(&dm.model, be, B, T, iters, &r, &err);
    if (rc == 0)
        printf("{\"bench\": \"forward\", \"impl\": \"bitlab\", \"backend\": \"%s\", \"batch\": %d, "
               "\"seq\": %d, \"seconds\": %.4f, \"tokens_per_s\": %.1f, \"gemm_gflops\": %.2f}\n",
               be->name, r.B, r.T, r.seconds, r.tokens_per_s, r.gemm_gflops);
    else
        fprintf(stderr, "bitlab bench: %s\n", err.msg);
    bl_device_model_free(&dm);
    bl_model_free(m);
    return rc ? 1 : 0;
}

/* Dense bf16 tensor-core peak (TFLOP/s, datasheet) of a device by name, 0
 * when unknown; --peak-tflops overrides. */
static double peak_tflops(const char *name) {
    static const struct { const char *has, *also; double tflops; } table[] = {
        {"H100", "PCIe", 756.0}, {"H100", "NVL", 835.0}, {"H100", NULL, 989.4},
        {"H200", NULL, 989.4},   {"A100", NULL, 312.0},  {"L40S", NULL, 362.0},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strstr(name, table[i].has) && (!table[i].also || strstr(name, table[i].also)))
            return table[i].tflops;
    return 0.0;
}

/* The trainer on be: one JSON line of throughput, model FLOP utilisation
 * against the device's bf16 peak, peak RSS, the backend's memory high-water
 * mark and the trainer's memory breakdown. */
static int bench_step_on(const CliArgs *a, const BlBackend *be, int B, int T, int iters,
                         int warmup) {
    double peak_arg = cli_num(a, "--peak-tflops", 0.0);
    BlTrainerShape sh = {.batch = B, .seq = T,
                         .ternary_fast_path = cli_flag(a, "--ternary-fast-path")};
    BlModel *m = cli_load_model(a);
    if (!m) return 1;
    BlStepBench b;
    BlError err = {{0}};
    int rc = bl_bench_step(m, be, &sh, warmup, iters, &b, &err);
    if (rc == 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double MiB = 1024.0 * 1024.0;
        const char *name = be->device_name();
        double peak = peak_arg > 0 ? peak_arg : peak_tflops(name);
        double tflops = b.flops_per_step / b.step_s_median / 1e12;
        char mfu[32] = "null", peak_s[32] = "null", used[32] = "null";
        if (peak > 0.0) {
            snprintf(mfu, sizeof mfu, "%.4f", tflops / peak);
            snprintf(peak_s, sizeof peak_s, "%.1f", peak);
        }
        if (b.mem.device_total)
            snprintf(used, sizeof used, "%.1f", (b.mem.device_total - b.mem.device_free) / MiB);
        printf("{\"bench\": \"step\", \"impl\": \"bitlab\", \"backend\": \"%s\", "
               "\"device\": \"%s\", \"ternary_fast_path\": %s, "
               "\"batch\": %d, \"seq\": %d, \"steps\": %d, \"tokens_per_s\": %.2f, "
               "\"step_s_median\": %.5f, \"step_s_min\": %.5f, \"last_loss\": %.5f, "
               "\"flops_per_step\": %.4g, \"tflops\": %.3f, \"peak_tflops\": %s, \"mfu\": %s, "
               "\"peak_device_mib\": %.1f, \"weights_mib\": %.1f, \"device_used_mib\": %s, "
               "\"peak_rss_mib\": %.1f, \"minor_faults_per_step\": %.1f, \"threads\": %d, "
               "\"mem_mib\": {\"frozen_weights\": %.1f, \"adapters_frozen\": %.2f, "
               "\"trainable\": %.2f, \"grads\": %.2f, \"optimizer\": %.2f, "
               "\"device_student\": %.1f, \"activations\": %.1f, \"scratch\": %.1f}}\n",
               be->name, name, sh.ternary_fast_path ? "true" : "false", B, T, b.steps,
               b.tokens_per_s, b.step_s_median, b.step_s_min, b.last_total, b.flops_per_step,
               tflops, peak_s, mfu, b.mem.peak / MiB, b.weight_bytes / MiB, used,
               ru.ru_maxrss / 1024.0, b.minor_faults, bl_parallel_threads(),
               b.tmem.student.frozen_weights / MiB,
               b.tmem.student.adapters_frozen / MiB, b.tmem.student.adapters_trainable / MiB,
               b.tmem.student.grads / MiB, b.tmem.student.optimizer / MiB,
               b.tmem.device_student / MiB, b.tmem.activations / MiB, b.tmem.scratch / MiB);
    } else {
        fprintf(stderr, "bitlab bench: %s\n", err.msg);
    }
    bl_model_free(m);
    return rc ? 1 : 0;
}

static int bench_step(const CliArgs *a) {
    int B = cli_int(a, "--batch", 4), T = cli_int(a, "--seq", 128), iters = cli_int(a, "--iters", 5);
    int warmup = cli_int(a, "--warmup", 2);
    const BlBackend *be = cli_backend(a, "cpu");
    if (!be) return 2;
    return bench_step_on(a, be, B, T, iters, warmup);
}

int cmd_bench(int argc, char **argv) {
    const char *what = argc >= 2 ? argv[1] : "";
    const CliSpec *spec = !strcmp(what, "forward")   ? &cli_bench_forward_spec
                          : !strcmp(what, "step")    ? &cli_bench_step_spec
                          : !strcmp(what, "ternary") ? &cli_bench_ternary_spec
                          : !strcmp(what, "sample")  ? &cli_bench_sample_spec
                                                     : NULL;
    if (!spec && (!strcmp(what, "--help") || !strcmp(what, "-h"))) {
        cli_print_help(stdout, &cli_bench_forward_spec);
        printf("\n");
        cli_print_help(stdout, &cli_bench_step_spec);
        printf("\n");
        cli_print_help(stdout, &cli_bench_ternary_spec);
        printf("\n");
        cli_print_help(stdout, &cli_bench_sample_spec);
        return 0;
    }
    if (!spec) {
        fprintf(stderr,
                "bitlab bench: expected 'forward', 'step', 'ternary' or 'sample'%s%s%s (see bitlab "
                "bench --help)\n",
                *what ? ", got '" : "", what, *what ? "'" : "");
        return 2;
    }
    CliArgs a;
    int prc = cli_parse(&a, spec, argc - 1, argv + 1);
    if (prc >= 0) return prc;
    return spec == &cli_bench_forward_spec   ? bench_forward(&a)
           : spec == &cli_bench_step_spec    ? bench_step(&a)
           : spec == &cli_bench_ternary_spec ? cli_bench_ternary(&a)
                                             : cli_bench_sample(&a);
}
