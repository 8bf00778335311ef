/* textfile.h - whole-file reads of small text files (config.json,
 * tokenizer_config.json, chat templates), with errors naming the file. */
#ifndef BITLAB_TEXTFILE_H
#define BITLAB_TEXTFILE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "core/error.h"

/* Reads the whole file into a malloc'd NUL-terminated buffer; *len (if not
 * NULL) receives its length. */
char *bl_read_text_file(const char *path, size_t *len, BlError *err);
/* Reads and parses a JSON file; a syntax error names the file and the byte
 * offset where parsing stopped. The caller cJSON_Delete()s the result. */
cJSON *bl_json_read_file(const char *path, BlError *err);

#endif
