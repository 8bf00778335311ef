/* cmd_tokenize.c - `bitlab tokenize`: token ids of a text, one line; or a
 * corpus (files, folders, globs) written as pre-tokenised shards
 * (data/shard.h) for bitlab.corpus{shards = DIR}. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/corpus.h"
#include "data/shard.h"
#include "tokenizer/tokenizer.h"

static const CliOpt OPTS[] = {
    CLI_STR_REQ("model"), CLI_STR_OPT("text"), CLI_FLAG_OPT("bos"),
    CLI_STR_OPT("corpus"), CLI_STR_OPT("out"), CLI_INT_OPT("shard-tokens", 1024, 2147483647),
    CLI_END};

const CliSpec cli_tokenize_spec = {
    .name = "tokenize",
    .synopsis = "bitlab tokenize --model PATH --text TEXT [--bos]\n"
                "  bitlab tokenize --model PATH --corpus PATH [PATH...] --out DIR [--shard-tokens N]",
    .summary = "token ids of TEXT on one line (--bos adds the tokenizer's special tokens); or a\n"
               "corpus tokenised into DIR/shard-NNNNN.bin for bitlab.corpus{shards = DIR}",
    .details = "--corpus takes files, folders (their .txt/.md/.jsonl files, recursively, sorted)\n"
               "and glob patterns, read as bitlab.corpus reads them: a .txt/.md file is one\n"
               "document, a .jsonl line is one (\"text\", or \"messages\" in the chat template);\n"
               "each document is its tokens with the tokenizer's BOS, then EOS. A shard ends at\n"
               "the first document end past --shard-tokens tokens (default 16777216). Shards\n"
               "record the tokenizer's identity: a model with another tokenizer refuses them.",
    .opts = OPTS,
};

static int tokenize_text(const CliArgs *a, BlModel *m) {
    const char *text = cli_str(a, "--text", NULL);
    int *ids = NULL, n = 0;
    BlError err = {{0}};
    int rc = bl_tokenizer_encode(m->tokenizer, text, strlen(text), cli_flag(a, "--bos"), &ids, &n, &err);
    if (rc != 0) {
        fprintf(stderr, "bitlab tokenize: %s\n", err.msg);
    } else {
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    free(ids);
    return rc ? 1 : 0;
}

/* One pass over the corpus (its epoch 0, sorted order) into shards. */
static int tokenize_corpus(const CliArgs *a, BlModel *m, const char *const *paths, int n_paths) {
    const char *out = cli_str(a, "--out", NULL);
    BlError err = {{0}};
    BlCorpus *c = NULL;
    BlShardWriter w;
    BlCorpusOptions o = {.model = m, .paths = paths, .n_paths = n_paths};
    uint64_t shard_tokens = (uint64_t)cli_int(a, "--shard-tokens", 1 << 24);
    int rc = bl_corpus_open(&c, &o, &err);
    if (rc == 0) rc = bl_shard_writer_init(&w, out, m->tokenizer, shard_tokens, &err);
    if (rc) {
        fprintf(stderr, "bitlab tokenize: %s\n", err.msg);
        bl_corpus_free(c);
        return 1;
    }
    BlCorpusPiece p;
    while ((rc = bl_corpus_next_piece(c, &p, &err)) == 0 && p.epoch == 0)
        if ((rc = bl_shard_writer_add(&w, p.ids, p.n, p.doc_end, &err))) break;
    if (rc == 0) rc = bl_shard_writer_finish(&w, &err);
    if (rc) fprintf(stderr, "bitlab tokenize: %s\n", err.msg);
    else
        printf("wrote %d shard(s) to %s: %llu documents, %llu tokens of %d bytes, from %d file(s)\n",
               w.n_written, out, (unsigned long long)w.docs_written,
               (unsigned long long)w.tokens_written, w.width, bl_corpus_n_files(c));
    bl_shard_writer_free(&w);
    bl_corpus_free(c);
    return rc ? 1 : 0;
}

int cmd_tokenize(int argc, char **argv) {
    /* --corpus takes several paths: the words after it that are not options
     * are set aside, so the option parser sees one value */
    char **args = malloc(sizeof *args * (size_t)(argc + 1));
    const char **paths = malloc(sizeof *paths * (size_t)(argc + 1));
    if (!args || !paths) {
        free(args);
        free(paths);
        fprintf(stderr, "bitlab tokenize: out of memory\n");
        return 1;
    }
    int n_args = 0, n_paths = 0;
    for (int i = 0; i < argc; i++) {
        args[n_args++] = argv[i];
        bool corpus = strcmp(argv[i], "--corpus") == 0;
        if (strncmp(argv[i], "--corpus=", 9) == 0) paths[n_paths++] = argv[i] + 9;
        if (!corpus) continue;
        if (i + 1 < argc) args[n_args++] = argv[++i], paths[n_paths++] = argv[i];
        while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) paths[n_paths++] = argv[++i];
    }
    args[n_args] = NULL;
    CliArgs a;
    int rc = cli_parse(&a, &cli_tokenize_spec, n_args, args);
    if (rc < 0) {
        bool text = cli_has(&a, "--text"), corpus = cli_has(&a, "--corpus");
        if (text == corpus) rc = cli_usage_error(&a, "give one of --text or --corpus");
        else if (corpus && !cli_has(&a, "--out")) rc = cli_usage_error(&a, "--corpus needs --out DIR");
        else if (text && (cli_has(&a, "--out") || cli_has(&a, "--shard-tokens")))
            rc = cli_usage_error(&a, "--out and --shard-tokens go with --corpus");
    }
    if (rc < 0) {
        BlModel *m = cli_load_model(&a);
        rc = !m ? 1 : cli_has(&a, "--text") ? tokenize_text(&a, m) : tokenize_corpus(&a, m, paths, n_paths);
        bl_model_free(m);
    }
    free(args);
    free(paths);
    return rc;
}
