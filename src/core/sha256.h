/* sha256.h - SHA-256 (FIPS 180-4), for naming exactly which base model and
 * which data a manifest or a teacher trace belongs to. */
#ifndef BITLAB_SHA256_H
#define BITLAB_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
    uint32_t h[8];
    uint64_t bytes;
    unsigned char buf[64];
    size_t nbuf;
} BlSha256;

void bl_sha256_init(BlSha256 *s);
void bl_sha256_update(BlSha256 *s, const void *data, size_t n);
/* Finishes into 32 bytes of digest and, when hex != NULL, 64 hex digits + NUL. */
void bl_sha256_final(BlSha256 *s, unsigned char digest[32], char hex[65]);

/* The hex digest of a file's bytes; or of a Hugging Face folder: its
 * config.json, then its *.safetensors files in name order. */
int bl_sha256_path(const char *path, char hex[65], BlError *err);

#endif
