/* blas_core.c - makes Debian's OpenBLAS use the kernels the CPU can run.
 *
 * OpenBLAS (DYNAMIC_ARCH) picks its GEMM kernels from the CPU model when the
 * library loads. On virtual machines that report a generic "Intel Xeon
 * Processor" it falls back to the SSE3 "Prescott" kernels even when the CPU
 * has AVX2 or AVX-512, which makes every matmul ~4x slower. The choice can
 * only be overridden through OPENBLAS_CORETYPE before the library loads, so
 * the executable re-runs itself once with it set. A user's own
 * OPENBLAS_CORETYPE is always respected. */
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include <cblas.h>

#include "cli/cli.h"

static const char *better_core(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

void cli_fix_blas_core(char **argv) {
    if (getenv("OPENBLAS_CORETYPE")) return;
    const char *core = openblas_get_corename();
    if (!core || strcasecmp(core, "prescott") != 0) return;
    const char *better = better_core();
    if (!better) return;
    setenv("OPENBLAS_CORETYPE", better, 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the slow kernels rather than not at all */
    fprintf(stderr, "bitlab: note: OpenBLAS chose its generic kernels; set OPENBLAS_CORETYPE=%s for speed\n",
            better);
}
