#!/usr/bin/env python3
"""floors.py - the FLOP floor and the byte floor of one distillation step.

The step (bitlab's `bench step`, bench/torch_student.py): teacher forward,
student forward (every block linear a BitLinear at λ = 1 with 8-bit
activations and one LoRA adapter of rank r merged into the weight before
quantisation), CE + KL + hidden-cosine losses, student backward into the
adapters only, clip, AdamW. Counting follows the usual model-FLOP convention:
matrix products only (norms, softmaxes, quantisers and the optimizer are
O(elements) and below 1% here), no recomputation, causal attention counted
over the unmasked half.

Notation: M = B·T tokens, N_blk = block-linear weights (Σ out·in over every
q, k, v, o, gate, up, down), N_head = V·dim (LM head, tied or not),
S = Σ over block linears of (in + out), L layers, H_q = heads·head_dim.

FLOPs
  teacher forward   2·M·N_blk + 2·M·N_head + F_attn
  student forward   2·M·N_blk + 2·M·N_head + F_attn + 2·r·N_blk
                    (the last term: W' = W + (α/r)·B·A, one rank-r product
                    per linear per step; the adapter is merged, not applied
                    per token, because wq quantises W')
  student backward  2·M·N_blk − 2·M·dim·(H_q + 2·kv·hd)   input gradients (dy·Wq);
                    the frozen W gets no weight-gradient GEMM, and layer 0's
                    q/k/v input gradient is not needed (the embedding is frozen)
                  + 4·M·r·S       adapter gradients through low-rank products:
                                  dB = s·dyᵀ(xq·Aᵀ), dA = s·(dy·B)ᵀ·xq
                  + 2·M·N_head    LM-head input gradient (no weight gradient)
                  + 2·F_attn      dQ, dK, dV, dP (flash recomputation not counted)
  F_attn = L · 2·B·H_q·T·(T+1)   (QKᵀ and PV over the causal triangle)
  So the frozen weights cost ≈ 3·(2·M·N) per step, not the ≈ 4·(2·M·N) of a
  forward + full backward: "×3 for forward + backward" would overcount the
  student by one forward.

Bytes (a lower bound: each tensor that must cross device memory crosses once)
  frozen block weights   2·N_blk·w + 2·N_blk/4
      pass 1 reads W for the teacher's products and, fused into the same
      read, Σ|W + (α/r)·B·A| for wq's scale; pass 2 reads W again (the scale
      is known only after pass 1), quantises, runs the student's products
      and writes 2-bit ternary codes; the backward reads the codes.
  LM head                2·N_head·w   (one pass for the teacher's and the
      student's logits together, one for the input gradient; logits are
      never written: a fused LM-head + loss kernel consumes them in place)
  residual stream        2·L·M·dim·a  (each block's input written in the
      forward, read in the backward; everything else recomputed on chip)
  hidden-loss state      2·L·M·dim·a  (the teacher's block outputs, or the
      cosine loss's gradient, written in the forward, read in the backward)
  adapters + AdamW       40·P         (fp32: A, B read in the forward and
      the backward, gradients written, p, m, v, g read, p, m, v written)
  w, a = bytes per weight and per activation element (bf16: 2), P = r·S
  adapter parameters. The two floors are separate lower bounds: the byte
  floor assumes recomputation that the FLOP floor does not count, so no
  implementation reaches both; the larger says what bounds the step.

    python3 bench/floors.py --config 1b --batch 8 --seq 512 --device h100 [--markdown] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_configs import CONFIGS, dims, resolve_config  # noqa: E402

# Peak rates. "datasheet": NVIDIA's dense (no sparsity) figures for the SXM
# parts; "measured": what this workplace saw on its lent machines
# (/work/.library/device/KINDS.md: an 8192³ bf16 torch.matmul on random data,
# a device-to-device copy counting bytes read plus written).
DEVICES = {
    "h100": {"name": "NVIDIA H100 SXM 80GB (HBM3)", "bf16_tflops": 989.4, "int8_tops": 1978.9,
             "hbm_tbs": 3.35, "measured_bf16_tflops": 798.0, "measured_hbm_tbs": 3.0},
    "h200": {"name": "NVIDIA H200 SXM 141GB (HBM3e)", "bf16_tflops": 989.4, "int8_tops": 1978.9,
             "hbm_tbs": 4.8, "measured_bf16_tflops": 788.0, "measured_hbm_tbs": 4.3},
    "h100-pcie": {"name": "NVIDIA H100 PCIe 80GB", "bf16_tflops": 756.0, "int8_tops": 1513.0,
                  "hbm_tbs": 2.0, "measured_bf16_tflops": None, "measured_hbm_tbs": None},
    "a100": {"name": "NVIDIA A100 SXM 80GB", "bf16_tflops": 312.0, "int8_tops": 624.0,
             "hbm_tbs": 2.039, "measured_bf16_tflops": None, "measured_hbm_tbs": None},
}


def device_key(cuda_name: str) -> str | None:
    """DEVICES key for a torch.cuda.get_device_name() string, or None."""
    n = cuda_name.upper()
    if "H200" in n:
        return "h200"
    if "H100" in n:
        return "h100-pcie" if "PCIE" in n else "h100"
    if "A100" in n:
        return "a100"
    return None


def block_linears(cfg: dict):
    """[(name, out, in)] of one layer's block linears."""
    d = dims(cfg)
    dim, hq, kv, H = d["dim"], d["nh"] * d["hd"], d["nkv"] * d["hd"], d["hidden"]
    return [("q", hq, dim), ("k", kv, dim), ("v", kv, dim), ("o", dim, hq),
            ("gate", H, dim), ("up", H, dim), ("down", dim, H)]


def param_counts(cfg: dict, rank: int = 16) -> dict:
    d = dims(cfg)
    lins = block_linears(cfg)
    n_blk = d["n_layers"] * sum(o * i for _, o, i in lins)
    S = d["n_layers"] * sum(o + i for _, o, i in lins)
    n_head = d["vocab"] * d["dim"]
    n_norm = d["n_layers"] * 2 * d["dim"] + d["dim"]
    n_emb = n_head if d["tied"] else 2 * n_head
    return {"block": n_blk, "head": n_head, "embed_and_head": n_emb, "norms": n_norm,
            "total": n_blk + n_emb + n_norm, "sum_in_out": S, "adapter": rank * S}


def step_flops(cfg: dict, B: int, T: int, rank: int = 16) -> dict:
    """Matrix-product FLOPs of one step, by phase (see the module docstring)."""
    d = dims(cfg)
    p = param_counts(cfg, rank)
    M = B * T
    hq = d["nh"] * d["hd"]
    f_attn = d["n_layers"] * 2.0 * B * hq * T * (T + 1)
    lin, head = 2.0 * M * p["block"], 2.0 * M * p["head"]
    qkv0 = 2.0 * M * d["dim"] * (hq + 2 * d["nkv"] * d["hd"])
    teacher = lin + head + f_attn
    merge = 2.0 * rank * p["block"]
    student_fwd = lin + head + f_attn + merge
    lora_grads = 4.0 * M * rank * p["sum_in_out"]
    student_bwd = (lin - qkv0) + lora_grads + head + 2.0 * f_attn
    return {"teacher_fwd": teacher, "student_fwd": student_fwd, "student_bwd": student_bwd,
            "total": teacher + student_fwd + student_bwd,
            "parts": {"block_gemm_per_pass": lin, "lm_head_per_pass": head,
                      "attention_fwd": f_attn, "lora_merge": merge, "lora_grads": lora_grads,
                      "skipped_qkv0_dx": qkv0}}


def step_bytes(cfg: dict, B: int, T: int, rank: int = 16, wbytes: int = 2, abytes: int = 2) -> dict:
    """Lower bound of device-memory traffic of one step (module docstring)."""
    d = dims(cfg)
    p = param_counts(cfg, rank)
    M = B * T
    parts = {
        "block_weights": 2.0 * p["block"] * wbytes + 2.0 * p["block"] / 4.0,
        "lm_head": 2.0 * p["head"] * wbytes,
        "residual_stream": 2.0 * d["n_layers"] * M * d["dim"] * abytes,
        "hidden_loss_state": 2.0 * d["n_layers"] * M * d["dim"] * abytes,
        "adapters_adamw": 40.0 * p["adapter"],
    }
    return {"total": sum(parts.values()), "parts": parts}


def student_forward_floor(cfg: dict, B: int, T: int, dev: dict, rank: int = 16,
                          wbytes: int = 2, abytes: int = 2) -> dict:
    """Floors of the student forward alone, bf16 products vs the ternary fast
    path (int8 activations × ternary codes on the int8 tensor cores). Bytes:
    W read once (bf16) or 2-bit codes read once, plus the residual stream
    written and the logits' statistics kept on chip."""
    f = step_flops(cfg, B, T, rank)
    d = dims(cfg)
    p = param_counts(cfg, rank)
    M = B * T
    gemm_blk = f["parts"]["block_gemm_per_pass"]
    other = f["student_fwd"] - gemm_blk
    act = d["n_layers"] * M * d["dim"] * abytes
    b_bf16 = p["block"] * wbytes + p["head"] * wbytes + act
    b_tern = p["block"] / 4.0 + p["head"] * wbytes + act
    bw = dev["hbm_tbs"] * 1e12
    return {
        "bf16": {"flop_s": f["student_fwd"] / (dev["bf16_tflops"] * 1e12), "byte_s": b_bf16 / bw},
        "ternary_int8": {"flop_s": gemm_blk / (dev["int8_tops"] * 1e12) + other / (dev["bf16_tflops"] * 1e12),
                         "byte_s": b_tern / bw},
    }


def floors(cfg: dict, B: int, T: int, dev_key: str, rank: int = 16, wbytes: int = 2,
           abytes: int = 2) -> dict:
    dev = DEVICES[dev_key]
    f = step_flops(cfg, B, T, rank)
    b = step_bytes(cfg, B, T, rank, wbytes, abytes)
    out = {"device": dev_key, "device_name": dev["name"], "batch": B, "seq": T, "tokens": B * T,
           "params": param_counts(cfg, rank), "flops": f, "bytes": b,
           "flop_floor_s": f["total"] / (dev["bf16_tflops"] * 1e12),
           "byte_floor_s": b["total"] / (dev["hbm_tbs"] * 1e12),
           "student_fwd": student_forward_floor(cfg, B, T, dev, rank, wbytes, abytes)}
    if dev["measured_bf16_tflops"]:
        out["flop_floor_measured_s"] = f["total"] / (dev["measured_bf16_tflops"] * 1e12)
        out["byte_floor_measured_s"] = b["total"] / (dev["measured_hbm_tbs"] * 1e12)
    out["bound"] = "FLOPs" if out["flop_floor_s"] >= out["byte_floor_s"] else "bytes"
    out["max_tokens_per_s"] = B * T / max(out["flop_floor_s"], out["byte_floor_s"])
    return out


def _fmt_markdown(name: str, fl: dict) -> str:
    f, b, p = fl["flops"], fl["bytes"], fl["params"]
    dev = DEVICES[fl["device"]]
    lines = [
        f"**{name}**, batch {fl['batch']} × {fl['seq']} = {fl['tokens']} tokens, "
        f"{fl['device_name']} ({dev['bf16_tflops']:g} TFLOP/s bf16 dense, {dev['hbm_tbs']:g} TB/s): "
        f"{p['total'] / 1e6:.1f} M parameters ({p['block'] / 1e6:.1f} M in block linears, "
        f"LM head {p['head'] / 1e6:.1f} M), adapters {p['adapter'] / 1e6:.2f} M.",
        "",
        "| phase | TFLOP | floor ms |",
        "| --- | --- | --- |",
    ]
    peak = dev["bf16_tflops"] * 1e12
    for k, label in (("teacher_fwd", "teacher forward"), ("student_fwd", "student forward"),
                     ("student_bwd", "student backward")):
        lines.append(f"| {label} | {f[k] / 1e12:.3f} | {f[k] / peak * 1e3:.3f} |")
    lines.append(f"| **step: FLOP floor** | **{f['total'] / 1e12:.3f}** | **{fl['flop_floor_s'] * 1e3:.3f}** |")
    lines += ["", "| traffic | GB | floor ms |", "| --- | --- | --- |"]
    bw = dev["hbm_tbs"] * 1e12
    for k, v in b["parts"].items():
        lines.append(f"| {k.replace('_', ' ')} | {v / 1e9:.3f} | {v / bw * 1e3:.3f} |")
    lines.append(f"| **step: byte floor** | **{b['total'] / 1e9:.3f}** | **{fl['byte_floor_s'] * 1e3:.3f}** |")
    sf = fl["student_fwd"]
    lines += ["",
              f"Bound by {fl['bound']}: at most {fl['max_tokens_per_s']:,.0f} tokens/s. "
              + (f"At this workplace's measured ceilings ({dev['measured_bf16_tflops']:g} TFLOP/s, "
                 f"{dev['measured_hbm_tbs']:g} TB/s): {fl['flop_floor_measured_s'] * 1e3:.3f} ms "
                 f"and {fl['byte_floor_measured_s'] * 1e3:.3f} ms. " if "flop_floor_measured_s" in fl else "")
              + f"Student forward alone: bf16 {max(sf['bf16'].values()) * 1e3:.3f} ms, ternary fast "
              f"path (int8 tensor cores, 2-bit codes) {max(sf['ternary_int8'].values()) * 1e3:.3f} ms "
              f"(floor ratio {max(sf['bf16'].values()) / max(sf['ternary_int8'].values()):.2f}×)."]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", action="append",
                    help=f"one of {', '.join(CONFIGS)} or a config.json / model path; repeatable "
                         "(default: default and 1b)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--device", default="h100", choices=sorted(DEVICES))
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"),
                    help="bytes per weight and activation element (2 or 4)")
    ap.add_argument("--markdown", action="store_true", help="tables for bench/README.md")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.batch < 1 or a.seq < 1 or a.rank < 1:
        ap.error("--batch, --seq and --rank must be positive")
    nb = 2 if a.dtype == "bf16" else 4
    results = {}
    for spec in a.config or ["default", "1b"]:
        try:
            cfg, _src = resolve_config(spec)
        except (ValueError, KeyError, OSError) as e:
            sys.exit(f"floors: {e}")
        results[spec] = floors(cfg, a.batch, a.seq, a.device, a.rank, nb, nb)
    if a.json:
        print(json.dumps(results, indent=1))
    elif a.markdown:
        print("\n\n".join(_fmt_markdown(k, v) for k, v in results.items()))
    else:
        for k, fl in results.items():
            print(f"{k}: {fl['flops']['total'] / 1e12:.3f} TFLOP -> FLOP floor {fl['flop_floor_s'] * 1e3:.3f} ms; "
                  f"{fl['bytes']['total'] / 1e9:.3f} GB -> byte floor {fl['byte_floor_s'] * 1e3:.3f} ms "
                  f"on {fl['device']}; bound by {fl['bound']}, <= {fl['max_tokens_per_s']:,.0f} tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
