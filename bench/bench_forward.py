#!/usr/bin/env python3
"""bench_forward.py - teacher-forward throughput of bitlab on the default
model beside reference implementations on this machine (figures, not a test).

Batch: B sequences of T tokens (default 4 x 128), full length. GEMM GFLOP/s
counts 2·M·N·K for every linear of every block plus the LM head (attention's
own products, ~2% here, are not counted), divided by the forward's time.
Rows: bitlab (tests/tools/fwd_tool bench, best of --reps after a warm-up;
again with OPENBLAS_CORETYPE forced when the CPU has AVX2/AVX-512, see
tuned_coretype), the numpy fp32 reference
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


def bench_bitlab(args, env=None):
    tool = os.environ.get("FWD_TOOL") or os.path.join(args.build, "fwd_tool")
    out = subprocess.run([tool, "bench", args.model, str(args.B), str(args.T), str(args.reps)],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, **(env or {}))).stdout
    return json.loads(out)["seconds"]


def tuned_coretype():
    """OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not recognise some virtualised Xeons
    and falls back to its SSE3 "Prescott" kernels; forcing the core type the
    CPU flags allow shows what the same code reaches with AVX kernels."""
    if os.environ.get("OPENBLAS_CORETYPE"):
        return None
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((l for l in f if l.startswith("flags")), "").split()
    except OSError:
        return None
    return "SkylakeX" if "avx512f" in flags else "Haswell" if "avx2" in flags else None


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
    core = tuned_coretype()
    if core:
        rows.append((f"bitlab, OPENBLAS_CORETYPE={core}",
                     bench_bitlab(args, {"OPENBLAS_CORETYPE": core})))
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
