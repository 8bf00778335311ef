#!/usr/bin/env python3
"""bench_step_torch.py - times the PyTorch baseline of one bitlab distillation
step (bench/torch_student.py) on the CPU or a CUDA GPU, eager or under
torch.compile, and prints one JSON line.

Reported: tokens/s and step time (median, min, max; CUDA events on the GPU,
the host clock on the CPU), the median time of each phase (teacher forward,
student forward + losses, backward, clip + AdamW), the first and last step's
losses, peak memory (GPU: torch.cuda.max_memory_allocated / _reserved over
the timed steps; CPU: peak RSS), the step's FLOPs (bench/floors.py) with the
achieved TFLOP/s and the model FLOP utilisation against the device's bf16
dense peak, and the FLOP and byte floors. With --compile: the warm-up time
(compilation) separately, and the error if compilation fails.

Tokens are bitlab's (`bitlab bench step` draws them from the same LCG), so
the first step's losses equal bitlab's first step on the same weights.

    python3 bench/bench_step_torch.py [--device cuda|cpu] [--dtype bf16|fp32] [--compile]
        [--config default|1b|tiny|PATH] [--model PATH] [--batch B] [--seq T]
        [--warmup N] [--iters N] [--threads N] [--flop-check]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import traceback

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import floors  # noqa: E402
import torch_student as ts  # noqa: E402
from bench_configs import CONFIGS, resolve_config  # noqa: E402

DEFAULT_GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
PHASES = ("teacher_fwd", "student_fwd_loss", "backward", "optimizer")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cuda", "cpu"),
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=("bf16", "fp32"),
                    help="weights and activations (adapters, optimizer state and losses are "
                         "always fp32); default bf16 on cuda, fp32 on cpu")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the teacher forward and the student forward + losses "
                         "(the backward is compiled with them; clip + AdamW stay eager)")
    ap.add_argument("--config", default="default",
                    help=f"{', '.join(CONFIGS)}, a config.json (random weights), an HF folder or "
                         f"a .gguf (its weights); 'default' loads {os.path.relpath(DEFAULT_GGUF, ROOT)} "
                         "when it and the gguf package are there, else random weights of its shape")
    ap.add_argument("--model", help="weights to load (GGUF or HF folder); overrides --config")
    ap.add_argument("--batch", type=int, help="default 8 on cuda, 4 on cpu")
    ap.add_argument("--seq", type=int, help="default 512 on cuda, 128 on cpu")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, help="timed steps; default 20 on cuda, 5 on cpu")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--peak-tflops", type=float,
                    help="bf16 dense peak for the MFU (default: the device's datasheet figure)")
    ap.add_argument("--hbm-tbs", type=float, help="memory bandwidth for the byte floor (TB/s)")
    ap.add_argument("--flop-check", action="store_true",
                    help="also count one eager step's FLOPs with torch.utils.flop_counter and "
                         "print them beside bench/floors.py's formula")
    a = ap.parse_args(argv)
    cuda = a.device == "cuda"
    a.dtype = a.dtype or ("bf16" if cuda else "fp32")
    a.batch = a.batch or (8 if cuda else 4)
    a.seq = a.seq or (512 if cuda else 128)
    a.iters = a.iters or (20 if cuda else 5)
    if a.batch < 1 or a.seq < 2 or a.iters < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("--batch, --iters and --threads must be positive, --seq at least 2, --warmup >= 0")
    if a.compile and a.warmup < 1:
        ap.error("--compile needs --warmup >= 1 (the first step compiles)")
    if cuda and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    return a


def load(a, device, dtype):
    """(model, config, where the weights came from)."""
    spec = a.model or a.config
    cfg, kind = resolve_config(spec)
    if a.model and kind != "model":
        raise ValueError(f"--model {a.model}: expected a .gguf or an HF folder")
    path = spec if kind == "model" else None
    if spec == "default" and os.path.exists(DEFAULT_GGUF):
        try:
            import gguf  # noqa: F401
            path = DEFAULT_GGUF
        except ImportError:
            path = None
    if path:
        sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
        from ref_distill import load_model      # GGUF dequantisation + q/k un-permute
        weights, cfg = load_model(path)
        src = os.path.relpath(path, ROOT) if path.startswith(ROOT) else path
    else:
        weights, src = ts.random_weights(cfg, device, dtype), "random"
    return ts.StudentModel(weights, cfg, device, dtype), cfg, src


def flop_check(model, tokens, cfg, B, T):
    """FLOPs of one eager step counted by torch's FlopCounterMode, beside
    bench/floors.py's formula put in the counter's conventions: attention
    over the full T×T square (no causal saving) with its backward at 2.5×
    the forward (flash recomputes the scores), and no count for the in-place
    aten.addmm_ that merges the adapter into W' (the counter has no rule for
    it). gemm_rel_diff is then 0 up to rounding when the formula counts
    every product the implementation runs."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        t_logits, t_hid = model.teacher(tokens)
        total = model.student_loss(tokens, t_logits, t_hid)[0]
        total.backward()
    for p in model.params:
        p.grad = None
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts()["Global"].items()}
    counted_attn = sum(v for k, v in by_op.items() if "attention" in k)
    counted_gemm = counter.get_total_flops() - counted_attn
    f = floors.step_flops(cfg, B, T)
    fa = f["parts"]["attention_fwd"]
    formula_gemm = f["total"] - 4 * fa - f["parts"]["lora_merge"]
    formula_attn_counter = fa * 2 * T / (T + 1) * (1 + 1 + 2.5)
    return {"counted_gemm": counted_gemm, "formula_gemm": formula_gemm,
            "gemm_rel_diff": (counted_gemm - formula_gemm) / formula_gemm,
            "counted_attention": counted_attn, "formula_attention_counter": formula_attn_counter,
            "attention_rel_diff": (counted_attn - formula_attn_counter) / formula_attn_counter,
            "by_op": by_op}


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cuda = a.device == "cuda"
    device = torch.device(a.device)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False       # fp32 runs are real fp32
    t0 = time.perf_counter()
    try:
        model, cfg, src = load(a, device, dtype)
    except (ValueError, KeyError, OSError) as e:
        sys.exit(f"bench_step_torch: {e}")
    model.prepare(a.seq)
    if cuda:
        torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    mem_model = torch.cuda.memory_allocated() if cuda else 0
    opt = ts.make_optimizer(model.params, device)
    n_steps = a.warmup + a.iters
    toks = torch.from_numpy(ts.lcg_tokens(n_steps, a.batch, a.seq, model.d["vocab"])).to(device)

    teacher_fn, loss_fn = model.teacher, model.student_loss
    if a.compile:
        teacher_fn, loss_fn = torch.compile(model.teacher), torch.compile(model.student_loss)

    def step(tokens, mark):
        mark(0)
        t_logits, t_hid = teacher_fn(tokens)
        mark(1)
        total, ce, kl, cos = loss_fn(tokens, t_logits, t_hid)
        mark(2)
        opt.zero_grad(set_to_none=True)
        total.backward()
        mark(3)
        torch.nn.utils.clip_grad_norm_(model.params, ts.MAX_GRAD_NORM, foreach=True)
        opt.step()
        mark(4)
        return torch.stack([total.detach(), ce, kl, cos])

    result = {"impl": "torch", "torch": torch.__version__, "device": a.device,
              "device_name": torch.cuda.get_device_name() if cuda else "cpu",
              "dtype": a.dtype, "compile": a.compile, "config": a.model or a.config,
              "weights": src, "batch": a.batch, "seq": a.seq, "warmup": a.warmup,
              "iters": a.iters, "threads": a.threads, "load_s": round(load_s, 2),
              "adapter_params": model.n_adapter_params(),
              "frozen_weights_mib": round(model.frozen_bytes() / 2**20, 1)}
    warm_s, host_s, cpu_s, events, losses = [], [], [], [], []
    try:
        for it in range(n_steps):
            timed = it >= a.warmup
            if cuda:
                ev = [torch.cuda.Event(enable_timing=True) for _ in range(5)]
                mark = (lambda i, ev=ev: ev[i].record())
            else:
                ev = [0.0] * 5
                mark = (lambda i, ev=ev: ev.__setitem__(i, time.perf_counter()))
            if it == a.warmup and cuda:
                torch.cuda.synchronize()
                result["peak_allocated_warmup_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
                torch.cuda.reset_peak_memory_stats()
                wall0 = time.perf_counter()
            elif it == a.warmup:
                wall0 = time.perf_counter()
            h0, c0 = time.perf_counter(), time.process_time()
            losses.append(step(toks[it], mark))
            if not timed:
                if cuda:
                    torch.cuda.synchronize()
                warm_s.append(time.perf_counter() - h0)
            else:
                events.append(ev)
                host_s.append(time.perf_counter() - h0)
                cpu_s.append(time.process_time() - c0)
        if cuda:
            torch.cuda.synchronize()
        wall_s = time.perf_counter() - wall0
    except Exception as e:     # a failed compilation is a result too
        result.update(ok=False, error=f"{type(e).__name__}: {e}"[:2000],
                      traceback=traceback.format_exc()[-3000:])
        print(json.dumps(result))
        return 1

    if cuda:
        per = [[ev[i].elapsed_time(ev[i + 1]) / 1e3 for i in range(4)] for ev in events]
    else:
        per = [[ev[i + 1] - ev[i] for i in range(4)] for ev in events]
    step_s = [sum(p) for p in per]
    med = statistics.median(step_s)
    first = losses[0].tolist()
    last = losses[-1].tolist()
    result.update({
        "ok": True,
        "tokens_per_s": round(a.batch * a.seq / med, 2),
        "step_s_median": round(med, 6), "step_s_min": round(min(step_s), 6),
        "step_s_max": round(max(step_s), 6),
        "step_ms_median": round(med * 1e3, 3), "step_ms_min": round(min(step_s) * 1e3, 3),
        "wall_s_per_step": round(wall_s / a.iters, 6),
        "phases_ms_median": {k: round(statistics.median(p[i] for p in per) * 1e3, 3)
                             for i, k in enumerate(PHASES)},
        "warmup_s": [round(w, 3) for w in warm_s],
        "first_loss": dict(zip(("total", "ce", "kl", "cos"), [round(v, 6) for v in first])),
        "last_loss": round(last[0], 6),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    })
    if not cuda:
        result["cpu_s_median"] = round(statistics.median(cpu_s), 3)
    if a.compile:
        # the warm-up steps minus what they would have cost compiled
        result["compile_s"] = round(sum(warm_s) - len(warm_s) * med, 2)
        try:
            from torch._dynamo.utils import counters
            result["graph_breaks"] = sum(counters["graph_break"].values())
        except Exception:                  # counters moved between releases: not essential
            result["graph_breaks"] = None
    if cuda:
        result.update({
            "model_mib": round(mem_model / 2**20, 1),
            "peak_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "peak_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20, 1)})

    nb = 2 if a.dtype == "bf16" else 4
    f = floors.step_flops(cfg, a.batch, a.seq, ts.RANK)
    b = floors.step_bytes(cfg, a.batch, a.seq, ts.RANK, nb, nb)
    key = floors.device_key(result["device_name"]) if cuda else None
    dev = floors.DEVICES.get(key, {}) if key else {}
    peak = a.peak_tflops or dev.get("bf16_tflops")
    hbm = a.hbm_tbs or dev.get("hbm_tbs")
    result.update({"flops_step": f["total"], "bytes_floor_step": b["total"],
                   "achieved_tflops": round(f["total"] / med / 1e12, 3)})
    if peak:
        result.update({"peak_tflops": peak, "mfu": round(f["total"] / med / (peak * 1e12), 4),
                       "flop_floor_ms": round(f["total"] / (peak * 1e12) * 1e3, 3)})
    if hbm:
        result.update({"hbm_tbs": hbm, "byte_floor_ms": round(b["total"] / (hbm * 1e12) * 1e3, 3)})
    if a.flop_check:
        result["flop_check"] = flop_check(model, toks[0], cfg, a.batch, a.seq)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
