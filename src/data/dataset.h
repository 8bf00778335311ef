/* dataset.h - training examples as token sequences with loss masks, and the
 * batches the trainer consumes.
 *
 * Examples come from chat conversations (rendered with the model's chat
 * template), plain text, or JSONL files holding either
 * {"messages":[{"role":..,"content":..},...]} or {"text":..} per line. Each
 * example keeps per-token "target" flags: with response_only, only the
 * tokens of assistant contents (plus the end-of-turn token that follows each,
 * so the student learns to stop) are targets; otherwise every token is.
 *
 * Chat examples are tokenised segment by segment (template text, assistant
 * content, template text, ...) so that the target boundaries are exact: the
 * prompt segment is what generation would be prompted with, and the content
 * is tokenised on its own as a generated answer would be re-encoded.
 *
 * Batches are [B, T] right-padded (pad id 0) with lens[B], and a ROW mask in
 * the trainer's convention (step.h): row t is selected when token t+1 is a
 * target. Examples longer than T are truncated (counted in n_truncated).
 *
 * Order: examples are visited in a permutation drawn per epoch from the seed
 * (seed 0 = file order); (epoch, pos) is the resumable position. */
#ifndef BITLAB_DATASET_H
#define BITLAB_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "model/model.h"
#include "tokenizer/chat_template.h"

typedef struct {
    const BlModel *model;
    BlChatTemplate tpl;   /* the model's own (or by name), for chat examples */
    bool has_tpl;
    bool response_only;   /* chat examples: only assistant tokens are targets */
    int n;                /* examples */
    int cap;
    int *len;             /* [n] tokens of each example */
    size_t *off;          /* [n] offset into tok/target */
    int *tok;             /* all examples' tokens, concatenated */
    uint8_t *target;      /* per token: 1 when the loss should predict it */
    size_t n_tok, cap_tok;
    uint64_t seed;
    int *order;           /* [n] visiting order of the current epoch */
    long epoch, pos;      /* resumable position: pos examples of epoch consumed */
    long n_truncated;     /* examples cut to T by batching so far */
} BlDataset;

/* template_name NULL uses the model's own template (bl_chat_template_detect
 * on model->chat_template); a model without one can still hold text. */
int bl_dataset_init(BlDataset *d, const BlModel *m, const char *template_name, bool response_only,
                    BlError *err);
void bl_dataset_free(BlDataset *d);

/* One conversation; with response_only it must contain an assistant message. */
int bl_dataset_add_chat(BlDataset *d, const BlChatMessage *msgs, int n_msgs, BlError *err);
/* Plain text (the tokenizer's special tokens added); every token a target. */
int bl_dataset_add_text(BlDataset *d, const char *text, BlError *err);
/* Raw tokens; target may be NULL (all targets). */
int bl_dataset_add_tokens(BlDataset *d, const int *ids, const uint8_t *target, int n, BlError *err);
/* A JSONL file of chat or text lines; blank lines are skipped. Errors name
 * file:line. */
int bl_dataset_load_jsonl(BlDataset *d, const char *path, BlError *err);

/* Sets the shuffling seed and restarts at epoch 0, position 0. Call after
 * the examples are added. */
int bl_dataset_shuffle(BlDataset *d, uint64_t seed, BlError *err);
/* Moves to (epoch, pos), e.g. from a checkpoint. */
int bl_dataset_seek(BlDataset *d, long epoch, long pos, BlError *err);

/* The next B examples (wrapping into the next epoch) as tokens [B·T], lens
 * [B], row mask [B·T]; advances the position. Padding tokens are 0. */
int bl_dataset_next_batch(BlDataset *d, int B, int T, int *tokens, int *lens, uint8_t *mask,
                          BlError *err);

/* Example i (in insertion order): its tokens and target flags. */
const int *bl_dataset_example(const BlDataset *d, int i, int *len, const uint8_t **target);
/* Longest example, in tokens. */
int bl_dataset_max_len(const BlDataset *d);

#endif
