#!/usr/bin/env python3
"""bf16_teacher.py - issue 18's open question in figures: what a bf16 teacher
(or bf16 backward) would cost in accuracy and buy in speed on this CPU.

The CPU step is ~300 GFLOP of fp32 products that no exact integer path can
take (teacher forward, both LM heads, the backward's dx = dy·Weff). A CPU
with AVX-512 BF16 (`vdpbf16ps`: bf16 × bf16 pairs summed into fp32) runs
such a product from bf16-rounded operands at up to twice the fp32 FMA rate.
This script measures both sides on the default model, in one run:

Accuracy: the teacher forward in float32 (PyTorch, from the GGUF's
dequantised weights, tests/py/ref_forward.py's loader) against the same
forward whose products take bf16-rounded operands and accumulate in fp32
(what vdpbf16ps computes, up to summation order): (a) the 7 block linears
of every layer, (b) those and the LM head. Over the held-out text
(experiments/data/heldout.txt, never trained on), in sequences of --seq
tokens: KL(fp32 teacher ‖ bf16 teacher) per token at τ = 1 and at the
training τ = 2 (scaled by τ², as the loss is), top-1 agreement, the largest
hidden-state 1 − cos over the layers. The yardstick is the student's own
distance: a student distilled for 30 minutes is at held-out KL ≈ 3.4
(docs/distill-default-model.md).

Speed: one core's peak of vfmadd231ps against vdpbf16ps (bench/peak_flops.c,
compiled here with cc), the hardware bound on what bf16 could buy; then
torch.matmul (MKL for fp32, oneDNN for bf16) on the step's shapes (512
tokens) in float32 and in bfloat16, on one thread and on --threads, median
of --iters: GFLOP/s and the ratio per shape. The fp32 rates are also the
PyTorch baseline's GEMM rates, against which bitlab's (bench/README.md,
OpenBLAS driven by bitlab's pool) compare.

Figures, not a test; the bench/README.md section of issue 18 quotes them.

    python3 bench/bf16_teacher.py [--model M.gguf] [--bitlab build/bitlab]
                                  [--seq 128] [--threads 2] [--iters 7]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
from ref_forward import load_gguf  # noqa: E402


def bf16(t):
    return t.to(torch.bfloat16).to(torch.float32)


def teacher(W, cfg, tokens, blocks_bf16, head_bf16):
    """logits [T, V] and hidden states [L][T, dim], float32, one sequence"""
    dim, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps, theta = dim // nh, cfg["rms_norm_eps"], cfg["rope_theta"]
    T = len(tokens)

    def lin(name, h):
        w = W[name + ".weight"]
        return bf16(h) @ bf16(w).T if blocks_bf16 else h @ w.T

    def norm(x, g):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * g

    inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang).float(), torch.sin(ang).float()

    def rope(x, n):
        x = x.view(T, n, hd)
        a, b = x[..., : hd // 2], x[..., hd // 2:]
        c, s = cos[:, None, :], sin[:, None, :]
        return torch.cat([a * c - b * s, b * c + a * s], -1)

    x = W["model.embed_tokens.weight"][torch.tensor(tokens)]
    hidden = []
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, W[p + "input_layernorm.weight"])
        q = rope(lin(p + "self_attn.q_proj", h), nh).transpose(0, 1)
        k = rope(lin(p + "self_attn.k_proj", h), nkv).transpose(0, 1)
        v = lin(p + "self_attn.v_proj", h).view(T, nkv, hd).transpose(0, 1)
        k, v = k.repeat_interleave(nh // nkv, 0), v.repeat_interleave(nh // nkv, 0)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + lin(p + "self_attn.o_proj", a.transpose(0, 1).reshape(T, nh * hd))
        h = norm(x, W[p + "post_attention_layernorm.weight"])
        g, u = lin(p + "mlp.gate_proj", h), lin(p + "mlp.up_proj", h)
        x = x + lin(p + "mlp.down_proj", torch.nn.functional.silu(g) * u)
        hidden.append(x)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    xo = norm(x, W["model.norm.weight"])
    return (bf16(xo) @ bf16(head).T if head_bf16 else xo @ head.T), hidden


def kl_per_token(ref, oth, tau):
    """τ²·KL(softmax(ref/τ) ‖ softmax(oth/τ)) per row, float64"""
    lp = torch.log_softmax(ref.double() / tau, -1)
    lq = torch.log_softmax(oth.double() / tau, -1)
    return tau * tau * (lp.exp() * (lp - lq)).sum(-1)


def accuracy(W, cfg, seqs):
    print(f"accuracy: {len(seqs)} held-out sequences of {len(seqs[0])} tokens, "
          "fp32 teacher against bf16-operand products (fp32 accumulation)")
    print(f"{'bf16 products':<28} {'KL t=1 mean':>11} {'max':>9} {'t^2 KL t=2':>11} "
          f"{'top-1 agree':>11} {'max 1-cos':>10}")
    ref = [teacher(W, cfg, s, False, False) for s in seqs]
    for label, blocks, head in (("block linears", True, False),
                                ("block linears + LM head", True, True)):
        kl1, kl2, agree, cosd = [], [], [], 0.0
        for s, (rl, rh) in zip(seqs, ref):
            ol, oh = teacher(W, cfg, s, blocks, head)
            kl1.append(kl_per_token(rl, ol, 1.0))
            kl2.append(kl_per_token(rl, ol, 2.0))
            agree.append((rl.argmax(-1) == ol.argmax(-1)).double())
            for a, b in zip(rh, oh):
                c = torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)
                cosd = max(cosd, float((1 - c).max()))
        kl1, kl2, agree = torch.cat(kl1), torch.cat(kl2), torch.cat(agree)
        print(f"{label:<28} {float(kl1.mean()):11.3e} {float(kl1.max()):9.2e} "
              f"{float(kl2.mean()):11.3e} {100 * float(agree.mean()):10.2f}% {cosd:10.2e}")
    print("yardstick: a student distilled for 30 minutes is at held-out KL ~3.4 "
          "(docs/distill-default-model.md)")


def median_seconds(fn, iters):
    fn()
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return sorted(t)[len(t) // 2]


def instruction_peaks():
    """{"fp32_fma_gflops", "bf16_dot_gflops"} of one core, or None"""
    exe = os.path.join(tempfile.mkdtemp(prefix="bitlab-peak-"), "peak_flops")
    src = os.path.join(ROOT, "bench", "peak_flops.c")
    cc = subprocess.run(["cc", "-O2", "-mavx512f", "-mavx512bf16", src, "-o", exe],
                        capture_output=True, text=True)
    if cc.returncode != 0:
        print(f"peak_flops.c does not build here: {cc.stderr.strip()}")
        return None
    return json.loads(subprocess.run([exe], capture_output=True, text=True, check=True).stdout)


def speed(cfg, M, iters):
    D, H, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    KV = cfg["num_key_value_heads"] * (D // cfg["num_attention_heads"])
    # (what, M, N, K, count per step): forward x·Wᵀ and backward dy·W of the
    # block linears per layer, and the LM head's forward and input gradient
    shapes = [("q/o fwd, dx", M, D, D), ("k/v fwd", M, KV, D), ("k/v dx", M, D, KV),
              ("gate/up fwd", M, H, D), ("down fwd", M, D, H), ("gate/up dx", M, D, H),
              ("down dx", M, H, D), ("head fwd", M, V, D), ("head dx", M, D, V)]
    threads = sorted({1, torch.get_num_threads()})
    print(f"speed: torch.matmul GFLOP/s, fp32 and bf16 on {' and '.join(map(str, threads))} "
          f"thread(s), median of {iters}")
    print(f"{'product':<14} {'M x N x K':>18}" + "".join(
        f" {f'fp32 {t}t':>8} {f'bf16 {t}t':>8} {'ratio':>6}" for t in threads))
    g = torch.Generator().manual_seed(1)
    for name, m, n, k in shapes:
        a = torch.randn(m, k, generator=g)
        b = torch.randn(k, n, generator=g)
        ab, bb = a.to(torch.bfloat16), b.to(torch.bfloat16)
        gf = 2.0 * m * n * k * 1e-9
        row = f"{name:<14} {f'{m} x {n} x {k}':>18}"
        for t in threads:
            torch.set_num_threads(t)
            f32 = median_seconds(lambda: torch.matmul(a, b), iters)
            b16 = median_seconds(lambda: torch.matmul(ab, bb), iters)
            row += f" {gf / f32:8.1f} {gf / b16:8.1f} {f32 / b16:5.2f}x"
        print(row)
    torch.set_num_threads(threads[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--bitlab", default=os.path.join(ROOT, "build", "bitlab"))
    ap.add_argument("--text", default=os.path.join(ROOT, "experiments", "data", "heldout.txt"))
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=7)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    flags = [f for f in ("avx512_bf16", "amx_bf16") if f in open("/proc/cpuinfo").read()]
    print(f"torch {torch.__version__}, CPU bf16 features: {', '.join(flags) or 'none'}")
    w, cfg = load_gguf(a.model)
    W = {n: torch.from_numpy(np.array(t, dtype=np.float32)) for n, t in w.items()}
    with open(a.text, encoding="utf-8") as f:
        text = f.read()
    out = subprocess.run([a.bitlab, "tokenize", "--model", a.model, "--text", text],
                         capture_output=True, text=True, check=True)
    ids = [int(t) for t in out.stdout.split()]
    n = min(a.sequences, len(ids) // a.seq)
    if n < 1:
        sys.exit(f"bf16_teacher: {a.text} has {len(ids)} tokens, fewer than --seq {a.seq}")
    with torch.no_grad():
        accuracy(W, cfg, [ids[i * a.seq:(i + 1) * a.seq] for i in range(n)])
        if "avx512_bf16" in flags:
            p = instruction_peaks()
            if p:
                print(f"one core's peak: vfmadd231ps {p['fp32_fma_gflops']:.1f} GFLOP/s, "
                      f"vdpbf16ps {p['bf16_dot_gflops']:.1f} GFLOP/s "
                      f"(bf16/fp32 {p['bf16_dot_gflops'] / p['fp32_fma_gflops']:.2f}x)")
        speed(cfg, 512, a.iters)


if __name__ == "__main__":
    main()
