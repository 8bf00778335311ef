/* fuzz_common.h - what the libFuzzer harnesses share (header-only: each
 * harness is one executable): a private scratch folder, writing the input
 * to a file there (every reader under test takes a path), and splitting one
 * input into several files with little-endian u32 length prefixes.
 *
 * Built only with -DBITLAB_FUZZ=ON (clang, -fsanitize=fuzzer); see
 * scripts/fuzz.sh. Test code: aborts on a broken environment. */
#ifndef BITLAB_FUZZ_COMMON_H
#define BITLAB_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fz_dir[64];

static inline void fz_cleanup(void) {
    if (!fz_dir[0]) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fz_dir);
}

/* The process's scratch folder (in /dev/shm when it exists: no disk I/O). */
static inline const char *fz_scratch(void) {
    if (fz_dir[0]) return fz_dir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fz_dir, sizeof fz_dir, "%s/bitlab-fuzz-XXXXXX", base);
    if (!mkdtemp(fz_dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fz_cleanup);
    return fz_dir;
}

/* scratch/name; the returned buffer is static per call site's `buf`. */
static inline const char *fz_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", fz_scratch(), name);
    return buf;
}

static inline void fz_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

/* BITLAB_FUZZ_VERBOSE=1 prints why an input was refused (to check that
 * the seeds get through: run a harness on the seed folder's files). */
static inline void fz_note(const char *what, const char *msg) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("BITLAB_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "fuzz: %s: %s\n", what, msg);
}

/* Splits data into k parts: parts 0..k-2 each behind a u32 LE length
 * (clamped to what is left), the last part is the rest. */
typedef struct {
    const uint8_t *p;
    size_t n;
} FzPart;

static inline void fz_split(const uint8_t *data, size_t size, FzPart *parts, int k) {
    for (int i = 0; i < k; i++) {
        size_t n = size;
        if (i < k - 1) {
            uint32_t len = 0;
            size_t h = size < 4 ? size : 4;
            for (size_t b = 0; b < h; b++) len |= (uint32_t)data[b] << (8 * b);
            data += h;
            size -= h;
            n = len < size ? len : size;
        }
        parts[i].p = data;
        parts[i].n = n;
        data += n;
        size -= n;
    }
}

#endif
