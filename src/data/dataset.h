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
 * Long examples: with a length `seq` set (bl_dataset_set_long, before any
 * example is added), an example longer than seq is fitted to it as it is
 * added, by the policy: truncated to its first seq tokens, split into pieces
 * of at most seq tokens that overlap by one token (so every token but the
 * first is still predicted exactly once; a piece with nothing to predict is
 * not kept), or skipped. Without seq, examples are kept whole and batching
 * cuts the rows longer than the batch's T, as before.
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

typedef enum { BL_LONG_TRUNCATE, BL_LONG_SPLIT, BL_LONG_SKIP } BlLongPolicy;

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
    long n_truncated;     /* batch rows cut to T by batching so far */
    /* long examples (see above); seq 0 = kept whole */
    int seq;
    BlLongPolicy long_policy;
    long n_long;          /* examples added that were longer than seq */
    long n_cut;           /* of them truncated */
    long n_split;         /* of them split; their pieces are examples of their own */
    long n_skipped;       /* of them skipped */
    long tokens_dropped;  /* tokens those cuts and skips removed (split pieces drop none) */
    /* batches served, for the padding fraction */
    long rows_served;
    size_t tokens_served, slots_served;
} BlDataset;

/* template_name NULL uses the model's own template (bl_chat_template_detect
 * on model->chat_template); a model without one can still hold text. */
int bl_dataset_init(BlDataset *d, const BlModel *m, const char *template_name, bool response_only,
                    BlError *err);
void bl_dataset_free(BlDataset *d);

/* Fits the examples added from now on to seq tokens by policy (seq >= 2).
 * Refused once examples are held: they were added under other rules. */
int bl_dataset_set_long(BlDataset *d, int seq, BlLongPolicy policy, BlError *err);
/* "truncate" / "split" / "skip" → 0 and *p; -1 for any other name. */
int bl_long_policy_parse(const char *name, BlLongPolicy *p);
const char *bl_long_policy_name(BlLongPolicy p);

/* One conversation; with response_only it must contain an assistant message. */
int bl_dataset_add_chat(BlDataset *d, const BlChatMessage *msgs, int n_msgs, BlError *err);
/* Plain text (the tokenizer's special tokens added); every token a target. */
int bl_dataset_add_text(BlDataset *d, const char *text, BlError *err);
/* Raw tokens; target may be NULL (all targets). */
int bl_dataset_add_tokens(BlDataset *d, const int *ids, const uint8_t *target, int n, BlError *err);
/* A JSONL line's "messages" array (non-empty, each with string role and
 * content) as messages pointing into it; *msgs is malloc'd. Shared with
 * data/corpus.h. */
struct cJSON;
int bl_chat_messages_from_json(const struct cJSON *msgs, BlChatMessage **out, int *n, BlError *err);
/* A JSONL file of chat or text lines; blank lines are skipped. Errors name
 * file:line. */
int bl_dataset_load_jsonl(BlDataset *d, const char *path, BlError *err);

/* Sets the shuffling seed and restarts at epoch 0, position 0. Call after
 * the examples are added. */
int bl_dataset_shuffle(BlDataset *d, uint64_t seed, BlError *err);
/* The visiting order of epoch `epoch`: a permutation of 0..n-1 that is a
 * function of (seed, epoch) only, so a seek reproduces it without replaying
 * earlier epochs; seed 0 is the identity. Shared with data/corpus.h. */
void bl_epoch_order(int *order, int n, uint64_t seed, long epoch);
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
/* Examples longer than T, and the tokens beyond T they hold (a batch of
 * length T never trains on those); excess may be NULL. */
int bl_dataset_count_longer(const BlDataset *d, int T, long *excess);
/* Padding positions over all positions of the batches served so far; before
 * the first batch, what batches of one example per row at length seq (or,
 * without seq, the longest example) would pad: 1 − tokens / (n · length).
 * 0 for an empty dataset. */
double bl_dataset_padding_fraction(const BlDataset *d);

#endif
