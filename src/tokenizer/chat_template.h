/* chat_template.h - native renderers for the chat template families bitlab
 * knows, chosen from the model's own Jinja template text (metadata) or by
 * name. The output equals transformers' apply_chat_template for the model's
 * template, default system prompt included. */
#ifndef BITLAB_CHAT_TEMPLATE_H
#define BITLAB_CHAT_TEMPLATE_H

#include <stdbool.h>

#include "core/error.h"

typedef enum {
    BL_TEMPLATE_CHATML,   /* SmolLM2, Qwen2 */
    BL_TEMPLATE_LLAMA3,
    BL_TEMPLATE_LLAMA2,
    BL_TEMPLATE_ZEPHYR,
    BL_TEMPLATE_PHI3,
} BlTemplateKind;

typedef struct {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} BlChatMessage;

typedef struct {
    BlTemplateKind kind;
    char *default_system;  /* inserted when the conversation has no system message, or NULL */
    char *bos_text;        /* for templates that write bos_token ("<s>"), or NULL */
    char *eos_text;
} BlChatTemplate;

/* Recognises the family of a Jinja template text (e.g. GGUF
 * tokenizer.chat_template) and extracts its default system prompt. An
 * unrecognised template is an error naming what was looked for. */
int bl_chat_template_detect(BlChatTemplate *out, const char *jinja, const char *bos_text,
                            const char *eos_text, BlError *err);
/* "chatml", "llama3", "llama2", "zephyr", "phi3"; anything else is an error
 * listing the valid names. */
int bl_chat_template_by_name(BlChatTemplate *out, const char *name, const char *bos_text,
                             const char *eos_text, BlError *err);
void bl_chat_template_free(BlChatTemplate *t);

/* Renders messages to a malloc'd prompt string. */
int bl_chat_render(const BlChatTemplate *t, const BlChatMessage *msgs, int n_msgs,
                   bool add_generation_prompt, char **out, BlError *err);

const char *bl_template_kind_name(BlTemplateKind k);

#endif
