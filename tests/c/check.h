/* check.h - the assertion every C test uses: a failed CHECK prints file:line
 * and its message and is counted, so one run reports every failure. */
#ifndef BITLAB_TEST_CHECK_H
#define BITLAB_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                          \
    do {                                                          \
        if (!(cond)) {                                            \
            fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                         \
            fprintf(stderr, "\n");                                \
            failures++;                                           \
        }                                                         \
    } while (0)

#endif
