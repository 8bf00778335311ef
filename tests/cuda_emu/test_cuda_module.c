/* test_cuda_module.c - the CUDA module's contract beyond the ops
 * (src/backend/cuda_module.h), on the uninstrumented emulated module
 * (BITLAB_CUDA_MODULE, tests/cuda_emu/CMakeLists.txt):
 *
 *   --devices          with BITLAB_EMU_DEVICES=3: the backend opens on the
 *                      device asked for (its name says which), the process
 *                      then holds it (again: the same backend; another:
 *                      an error naming both), bl_backend_cuda returns it,
 *                      a device that does not exist is refused naming the
 *                      count; NCCL refuses a communicator of a bad rank and
 *                      a sum before its communicator
 *   --nccl LIB         BITLAB_NCCL_LIBRARY=LIB: the module loads it and
 *                      resolves every NCCL function it calls (the real
 *                      libnccl.so.2 needs no GPU for that), with no device
 *   --nccl-fails LIB TEXT   the load fails, and the message has TEXT and
 *                      names BITLAB_NCCL_LIBRARY
 *
 * Exit 0 when every check holds. */
#include <stdlib.h>
#include <string.h>

#include "../c/check.h"
#include "backend/backend.h"
#include "backend/cuda_module.h"

static const BlCudaModule *module(void) {
    BlError err = {{0}};
    const BlCudaModule *m = bl_cuda_module(&err);
    if (!m) {
        fprintf(stderr, "test_cuda_module: %s\n", err.msg);
        exit(1);
    }
    return m;
}

static void check_devices(void) {
    BlError err = {{0}};
    CHECK(bl_backend_cuda_device_count(&err) == 3, "3 devices with BITLAB_EMU_DEVICES=3: %d (%s)",
          bl_backend_cuda_device_count(&err), err.msg);
    /* NCCL needs the device first */
    unsigned char id[BL_NCCL_ID_BYTES] = {0};
    CHECK(bl_backend_cuda_nccl_init(id, 0, 2, &err) != 0 && strstr(err.msg, "no device yet"),
          "nccl_init before the device: %s", err.msg);
    CHECK(!bl_backend_cuda_on(3, &err) && strstr(err.msg, "no device 3 (3 visible"),
          "device 3 of 3 refused: %s", err.msg);
    const BlBackend *be = bl_backend_cuda_on(2, &err);
    CHECK(be && strcmp(be->name, "cuda") == 0, "device 2 opens: %s", err.msg);
    if (!be) return;
    CHECK(strstr(be->device_name(), "device 2)") != NULL, "the name says the device: %s",
          be->device_name());
    CHECK(bl_backend_cuda_on(2, &err) == be, "the same device again: the same backend");
    CHECK(bl_backend_cuda(&err) == be, "bl_backend_cuda: the device the process holds");
    memset(&err, 0, sizeof err);
    CHECK(!bl_backend_cuda_on(0, &err) && strstr(err.msg, "runs on device 2") &&
              strstr(err.msg, "open device 0"),
          "a second device refused naming both: %s", err.msg);
    CHECK(bl_backend_cuda_nccl_init(id, 2, 2, &err) != 0 && strstr(err.msg, "rank 2 of 2"),
          "rank 2 of 2 refused: %s", err.msg);
    float *x = be->alloc(sizeof(float) * 4, &err);
    CHECK(bl_backend_cuda_nccl_sum(x, 4, &err) != 0 && strstr(err.msg, "before the communicator"),
          "a sum before the communicator: %s", err.msg);
    be->free(x);
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--devices") == 0) {
        check_devices();
    } else if (argc == 3 && strcmp(argv[1], "--nccl") == 0) {
        setenv("BITLAB_NCCL_LIBRARY", argv[2], 1);
        BlError err = {{0}};
        CHECK(module()->nccl_load(&err) == 0, "%s: every NCCL function resolves: %s", argv[2],
              err.msg);
    } else if (argc == 4 && strcmp(argv[1], "--nccl-fails") == 0) {
        setenv("BITLAB_NCCL_LIBRARY", argv[2], 1);
        BlError err = {{0}};
        int rc = module()->nccl_load(&err);
        CHECK(rc != 0 && strstr(err.msg, "data-parallel on CUDA needs NCCL") &&
                  strstr(err.msg, argv[3]) && strstr(err.msg, "BITLAB_NCCL_LIBRARY"),
              "%s refused with \"%s\": %s", argv[2], argv[3], err.msg);
        /* the failure is kept: a second call says the same */
        BlError again = {{0}};
        CHECK(module()->nccl_load(&again) != 0 && strcmp(again.msg, err.msg) == 0,
              "the second load repeats the first failure: %s", again.msg);
    } else {
        fprintf(stderr, "usage: test_cuda_module --devices | --nccl LIB | --nccl-fails LIB TEXT\n");
        return 2;
    }
    if (failures) fprintf(stderr, "test_cuda_module: %d failure(s)\n", failures);
    else printf("test_cuda_module %s: ok\n", argv[1]);
    return failures ? 1 : 0;
}
