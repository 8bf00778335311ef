/* backend_cuda_loader.c - finds and opens the CUDA backend module
 * (libbitlab_cuda.so, cuda_module.h) on first use, so that the CUDA
 * libraries are mapped only in processes that ask for CUDA.
 *
 * Where: the file $BITLAB_CUDA_MODULE names, when set (an executable
 * living elsewhere, or the emulated device of tests/cuda_emu); else the
 * directory of the running executable (/proc/self/exe), where the build
 * puts the module beside bitlab and the tests; else ../lib/bitlab/ from
 * there, where `cmake --install` puts it. No module
 * there means a build without CUDA; a module that is there but does not
 * load (a missing libcudart, another build's module) is an error of its own,
 * so a broken installation never reads as "built without CUDA".
 *
 * The module is loaded once per process and never closed: cudart registers
 * exit handlers that must outlive every use of the backend. The functions of
 * backend.h below forward to its table: the backend on a device, and NCCL
 * (whose library the module loads in its turn, on first use). */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/cuda_module.h"

static struct {
    pthread_once_t once;
    BlCudaStatus status; /* of the load; a device is asked for on each status call */
    const BlCudaModule *module;
    BlError why; /* the load's failure, copied to every caller's err */
} loader = {.once = PTHREAD_ONCE_INIT};

/* the directory of the running executable, with its trailing '/'; "" if
 * /proc is not mounted */
static void exe_dir(char *dir, size_t cap) {
    dir[0] = '\0';
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return;
    slash[1] = '\0';
    snprintf(dir, cap, "%s", exe);
}

/* the module's path into path; false (with why set) when there is none */
static bool find_module(char *path, size_t cap) {
    /* named explicitly, it wins (tests/cuda_emu points it at the emulated
     * device beside a real module); if it is not there, dlopen says so */
    const char *env = getenv("BITLAB_CUDA_MODULE");
    if (env && env[0]) {
        snprintf(path, cap, "%s", env);
        return true;
    }
    char dir[PATH_MAX];
    exe_dir(dir, sizeof dir);
    /* beside the executable (the build dir), then where `cmake --install`
     * puts it relative to bin/bitlab */
    static const char *const beside[] = {"", "../lib/bitlab/"};
    for (size_t i = 0; dir[0] && i < sizeof beside / sizeof beside[0]; i++) {
        int n = snprintf(path, cap, "%s%s%s", dir, beside[i], BL_CUDA_MODULE_FILE);
        if (n > 0 && (size_t)n < cap && access(path, F_OK) == 0) return true;
    }
    bl_fail(&loader.why,
            "bitlab was built without CUDA (no %s beside %s; reconfigure with -DBITLAB_CUDA=ON "
            "where nvcc is installed, or set BITLAB_CUDA_MODULE to the module's path)",
            BL_CUDA_MODULE_FILE, dir[0] ? dir : "the executable");
    return false;
}

static void load_module(void) {
    char path[PATH_MAX + sizeof BL_CUDA_MODULE_FILE];
    if (!find_module(path, sizeof path)) {
        loader.status = BL_CUDA_NOT_BUILT;
        return;
    }
    loader.status = BL_CUDA_FAILED;
    /* RTLD_LOCAL: the module's (hidden) copies of core symbols stay its own */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        bl_fail(&loader.why, "cannot load %s: %s", BL_CUDA_MODULE_FILE, e ? e : path);
        return;
    }
    /* POSIX guarantees dlsym's void * converts to a function pointer */
    BlCudaModuleEntry entry = (BlCudaModuleEntry)dlsym(h, BL_CUDA_MODULE_ENTRY);
    if (!entry) {
        bl_fail(&loader.why, "cannot load %s: %s has no %s", BL_CUDA_MODULE_FILE, path,
                BL_CUDA_MODULE_ENTRY);
        dlclose(h);
        return;
    }
    const BlCudaModule *m = entry();
    if (m->abi != BL_CUDA_MODULE_ABI || m->backend_size != sizeof(BlBackend) ||
        strcmp(m->version, BITLAB_VERSION) != 0) {
        bl_fail(&loader.why,
                "cannot load %s: %s is from another build of bitlab (version %s, module abi %d) "
                "than this one (version %s, module abi %d); rebuild it or point "
                "BITLAB_CUDA_MODULE at the matching one",
                BL_CUDA_MODULE_FILE, path, m->version, m->abi, BITLAB_VERSION,
                BL_CUDA_MODULE_ABI);
        /* left open: its cudart may already have registered exit handlers */
        return;
    }
    loader.module = m;
    loader.status = BL_CUDA_READY;
}

const BlCudaModule *bl_cuda_module(BlError *err) {
    pthread_once(&loader.once, load_module);
    if (loader.module) return loader.module;
    if (err) *err = loader.why;
    return NULL;
}

BlCudaStatus bl_backend_cuda_status(BlError *err) {
    const BlCudaModule *m = bl_cuda_module(err);
    if (!m) return loader.status;
    int n = 0;
    if (m->device_count(&n, err) != 0) return BL_CUDA_FAILED;
    if (n == 0) {
        bl_fail(err, "no CUDA device");
        return BL_CUDA_NO_DEVICE;
    }
    return BL_CUDA_READY;
}

/* the device the backend was opened on, -1 before (the module refuses a
 * second one; this only lets bl_backend_cuda return the one in use) */
static int opened_device = -1;

const BlBackend *bl_backend_cuda_on(int device, BlError *err) {
    const BlCudaModule *m = bl_cuda_module(err);
    if (!m) return NULL;
    /* the module's own init says "no CUDA device" when there is none */
    const BlBackend *be = m->backend(device, err);
    if (be) opened_device = device;
    return be;
}

const BlBackend *bl_backend_cuda(BlError *err) {
    return bl_backend_cuda_on(opened_device >= 0 ? opened_device : 0, err);
}

int bl_backend_cuda_device_count(BlError *err) {
    const BlCudaModule *m = bl_cuda_module(err);
    int n = 0;
    return m && m->device_count(&n, err) == 0 ? n : -1;
}

// ----------------------------------------------------------------------------
// NCCL (cuda_module.h): thin wrappers over the module's entries

int bl_backend_cuda_nccl_unique_id(unsigned char id[BL_NCCL_ID_BYTES], BlError *err) {
    const BlCudaModule *m = bl_cuda_module(err);
    return m ? m->nccl_unique_id(id, err) : -1;
}

int bl_backend_cuda_nccl_init(const unsigned char id[BL_NCCL_ID_BYTES], int rank, int size,
                              BlError *err) {
    const BlCudaModule *m = bl_cuda_module(err);
    return m ? m->nccl_init(id, rank, size, err) : -1;
}

int bl_backend_cuda_nccl_sum(float *x, size_t n, BlError *err) {
    const BlCudaModule *m = bl_cuda_module(err);
    return m ? m->nccl_sum(x, n, err) : -1;
}

void bl_backend_cuda_nccl_free(void) {
    /* nothing to free in a process that never loaded the module */
    if (loader.module) loader.module->nccl_free();
}

bool bl_backend_cuda_available(void) {
    BlError err;
    return bl_backend_cuda_status(&err) == BL_CUDA_READY;
}
