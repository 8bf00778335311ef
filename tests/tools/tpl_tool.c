/* tpl_tool.c - drives the chat template renderers for tests/py/test_chat_template.py.
 *
 *   tpl_tool --file TEMPLATE.jinja CASES.json   detect the family from template text
 *   tpl_tool --name NAME CASES.json             pick the family by name
 *
 * CASES.json: {"bos": str|null, "eos": str|null,
 *              "cases": [{"messages": [{"role": .., "content": ..}, ..],
 *                         "add_generation_prompt": bool}, ..]}
 * Prints one JSON object: {"kind", "default_system", "results": [{"text"} or
 * {"error"}, ..]}, or {"error"} (exit 1) when the template itself is refused. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat_template.h"

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0, n;
    char *s = malloc(cap);
    while (s && (n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *p = realloc(s, cap *= 2);
            if (!p) free(s);
            s = p;
        }
    }
    fclose(f);
    if (s) s[len] = '\0';
    return s;
}

static const char *json_str_or_null(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int print_and_free(cJSON *out, int rc) {
    char *s = cJSON_PrintUnformatted(out);
    puts(s ? s : "{\"error\":\"out of memory printing JSON\"}");
    free(s);
    cJSON_Delete(out);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "--file") != 0 && strcmp(argv[1], "--name") != 0)) {
        fprintf(stderr, "usage: %s (--file TEMPLATE | --name NAME) CASES.json\n", argv[0]);
        return 2;
    }
    char *cases_text = read_file(argv[3]);
    cJSON *cases = cases_text ? cJSON_Parse(cases_text) : NULL;
    free(cases_text);
    if (!cases) {
        fprintf(stderr, "%s: cannot read or parse %s\n", argv[0], argv[3]);
        return 2;
    }
    const char *bos = json_str_or_null(cases, "bos"), *eos = json_str_or_null(cases, "eos");

    cJSON *out = cJSON_CreateObject();
    BlChatTemplate t;
    BlError err = {{0}};
    int rc;
    if (strcmp(argv[1], "--file") == 0) {
        char *jinja = read_file(argv[2]);
        if (!jinja) {
            fprintf(stderr, "%s: cannot read %s\n", argv[0], argv[2]);
            cJSON_Delete(cases);
            cJSON_Delete(out);
            return 2;
        }
        rc = bl_chat_template_detect(&t, jinja, bos, eos, &err);
        free(jinja);
    } else {
        rc = bl_chat_template_by_name(&t, argv[2], bos, eos, &err);
    }
    if (rc != 0) {
        cJSON_AddStringToObject(out, "error", err.msg);
        cJSON_Delete(cases);
        return print_and_free(out, 1);
    }
    cJSON_AddStringToObject(out, "kind", bl_template_kind_name(t.kind));
    if (t.default_system)
        cJSON_AddStringToObject(out, "default_system", t.default_system);
    else
        cJSON_AddNullToObject(out, "default_system");

    cJSON *results = cJSON_AddArrayToObject(out, "results");
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(cases, "cases")) {
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(c, "messages");
        int n = cJSON_GetArraySize(msgs);
        BlChatMessage *m = calloc(n ? (size_t)n : 1, sizeof *m);
        for (int i = 0; m && i < n; i++) {
            const cJSON *msg = cJSON_GetArrayItem(msgs, i);
            m[i].role = json_str_or_null(msg, "role");
            m[i].content = json_str_or_null(msg, "content");
        }
        bool gen = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt"));
        cJSON *r = cJSON_CreateObject();
        char *text = NULL;
        if (!m)
            cJSON_AddStringToObject(r, "error", "out of memory");
        else if (bl_chat_render(&t, m, n, gen, &text, &err) == 0)
            cJSON_AddStringToObject(r, "text", text);
        else
            cJSON_AddStringToObject(r, "error", err.msg);
        free(text);
        free(m);
        cJSON_AddItemToArray(results, r);
    }
    bl_chat_template_free(&t);
    cJSON_Delete(cases);
    return print_and_free(out, 0);
}
