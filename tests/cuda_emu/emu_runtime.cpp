// emu_runtime.cpp - the emulated CUDA device: a launch runs its blocks one
// after another on the calling thread, the threads of a block as fibers
// (ucontext) that switch only at __syncthreads and at warp rendezvous
// (shuffles, reductions); and the CUDA runtime calls kernels/ makes
// (memory, copies, streams, device properties, errors). See README.md.
//
// Checked, each reported with the kernel's name as a launch failure (the
// next cudaGetLastError / synchronisation returns it):
//   - launch limits: ≤ 1024 threads per block (1024, 1024, 64), the grid's
//     limits, dynamic shared memory ≤ 48 KiB unless cudaFuncSetAttribute
//     opted in, and never above the device's opt-in maximum;
//   - a __syncthreads that some threads of the block never reach (they
//     exited or wait elsewhere), a shuffle / reduction that some lane of its
//     mask never reaches, lanes of one rendezvous at different operations,
//     a mask naming lanes the block does not have.
// Under ThreadSanitizer every fiber is a TSan fiber and switches carry no
// ordering: the only happens-before edges between threads of a block are
// the barriers and warp rendezvous (and the launch), so a missing barrier
// is a reported race. Under AddressSanitizer the fiber stacks are announced
// (__sanitizer_start_switch_fiber); device memory is host memory of the
// exact size, so out-of-bounds global accesses are reported.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>

#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda_emu.h"

#undef warpSize  // a cudaDeviceProp field here

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif
// the TSan build compiles this file uninstrumented (BITLAB_EMU_TSAN): the
// emulator's own bookkeeping is shared by all fibers without TSan-visible
// order, by design; it only calls TSan's fiber and sync API
#if defined(__SANITIZE_THREAD__) || defined(BITLAB_EMU_TSAN)
#include <sanitizer/tsan_interface.h>
#define EMU_TSAN 1
#define EMU_NO_TSAN __attribute__((no_sanitize_thread))
#else
#define EMU_TSAN 0
#define EMU_NO_TSAN
#endif

// the static __shared__ section (cuda_emu.h), absent when no kernel has one
extern "C" char __start_bl_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_bl_emu_shared[] __attribute__((weak, visibility("hidden")));

namespace bl_emu {
namespace {

// ----------------------------------------------------------------------------
// device properties

const size_t kStaticSharedMax = 48 * 1024;
const size_t kSharedOptinMax = 232448;  // sm_90: 227 KiB
const int kMaxThreads = 1024;

size_t device_total_bytes() {
    static size_t total = [] {
        const char *e = getenv("BITLAB_EMU_MEM_MIB");
        size_t mib = e && *e ? strtoull(e, NULL, 10) : 81559;  // an H100 80GB's
        return mib << 20;
    }();
    return total;
}

bool device_absent() {
    const char *e = getenv("BITLAB_EMU_NO_DEVICE");
    return e && *e && strcmp(e, "0") != 0;
}

// BITLAB_EMU_DEVICES: how many devices cudaGetDeviceCount reports (default
// 1), all alike, so that a data-parallel run on one host can take one
// "GPU" per rank; every one is the same host memory
int device_count() {
    static int n = [] {
        const char *e = getenv("BITLAB_EMU_DEVICES");
        int v = e && *e ? atoi(e) : 1;
        return v < 1 ? 1 : v;
    }();
    return n;
}
int current_device = 0;

// ----------------------------------------------------------------------------
// errors: the last error (cudaGetLastError) and a pending asynchronous one
// (a kernel failure: returned by the next synchronisation too)

std::mutex mu;  // the runtime's tables; launches themselves run on the caller
cudaError_t last_error = cudaSuccess;
cudaError_t pending_error = cudaSuccess;

cudaError_t set_error(cudaError_t e) {
    if (e != cudaSuccess) last_error = e;
    return e;
}

void kernel_failed(const char *kernel, const std::string &what) {
    fprintf(stderr, "cuda-emu: kernel %s: %s\n", kernel, what.c_str());
    fflush(stderr);
    last_error = cudaErrorLaunchFailure;
    pending_error = cudaErrorLaunchFailure;
    const char *a = getenv("BITLAB_EMU_ABORT");
    if (a && *a && strcmp(a, "0") != 0) abort();
}

// a synchronising call returns (and clears) a kernel failure
cudaError_t take_pending() {
    cudaError_t e = pending_error;
    pending_error = cudaSuccess;
    return e;
}

// ----------------------------------------------------------------------------
// memory: every device allocation is a host allocation of exactly its size

std::map<uintptr_t, size_t> allocs;  // base -> bytes
size_t used_bytes = 0;

// true when [p, p + n) lies inside one allocation
bool is_device_range(const void *p, size_t n) {
    std::lock_guard<std::mutex> g(mu);
    uintptr_t a = (uintptr_t)p;
    auto it = allocs.upper_bound(a);
    if (it == allocs.begin()) return false;
    --it;
    return a >= it->first && a + n <= it->first + (it->second ? it->second : 1);
}

// ----------------------------------------------------------------------------
// fibers

enum State { RUNNABLE, AT_BARRIER, AT_WARP, DONE, ABANDONED };

struct Fiber {
    ucontext_t ctx;
    char *stack = nullptr;
    size_t stack_size = 0;
    uint3 tid;
    int flat = 0;  // threadIdx flattened (x fastest)
    State state = DONE;
    bool dirty = false;  // abandoned mid-kernel: its stack's shadow needs a reset
    const char *where = "";  // the operation it waits at
#if EMU_TSAN
    void *tsan = nullptr;
#endif
};

struct Warp {
    unsigned exists = 0;   // lanes the block has
    unsigned exited = 0;   // lanes that returned
    unsigned arrived = 0;  // lanes waiting at the current rendezvous
    unsigned mask = 0;     // its mask (the first arriver's)
    WarpOp op = SHFL_XOR;
    int arg = 0, width = 32;
    unsigned gen = 0;
    uint64_t val[2][32];  // double-buffered by generation
    uint64_t result[2][32];
    char sync[2];  // TSan sync objects, by generation
};

struct LaunchState {
    const char *name;
    dim3 grid, block;
    uint3 bidx;
    size_t smem;
    BodyFn body;
    void *closure;
    // plain arrays: fibers touch these from uninstrumented code only (a
    // std::vector's inline accessors would be TSan-instrumented)
    char *dyn = nullptr;  // dynamic shared memory of the running block, exactly smem bytes
    int nthreads = 0, live = 0;
    int bar_arrived = 0;
    unsigned bar_gen = 0;
    char bar_sync[2];  // TSan sync objects, by generation
    char start_sync, end_sync;
    Warp warps[kMaxThreads / 32];
    bool failed = false;
    std::string why;
};

Fiber fibers[kMaxThreads];  // the pool: stacks mapped on first use, kept
ucontext_t sched_ctx;
Fiber *cur = nullptr;  // the running fiber, null in the scheduler
LaunchState *L = nullptr;
#if EMU_TSAN
void *sched_tsan = nullptr;
#endif
#if EMU_ASAN
const void *sched_stack_bottom = nullptr;
size_t sched_stack_size = 0;
#endif

size_t stack_bytes() {
    return (EMU_ASAN || EMU_TSAN) ? (256u << 10) : (64u << 10);
}

std::string coord(uint3 v) {
    char b[64];
    snprintf(b, sizeof b, "(%u,%u,%u)", v.x, v.y, v.z);
    return b;
}

std::string block_str() { return "block " + coord(L->bidx); }

// switch from the running fiber to the scheduler (and back, later)
EMU_NO_TSAN void to_scheduler(bool exiting) {
    Fiber *f = cur;
#if EMU_TSAN
    __tsan_switch_to_fiber(sched_tsan, __tsan_switch_to_fiber_no_sync);
#endif
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(exiting ? nullptr : &fake, sched_stack_bottom,
                                   sched_stack_size);
#endif
    cur = nullptr;
    swapcontext(&f->ctx, &sched_ctx);
    // resumed by the scheduler
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
    (void)exiting;
}

EMU_NO_TSAN void to_fiber(Fiber *f) {
#if EMU_TSAN
    __tsan_switch_to_fiber(f->tsan, __tsan_switch_to_fiber_no_sync);
#endif
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f->stack, f->stack_size);
#endif
    cur = f;
    swapcontext(&sched_ctx, &f->ctx);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

// a failure inside the block: record it and leave the block for good
EMU_NO_TSAN void fail_block(const std::string &why) {
    if (!L->failed) {
        L->failed = true;
        L->why = why;
    }
#if EMU_TSAN
    __tsan_release(&L->end_sync);  // the scheduler reads the message
#endif
    cur->state = ABANDONED;
    to_scheduler(false);
    // never resumed
    abort();
}

EMU_NO_TSAN void fiber_main() {
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &sched_stack_bottom, &sched_stack_size);
#endif
#if EMU_TSAN
    __tsan_acquire(&L->start_sync);
#endif
    L->body(L->closure);
    Fiber *f = cur;
#if EMU_TSAN
    __tsan_release(&L->end_sync);
#endif
    f->state = DONE;
    L->live--;
    int lane = f->flat & 31;
    Warp &w = L->warps[f->flat >> 5];
    w.exited |= 1u << lane;
    if (w.arrived && (w.mask >> lane & 1))
        fail_block(block_str() + ": thread " + coord(f->tid) + " (lane " + std::to_string(lane) +
                   ") exited while lanes of its warp wait at " +
                   fibers[(f->flat & ~31) + __builtin_ctz(w.arrived)].where + " with it in the mask");
    else if (L->bar_arrived > 0 && L->bar_arrived == L->live)
        fail_block(block_str() + ": thread " + coord(f->tid) +
                   " exited while the other threads wait at __syncthreads (divergent barrier)");
    to_scheduler(true);
    abort();
}

void prepare_fiber(Fiber &f) {
    if (!f.stack) {
        f.stack_size = stack_bytes();
        // a guard page below the stack
        char *m = (char *)mmap(nullptr, f.stack_size + 4096, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            fprintf(stderr, "cuda-emu: cannot map a fiber stack: %s\n", strerror(errno));
            abort();
        }
        mprotect(m, 4096, PROT_NONE);
        f.stack = m + 4096;
#if EMU_TSAN
        f.tsan = __tsan_create_fiber(0);
#endif
    }
#if EMU_ASAN
    if (f.dirty) __asan_unpoison_memory_region(f.stack, f.stack_size);
#endif
    f.dirty = false;
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = f.stack_size;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
}

std::string waiting_summary() {
    std::string s;
    int bar = 0, warp = 0, done = 0;
    std::string first_warp;
    for (int i = 0; i < L->nthreads; i++) {
        Fiber &f = fibers[i];
        if (f.state == AT_BARRIER) bar++;
        else if (f.state == AT_WARP) {
            if (!warp) first_warp = "thread " + coord(f.tid) + " at " + f.where;
            warp++;
        } else if (f.state == DONE) done++;
    }
    s = std::to_string(bar) + " thread(s) wait at __syncthreads, " + std::to_string(warp) +
        " at a warp operation" + (warp ? " (" + first_warp + ")" : "") + ", " +
        std::to_string(done) + " exited, of " + std::to_string(L->nthreads);
    return s;
}

// ----------------------------------------------------------------------------
// a block

EMU_NO_TSAN void set_block(LaunchState &l, unsigned bx, unsigned by, unsigned bz) {
    l.bidx = make_uint3(bx, by, bz);
}

EMU_NO_TSAN void run_block(LaunchState &l) {
    int n = l.nthreads;
    // fresh shared memory: 0xff bytes (NaN floats, -1 ints) until written
    uintptr_t sh0 = (uintptr_t)__start_bl_emu_shared, sh1 = (uintptr_t)__stop_bl_emu_shared;
    if (sh0 && sh1 > sh0) memset(__start_bl_emu_shared, 0xff, sh1 - sh0);
    if (l.smem) memset(l.dyn, 0xff, l.smem);
    int nw = (n + 31) / 32;
    for (int w = 0; w < nw; w++) {
        Warp &wp = l.warps[w];
        int lanes = n - 32 * w < 32 ? n - 32 * w : 32;
        wp.exists = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
        wp.exited = wp.arrived = 0;
        wp.gen = 0;
    }
    l.live = n;
    l.bar_arrived = 0;
    l.bar_gen = 0;
    int i = 0;
    for (unsigned z = 0; z < l.block.z; z++)
        for (unsigned y = 0; y < l.block.y; y++)
            for (unsigned x = 0; x < l.block.x; x++, i++) {
                Fiber &f = fibers[i];
                f.tid = make_uint3(x, y, z);
                f.flat = i;
                f.state = RUNNABLE;
                f.where = "";
                prepare_fiber(f);
            }
#if EMU_TSAN
    __tsan_release(&l.start_sync);
#endif
    for (;;) {
        bool progressed = false, all_done = true;
        for (int t = 0; t < n && !l.failed; t++) {
            Fiber &f = fibers[t];
            if (f.state == RUNNABLE) {
                progressed = true;
                to_fiber(&f);
            }
            if (f.state != DONE) all_done = false;
        }
        if (l.failed) break;
        if (all_done) break;
        if (!progressed) {
            l.failed = true;
            l.why = block_str() + ": deadlock: " + waiting_summary();
            break;
        }
    }
    if (l.failed) {
#if EMU_TSAN
        __tsan_acquire(&l.end_sync);
        // the abandoned fibers never release: a synchronising switch to each
        // and back orders what they did before the host's next use of it
        for (int t = 0; t < n; t++)
            if (fibers[t].state != DONE) {
                __tsan_switch_to_fiber(fibers[t].tsan, 0);
                __tsan_switch_to_fiber(sched_tsan, 0);
            }
#endif
        for (int t = 0; t < n; t++)
            if (fibers[t].state != DONE) fibers[t].dirty = true;
        return;
    }
#if EMU_TSAN
    __tsan_acquire(&l.end_sync);
#endif
}

}  // namespace

// ----------------------------------------------------------------------------
// the kernel side (cuda_emu.h)

EMU_NO_TSAN uint3 thread_idx() { return cur->tid; }
EMU_NO_TSAN uint3 block_idx() { return L->bidx; }
EMU_NO_TSAN dim3 block_dim() { return L->block; }
EMU_NO_TSAN dim3 grid_dim() { return L->grid; }
EMU_NO_TSAN void *dynamic_shared() { return L->smem ? L->dyn : nullptr; }

EMU_NO_TSAN void syncthreads() {
    LaunchState &l = *L;
    Fiber *f = cur;
    unsigned gen = l.bar_gen;
    (void)gen;  // the TSan sync object of this barrier
#if EMU_TSAN
    __tsan_release(&l.bar_sync[gen & 1]);
#endif
    // a lane whose warp-mates wait at a shuffle: they can never finish
    Warp &w = l.warps[f->flat >> 5];
    if (w.arrived && (w.mask >> (f->flat & 31) & 1))
        fail_block(block_str() + ": thread " + coord(f->tid) +
                   " reached __syncthreads while lanes of its warp wait for it at " +
                   fibers[__builtin_ctz(w.arrived) + (f->flat & ~31)].where);
    l.bar_arrived++;
    if (l.bar_arrived == l.live) {
        if (l.live < l.nthreads)
            fail_block(block_str() + ": __syncthreads reached by " + std::to_string(l.live) +
                       " of " + std::to_string(l.nthreads) +
                       " threads: the others exited before it (divergent barrier)");
        // the last one releases the others and goes on
        l.bar_arrived = 0;
        l.bar_gen++;
        for (int t = 0; t < l.nthreads; t++)
            if (fibers[t].state == AT_BARRIER) fibers[t].state = RUNNABLE;
    } else {
        f->state = AT_BARRIER;
        f->where = "__syncthreads";
        to_scheduler(false);
    }
#if EMU_TSAN
    __tsan_acquire(&l.bar_sync[gen & 1]);
#endif
}

static const char *op_name(WarpOp op) {
    switch (op) {
    case SHFL_XOR: return "__shfl_xor_sync";
    case SHFL_DOWN: return "__shfl_down_sync";
    case REDUCE_MAX_U:
    case REDUCE_MAX_I: return "__reduce_max_sync";
    case REDUCE_MIN_U:
    case REDUCE_MIN_I: return "__reduce_min_sync";
    default: return "__reduce_add_sync";
    }
}

EMU_NO_TSAN uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t bits, int arg, int width) {
    LaunchState &l = *L;
    Fiber *f = cur;
    int lane = f->flat & 31, base = f->flat & ~31;
    Warp &w = l.warps[f->flat >> 5];
    char buf[160];
    if (!(mask >> lane & 1)) {
        snprintf(buf, sizeof buf, "lane %d calls %s with mask 0x%08x that does not name it", lane,
                 op_name(op), mask);
        fail_block(block_str() + ": thread " + coord(f->tid) + ": " + buf);
    }
    if (mask & ~w.exists) {
        snprintf(buf, sizeof buf, "%s with mask 0x%08x names lanes the block does not have (0x%08x)",
                 op_name(op), mask, w.exists);
        fail_block(block_str() + ": thread " + coord(f->tid) + ": " + buf);
    }
    if (mask & w.exited) {
        snprintf(buf, sizeof buf, "%s with mask 0x%08x waits for lanes that exited (0x%08x)",
                 op_name(op), mask, mask & w.exited);
        fail_block(block_str() + ": thread " + coord(f->tid) + ": " + buf);
    }
    if (width <= 0 || width > 32 || (width & (width - 1)))
        fail_block(block_str() + ": " + op_name(op) + " with width " + std::to_string(width));
    if (w.arrived == 0) {
        w.mask = mask;
        w.op = op;
        w.arg = arg;
        w.width = width;
    } else if (w.mask != mask || w.op != op || w.arg != arg || w.width != width) {
        snprintf(buf, sizeof buf,
                 "lane %d is at %s (mask 0x%08x, %d) while lanes 0x%08x are at %s (mask 0x%08x, %d)",
                 lane, op_name(op), mask, arg, w.arrived, op_name(w.op), w.mask, w.arg);
        fail_block(block_str() + ": " + buf);
    }
    unsigned g = w.gen & 1;
#if EMU_TSAN
    __tsan_release(&w.sync[g]);
#endif
    w.val[g][lane] = bits;
    w.arrived |= 1u << lane;
    if (w.arrived == mask) {
        // complete: compute every lane's result
        for (int i = 0; i < 32; i++) {
            if (!(mask >> i & 1)) continue;
            int seg = i & ~(width - 1), src = i;
            if (op == SHFL_XOR) src = seg + ((i - seg) ^ arg) % width;
            else if (op == SHFL_DOWN) src = (i - seg) + arg < width ? i + arg : i;
            if (op == SHFL_XOR || op == SHFL_DOWN) {
                if (!(mask >> src & 1)) {
                    snprintf(buf, sizeof buf, "lane %d reads lane %d outside the mask 0x%08x of %s",
                             i, src, mask, op_name(op));
                    fail_block(block_str() + ": " + buf);
                }
                w.result[g][i] = w.val[g][src];
            } else {
                // the same reduction over the mask for every lane
                uint32_t r = (uint32_t)w.val[g][i], sum = 0;
                for (int j = 0; j < 32; j++) {
                    if (!(mask >> j & 1)) continue;
                    uint32_t b = (uint32_t)w.val[g][j];
                    sum += b;
                    if (op == REDUCE_MAX_U) r = r > b ? r : b;
                    else if (op == REDUCE_MIN_U) r = r < b ? r : b;
                    else if (op == REDUCE_MAX_I) r = (int32_t)r > (int32_t)b ? r : b;
                    else if (op == REDUCE_MIN_I) r = (int32_t)r < (int32_t)b ? r : b;
                }
                w.result[g][i] = op == REDUCE_ADD_U || op == REDUCE_ADD_I ? sum : r;
            }
        }
        w.arrived = 0;
        w.gen++;
        for (int i = 0; i < 32; i++)
            if ((mask >> i & 1) && i != lane) fibers[base + i].state = RUNNABLE;
    } else {
        f->state = AT_WARP;
        f->where = op_name(op);
        to_scheduler(false);
    }
#if EMU_TSAN
    __tsan_acquire(&w.sync[g]);
#endif
    return w.result[g][lane];
}

// ----------------------------------------------------------------------------
// launches

namespace {
std::unordered_map<const void *, int> max_dynamic_smem;  // cudaFuncSetAttribute
}

void run(const char *name, const void *kernel, dim3 grid, dim3 block, size_t smem,
         cudaStream_t stream, BodyFn body, void *closure) {
    (void)stream;
    char buf[256];
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (threads == 0 || threads > (unsigned long long)kMaxThreads || block.x > 1024 ||
        block.y > 1024 || block.z > 64) {
        snprintf(buf, sizeof buf, "launch with block (%u,%u,%u): over the device's limits "
                 "(1024 threads, (1024, 1024, 64))", block.x, block.y, block.z);
        fprintf(stderr, "cuda-emu: kernel %s: %s\n", name, buf);
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 ||
        grid.z > 65535) {
        snprintf(buf, sizeof buf, "launch with grid (%u,%u,%u): over the device's limits "
                 "(2^31-1, 65535, 65535)", grid.x, grid.y, grid.z);
        fprintf(stderr, "cuda-emu: kernel %s: %s\n", name, buf);
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (smem > kStaticSharedMax) {
        int allowed;
        {
            std::lock_guard<std::mutex> g(mu);
            auto it = max_dynamic_smem.find(kernel);
            allowed = it == max_dynamic_smem.end() ? (int)kStaticSharedMax : it->second;
        }
        if (smem > (size_t)allowed) {
            snprintf(buf, sizeof buf, "launch with %zu bytes of dynamic shared memory: over 48 KiB "
                     "needs cudaFuncSetAttribute(MaxDynamicSharedMemorySize) first (allowed %d)",
                     smem, allowed);
            fprintf(stderr, "cuda-emu: kernel %s: %s\n", name, buf);
            last_error = cudaErrorInvalidValue;
            return;
        }
    }
    if (L) {
        fprintf(stderr, "cuda-emu: kernel %s launched from inside kernel %s\n", name, L->name);
        abort();
    }
    LaunchState l;
    l.name = name;
    l.grid = grid;
    l.block = block;
    l.smem = smem;
    l.body = body;
    l.closure = closure;
    // exactly smem bytes: under ASan an overrun of dynamic shared memory is reported
    l.dyn = smem ? (char *)malloc(smem) : nullptr;
    if (smem && !l.dyn) {
        fprintf(stderr, "cuda-emu: kernel %s: no host memory for %zu bytes of shared memory\n", name, smem);
        abort();
    }
    l.nthreads = (int)threads;
    L = &l;
#if EMU_TSAN
    if (!sched_tsan) sched_tsan = __tsan_get_current_fiber();
#endif
    for (unsigned bz = 0; bz < grid.z && !l.failed; bz++)
        for (unsigned by = 0; by < grid.y && !l.failed; by++)
            for (unsigned bx = 0; bx < grid.x && !l.failed; bx++) {
                set_block(l, bx, by, bz);
                run_block(l);
            }
    L = nullptr;
    free(l.dyn);
    if (l.failed) kernel_failed(name, l.why);
}

}  // namespace bl_emu

// ----------------------------------------------------------------------------
// the CUDA runtime

using namespace bl_emu;

extern "C" {

cudaError_t cudaGetDeviceCount(int *count) {
    if (device_absent()) {
        *count = 0;
        return set_error(cudaErrorNoDevice);
    }
    *count = device_count();
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    if (device < 0 || device >= device_count() || device_absent())
        return set_error(cudaErrorInvalidDevice);
    current_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    *device = current_device;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
    if (device < 0 || device >= device_count()) return set_error(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "bitlab emulated CUDA device (CPU)");
    p->totalGlobalMem = device_total_bytes();
    p->sharedMemPerBlock = kStaticSharedMax;
    p->sharedMemPerBlockOptin = kSharedOptinMax;
    p->sharedMemPerMultiprocessor = 233472;
    p->regsPerBlock = 65536;
    p->regsPerMultiprocessor = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = kMaxThreads;
    p->maxThreadsDim[0] = 1024;
    p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff;
    p->maxGridSize[1] = 65535;
    p->maxGridSize[2] = 65535;
    p->totalConstMem = 65536;
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 132;
    p->maxThreadsPerMultiProcessor = 2048;
    p->l2CacheSize = 50 << 20;
    p->memoryBusWidth = 5120;
    p->unifiedAddressing = 1;
    p->concurrentKernels = 1;
    p->asyncEngineCount = 2;
    p->pciBusID = 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
    if (device != 0) return set_error(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)kSharedOptinMax; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)kStaticSharedMax; break;
    case cudaDevAttrMaxThreadsPerBlock: *value = kMaxThreads; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = 132; break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    default: return set_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
    if (value < 0 || (size_t)value > kSharedOptinMax) return set_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> g(mu);
    max_dynamic_smem[func] = value;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidPitchValue: return "cudaErrorInvalidPitchValue";
    default: return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorLaunchFailure: return "unspecified launch failure (see the cuda-emu line above)";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidPitchValue: return "invalid pitch argument";
    default: return "unknown error";
    }
}

// -- memory

cudaError_t cudaMalloc(void **p, size_t bytes) {
    *p = nullptr;
    std::lock_guard<std::mutex> g(mu);
    if (used_bytes + bytes > device_total_bytes()) return set_error(cudaErrorMemoryAllocation);
    void *q = nullptr;
    // exactly `bytes`: the allocator's redzone begins right after the last byte
    if (posix_memalign(&q, 256, bytes ? bytes : 1) != 0) return set_error(cudaErrorMemoryAllocation);
    allocs[(uintptr_t)q] = bytes;
    used_bytes += bytes;
    *p = q;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    std::lock_guard<std::mutex> g(mu);
    auto it = allocs.find((uintptr_t)p);
    if (it == allocs.end()) return set_error(cudaErrorInvalidDevicePointer);
    used_bytes -= it->second;
    allocs.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total) {
    std::lock_guard<std::mutex> g(mu);
    *total = device_total_bytes();
    *free_bytes = *total - used_bytes;
    return cudaSuccess;
}

static cudaError_t copy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    if (!n) return cudaSuccess;
    bool dd = kind == cudaMemcpyDeviceToDevice || kind == cudaMemcpyHostToDevice;
    bool sd = kind == cudaMemcpyDeviceToDevice || kind == cudaMemcpyDeviceToHost;
    if (kind == cudaMemcpyDefault) dd = sd = false;
    if ((dd && !is_device_range(dst, n)) || (sd && !is_device_range(src, n))) {
        fprintf(stderr, "cuda-emu: cudaMemcpy of %zu bytes (kind %d): the %s range is not inside "
                "one device allocation\n", n, (int)kind,
                dd && !is_device_range(dst, n) ? "destination" : "source");
        return set_error(cudaErrorInvalidValue);
    }
    memmove(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind) {
    cudaError_t e = take_pending();
    if (e != cudaSuccess) return set_error(e);
    return copy(dst, src, n, kind);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind,
                            cudaStream_t) {
    return copy(dst, src, n, kind);
}

// rows of `width` bytes, pitches in bytes (width ≤ each pitch)
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                              size_t width, size_t height, enum cudaMemcpyKind kind,
                              cudaStream_t) {
    if (!width || !height) return cudaSuccess;
    if (width > dpitch || width > spitch) return set_error(cudaErrorInvalidPitchValue);
    // the whole extent first (one allocation each side), then the rows
    cudaMemcpyKind k = kind;
    bool dd = k == cudaMemcpyDeviceToDevice || k == cudaMemcpyHostToDevice;
    bool sd = k == cudaMemcpyDeviceToDevice || k == cudaMemcpyDeviceToHost;
    size_t dext = dpitch * (height - 1) + width, sext = spitch * (height - 1) + width;
    if ((dd && !is_device_range(dst, dext)) || (sd && !is_device_range(src, sext))) {
        fprintf(stderr, "cuda-emu: cudaMemcpy2DAsync of %zu rows of %zu bytes (pitches %zu, %zu): "
                "the %s extent is not inside one device allocation\n", height, width, dpitch,
                spitch, dd && !is_device_range(dst, dext) ? "destination" : "source");
        return set_error(cudaErrorInvalidValue);
    }
    for (size_t r = 0; r < height; r++)
        memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
    return cudaSuccess;
}

static cudaError_t fill(void *p, int v, size_t n) {
    if (!n) return cudaSuccess;
    if (!is_device_range(p, n)) {
        fprintf(stderr, "cuda-emu: cudaMemset of %zu bytes outside a device allocation\n", n);
        return set_error(cudaErrorInvalidValue);
    }
    memset(p, v, n);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int v, size_t n) { return fill(p, v, n); }
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { return fill(p, v, n); }

// -- streams and events: the emulated device runs everything at the call

struct EmuStream {
    int magic;
};
struct EmuEvent {
    double t;
};

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int) {
    *s = (cudaStream_t) new EmuStream{0x5713};
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete (EmuStream *)s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return set_error(take_pending()); }
// every stream runs at the call: waiting on an event is already done
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t e, unsigned int) {
    return e ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaDeviceSynchronize(void) { return set_error(take_pending()); }

static double now_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = (cudaEvent_t) new EmuEvent{0};
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete (EmuEvent *)e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    ((EmuEvent *)e)->t = now_ms();
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return set_error(take_pending()); }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = (float)(((EmuEvent *)b)->t - ((EmuEvent *)a)->t);
    return cudaSuccess;
}

}  // extern "C"
