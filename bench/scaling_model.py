"""scaling_model.py - a model of the data-parallel step at N GPUs (issue 15):
compute per rank from the FLOP floor, the gradient all-reduce from the
gradient bytes and a stated link bandwidth; where scaling stops, for the
default model and for a 1B and an 8B teacher. A model, not a measurement:
every assumption is a constant below and printed with the table.

  python3 bench/scaling_model.py [--bin build/bitlab] [--rank 16] [--seq 2048]

Sizes come from `bitlab plan --json` (the trainer's own table): the model's
dimensions and the trainable bytes (the newest adapter: what the all-reduce
carries, fp32). FLOPs per step are bl_trainer_flops's count
(src/train/trainer_bench.c), written out here for a configuration without
a trainer: 2·M·N·K of every GEMM of the teacher forward, the student forward
and the student's input gradients (W is frozen: no weight-gradient GEMM),
the LoRA gradient GEMMs, Weff's low-rank product (forward and backward, once
a step) and causal attention (teacher and student forward, the backward
twice a forward).

Step time at N ranks, each with `tokens` tokens of the global batch:
  t(N) = flops(tokens) / (MFU · peak) + allreduce(N)
  allreduce(N) = 2 (N−1)/N · bytes / bus_bw + 2 log2(N) · latency
(a ring's bandwidth term; NCCL's trees keep the latency term logarithmic),
with NVLink figures within a node (N ≤ 8) and InfiniBand figures across
nodes (the slowest link bounds a hierarchical all-reduce). No overlap of the
all-reduce with compute is assumed (the conservative case: bitlab reduces
after the backward, before AdamW).
"""
import argparse
import json
import math
import os
import subprocess
import sys

PEAK = 989e12        # H100/H200 SXM dense bf16 FLOP/s (NVIDIA's data sheet)
MFU = 0.40           # assumed fraction of peak the step reaches (not measured: no GPU run yet)
NVLINK_BUS = 360e9   # NCCL all-reduce bus bandwidth within an 8-GPU NVLink node, bytes/s
NVLINK_LAT = 10e-6   # per ring step
IB_BUS = 40e9        # across nodes, one 400 Gb/s NDR port per GPU (50 GB/s line rate)
IB_LAT = 20e-6

MODELS = (("SmolLM2-135M (default)", ["--model", "models/SmolLM2-135M-Instruct.Q4_1.gguf"]),
          ("Llama-3.2-1B", ["--config", "experiments/configs/llama-3.2-1b.json"]),
          ("Llama-3.1-8B", ["--config", "experiments/configs/llama-3.1-8b.json"]))


def plan(bin_, args, rank, seq):
    p = subprocess.run([bin_, "plan", *args, "--batch", "1", "--seq", str(seq), "--rank", str(rank),
                        "--json", "-"], capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"scaling_model: bitlab plan {' '.join(args)} failed:\n{p.stderr}")
    return json.loads(p.stdout)


def step_flops(m, tokens, seq, rank):
    """bl_trainer_flops for `tokens` tokens in rows of `seq`, one adapter of `rank` everywhere."""
    D, H, L, V = m["dim"], m["hidden_dim"], m["n_layers"], m["vocab_size"]
    qd, kvd = m["n_heads"] * m["head_dim"], m["n_kv_heads"] * m["head_dim"]
    lin = [(qd, D), (kvd, D), (kvd, D), (D, qd), (H, D), (H, D), (D, H)]  # (out, in)
    M, f = float(tokens), 0.0
    for out, inn in lin:
        oi = float(out) * inn
        f += 3 * 2 * M * oi                       # teacher, student, dx = dy·Weff
        f += 2 * 2 * oi * rank                    # W + B·A, forward and backward
        f += 2 * M * rank * (2 * inn + 2 * out)   # the four LoRA gradient GEMMs
    f *= L
    f += 3 * 2 * M * D * V                        # teacher and student heads, dxf
    B = tokens / seq
    att = 2 * 2 * B * m["n_heads"] * m["head_dim"] * (seq * (seq + 1) / 2) * L
    return f + 4 * att


def allreduce(n, nbytes):
    if n == 1:
        return 0.0
    bus, lat = (NVLINK_BUS, NVLINK_LAT) if n <= 8 else (IB_BUS, IB_LAT)
    return 2 * (n - 1) / n * nbytes / bus + 2 * math.log2(n) * lat


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/bitlab")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--seq", type=int, default=2048)
    a = ap.parse_args()
    print(f"assumed: peak {PEAK / 1e12:.0f} TFLOP/s bf16, MFU {MFU:.0%}; all-reduce bus bandwidth "
          f"{NVLINK_BUS / 1e9:.0f} GB/s within a node (N <= 8), {IB_BUS / 1e9:.0f} GB/s across nodes; "
          f"latency {NVLINK_LAT * 1e6:.0f} / {IB_LAT * 1e6:.0f} us per tree level; no overlap")
    print(f"LoRA rank {a.rank} on every block linear, rows of {a.seq} tokens\n")
    print("| teacher | params | grad MiB | GFLOP/token | compute ms/seq | all-reduce ms N=8 / 64 / 512 "
          "| efficiency at 1 seq/rank, N=8 / 64 / 512 | tokens/rank for 90 % across nodes |")
    print("|---|---:|---:|---:|---:|---|---|---:|")
    for name, args in MODELS:
        if not os.path.exists(args[1]):
            print(f"| {name} | ({args[1]} missing) |")
            continue
        d = plan(a.bin, args, a.rank, a.seq)
        m, nbytes = d["model"], d["gpu"]["bytes"]["trainable"]
        per_seq = step_flops(m, a.seq, a.seq, a.rank) / (MFU * PEAK)
        ar = {n: allreduce(n, nbytes) for n in (8, 64, 512)}
        eff = {n: per_seq / (per_seq + ar[n]) for n in ar}
        # compute = 9 x all-reduce: the per-rank batch below which a step
        # across nodes (N = 64) spends more than 10 % in the all-reduce
        need = 9 * ar[64] / (per_seq / a.seq)
        print(f"| {name} | {m['params'] / 1e9:.3g} B | {nbytes / 2**20:.1f} | "
              f"{step_flops(m, a.seq, a.seq, a.rank) / a.seq / 1e9:.3g} | {1e3 * per_seq:.2f} | "
              f"{1e3 * ar[8]:.3f} / {1e3 * ar[64]:.2f} / {1e3 * ar[512]:.2f} | "
              f"{eff[8]:.1%} / {eff[64]:.1%} / {eff[512]:.1%} | {need:,.0f} |")

if __name__ == "__main__":
    main()
