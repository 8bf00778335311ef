/* tok_tool.c - drives the tokenizer for tests/py/test_tokenizer_parity.py.
 *
 *   tok_tool (--gguf FILE | --json FILE [--config FILE]) [STRINGS.jsonl]
 *
 * Loads the tokenizer (a load error goes to stderr, exit 2). Then, for each
 * line of STRINGS.jsonl (one JSON string per line) writes one JSON object:
 * ids (no specials), ids_special (with BOS/EOS), decoded = decode(ids) and
 * decoded_skip = decode(ids_special, skip_special). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

static cJSON *ids_json(const int *ids, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

static cJSON *process(const BlTokenizer *t, const char *s, size_t len)
{
    BlError err = {{0}};
    int *ids = NULL, *sp = NULL, n = 0, nsp = 0;
    char *dec = NULL, *dec_skip = NULL;
    cJSON *o = cJSON_CreateObject();
    if (bl_tokenizer_encode(t, s, len, false, &ids, &n, &err) < 0 ||
        bl_tokenizer_encode(t, s, len, true, &sp, &nsp, &err) < 0 ||
        bl_tokenizer_decode(t, ids, n, false, &dec, &err) < 0 ||
        bl_tokenizer_decode(t, sp, nsp, true, &dec_skip, &err) < 0) {
        cJSON_AddStringToObject(o, "error", err.msg);
    } else {
        cJSON_AddItemToObject(o, "ids", ids_json(ids, n));
        cJSON_AddItemToObject(o, "ids_special", ids_json(sp, nsp));
        cJSON_AddStringToObject(o, "decoded", dec);
        cJSON_AddStringToObject(o, "decoded_skip", dec_skip);
    }
    free(ids);
    free(sp);
    free(dec);
    free(dec_skip);
    return o;
}

int main(int argc, char **argv)
{
    const char *gguf = NULL, *json = NULL, *config = NULL, *strings = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--gguf") == 0 && i + 1 < argc)
            gguf = argv[++i];
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json = argv[++i];
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[++i];
        else
            strings = argv[i];
    }
    if (!gguf == !json) {
        fprintf(stderr, "usage: tok_tool (--gguf FILE | --json FILE [--config FILE]) [STRINGS.jsonl]\n");
        return 1;
    }
    BlError err = {{0}};
    BlTokenizer *t = NULL;
    BlGguf *g = NULL;
    int rc = gguf ? bl_gguf_open(&g, gguf, &err) : 0;
    if (rc == 0)
        rc = gguf ? bl_tokenizer_from_gguf(&t, g, &err) : bl_tokenizer_from_json(&t, json, config, &err);
    bl_gguf_close(g);
    if (rc < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    printf("{\"vocab_size\": %d, \"bos\": %d, \"eos\": %d}\n", bl_tokenizer_vocab_size(t),
           bl_tokenizer_bos_id(t), bl_tokenizer_eos_id(t));
    FILE *f = strings ? fopen(strings, "rb") : NULL;
    if (strings && !f) {
        perror(strings);
        bl_tokenizer_free(t);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        cJSON *in = cJSON_Parse(line);
        cJSON *o = cJSON_IsString(in) ? process(t, in->valuestring, strlen(in->valuestring))
                                      : cJSON_CreateObject();
        if (!cJSON_IsString(in))
            cJSON_AddStringToObject(o, "error", "input line is not a JSON string");
        char *s = cJSON_PrintUnformatted(o);
        puts(s);
        free(s);
        cJSON_Delete(o);
        cJSON_Delete(in);
    }
    free(line);
    if (f)
        fclose(f);
    bl_tokenizer_free(t);
    return 0;
}
