"""torch_student.py - the PyTorch baseline of bitlab's distillation step, on
the CPU (float32) or on a CUDA GPU (bf16 weights and activations, float32
adapters, optimizer state and losses), for bench_step_torch.py.

One step = teacher forward (no_grad) + student forward (BitLinear, λ = 1,
8-bit activations, one LoRA adapter r=16 α=32 on every block linear) +
CE + τ²·KL(τ=2) + hidden 1−cos + backward into the adapters + global clip 1 +
AdamW(1e-4, 0.9, 0.95, 1e-8, 0.01) - bitlab's `bench step`.

Meant as a fair, efficient PyTorch baseline: F.scaled_dot_product_attention
(flash on the GPU), q/k/v and gate/up stored fused so that each block runs
four products (the activation quantiser is per row, so one quantisation of
the shared input serves the fused product; wq stays per original tensor),
frozen weights without gradients, adapter gradients through low-rank
products (never the [out, in] weight gradient), fused AdamW on the GPU. The
quantised weight is saved for the backward rather than rebuilt.

Precision on the GPU: W' = W + (α/r)·B·A is formed in float32 (so small
adapter updates are not lost to bf16 rounding), quantised, and the ternary
Weff is used in bf16; the activation quantiser computes in float32 and
emits bf16; logits enter the losses as float32 (what autocast would do).
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_configs import dims  # noqa: E402

RANK, ALPHA = 16, 32.0
TAU = 2.0
ADAMW = dict(lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)
MAX_GRAD_NORM = 1.0


# ----------------------------------------------------------------------------
# quantisers (definitions: README.md "The student, exactly")

def round_half_away(v):
    """C roundf; v − trunc(v) is exact, so this is too (floor(|v|+½) is not)."""
    t = torch.trunc(v)
    return t + torch.sign(v) * ((v - t).abs() >= 0.5).to(v.dtype)


def actq8(x, out_dtype):
    """Per-row absmax int8 fake quantisation, computed in float32."""
    xf = x.float()
    s = 127.0 / xf.abs().amax(-1, keepdim=True).clamp(min=1e-5)
    return (torch.clamp(round_half_away(xf * s), -128.0, 127.0) / s).to(out_dtype)


def wq_group(W, As, Bs, scale, splits, out_dtype):
    """Ternary Weff of a row-stacked group of linears: member i (rows
    splits[i]) is wq(W_i + scale·B_i·A_i) with its own absmean scale. For a
    clamp to ±1, round-half-away is exactly the comparisons |v| ≥ ½."""
    Wp = W.to(torch.float32, copy=True)
    r0 = 0
    srow = []
    for n, A, Bm in zip(splits, As, Bs):
        Wi = Wp[r0:r0 + n]
        Wi.addmm_(Bm, A, alpha=scale)
        mean = Wi.abs().sum(dtype=torch.float64) / Wi.numel()     # double accumulator, like bitlab
        s = 1.0 / mean.to(torch.float32).clamp(min=1e-5)
        srow.append(s.expand(n))
        r0 += n
    srow = torch.cat(srow)[:, None]                                 # s of each row's member
    v = Wp * srow
    return (((v >= 0.5).to(torch.float32) - (v <= -0.5).to(torch.float32)) / srow).to(out_dtype)


class BitLinearGroup(torch.autograd.Function):
    """y = actq(x)·Weffᵀ for a row-stacked group of BitLinears sharing input x,
    straight-through gradients for both quantisers; gradients of x and of
    every member's A and B (W is frozen). Arguments: x, W, scale, splits,
    A_0, B_0, A_1, B_1, ..."""

    @staticmethod
    def forward(ctx, x, W, scale, splits, *AB):
        As, Bs = AB[0::2], AB[1::2]
        Wq = wq_group(W, As, Bs, scale, splits, x.dtype)
        xq = actq8(x, x.dtype)
        ctx.save_for_backward(xq, Wq, *AB)
        ctx.scale, ctx.splits = scale, splits
        return F.linear(xq, Wq)

    @staticmethod
    def backward(ctx, dy):
        xq, Wq, *AB = ctx.saved_tensors
        As, Bs = AB[0::2], AB[1::2]
        cdt = xq.dtype
        dx = dy @ Wq if ctx.needs_input_grad[0] else None
        dy2 = dy.reshape(-1, dy.shape[-1])
        xq2 = xq.reshape(-1, xq.shape[-1])
        # xq·Aᵀ for every member at once; dWeff = dyᵀ·xq is never formed
        xa = xq2 @ torch.cat(As).to(cdt).T                          # [M, k·r]
        dyb = torch.cat([d @ Bm.to(cdt) for d, Bm in zip(dy2.split(ctx.splits, 1), Bs)], 1)
        dA_all = (dyb.T @ xq2).float().mul_(ctx.scale)              # [k·r, in]
        r = As[0].shape[0]
        grads = []
        for i, d in enumerate(dy2.split(ctx.splits, 1)):
            dB = (d.T @ xa[:, i * r:(i + 1) * r]).float().mul_(ctx.scale)
            grads += [dA_all[i * r:(i + 1) * r], dB]
        return (dx, None, None, None, *grads)


# ----------------------------------------------------------------------------
# model

def rmsnorm(x, g, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * g


def rope_tables(T, hd, theta, dtype, device):
    inv = 1.0 / (theta ** (torch.arange(0, hd // 2, dtype=torch.float64) * 2.0 / hd))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], -1)
    return torch.cos(ang).to(dtype=dtype, device=device), torch.sin(ang).to(dtype=dtype, device=device)


def apply_rope(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin


def random_weights(cfg, device, dtype, seed=0):
    """HF-named random weights (values don't change the timings): linears
    N(0, 1/in), norms 1 + 0.1·N, embeddings 0.5·N; made on the device."""
    d = dims(cfg)
    g = torch.Generator(device=device).manual_seed(seed)

    def lin(o, i):
        return (torch.randn(o, i, generator=g, device=device) / math.sqrt(i)).to(dtype)

    def nrm(n):
        return (1.0 + 0.1 * torch.randn(n, generator=g, device=device)).to(dtype)

    hq, kv = d["nh"] * d["hd"], d["nkv"] * d["hd"]
    w = {"model.embed_tokens.weight": (0.5 * torch.randn(d["vocab"], d["dim"], generator=g,
                                                         device=device)).to(dtype),
         "model.norm.weight": nrm(d["dim"])}
    if not d["tied"]:
        w["lm_head.weight"] = lin(d["vocab"], d["dim"])
    for i in range(d["n_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = nrm(d["dim"])
        w[p + "post_attention_layernorm.weight"] = nrm(d["dim"])
        for n, o, inp in (("self_attn.q_proj", hq, d["dim"]), ("self_attn.k_proj", kv, d["dim"]),
                          ("self_attn.v_proj", kv, d["dim"]), ("self_attn.o_proj", d["dim"], hq),
                          ("mlp.gate_proj", d["hidden"], d["dim"]), ("mlp.up_proj", d["hidden"], d["dim"]),
                          ("mlp.down_proj", d["dim"], d["hidden"])):
            w[p + n + ".weight"] = lin(o, inp)
    return w


class StudentModel:
    """Frozen weights (teacher and student share them) + one trainable
    adapter per original block linear. weights: {HF name: array/tensor}."""

    GROUPS = (("qkv", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
              ("o", ("self_attn.o_proj",)),
              ("gu", ("mlp.gate_proj", "mlp.up_proj")),
              ("down", ("mlp.down_proj",)))

    def __init__(self, weights, cfg, device="cpu", dtype=torch.float32, rank=RANK, alpha=ALPHA,
                 seed=0):
        d = dims(cfg)
        self.cfg, self.d, self.device, self.dtype = cfg, d, torch.device(device), dtype
        self.eps, self.theta = float(cfg["rms_norm_eps"]), float(cfg["rope_theta"])
        self.scale = alpha / rank

        def t(a):
            if not isinstance(a, torch.Tensor):
                a = np.asarray(a, np.float32)
                a = torch.from_numpy(a if a.flags.writeable else a.copy())
            return a.to(device=self.device, dtype=dtype)

        self.embed = t(weights["model.embed_tokens.weight"])
        self.norm = t(weights["model.norm.weight"])
        self.lm_head = t(weights["lm_head.weight"]) if "lm_head.weight" in weights else self.embed
        g = torch.Generator().manual_seed(seed)
        self.layers, self.params = [], []
        for i in range(d["n_layers"]):
            p = f"model.layers.{i}."
            L = {"in": t(weights[p + "input_layernorm.weight"]),
                 "post": t(weights[p + "post_attention_layernorm.weight"])}
            for gname, members in self.GROUPS:
                mats = [t(weights[p + m + ".weight"]) for m in members]
                L[gname] = torch.cat(mats) if len(mats) > 1 else mats[0]
                L[gname + "_splits"] = tuple(int(m.shape[0]) for m in mats)
                AB = []
                for m in mats:
                    out, inp = m.shape
                    bound = 1.0 / math.sqrt(inp)                  # kaiming-uniform a=√5, B = 0
                    A = ((torch.rand(rank, inp, generator=g) * 2 - 1) * bound).to(self.device)
                    Bm = torch.zeros(out, rank, device=self.device)
                    A.requires_grad_(True)
                    Bm.requires_grad_(True)
                    AB += [A, Bm]
                L[gname + "_AB"] = AB
                self.params += AB
            self.layers.append(L)
        del weights
        self.rope = None

    def n_adapter_params(self):
        return sum(p.numel() for p in self.params)

    def frozen_bytes(self):
        seen, n = set(), 0
        for tsr in [self.embed, self.norm, self.lm_head] + [v for L in self.layers for v in L.values()
                                                             if isinstance(v, torch.Tensor)]:
            if id(tsr) not in seen:
                seen.add(id(tsr))
                n += tsr.numel() * tsr.element_size()
        return n

    def prepare(self, T):
        """RoPE tables for length T (outside any compiled region)."""
        self.rope = rope_tables(T, self.d["hd"], self.theta, self.dtype, self.device)

    def _attn(self, qkv, B, T):
        d = self.d
        q, k, v = qkv.split([d["nh"] * d["hd"], d["nkv"] * d["hd"], d["nkv"] * d["hd"]], -1)
        cos, sin = self.rope
        q = apply_rope(q.view(B, T, d["nh"], d["hd"]).transpose(1, 2), cos, sin)
        k = apply_rope(k.view(B, T, d["nkv"], d["hd"]).transpose(1, 2), cos, sin)
        v = v.view(B, T, d["nkv"], d["hd"]).transpose(1, 2)
        if self.device.type == "cuda" and self.dtype == torch.float32 and d["nkv"] != d["nh"]:
            # the flash kernel (the one that takes enable_gqa) refuses float32
            rep = d["nh"] // d["nkv"]
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               enable_gqa=d["nkv"] != d["nh"])
        return o.transpose(1, 2).reshape(B, T, d["nh"] * d["hd"])

    def forward(self, tokens, student):
        """(logits [B, T, V], block outputs [B, T, dim] × n_layers)."""
        B, T = tokens.shape
        x = F.embedding(tokens, self.embed)
        hs = []
        for L in self.layers:
            if student:
                def lin(gname, inp, L=L):
                    return BitLinearGroup.apply(inp, L[gname], self.scale, L[gname + "_splits"],
                                                *L[gname + "_AB"])
            else:
                def lin(gname, inp, L=L):
                    return F.linear(inp, L[gname])
            h = rmsnorm(x, L["in"], self.eps)
            x = x + lin("o", self._attn(lin("qkv", h), B, T))
            h = rmsnorm(x, L["post"], self.eps)
            g, u = lin("gu", h).chunk(2, -1)
            x = x + lin("down", F.silu(g) * u)
            hs.append(x)
        return F.linear(rmsnorm(x, self.norm, self.eps), self.lm_head), hs

    def teacher(self, tokens):
        with torch.no_grad():
            return self.forward(tokens, student=False)

    def student_loss(self, tokens, t_logits, t_hid):
        """(total, ce, kl, cos) of the student against the teacher's outputs."""
        s_logits, s_hid = self.forward(tokens, student=True)
        return distill_losses(s_logits, t_logits, s_hid, t_hid, tokens)


def distill_losses(s_logits, t_logits, s_hid, t_hid, tokens, tau=TAU):
    """CE (logits at t predict token t+1) + τ²·KL(teacher ‖ student) over the
    same rows + mean over blocks of mean(1 − cos) over every position; in
    float32 (bitlab's loss weights 1, 1, 1)."""
    V = s_logits.shape[-1]
    s = s_logits[:, :-1].reshape(-1, V).float()
    te = t_logits[:, :-1].reshape(-1, V).float()
    ce = F.cross_entropy(s, tokens[:, 1:].reshape(-1))
    kl = F.kl_div(F.log_softmax(s / tau, -1), F.log_softmax(te / tau, -1),
                  log_target=True, reduction="batchmean") * (tau * tau)
    cos = torch.stack([(1 - F.cosine_similarity(a.float(), b.float(), dim=-1)).mean()
                       for a, b in zip(s_hid, t_hid)]).mean()
    return ce + kl + cos, ce.detach(), kl.detach(), cos.detach()


def make_optimizer(params, device):
    """AdamW as bitlab's step; fused on the GPU, foreach on the CPU."""
    fused = torch.device(device).type == "cuda"
    return torch.optim.AdamW(params, **ADAMW, fused=fused, foreach=None if fused else True)


def lcg_tokens(n_batches, B, T, vocab):
    """bitlab's bench tokens (src/train/trainer_bench.c bl_bench_step): one 64-bit LCG
    stream, token = (r >> 33) mod vocab, batch after batch. The same tokens
    make the first step's losses comparable (B = 0: the adapter's A does not
    enter them)."""
    r = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    out = np.empty((n_batches, B * T), np.int64)
    for b in range(n_batches):
        row = out[b]
        for i in range(B * T):
            r = (r * 6364136223846793005 + 1442695040888963407) & mask
            row[i] = (r >> 33) % vocab
    return out.reshape(n_batches, B, T)
