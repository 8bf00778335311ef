/* test_cuda_step.c - the trainer on the CUDA backend: the cases,
 * comparisons and refusals of test_device_step.c (included here, llm.c's
 * test_gpt2 style), on a model whose matrices are rounded to bf16 first (the
 * W the device holds; --fp32-weights keeps them fp32).
 *
 * The reference (default) is the same trainer on the CPU backend (fp32;
 * test_device_step holds it to the reference step, tests/c/ref/ref_step.c,
 * which --ref-step compares against instead). The device's bf16 GEMM
 * operands alone, with no CUDA code, already move a step far from it
 * (--dev-cpu-bf16 runs the CPU backend with those operands as the device:
 * 818 checks over the bounds below, tests/cuda_emu/README.md, "Findings"),
 * so these bounds only catch gross errors:
 *
 *   losses, gradient norms    relative 5e-2
 *   gradients                 nmse 2e-2 per tensor
 *   tensors and AdamW moments nmse 1e-3 after each update
 *   the update itself         nmse 0.2
 *
 * --ref-cpu-bf16 compares against the trainer on that CPU backend with bf16
 * operands instead: both sides then round the same operands, and what is
 * left is float32 summation order (cuBLAS vs OpenBLAS, the kernels'
 * reductions) and an operand it puts on the neighbouring bf16, one bf16 ulp
 * (2⁻⁸ relative) on a rare element. Bounds: STRICT below. The emulated
 * device's CI tests run this (--quick: the 6 cases of QUICK_CASES).
 *
 * The attention-relation loss (w_rel, BlTrainerShape.relation_layer) has a
 * check of its own (check_relation: ref_step.c knows no relation loss, so
 * it needs a trainer on ref_backend), run with the last quick case.
 *
 * Exit 77 without a device ("no CUDA device") or in a build without CUDA;
 * a CUDA module that fails to load is a failure. */
#define DEVICE_STEP_NO_MAIN
#include "test_device_step.c"

/* CE + the relation loss at each layer, unpacked and packed micro-batches,
 * on be against the trainer on ref_backend: rel, total and every gradient
 * within the case bounds b (the relation GEMMs are fp32 on both sides, so
 * only the student's bf16 forward separates them). */
static void check_relation(const BlBackend *be, const Bounds *b) {
    if (!ref_backend) {
        printf("  %-44s skipped: ref_step.c has no relation loss\n", "relation loss");
        return;
    }
    BlError err = {{0}};
    BlModel *m = tiny_model(BL_ARCH_LLAMA, 32, 2, 4, 48, 61, 0x5eed0 + BL_ARCH_LLAMA);
    if (bf16_weights) bf16_round_model(m);
    StepCase k = {.name = "relation", .arch = BL_ARCH_LLAMA, .lambda = 1.0f, .bits = 8};
    int tokens[SB * ST], lens[SB], doc_start[SB * ST];
    uint8_t mask[SB * ST];
    make_batch(tokens, lens, mask, m->cfg.vocab_size, 4321);
    make_doc_start(doc_start, lens, 8765);
    for (int layer = 0; layer < m->cfg.n_layers; layer++)
        for (int packed = 0; packed < 2; packed++) {
            char what[96];
            snprintf(what, sizeof what, "relation loss at layer %d%s", layer,
                     packed ? ", packed rows" : "");
            BlStudent sref, sdev;
            BlTrainer tref, tdev;
            memset(&tref, 0, sizeof tref);
            memset(&tdev, 0, sizeof tdev);
            BlTrainerShape sh = {.batch = SB, .seq = ST, .teacher_cache = true, .relation = true,
                                 .relation_layer = layer};
            BlStepParams sp = {.loss = {.w_ce = 1.0f, .w_rel = 1.0f, .tau = 1.0f},
                               .lambda = k.lambda, .act_bits = k.bits};
            bool ok = make_student(&sref, m, &k, 77, &err) == 0 &&
                      make_student(&sdev, m, &k, 77, &err) == 0 &&
                      bl_build_trainer(&tref, ref_backend, &sref, &sh, &err) == 0 &&
                      bl_build_trainer(&tdev, be, &sdev, &sh, &err) == 0;
            CHECK(ok, "%s: %s", what, err.msg);
            BlMicroBatch mb = {tokens, lens, mask, packed ? doc_start : NULL, SB, ST};
            BlStepResult rr = {0}, rd = {0};
            ok = ok && bl_trainer_accumulate(&tref, &mb, 1.0f, &sp, &rr, &err) == 0 &&
                 bl_trainer_accumulate(&tdev, &mb, 1.0f, &sp, &rd, &err) == 0 &&
                 bl_trainer_download_grads(&tref, &err) == 0;
            CHECK(ok, "%s: step: %s", what, err.msg);
            if (ok) {
                CHECK(rr.rel > 0.0 && scal_close(rd.rel, rr.rel, b->scal),
                      "%s: rel %.9g vs reference %.9g", what, rd.rel, rr.rel);
                compare_results(what, &rd, &rr, m->cfg.n_layers, b);
                compare_grads(what, &tdev, &sref, b);
                printf("  %-44s rel %.6g (reference %.6g)\n", what, rd.rel, rr.rel);
            }
            if (tdev.be) bl_free_trainer(&tdev);
            if (tref.be) bl_free_trainer(&tref);
            bl_free_student(&sdev);
            bl_free_student(&sref);
        }
    tiny_free(m);
}

int main(int argc, char **argv) {
    bool no_quant = false, dev_cpu_bf16 = false, quick = false;
    const char *only = NULL;
    int index = -1;
    bool strict = false;
    bf16_weights = true;
    ref_backend = bl_backend_cpu();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ref-cpu-bf16")) ref_backend = cpu_bf16_backend(), strict = true;
        else if (!strcmp(argv[i], "--ref-step")) ref_backend = NULL, strict = false;
        else if (!strcmp(argv[i], "--fp32-weights")) bf16_weights = false;
        else if (!strcmp(argv[i], "--dev-cpu-bf16")) dev_cpu_bf16 = true;
        else if (!strcmp(argv[i], "--no-quant")) no_quant = true;
        else if (!strcmp(argv[i], "--verbose")) verbose = true;
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--case") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--case-index") && i + 1 < argc) index = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--ref-cpu-bf16 | --ref-step] [--fp32-weights] [--no-quant] [--verbose] [--quick] [--case SUBSTR] [--case-index I]\n", argv[0]);
            return 2;
        }
    }
    BlError err = {{0}};
    BlCudaStatus st = dev_cpu_bf16 ? BL_CUDA_READY : bl_backend_cuda_status(&err);
    const BlBackend *cuda = dev_cpu_bf16 ? cpu_bf16_backend() : NULL;
    if (st == BL_CUDA_NOT_BUILT || st == BL_CUDA_NO_DEVICE) {
        printf("skipped: %s\n", err.msg);
        return 77;
    }
    /* a module that is there but does not load is a failure, not a skip */
    if (!cuda && st == BL_CUDA_READY) cuda = bl_backend_cuda(&err);
    if (!cuda) {
        fprintf(stderr, "cuda backend: %s\n", err.msg);
        return 1;
    }
    printf("the trainer on %s (%s) vs %s\n", cuda->name, cuda->device_name(),
           ref_backend ? ref_backend->name : "the CPU reference step");
    Bounds b = {.scal = 5e-2, .nmse = 2e-2, .pnmse = 1e-3, .update_nmse = 0.2};
    /* STRICT (--ref-cpu-bf16): one bf16 ulp, 2⁻⁸, relative on losses and
     * norms (measured ≤ 8.3e-4 on the emulator); nmse (2⁻⁸)² = 1.5e-5 per
     * tensor, a tensor one bf16 ulp off everywhere (measured ≤ 4e-11 for
     * gradients and moments); the update as above (sign flips of elements
     * whose |g| is within the noise). Per step of drift: from step s on both
     * sides start from parameters s − 1 such roundings apart (drift_per_step) */
    if (strict)
        b = (Bounds){.scal = 0x1p-8, .nmse = 0x1p-16, .pnmse = 0x1p-16, .update_nmse = 0.2,
                     .drift_per_step = true};
    const StepCase *cases = quick ? QUICK_CASES : CASES;
    size_t n_cases = quick ? sizeof QUICK_CASES / sizeof QUICK_CASES[0] : sizeof CASES / sizeof CASES[0];
    for (size_t i = 0; i < n_cases; i++) {
        StepCase k = cases[i];
        if ((only && !strstr(k.name, only)) || (index >= 0 && (size_t)index != i)) continue;
        if (k.n_micro < 1) k.n_micro = 1;
        if (no_quant) {
            k.lambda = 0.0f;
            k.bits = 16;
            k.fast = false;
        }
        run_case(&k, cuda, &b);
    }
    if (!only && index <= 0) check_refusals(cuda);
    if (!only && (index < 0 || (size_t)index == n_cases - 1)) check_relation(cuda, &b);
    if (cuda->sync(&err)) CHECK(0, "cuda: %s", err.msg);
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
}
