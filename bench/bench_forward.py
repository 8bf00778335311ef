#!/usr/bin/env python3
"""bench_forward.py - teacher-forward throughput of bitlab on the default
model beside reference implementations on this machine (figures, not a test).

Batch: B sequences of T tokens (default 4 x 128), full length. GEMM GFLOP/s
counts 2·M·N·K for every linear of every block plus the LM head (attention's
own products, ~2% here, are not counted), divided by the forward's time.
Rows: bitlab (`bitlab bench forward`, best of --reps after a warm-up), the
numpy fp32 reference
(tests/py/ref_forward.py, one sequence at a time), and
PyTorch CPU fp32 (transformers LlamaForCausalLM with the same
dequantized weights) when `import torch` works.

    python3 bench/bench_forward.py [--model M.gguf] [--build build] [--B 4] [--T 128]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
import ref_forward as ref  # noqa: E402


def gemm_flops(cfg, M):
    dim, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or dim // nh
    per_tok = dim * (nh * hd + 2 * nkv * hd) + nh * hd * dim + 3 * dim * cfg["intermediate_size"]
    return 2.0 * M * (per_tok * cfg["num_hidden_layers"] + dim * cfg["vocab_size"])


def best_time(fn, reps):
    fn()  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_bitlab(args):
    """`bitlab bench forward`, as users run it (the executable itself makes
    OpenBLAS use the AVX kernels the CPU has, see src/cli/blas_core.c)."""
    exe = os.environ.get("BITLAB_BIN") or os.path.join(args.build, "bitlab")
    out = subprocess.run([exe, "bench", "forward", "--model", args.model, "--batch", str(args.B),
                          "--seq", str(args.T), "--iters", str(args.reps)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["seconds"]


def bench_numpy(w, cfg, tokens, reps):
    w32 = {n: a.astype(np.float32) for n, a in w.items()}
    return best_time(lambda: [ref.forward(w32, cfg, row, want_hidden=False, dtype=np.float32)
                              for row in tokens], reps)


def bench_torch(w, cfg, tokens, reps):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    hf = LlamaConfig(hidden_size=cfg["hidden_size"], num_hidden_layers=cfg["num_hidden_layers"],
                     num_attention_heads=cfg["num_attention_heads"],
                     num_key_value_heads=cfg["num_key_value_heads"],
                     intermediate_size=cfg["intermediate_size"], vocab_size=cfg["vocab_size"],
                     rope_theta=cfg["rope_theta"], rms_norm_eps=cfg["rms_norm_eps"],
                     tie_word_embeddings="lm_head.weight" not in w, max_position_embeddings=8192)
    model = LlamaForCausalLM(hf).eval()
    model.load_state_dict({n: torch.from_numpy(a) for n, a in w.items()}, strict=False)
    ids = torch.from_numpy(tokens.astype(np.int64))
    with torch.no_grad():
        return best_time(lambda: model(ids), reps), torch.get_num_threads()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--build", default=os.environ.get("BITLAB_BUILD_DIR", "build"))
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    if not os.path.exists(args.model):
        sys.exit(f"bench_forward: {args.model} is absent")
    w, cfg = ref.load_gguf(args.model)
    if cfg["model_type"] not in ("llama", "mistral"):
        print(f"note: PyTorch row uses LlamaForCausalLM; skipped for {cfg['model_type']}")
    M = args.B * args.T
    flops = gemm_flops(cfg, M)
    tokens = np.random.default_rng(0).integers(0, cfg["vocab_size"], (args.B, args.T))

    rows = [("bitlab (C, OpenBLAS fp32)", bench_bitlab(args))]
    rows.append(("numpy fp32 reference", bench_numpy(w, cfg, tokens, args.reps)))
    try:
        import torch  # noqa: F401
        if cfg["model_type"] in ("llama", "mistral"):
            t, threads = bench_torch(w, cfg, tokens, args.reps)
            rows.append((f"PyTorch CPU fp32 ({threads} threads)", t))
    except ImportError:
        print("note: torch is not importable; PyTorch row skipped")

    base = min(t for name, t in rows if name.startswith("bitlab"))
    print(f"teacher forward, {os.path.basename(args.model)}, batch {args.B} x {args.T} = {M} tokens, "
          f"{flops / 1e9:.1f} GFLOP of GEMM, {os.cpu_count()} CPUs, best of {args.reps}")
    print(f"{'implementation':34s} {'seconds':>9s} {'tokens/s':>10s} {'GEMM GFLOP/s':>13s} {'time / bitlab best':>18s}")
    for name, t in rows:
        print(f"{name:34s} {t:9.3f} {M / t:10.1f} {flops / t / 1e9:13.1f} {t / base:17.2f}x")


if __name__ == "__main__":
    main()
