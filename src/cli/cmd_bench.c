/* cmd_bench.c - `bitlab bench forward`: teacher-forward throughput. The
 * reference implementations run beside it from bench/ (see bench/README.md). */
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "cli/cli.h"
#include "nn/forward.h"

static int bench_forward(const CliArgs *a) {
    int B, T, iters;
    if (cli_int(a, "--batch", 4, &B) || cli_int(a, "--seq", 128, &T) || cli_int(a, "--iters", 3, &iters))
        return 2;
    if (B < 1 || T < 1 || iters < 1) {
        fprintf(stderr, "bitlab bench: --batch, --seq and --iters must be positive\n");
        return 2;
    }
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

int cmd_bench(const CliArgs *a) {
    static const char *const known[] = {"--model", "--batch", "--seq", "--iters", NULL};
    if (a->argc < 1 || strcmp(a->argv[0], "forward") != 0) {
        fprintf(stderr, "bitlab bench: expected 'forward' (see bitlab --help)\n");
        return 2;
    }
    CliArgs rest = {a->argc - 1, a->argv + 1};
    if (cli_check_known(&rest, known) != 0) return 2;
    return bench_forward(&rest);
}
