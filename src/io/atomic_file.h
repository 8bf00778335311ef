/* atomic_file.h - writing a file so that readers see either the old file or
 * the complete new one, never a torn write: the bytes go to a temporary file
 * in the same directory, which is fsync'd and renamed over the target, then
 * the directory is fsync'd so the rename itself survives a crash. Used by the
 * exporters (GGUF, the training manifest). */
#ifndef BITLAB_ATOMIC_FILE_H
#define BITLAB_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

typedef struct {
    FILE *f;     /* write through this (fwrite/fprintf) between open and commit */
    char *path;  /* the target */
    char *tmp;   /* the temporary file beside it */
    int failed;  /* a write failed; commit will report it */
} BlAtomicFile;

/* Creates the temporary file beside path. */
int bl_atomic_open(BlAtomicFile *a, const char *path, BlError *err);
/* fwrite that remembers a failure (reported by commit). */
void bl_atomic_write(BlAtomicFile *a, const void *p, size_t n);
/* Flush, fsync, rename over the target, fsync the directory. On failure the
 * temporary file is removed and the target is left as it was. Frees a. */
int bl_atomic_commit(BlAtomicFile *a, BlError *err);
/* Gives up: removes the temporary file, the target is untouched. Frees a. */
void bl_atomic_abort(BlAtomicFile *a);

/* The whole of data[n] as one file, atomically. */
int bl_atomic_write_file(const char *path, const void *data, size_t n, BlError *err);

#endif
