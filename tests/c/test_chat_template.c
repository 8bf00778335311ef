/* test_chat_template.c - the chat template API's error paths and ownership
 * rules (rendering itself is compared with transformers in
 * tests/py/test_chat_template.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat_template.h"

static int failures = 0;

#define CHECK(cond)                                                   \
    do {                                                              \
        if (!(cond)) {                                                \
            fprintf(stderr, "%s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
            failures++;                                               \
        }                                                             \
    } while (0)

static void test_names(void) {
    static const char *const names[] = {"chatml", "llama3", "llama2", "zephyr", "phi3"};
    for (int k = 0; k < 5; k++) {
        BlChatTemplate t;
        BlError err = {{0}};
        CHECK(bl_chat_template_by_name(&t, names[k], NULL, NULL, &err) == 0);
        CHECK(strcmp(bl_template_kind_name(t.kind), names[k]) == 0);
        CHECK(t.default_system == NULL);
        bl_chat_template_free(&t);
        bl_chat_template_free(&t);  // free leaves NULLs behind, so a second free is harmless
    }
    BlChatTemplate t;
    BlError err = {{0}};
    CHECK(bl_chat_template_by_name(&t, "vicuna", NULL, NULL, &err) == -1);
    CHECK(strstr(err.msg, "vicuna") && strstr(err.msg, "phi3"));
    CHECK(bl_chat_template_by_name(&t, NULL, NULL, NULL, &err) == -1);
    CHECK(strcmp(bl_template_kind_name((BlTemplateKind)99), "unknown") == 0);
}

static void test_detect(void) {
    BlChatTemplate t;
    BlError err = {{0}};
    CHECK(bl_chat_template_detect(&t, "", NULL, NULL, &err) == -1);
    CHECK(strstr(err.msg, "--template") != NULL);
    CHECK(bl_chat_template_detect(&t, "{{ messages }}", NULL, NULL, &err) == -1);
    CHECK(strstr(err.msg, "<|im_start|>") && strstr(err.msg, "--template"));

    /* an unterminated literal in the default-system branch is reported, not overrun */
    CHECK(bl_chat_template_detect(&t, "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nX",
                                  NULL, NULL, &err) == -1);
    CHECK(strstr(err.msg, "unterminated") != NULL);

    const char *chatml = "{% if loop.first and messages[0]['role'] != 'system' %}"
                         "{{ '<|im_start|>system\\nBe \\'nice\\'.<|im_end|>\\n' }}{% endif %}";
    CHECK(bl_chat_template_detect(&t, chatml, NULL, NULL, &err) == 0);
    CHECK(t.kind == BL_TEMPLATE_CHATML && t.default_system &&
          strcmp(t.default_system, "Be 'nice'.") == 0);
    bl_chat_template_free(&t);
}

static void test_render_errors(void) {
    BlChatTemplate t;
    BlError err = {{0}};
    char *out = NULL;
    CHECK(bl_chat_template_by_name(&t, "llama2", "<s>", "</s>", &err) == 0);
    CHECK(bl_chat_render(&t, NULL, 0, true, &out, &err) == -1 && out == NULL);
    BlChatMessage bad[] = {{"user", "a"}, {"user", "b"}};
    CHECK(bl_chat_render(&t, bad, 2, true, &out, &err) == -1 && out == NULL);
    CHECK(strstr(err.msg, "alternate") != NULL);
    BlChatMessage ok[] = {{"system", "S"}, {"user", " hi "}, {"assistant", "yo"}};
    CHECK(bl_chat_render(&t, ok, 3, false, &out, &err) == 0);
    /* the template strips the system block + user text as one string, so the
     * user's leading space survives after <</SYS>> (as transformers renders it) */
    CHECK(out && strcmp(out, "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\n hi [/INST] yo </s>") == 0);
    free(out);
    bl_chat_template_free(&t);

    CHECK(bl_chat_template_by_name(&t, "chatml", NULL, NULL, &err) == 0);
    BlChatMessage no_content[] = {{"user", NULL}};
    CHECK(bl_chat_render(&t, no_content, 1, true, &out, &err) == -1 && out == NULL);
    CHECK(bl_chat_render(&t, NULL, 0, false, &out, &err) == 0 && out && out[0] == '\0');
    free(out);
    bl_chat_template_free(&t);
}

int main(void) {
    test_names();
    test_detect();
    test_render_errors();
    if (failures) {
        fprintf(stderr, "test_chat_template: %d failures\n", failures);
        return 1;
    }
    printf("test_chat_template: ok\n");
    return 0;
}
