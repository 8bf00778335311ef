/* atomic_file.c - temporary file + fsync + rename (see atomic_file.h). */
#include "io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void release(BlAtomicFile *a) {
    free(a->path);
    free(a->tmp);
    a->path = a->tmp = NULL;
    a->f = NULL;
}

int bl_atomic_open(BlAtomicFile *a, const char *path, BlError *err) {
    memset(a, 0, sizeof *a);
    size_t n = strlen(path) + 32;
    a->path = strdup(path);
    a->tmp = bl_malloc(n, err);
    if (!a->path || !a->tmp) {
        release(a);
        return bl_fail(err, "%s: out of memory", path);
    }
    snprintf(a->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    if (!(a->f = fopen(a->tmp, "wb"))) {
        int e = errno;
        int rc = bl_fail(err, "%s: cannot create %s: %s%s", path, a->tmp, strerror(e),
                         e == ENOENT ? " (does its folder exist?)" : "");
        release(a);
        return rc;
    }
    return 0;
}

void bl_atomic_write(BlAtomicFile *a, const void *p, size_t n) {
    if (!a->failed && n && fwrite(p, 1, n, a->f) != n) a->failed = errno ? errno : EIO;
}

/* fsync of the directory holding path, so the rename is durable. */
static int sync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    free(dir);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int bl_atomic_commit(BlAtomicFile *a, BlError *err) {
    int rc = 0;
    if (a->failed) rc = bl_fail(err, "%s: write failed: %s", a->tmp, strerror(a->failed));
    if (rc == 0 && (fflush(a->f) != 0 || fsync(fileno(a->f)) != 0))
        rc = bl_fail(err, "%s: write failed: %s", a->tmp, strerror(errno));
    if (fclose(a->f) != 0 && rc == 0) rc = bl_fail(err, "%s: close failed: %s", a->tmp, strerror(errno));
    if (rc == 0 && rename(a->tmp, a->path) != 0)
        rc = bl_fail(err, "%s: cannot rename into place: %s", a->path, strerror(errno));
    if (rc == 0 && sync_dir(a->path) != 0)
        rc = bl_fail(err, "%s: cannot sync its directory: %s", a->path, strerror(errno));
    if (rc != 0) unlink(a->tmp);
    release(a);
    return rc;
}

void bl_atomic_abort(BlAtomicFile *a) {
    if (a->f) fclose(a->f);
    if (a->tmp) unlink(a->tmp);
    release(a);
}

int bl_atomic_write_file(const char *path, const void *data, size_t n, BlError *err) {
    BlAtomicFile a;
    if (bl_atomic_open(&a, path, err) != 0) return -1;
    bl_atomic_write(&a, data, n);
    return bl_atomic_commit(&a, err);
}
