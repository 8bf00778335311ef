/* cmd_export.c - `bitlab export`: a trained student (model + checkpoint) as
 * a GGUF file llama.cpp runs, or as a packed safetensors folder, with its
 * training_manifest.json. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "export/export.h"
#include "export/manifest.h"
#include "export/packed_safetensors.h"
#include "io/quants.h"
#include "train/checkpoint.h"

static int parse_options(const CliArgs *a, BlExportRequest *req) {
    const char *tern = cli_str(a, "--ternary", "tq2_0"), *embed = cli_str(a, "--embed", "keep");
    if (strcmp(tern, "tq2_0") == 0) req->gguf.ternary_type = BL_GGML_TQ2_0;
    else if (strcmp(tern, "tq1_0") == 0) req->gguf.ternary_type = BL_GGML_TQ1_0;
    else {
        fprintf(stderr, "bitlab export: --ternary must be tq2_0 or tq1_0, got '%s'\n", tern);
        return -1;
    }
    if (strcmp(embed, "keep") == 0) req->gguf.embed = BL_EMBED_KEEP;
    else if (strcmp(embed, "f32") == 0) req->gguf.embed = BL_EMBED_F32;
    else if (strcmp(embed, "f16") == 0) req->gguf.embed = BL_EMBED_F16;
    else {
        fprintf(stderr, "bitlab export: --embed must be keep, f32 or f16, got '%s'\n", embed);
        return -1;
    }
    req->format = cli_str(a, "--format", NULL);
    return 0;
}

/* stat of DIR/model.safetensors; false when it cannot be read */
static bool folder_st_size(const char *dir, struct stat *sb) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/model.safetensors", dir) >= sizeof path) return false;
    return stat(path, sb) == 0;
}

/* "N tensors: 60 TQ2_0, 150 Q4_0, ..." */
static void print_types(const BlExportSummary *s) {
    uint32_t seen[64];
    int n_seen = 0;
    printf("tensors        %d:", s->n_tensors);
    for (int i = 0; i < s->n_tensors; i++) {
        uint32_t t = s->tensors[i].type;
        int known = 0;
        for (int j = 0; j < n_seen; j++) known |= seen[j] == t;
        if (known || n_seen == 64) continue;
        seen[n_seen++] = t;
        int count = 0, linear = 0;
        for (int j = 0; j < s->n_tensors; j++)
            if (s->tensors[j].type == t) count++, linear += s->tensors[j].block_linear;
        printf("%s %d %s%s", n_seen > 1 ? "," : "", count, bl_ggml_type_name(t),
               linear == count ? " (block linears)" : linear ? " (incl. block linears)" : "");
    }
    printf("\n");
}

static const CliOpt OPTS[] = {
    CLI_STR_REQ("model"), CLI_STR_REQ("checkpoint"),
    CLI_STR_REQ("out"),   CLI_STR_OPT("ternary"),
    CLI_STR_OPT("format"),                  CLI_STR_OPT("embed"),
    CLI_END};

const CliSpec cli_export_spec = {
    .name = "export",
    .synopsis = "bitlab export --model PATH --checkpoint CKPT --out FILE.gguf|DIR\n"
                "              [--format gguf|safetensors] [--ternary tq2_0|tq1_0]\n"
                "              [--embed keep|f32|f16]",
    .summary = "the student of CKPT (trained on PATH) at lambda 1 as a GGUF file llama.cpp and\n"
               "bitlab run, or as a packed safetensors folder; writes training_manifest.json\n"
               "beside it (inside DIR)",
    .details = "GGUF: block linears with rows of 256-multiples TQ2_0 (TQ1_0 with --ternary\n"
               "tq1_0), 32-multiples Q4_0, others F16; --embed keep (the default) stores the\n"
               "token embedding and LM head as a GGUF source stored them, F32 for a Hugging\n"
               "Face source. Packed safetensors (--format safetensors, or an --out not ending\n"
               "in .gguf): block linears as 2-bit codes + an F32 scale, norms and biases F32,\n"
               "token embedding and LM head F16 by default: --embed f32 for exact values; keep\n"
               "means f16 there, safetensors has no ggml block types",
    .opts = OPTS,
};

int cmd_export(int argc, char **argv) {
    CliArgs args;
    int prc = cli_parse(&args, &cli_export_spec, argc, argv);
    if (prc >= 0) return prc;
    const CliArgs *a = &args;
    const char *ckpt = cli_str(a, "--checkpoint", NULL), *out = cli_str(a, "--out", NULL);
    BlExportRequest req = {0};
    if (parse_options(a, &req) != 0) return 2;
    BlError err = {{0}};
    BlExportFormat fmt;
    if (bl_export_format(req.format, out, &fmt, &err) != 0) {
        fprintf(stderr, "bitlab export: %s\n", err.msg);
        return 2;
    }
    BlModel *m = cli_load_model(a);
    if (!m) return 1;
    BlStudent st = {0};
    BlExportResult res = {0};
    char *json = NULL;
    cJSON *run = NULL;
    int rc = 1;
    if (bl_student_from_checkpoint(&st, m, ckpt, &json, &err) != 0) goto done;
    if (!(run = bl_manifest_run_from_checkpoint(json, ckpt, &err))) goto done;
    req.run = run;
    if (bl_export_student(&st, out, &req, &res, &err) != 0) goto done;
    struct stat sb;
    printf("exported       %s (%s", out, fmt == BL_EXPORT_GGUF ? "GGUF" : "packed safetensors");
    if (fmt == BL_EXPORT_GGUF && stat(out, &sb) == 0)
        printf(", %.2f MiB", sb.st_size / (1024.0 * 1024.0));
    if (fmt == BL_EXPORT_SAFETENSORS && folder_st_size(out, &sb))
        printf(", model.safetensors %.2f MiB; embedding and LM head %s", sb.st_size / (1024.0 * 1024.0),
               bl_packed_embed_f16(req.gguf.embed) ? "F16" : "F32");
    printf(")\nstudent        lambda %g at the checkpoint, exported at lambda 1; %d-bit activations\n",
           (double)st.cfg.lambda, st.cfg.act_bits);
    if (st.cfg.lambda != 1.0f)
        printf("note           the student last trained at lambda %g: the export (lambda 1) is not "
               "the model it was evaluated as\n", (double)st.cfg.lambda);
    if (fmt == BL_EXPORT_GGUF) {
        print_types(&res.gguf);
        printf("scale rounding fp16 block scales differ from the student's by at most %.2e "
               "(relative)\n", res.gguf.max_scale_rel_err);
    }
    printf("manifest       %s\n", res.manifest_path);
    rc = 0;
done:
    if (rc) fprintf(stderr, "bitlab export: %s\n", err.msg);
    bl_export_result_free(&res);
    cJSON_Delete(run);
    free(json);
    bl_free_student(&st);
    bl_model_free(m);
    return rc;
}
