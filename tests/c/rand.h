/* rand.h - the C tests' random inputs: splitmix64, seeded per run (from the
 * clock unless a test fixes it) and printed, so a failure can be repeated. */
#ifndef BITLAB_TEST_RAND_H
#define BITLAB_TEST_RAND_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

static uint64_t rng_state;

static inline double urand(void) { /* [0, 1) */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

static inline float frand(float lo, float hi) { return lo + (float)urand() * (hi - lo); }
static inline int irand(int n) { return (int)(urand() * n); }

/* a fresh seed from the clock, announced as `name: seed N` */
static inline uint64_t rand_seed_fresh(const char *name) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    printf("%s: seed %llu\n", name, (unsigned long long)seed);
    return rng_state = seed;
}

#endif
