/* device_comm.c - the device collective's bootstrap over the host
 * communicator and its sum (see device_comm.h). */
#include "dist/device_comm.h"

#include <string.h>

#include "dist/comm.h"

static const BlDeviceCollective *joined; /* NULL until bl_device_comm_init */

int bl_device_comm_init(const BlDeviceCollective *dc, BlError *err) {
    if (joined == dc) return 0;
    if (joined)
        return bl_fail(err, "rank %d: already joined to %s, not to %s", bl_comm_rank(),
                       joined->name, dc->name);
    int rank = bl_comm_rank(), size = bl_comm_size();
    if (size <= 1) return 0; /* nothing to sum with */
    /* rank 0's id, and whether it has one: the others must not wait for an
     * id that never comes, nor join with garbage */
    struct {
        unsigned char id[BL_DEVICE_COMM_ID_BYTES];
        int ok;
        char why[sizeof err->msg];
    } root;
    memset(&root, 0, sizeof root);
    if (rank == 0) {
        BlError e0 = {{0}};
        root.ok = dc->unique_id(root.id, &e0) == 0;
        if (!root.ok) memcpy(root.why, e0.msg, sizeof root.why);
    }
    if (bl_comm_bcast(&root, sizeof root, err))
        return bl_fail_prefix(err, "%s: broadcasting the unique id", dc->name);
    if (!root.ok) {
        root.why[sizeof root.why - 1] = '\0';
        if (rank == 0) return bl_fail(err, "rank 0 of %d: %s", size, root.why);
        return bl_fail(err, "rank %d of %d: %s: rank 0 could not make the unique id: %s", rank,
                       size, dc->name, root.why);
    }
    if (dc->init(root.id, rank, size, err))
        return bl_fail_prefix(err, "rank %d of %d: joining %s", rank, size, dc->name);
    joined = dc;
    return 0;
}

bool bl_device_comm_ready(void) { return joined != NULL; }

int bl_device_comm_sum(float *x, size_t n, BlError *err) {
    if (!joined) return bl_fail(err, "a device sum before bl_device_comm_init");
    return joined->sum(x, n, err);
}

void bl_device_comm_free(void) {
    if (!joined) return;
    joined->free();
    joined = NULL;
}
