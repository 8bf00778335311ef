#!/usr/bin/env python3
"""bench_step_torch.py - the PyTorch baseline of one bitlab distillation step.

One step = teacher forward (no_grad) + student forward (BitLinear, λ = 1,
8-bit activations, one LoRA adapter r=16 α=32 on every block linear) +
CE + KL(τ) + hidden cosine losses + backward + AdamW, float32, on a batch of
random token ids.  Prints one JSON line: tokens/s (median over the timed
steps), step time, peak RSS.

The implementation is meant to be a fair, efficient eager-PyTorch baseline:
F.scaled_dot_product_attention, fused QKV / gate-up weights, frozen weights
without gradients, no Python loops over tokens, the ternary weight
quantiser as two comparisons (exactly round-half-away-then-clamp to ±1).

    python3 bench/bench_step_torch.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
        [--batch 4] [--seq 128] [--steps 5] [--warmup 2] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
from ref_distill import load_model  # noqa: E402  (GGUF dequantisation + q/k un-permute)


def rmsnorm(x, g, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g


def rope_tables(T, hd, theta):
    inv = 1.0 / (theta ** (torch.arange(0, hd // 2, dtype=torch.float64) * 2.0 / hd))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], -1)
    return torch.cos(ang).float(), torch.sin(ang).float()


def apply_rope(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin


def wq_ternary(w):
    """clamp(roundf(w·s), −1, 1)/s, s = 1/max(mean|w|, 1e-5); for a clamp to
    ±1, round-half-away is exactly the comparisons |w·s| ≥ ½."""
    s = 1.0 / w.abs().mean().clamp(min=1e-5)
    v = w * s
    return ((v >= 0.5).float() - (v <= -0.5).float()) / s


def round_half_away(v):
    t = torch.trunc(v)
    return t + torch.sign(v) * ((v - t).abs() >= 0.5).float()


def actq8(x):
    s = 127.0 / x.abs().amax(-1, keepdim=True).clamp(min=1e-5)
    return torch.clamp(round_half_away(x * s), -128.0, 127.0) / s


class BitLinearFn(torch.autograd.Function):
    """y = actq(x)·Weffᵀ with Weff = wq(W + (α/r)·B·A) (λ = 1), STE for both
    quantisers; returns the gradients of x, A, B only (W is frozen)."""

    @staticmethod
    def forward(ctx, x, W, A, Bm, scale):
        Wp = torch.addmm(W, Bm, A, alpha=scale)
        Wq = wq_ternary(Wp)
        xq = actq8(x)
        ctx.save_for_backward(xq, Wq, A, Bm)
        ctx.scale = scale
        return xq @ Wq.T

    @staticmethod
    def backward(ctx, dy):
        xq, Wq, A, Bm = ctx.saved_tensors
        dy2 = dy.reshape(-1, dy.shape[-1])
        dx = dy @ Wq                                            # STE through actq
        # dWeff = dyᵀ·xq; dA = s·Bᵀ·dWeff, dB = s·dWeff·Aᵀ via low-rank products
        xq2 = xq.reshape(-1, xq.shape[-1])
        dB = ctx.scale * (dy2.T @ (xq2 @ A.T))
        dA = ctx.scale * ((dy2 @ Bm).T @ xq2)
        return dx, None, dA, dB, None


class Model:
    def __init__(self, weights, config, rank=16, alpha=32.0, seed=0):
        c = config
        self.dim, self.nh = c["hidden_size"], c["num_attention_heads"]
        self.nkv = c.get("num_key_value_heads") or self.nh
        self.hd = c.get("head_dim") or self.dim // self.nh
        self.hidden = c["intermediate_size"]
        self.eps = c["rms_norm_eps"]
        self.theta = c["rope_theta"]
        self.n_layers = c["num_hidden_layers"]
        t = lambda a: torch.from_numpy(np.array(a, np.float32))  # noqa: E731  (writable copy)
        self.embed = t(weights["model.embed_tokens.weight"])
        self.norm = t(weights["model.norm.weight"])
        self.lm_head = t(weights["lm_head.weight"]) if "lm_head.weight" in weights else self.embed
        g = torch.Generator().manual_seed(seed)
        self.layers = []
        self.params = []
        self.scale = alpha / rank
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            L = {"in": t(weights[p + "input_layernorm.weight"]),
                 "post": t(weights[p + "post_attention_layernorm.weight"])}
            # fused weights: one BitLinear per original linear (wq is per tensor),
            # the fusion only shares the activation quantisation of the same input
            mats = {n: t(weights[p + k + ".weight"]) for n, k in (
                ("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"), ("v", "self_attn.v_proj"),
                ("o", "self_attn.o_proj"), ("gate", "mlp.gate_proj"), ("up", "mlp.up_proj"),
                ("down", "mlp.down_proj"))}
            L["W"] = mats
            L["A"], L["B"] = {}, {}
            for n, W in mats.items():
                bound = 1.0 / math.sqrt(W.shape[1])
                A = (torch.rand(rank, W.shape[1], generator=g) * 2 - 1) * bound
                B = torch.zeros(W.shape[0], rank)
                A.requires_grad_(True); B.requires_grad_(True)
                L["A"][n], L["B"][n] = A, B
                self.params += [A, B]
            self.layers.append(L)
        self._rope = {}

    def rope(self, T):
        if T not in self._rope:
            self._rope[T] = rope_tables(T, self.hd, self.theta)
        return self._rope[T]

    def attn(self, q, k, v, B, T):
        cos, sin = self.rope(T)
        q = apply_rope(q.view(B, T, self.nh, self.hd).transpose(1, 2), cos, sin)
        k = apply_rope(k.view(B, T, self.nkv, self.hd).transpose(1, 2), cos, sin)
        v = v.view(B, T, self.nkv, self.hd).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return o.transpose(1, 2).reshape(B, T, self.nh * self.hd)

    def forward(self, tokens, student):
        B, T = tokens.shape
        x = self.embed[tokens]
        hs = []
        for L in self.layers:
            if student:
                def lin(n, inp, L=L):
                    return BitLinearFn.apply(inp, L["W"][n], L["A"][n], L["B"][n], self.scale)
            else:
                def lin(n, inp, L=L):
                    return F.linear(inp, L["W"][n])
            h = rmsnorm(x, L["in"], self.eps)
            a = self.attn(lin("q", h), lin("k", h), lin("v", h), B, T)
            x = x + lin("o", a)
            h = rmsnorm(x, L["post"], self.eps)
            x = x + lin("down", F.silu(lin("gate", h)) * lin("up", h))
            hs.append(x)
        x = rmsnorm(x, self.norm, self.eps)
        return F.linear(x, self.lm_head), hs


def losses(s_logits, t_logits, s_hid, t_hid, tokens, tau=2.0):
    V = s_logits.shape[-1]
    s = s_logits[:, :-1].reshape(-1, V)       # full rows: next-token selection
    te = t_logits[:, :-1].reshape(-1, V)
    ce = F.cross_entropy(s, tokens[:, 1:].reshape(-1))
    kl = F.kl_div(F.log_softmax(s / tau, -1), F.log_softmax(te / tau, -1),
                  log_target=True, reduction="batchmean") * tau * tau
    cos = torch.stack([(1 - F.cosine_similarity(a, b, dim=-1)).mean()
                       for a, b in zip(s_hid, t_hid)]).mean()
    return ce + kl + cos


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--model", default=os.path.join(here, "..", "models",
                                                    "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    weights, config = load_model(a.model)
    model = Model(weights, config)
    del weights
    load_s = time.perf_counter() - t0
    opt = torch.optim.AdamW(model.params, lr=1e-4, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.01, foreach=True)
    g = torch.Generator().manual_seed(1)
    times, cpu = [], []
    for it in range(a.warmup + a.steps):
        tokens = torch.randint(0, model.embed.shape[0], (a.batch, a.seq), generator=g)
        t1 = time.perf_counter()
        c1 = time.process_time()
        with torch.no_grad():
            t_logits, t_hid = model.forward(tokens, student=False)
        s_logits, s_hid = model.forward(tokens, student=True)
        loss = losses(s_logits, t_logits, s_hid, t_hid, tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.params, 1.0, foreach=True)
        opt.step()
        dt = time.perf_counter() - t1
        dc = time.process_time() - c1
        del t_logits, t_hid, s_logits, s_hid, loss
        if it >= a.warmup:
            times.append(dt)
            cpu.append(dc)
    med = statistics.median(times)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux
    print(json.dumps({
        "impl": "torch", "torch": torch.__version__, "threads": a.threads,
        "model": os.path.basename(a.model), "batch": a.batch, "seq": a.seq,
        "steps": a.steps, "warmup": a.warmup,
        "tokens_per_s": round(a.batch * a.seq / med, 2),
        "step_s_median": round(med, 4), "step_s_min": round(min(times), 4),
        "step_s_max": round(max(times), 4), "step_s_all": [round(t, 3) for t in times],
        # CPU seconds (all threads) per step: wall ≥ cpu/threads; a wall time far
        # above that means the machine was shared while measuring
        "cpu_s_median": round(statistics.median(cpu), 3),
        "peak_rss_mib": round(rss_mib, 1), "load_s": round(load_s, 2),
    }))


if __name__ == "__main__":
    main()
