/* textfile.c - whole-file reads of small text and JSON files. */
#include "io/textfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Larger "text" files are surely not the small config files this is for. */
#define BL_TEXT_FILE_MAX ((long)1 << 30)

char *bl_read_text_file(const char *path, size_t *len, BlError *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        bl_fail(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || size > BL_TEXT_FILE_MAX || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        bl_fail(err, "%s: cannot determine the file size (or larger than 1 GiB)", path);
        return NULL;
    }
    char *buf = bl_malloc((size_t)size + 1, err);
    if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        bl_fail(err, "%s: read error", path);
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf) return NULL;
    buf[size] = '\0';
    if (len) *len = (size_t)size;
    return buf;
}

cJSON *bl_json_read_file(const char *path, BlError *err) {
    size_t len;
    char *text = bl_read_text_file(path, &len, err);
    if (!text) return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        bl_fail(err, "%s: invalid JSON near byte %zu", path, at);
    }
    free(text);
    return root;
}
