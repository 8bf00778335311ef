/* parallel.c - the worker pool of parallel.h. A worker that has finished
 * its part waits for the next region by watching a counter for at most
 * SPIN_NS (a region usually follows within microseconds: one op after
 * another) and then sleeps on a condition variable, so between bursts of
 * work no thread burns a core, and a burst costs no futex wake-ups. The
 * caller waits for the workers the same way. Every worker acknowledges every
 * region (those without a part too), so none can lag into the next one. */
#define _GNU_SOURCE
#include "ops/parallel.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

enum { MAX_THREADS = 64, SPIN_NS = 50000 };

static struct {
    pthread_once_t once;
    int n;                /* threads, the caller of a region included */
    pthread_mutex_t busy; /* held for the length of a region */
    pthread_mutex_t mu;   /* guards the sleeping flags and the condition variables */
    pthread_cond_t go, done;
    int sleepers;         /* workers asleep on go */
    bool caller_sleeps;   /* the caller asleep on done */
    _Atomic long gen;     /* counts regions: a worker runs when it changes */
    _Atomic int pending;  /* workers yet to finish the current region */
    /* the current region, written before gen is bumped */
    int active;
    BlRangeFn fn;
    void *ctx;
    long items;
} pool = {.once = PTHREAD_ONCE_INIT,
          .busy = PTHREAD_MUTEX_INITIALIZER,
          .mu = PTHREAD_MUTEX_INITIALIZER,
          .go = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static _Thread_local bool in_region;

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spin for at most SPIN_NS until the region counter leaves `seen` (a
 * worker) or the current region's workers are all done (the caller); false
 * when the time ran out. */
static bool spin_wait(bool for_gen, long seen) {
    long t0 = now_ns();
    for (int i = 0;; i++) {
        if (for_gen ? atomic_load_explicit(&pool.gen, memory_order_acquire) != seen
                    : atomic_load_explicit(&pool.pending, memory_order_acquire) == 0)
            return true;
        if ((i & 63) == 63 && now_ns() - t0 > SPIN_NS) return false;
        cpu_relax();
    }
}

static void run_part(int k, int active, BlRangeFn fn, void *ctx, long n) {
    long i0 = n * k / active, i1 = n * (k + 1) / active;
    if (i1 > i0) fn(ctx, i0, i1);
}

static void *worker_main(void *arg) {
    int k = (int)(long)arg;
    in_region = true; /* a worker's own calls never fan out again */
    long seen = 0;
    for (;;) {
        if (!spin_wait(true, seen)) {
            pthread_mutex_lock(&pool.mu);
            pool.sleepers++;
            while (atomic_load(&pool.gen) == seen) pthread_cond_wait(&pool.go, &pool.mu);
            pool.sleepers--;
            pthread_mutex_unlock(&pool.mu);
        }
        seen = atomic_load_explicit(&pool.gen, memory_order_acquire);
        if (k < pool.active) run_part(k, pool.active, pool.fn, pool.ctx, pool.items);
        if (atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool.mu);
            if (pool.caller_sleeps) pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.mu);
        }
    }
    return NULL;
}

static int env_threads(const char *name) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    return *end == '\0' && v > 0 ? (int)(v < MAX_THREADS ? v : MAX_THREADS) : 0;
}

static void start_pool(void) {
    int n = env_threads("OPENBLAS_NUM_THREADS");
    if (!n) n = env_threads("OMP_NUM_THREADS");
    if (!n) {
        cpu_set_t set;
        n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    }
    n = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
    /* OpenBLAS's own workers would spin between calls: every call is made
     * from one of ours instead, on one block of a product */
    openblas_set_num_threads(1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 8u << 20); /* the ops keep row scratch on the stack */
    int started = 1;
    for (int k = 1; k < n; k++) {
        pthread_t th;
        if (pthread_create(&th, &attr, worker_main, (void *)(long)k) != 0) break;
        pthread_detach(th);
        started++;
    }
    pthread_attr_destroy(&attr);
    pool.n = started; /* fewer threads if the system refused some: still correct */
}

int bl_parallel_threads(void) {
    pthread_once(&pool.once, start_pool);
    return pool.n;
}

void bl_parallel_for(long n, long work, BlRangeFn fn, void *ctx) {
    if (n <= 0) return;
    int nt = bl_parallel_threads(); /* first: starting the pool makes OpenBLAS single-threaded */
    if (work < BL_PARALLEL_MIN_WORK) nt = 1;
    if (nt > n) nt = (int)n;
    if (nt <= 1 || in_region || pthread_mutex_trylock(&pool.busy) != 0) {
        fn(ctx, 0, n);
        return;
    }
    pool.fn = fn;
    pool.ctx = ctx;
    pool.items = n;
    pool.active = nt;
    atomic_store_explicit(&pool.pending, pool.n - 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool.gen, 1, memory_order_acq_rel);
    /* a worker that has not yet counted itself asleep sees the new gen under
     * the lock before it waits, so checking sleepers here loses no wake-up */
    pthread_mutex_lock(&pool.mu);
    if (pool.sleepers) pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.mu);

    in_region = true;
    run_part(0, nt, fn, ctx, n);
    in_region = false;

    if (!spin_wait(false, 0)) {
        pthread_mutex_lock(&pool.mu);
        pool.caller_sleeps = true;
        while (atomic_load(&pool.pending) > 0) pthread_cond_wait(&pool.done, &pool.mu);
        pool.caller_sleeps = false;
        pthread_mutex_unlock(&pool.mu);
    }
    pthread_mutex_unlock(&pool.busy);
}
