#!/usr/bin/env python3
"""ref_distill.py - the independent PyTorch reference for bitlab's
self-distillation step (teacher = frozen Llama-family model, student = the
same weights as BitNet b1.58 BitLinears with a stack of LoRA adapters).

Nothing here is shared with the C code; it is written from the definitions
only, so it can check them.

Definitions (HF semantics)
--------------------------
* RMSNorm y = x·rsqrt(mean(x²)+eps)·g; rotate-half RoPE (pairs i, i+hd/2),
  positions 0..T−1 per row; causal GQA attention (q head h reads kv head
  h // (nh/nkv)); right padding: row b holds lens[b] tokens, attention output
  rows t ≥ lens[b] are set to 0 and such positions never enter a loss.
  Packed rows (doc_start [B,T], optional): token t of row b belongs to the
  document starting at doc_start[b,t]; its RoPE position is t − doc_start
  and it attends to keys doc_start[b,t] ≤ j ≤ t only (a block-diagonal
  causal mask), so each document sees nothing of the others.
  SwiGLU MLP down(silu(gate)·up); final norm; LM head (tied to the embeddings
  when the config says so or lm_head.weight is absent).
  Hidden states = the output of every block (after its MLP residual add).
* Archs: "llama" (also mistral), "qwen2" (q/k/v biases: any *_proj.bias key
  present is used), "phi3" (fused qkv [(nh+2·nkv)·hd, dim] = [q; k; v] rows,
  fused gate_up [2H, dim] = [gate; up] rows).
* Teacher: y = x·Wᵀ (+b).
* Student BitLinear: W' = W + Σᵢ (αᵢ/rᵢ)·Bᵢ·Aᵢ,
  Weff = (1−λ)·W' + λ·wq(W'),  y = actq(subln(x))·Weffᵀ (+b).
  wq : s = 1/max(mean|W'|, 1e-5), Wq = clamp(round(W'·s), −1, 1)/s
  actq (per row): s = Q/max(max|x|, 1e-5), Q = 127 (8 bits) / 7 (4 bits),
       xq = clamp(round(x·s), −Q−1, Q)/s ; 16 bits = identity.
  lambda_acts (the Hugging Face 1.58-bit fine-tuning recipe): the input is
       x + λ·(actq(x) − x) instead of actq(x), same straight-through gradient.
  round = half away from zero (C roundf), implemented as sign(v)·floor(|v|+½).
  Both quantisers use the straight-through estimator (identity gradient),
  written as v + (q(v) − v).detach().  The scale s is never differentiated.
  Optional SubLN = RMSNorm (weight, eps = model eps) on the BitLinear input
  before actq; optional post-attention RMSNorm applied to o_proj's output
  before the residual add.  Their weights are trainable.
* Losses (mask [B,T] of selected positions, default all):
  sel[b,t] = mask & t+1 < len (& doc_start[b,t+1] == doc_start[b,t] in a
  packed row: no row predicts the first token of the next document): row t
  predicts token t+1; token losses (CE,
  KL, top-K KL) and hidden losses (cos, magnitude) use the same rows
  (sel_tok = sel_hid = sel).
  CE    = mean_sel −log softmax(s)[tok[t+1]]
  KL    = τ²·mean_sel KL(softmax(t/τ) ‖ softmax(s/τ))
  TopK  = τ²·mean_sel KL over K+1 buckets (teacher top-K ids by teacher
          logit + "other" = 1 − Σ, clamped ≥ 1e-12, same for the student)
  cos   = Σ_l w_l·mean_sel_hid(1 − cos(h_s, h_t)) / Σ_l w_l
  mag   = Σ_l w_l·mean_sel_hid((log‖h_s‖ − log‖h_t‖)²) / Σ_l w_l
  rel   = attention-relation distillation (BitDistill / MiniLM-v2) at one
          layer l (rel_layer, 0-based; off when None): for X in {q, k, v}
          as the attention sees them (q, k after RoPE, v as is; q has nh
          heads, k and v nkv), per row b, head h and selected row i,
          R_X[i, j] = softmax_j(X_i·X_j / sqrt(hd)) over j in
          [doc_start(i), i] (j < len), and
          rel = mean_X (1/(heads_X·n_sel)) Σ_h Σ_{i ∈ sel_hid} KL(R^T_X[i] ‖ R^S_X[i])
  total = Σ wᵢ·Lᵢ.  Teacher quantities are detached.  A loss over an empty
  selection is 0.
* AdamW (adamw_update): global grad-norm clipping first
  (c = min(1, max_norm/(‖g‖+1e-6)), as torch.nn.utils.clip_grad_norm_),
  then p ← p − lr·wd·p, m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g²,
  p ← p − lr·(m/(1−β1ᵗ)) / (sqrt(v/(1−β2ᵗ)) + ε)  (= torch.optim.AdamW).

Precision
---------
`dtype=torch.float64` is the reference proper (used by the finite-difference
self-check).  `dtype=torch.float32` mirrors the C float32 code where that is
cheap: the wq mean is accumulated in float64 and cast to float32 (as
bl_wq_scale), the products W'·s and x·s, round, clamp and the division by s
are done in float32, exactly like the C code.  Which to compare with: see
`--help` of the CLI and the report; in short the quantisers are
discontinuous, so *any* difference in the value entering round() (float64 vs
float32, or a different summation order in float32) can flip a tie; float32
makes the quantiser inputs of the first BitLinear (and every weight
quantiser when ΔW = 0) bit-identical to the C ones, float64 keeps the
reference free of its own rounding error.

Adapter file (adapters.bin), little-endian:
    int32 n_adapters
    per adapter: int32 rank, float32 alpha, then for each layer in order, for
    each BitLinear of the layer in order q,k,v,o,gate,up,down (phi3:
    qkv,o,gate_up,down): A float32 [r, in] row-major, then B float32 [out, r].
The last adapter is the trainable one.

Step output (out.bin, written by `python3 ref_distill.py step ...` and by
tests/tools/step_tool): float64 losses [ce, kl, topk_kl, cos, mag, total],
then for every BitLinear in the adapters.bin order dA float32 [r, in] and dB
float32 [out, r] of the newest adapter.

tokens.bin: int32 B, int32 T, then int32 tokens [B, T] row-major.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

LOSS_NAMES = ("ce", "kl", "topk", "cos", "mag", "rel")
DEFAULT_LOSS_WEIGHTS = {"ce": 1.0, "kl": 1.0, "topk": 1.0, "cos": 1.0, "mag": 1.0, "rel": 1.0}

# BitLinear names per layer in adapters.bin order, and their HF keys.
LINEAR_KEYS = {
    "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
    "o": "self_attn.o_proj", "qkv": "self_attn.qkv_proj",
    "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj",
    "gate_up": "mlp.gate_up_proj",
}
LINEARS_SPLIT = ("q", "k", "v", "o", "gate", "up", "down")
LINEARS_FUSED = ("qkv", "o", "gate_up", "down")


# ----------------------------------------------------------------------------
# quantisers
# ----------------------------------------------------------------------------

def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """C roundf: half away from zero (torch.round is half-to-even).

    Not sign(v)·floor(|v|+½): in float32 0.49999997+0.5 rounds to 1.0, so that
    formula gives 1 where roundf gives 0.  v − trunc(v) is exact, so this is."""
    t = torch.trunc(v)
    return t + torch.sign(v) * ((v - t).abs() >= 0.5).to(v.dtype)


# Rounding near ties, for comparisons that must survive a one-code flip.
# Another correct float32 implementation computes every quantiser input v in
# its own summation order, so a v within its float32 error of a rounding
# boundary (k + ½) may round to the other code there. With TIE_SHIFT =
# (dx, dw) the activation / weight quantisers round v + d·sign(v): every v
# within |d| of a boundary goes away from zero (d > 0) or towards it (d < 0),
# values farther from a boundary are unchanged. Running a reference both ways
# gives the spread of results that such flips can cause (see tie_envelope in
# the tests that use it).
TIE_SHIFT = (0.0, 0.0)


def _round_q(v: torch.Tensor, d: float) -> torch.Tensor:
    if d:
        v = v + d * torch.sign(v)
    return round_half_away(v)


class tie_shift:
    """with tie_shift(dx, dw): the quantisers round near-ties as TIE_SHIFT."""

    def __init__(self, dx, dw):
        self.d = (dx, dw)

    def __enter__(self):
        global TIE_SHIFT
        self.old, TIE_SHIFT = TIE_SHIFT, self.d

    def __exit__(self, *exc):
        global TIE_SHIFT
        TIE_SHIFT = self.old


def wq(w: torch.Tensor) -> torch.Tensor:
    """Absmean ternary quantiser (value only, no gradient)."""
    with torch.no_grad():
        mean = w.abs().to(torch.float64).mean()     # double accumulator, like C
        s = 1.0 / torch.clamp(mean.to(w.dtype), min=1e-5)
        return torch.clamp(_round_q(w * s, TIE_SHIFT[1]), -1.0, 1.0) / s


def actq_levels(bits: int) -> int:
    if bits == 8:
        return 127
    if bits == 4:
        return 7
    if bits == 16:
        return 0
    raise ValueError(f"activation bits must be 4, 8 or 16, not {bits}")


def actq(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-row absmax quantiser (value only, no gradient)."""
    Q = actq_levels(bits)
    if Q == 0:
        return x.detach()
    with torch.no_grad():
        m = x.abs().amax(dim=-1, keepdim=True)
        s = Q / torch.clamp(m, min=1e-5)
        return torch.clamp(_round_q(x * s, TIE_SHIFT[0]), -Q - 1.0, float(Q)) / s


def ste(v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward value q, gradient identity with respect to v."""
    return v + (q - v).detach()


def rmsnorm(x: torch.Tensor, g: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * g


# ----------------------------------------------------------------------------
# adapters
# ----------------------------------------------------------------------------

class Adapter:
    """One LoRA adapter over every BitLinear: A[i] [r, in], B[i] [out, r]
    (numpy float32, flattened in adapters.bin order)."""

    def __init__(self, rank: int, alpha: float, A: list, B: list):
        self.rank = int(rank)
        self.alpha = float(np.float32(alpha))
        # float32 (the file format) unless given float64 (finite differences)
        def keep(a):
            a = np.asarray(a)
            return np.ascontiguousarray(a, dtype=np.float64 if a.dtype == np.float64 else np.float32)
        self.A = [keep(a) for a in A]
        self.B = [keep(b) for b in B]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def new_adapter(slots, rank: int, alpha: float, seed: int = 0, b_std: float = 0.0) -> Adapter:
    """A ~ U(−1/√in, 1/√in) (PEFT's kaiming-uniform a=√5), B = 0 or N(0, b_std²)."""
    rng = np.random.default_rng(seed)
    A, B = [], []
    for (_layer, _name, out, inp) in slots:
        bound = 1.0 / math.sqrt(inp)
        A.append(rng.uniform(-bound, bound, size=(rank, inp)).astype(np.float32))
        if b_std > 0:
            B.append((rng.standard_normal((out, rank)) * b_std).astype(np.float32))
        else:
            B.append(np.zeros((out, rank), np.float32))
    return Adapter(rank, alpha, A, B)


def write_adapters(path: str, adapters: list) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<i", len(adapters)))
        for ad in adapters:
            f.write(struct.pack("<if", ad.rank, ad.alpha))
            for a, b in zip(ad.A, ad.B):
                f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())
                f.write(np.ascontiguousarray(b, dtype="<f4").tobytes())


def read_adapters(path: str, slots) -> list:
    """Reads adapters.bin; shapes come from the model's slots (ref.slots)."""
    data = open(path, "rb").read()
    off = 0

    def take(n, dt, shape=None):
        nonlocal off
        nb = n * np.dtype(dt).itemsize
        if off + nb > len(data):
            raise ValueError(f"{path}: truncated at byte {off}")
        arr = np.frombuffer(data, dtype=dt, count=n, offset=off)
        off += nb
        return arr.reshape(shape) if shape is not None else arr

    n = int(take(1, "<i4")[0])
    ads = []
    for _ in range(n):
        r = int(take(1, "<i4")[0])
        alpha = float(take(1, "<f4")[0])
        if r <= 0:
            raise ValueError(f"{path}: bad rank {r}")
        A, B = [], []
        for (_l, _n, out, inp) in slots:
            A.append(take(r * inp, "<f4", (r, inp)).astype(np.float32))
            B.append(take(out * r, "<f4", (out, r)).astype(np.float32))
        ads.append(Adapter(r, alpha, A, B))
    if off != len(data):
        raise ValueError(f"{path}: {len(data) - off} trailing bytes")
    return ads


def write_tokens(path: str, tokens: np.ndarray) -> None:
    tokens = np.asarray(tokens, dtype=np.int32)
    with open(path, "wb") as f:
        f.write(struct.pack("<ii", *tokens.shape))
        f.write(np.ascontiguousarray(tokens, dtype="<i4").tobytes())


def read_tokens(path: str) -> np.ndarray:
    data = open(path, "rb").read()
    B, T = struct.unpack_from("<ii", data, 0)
    return np.frombuffer(data, dtype="<i4", count=B * T, offset=8).reshape(B, T).astype(np.int64)


def _out_names(rel: bool):
    """out.bin's losses: six doubles, seven with the relation loss (rel
    before total)."""
    return ("ce", "kl", "topk", "cos", "mag") + (("rel",) if rel else ()) + ("total",)


def write_step_out(path: str, losses: dict, dA: list, dB: list, rel: bool = False) -> None:
    with open(path, "wb") as f:
        f.write(np.array([losses[k] for k in _out_names(rel)], dtype="<f8").tobytes())
        for a, b in zip(dA, dB):
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())
            f.write(np.ascontiguousarray(b, dtype="<f4").tobytes())


def read_step_out(path: str, slots, rank: int, rel: bool = False):
    data = open(path, "rb").read()
    names = _out_names(rel)
    losses = np.frombuffer(data, dtype="<f8", count=len(names), offset=0)
    off = 8 * len(names)
    dA, dB = [], []
    for (_l, _n, out, inp) in slots:
        dA.append(np.frombuffer(data, "<f4", rank * inp, off).reshape(rank, inp)); off += 4 * rank * inp
        dB.append(np.frombuffer(data, "<f4", out * rank, off).reshape(out, rank)); off += 4 * out * rank
    if off != len(data):
        raise ValueError(f"{path}: size {len(data)}, expected {off}")
    return {k: float(v) for k, v in zip(names, losses)}, dA, dB


# ----------------------------------------------------------------------------
# model loading (HF folder or GGUF)
# ----------------------------------------------------------------------------

def _read_safetensors(path: str) -> dict:
    data = open(path, "rb").read()
    (hlen,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[base + a: base + b]
        dt = info["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, "<f4")
        elif dt == "F64":
            arr = np.frombuffer(raw, "<f8").astype(np.float32)
        elif dt == "F16":
            arr = np.frombuffer(raw, "<f2").astype(np.float32)
        elif dt == "BF16":
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name} has dtype {dt}")
        out[name] = arr.reshape(info["shape"]).astype(np.float32)
    return out


def load_hf_dir(path: str):
    """(weights, config) from a Hugging Face folder (single or sharded safetensors)."""
    config = json.load(open(os.path.join(path, "config.json")))
    weights = {}
    idx = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    for fn in files:
        weights.update(_read_safetensors(os.path.join(path, fn)))
    return weights, config


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp convert_hf_to_gguf LlamaModel.permute, which maps
    HF's rotate-half rows to interleaved-pair rows:
        w.reshape(n_head, 2, rows//n_head//2, *rest).swapaxes(1, 2).reshape(shape)
    (n_head = head_count for q, head_count_kv for k)."""
    shape = w.shape
    return (w.reshape(n_head, shape[0] // n_head // 2, 2, *shape[1:])
            .swapaxes(1, 2).reshape(shape))


def load_gguf(path: str):
    """(weights in HF layout and names, HF-style config) from a llama GGUF."""
    import gguf
    from gguf.quants import dequantize
    r = gguf.GGUFReader(path)

    def field(key, default=None):
        f = r.fields.get(key)
        if f is None:
            return default
        v = f.contents()
        return v

    arch = field("general.architecture")
    if arch != "llama":
        raise ValueError(f"{path}: only llama GGUFs are supported here (got {arch})")
    nh = int(field(f"{arch}.attention.head_count"))
    nkv = int(field(f"{arch}.attention.head_count_kv", nh))
    dim = int(field(f"{arch}.embedding_length"))
    tensors = {}
    for t in r.tensors:
        arr = dequantize(t.data, t.tensor_type)
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))  # ggml ne is [in, out]
        tensors[t.name] = np.ascontiguousarray(arr.reshape(shape), dtype=np.float32)
    n_layers = int(field(f"{arch}.block_count"))
    vocab = tensors["token_embd.weight"].shape[0]
    config = {
        "model_type": "llama",
        "hidden_size": dim,
        "num_attention_heads": nh,
        "num_key_value_heads": nkv,
        "head_dim": int(field(f"{arch}.rope.dimension_count", dim // nh)),
        "intermediate_size": int(field(f"{arch}.feed_forward_length")),
        "num_hidden_layers": n_layers,
        "rms_norm_eps": float(field(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(field(f"{arch}.rope.freq_base", 10000.0)),
        "vocab_size": vocab,
        "tie_word_embeddings": "output.weight" not in tensors,
    }
    w = {"model.embed_tokens.weight": tensors["token_embd.weight"],
         "model.norm.weight": tensors["output_norm.weight"]}
    if "output.weight" in tensors:
        w["lm_head.weight"] = tensors["output.weight"]
    m = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
         "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
         "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
         "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    for i in range(n_layers):
        for g, h in m.items():
            for suf in ("weight", "bias"):
                k = f"blk.{i}.{g}.{suf}"
                if k not in tensors:
                    continue
                a = tensors[k]
                if g == "attn_q":
                    a = unpermute_qk(a, nh)
                elif g == "attn_k":
                    a = unpermute_qk(a, nkv)
                w[f"model.layers.{i}.{h}.{suf}"] = a
    return w, config


def load_model(path: str):
    if os.path.isdir(path):
        return load_hf_dir(path)
    return load_gguf(path)


# ----------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------

def _arch_of(config: dict, weights: dict) -> str:
    mt = str(config.get("model_type", "")).lower()
    if not mt and config.get("architectures"):
        mt = config["architectures"][0].lower()
    if "phi3" in mt:
        return "phi3"
    if "qwen2" in mt:
        return "qwen2"
    if "model.layers.0.self_attn.qkv_proj.weight" in weights:
        return "phi3"
    return "llama"


class Ref:
    """Teacher/student reference over one set of frozen weights."""

    def __init__(self, weights: dict, config: dict, dtype=torch.float64):
        self.dtype = dtype
        self.config = dict(config)
        self.arch = _arch_of(config, weights)
        c = config
        self.dim = int(c["hidden_size"])
        self.nh = int(c["num_attention_heads"])
        self.nkv = int(c.get("num_key_value_heads") or self.nh)
        self.hd = int(c.get("head_dim") or self.dim // self.nh)
        self.hidden = int(c["intermediate_size"])
        self.n_layers = int(c["num_hidden_layers"])
        self.eps = float(c.get("rms_norm_eps", 1e-6))
        self.theta = float(c.get("rope_theta", 10000.0))
        if float(c.get("partial_rotary_factor", 1.0)) != 1.0:
            raise ValueError("partial rotary embeddings are not part of the definition")

        def T(a):
            return torch.from_numpy(np.asarray(a, dtype=np.float32)).to(dtype)

        self.embed = T(weights["model.embed_tokens.weight"])
        self.vocab = self.embed.shape[0]
        self.norm = T(weights["model.norm.weight"])
        tie = bool(c.get("tie_word_embeddings", False)) or "lm_head.weight" not in weights
        self.lm_head = self.embed if tie else T(weights["lm_head.weight"])
        self.names = LINEARS_FUSED if self.arch == "phi3" else LINEARS_SPLIT
        self.layers = []
        self.slots = []           # (layer, name, out, in) in adapters.bin order
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            L = {"in_norm": T(weights[p + "input_layernorm.weight"]),
                 "post_norm": T(weights[p + "post_attention_layernorm.weight"]),
                 "W": {}, "b": {}}
            for n in self.names:
                key = p + LINEAR_KEYS[n]
                W = T(weights[key + ".weight"])
                L["W"][n] = W
                L["b"][n] = T(weights[key + ".bias"]) if key + ".bias" in weights else None
                self.slots.append((i, n, W.shape[0], W.shape[1]))
            self.layers.append(L)
        self.n_slots = len(self.slots)

        self.probe = None         # dict while margins are being recorded

    # -- rounding margins -----------------------------------------------------

    def _record_margins(self, Wp, xn, act_bits, lens):
        """Distance (in units of the quantisation step) of every value that
        enters round() from the nearest rounding boundary: |frac(|v|) − ½|.
        Padded rows are ignored (they cannot reach a loss)."""
        with torch.no_grad():
            if Wp is not None:
                mean = Wp.abs().to(torch.float64).mean()
                v = (Wp.to(torch.float64) / mean).abs()
                m = (v - 0.5).abs().min().item()      # ternary: only ±0.5 matters
                self.probe["w"] = min(self.probe.get("w", 1.0), m)
            Q = actq_levels(act_bits)
            if Q:
                x = xn.to(torch.float64)
                T = x.shape[1]
                valid = torch.arange(T)[None, :] < lens[:, None]
                x = x[valid]
                v = (x * (Q / x.abs().amax(-1, keepdim=True).clamp(min=1e-5))).abs()
                f = v - torch.floor(v)
                m = (f - 0.5).abs().min().item()
                self.probe["x"] = min(self.probe.get("x", 1.0), m)

    def margins(self, tokens, lens, lam, act_bits, adapters, subln=None, post_attn_norm=None,
                topk=None, lambda_acts=False, doc_start=None):
        """Smallest rounding margins of a student forward: {"w": weights (λ>0),
        "x": activations (bits<16), "topk": gap between the K-th and
        (K+1)-th teacher logit (per selected position, relative to the logit
        scale)}.  A comparison with another implementation is only
        meaningful when these exceed that implementation's error on the
        quantiser inputs; the parity test picks inputs where they do."""
        self.probe = {}
        try:
            self.student_forward(tokens, lens, lam, act_bits, adapters, subln, post_attn_norm,
                                 lambda_acts, doc_start)
        finally:
            probe, self.probe = self.probe, None
        if topk:
            tl, _ = self.teacher_forward(tokens, lens, doc_start)
            sel, _ = selections(tokens, lens, doc_start=doc_start)
            t = tl[sel].to(torch.float64)
            K = min(int(topk), t.shape[-1] - 1)
            if K >= 1 and t.shape[0]:
                top = torch.topk(t, K + 1, dim=-1).values
                gap = (top[:, K - 1] - top[:, K]) / t.abs().amax(-1).clamp(min=1e-30)
                probe["topk"] = gap.min().item()
        return probe

    # -- pieces ---------------------------------------------------------------

    def _rope(self, pos: torch.Tensor):
        """cos, sin [..., hd] at the positions pos (any shape)."""
        half = self.hd // 2
        inv = 1.0 / (self.theta ** (torch.arange(0, half, dtype=torch.float64) * 2.0 / self.hd))
        ang = pos.to(torch.float64)[..., None] * inv
        ang = torch.cat([ang, ang], dim=-1)
        return torch.cos(ang).to(self.dtype), torch.sin(ang).to(self.dtype)

    @staticmethod
    def _apply_rope(x, cos, sin):
        h = x.shape[-1] // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
        return x * cos + rot * sin

    def _attention(self, q, k, v, lens, doc_start=None, states=None):
        """states: a list that receives (q, k, v) as the scores see them,
        [B, heads, T, hd], q and k after RoPE (the relation loss)."""
        B, T, _ = q.shape
        q = q.view(B, T, self.nh, self.hd).transpose(1, 2)
        k = k.view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = v.view(B, T, self.nkv, self.hd).transpose(1, 2)
        t = torch.arange(T)
        # positions restart with each document: [B, 1, T] against the heads
        pos = t[None, :] if doc_start is None else t[None, :] - doc_start
        cos, sin = self._rope(pos[:, None, :])
        q = self._apply_rope(q, cos, sin)
        k = self._apply_rope(k, cos, sin)
        if states is not None:
            states.append((q, k, v))
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        sc = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        allowed = (t[None, :] <= t[:, None])[None, None]                 # [1,1,T,T]
        allowed = allowed & (t[None, None, None, :] < lens[:, None, None, None])
        if doc_start is not None:  # key j ≥ the query's document start
            allowed = allowed & (t[None, None, None, :] >= doc_start[:, None, :, None])
        sc = sc.masked_fill(~allowed, float("-inf"))
        p = torch.softmax(sc, dim=-1)
        o = (p @ v).transpose(1, 2).reshape(B, T, self.nh * self.hd)
        valid = (t[None, :] < lens[:, None]).to(o.dtype)[..., None]
        return o * valid                                                 # padded query rows → 0

    # -- forward --------------------------------------------------------------

    def _forward(self, tokens, lens, student, lam=0.0, act_bits=16, adapters=(),
                 train=None, subln=None, post_attn=None, lambda_acts=False, doc_start=None,
                 states=None):
        tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        lens = torch.as_tensor(np.asarray(lens), dtype=torch.long)
        B, T = tokens.shape
        doc_start = _doc_start(doc_start, lens, T)
        x = self.embed[tokens]
        hiddens = []
        si = 0

        def lin(name, L, xin):
            nonlocal si
            W, b = L["W"][name], L["b"][name]
            if not student:
                y = xin @ W.T
            else:
                Wp = W
                for ai, ad in enumerate(adapters):
                    if train is not None and ai == len(adapters) - 1:
                        A, Bm = train["A"][si], train["B"][si]
                    else:
                        A = torch.from_numpy(ad.A[si]).to(self.dtype)
                        Bm = torch.from_numpy(ad.B[si]).to(self.dtype)
                    Wp = Wp + (ad.alpha / ad.rank) * (Bm @ A)
                if lam == 0.0:
                    Weff = Wp
                else:
                    Weff = (1.0 - lam) * Wp + lam * ste(Wp, wq(Wp))
                xn = rmsnorm(xin, subln[si], self.eps) if subln is not None else xin
                if lambda_acts:  # x + λ·(actq(x) − x), STE: gradient identity
                    with torch.no_grad():
                        blend = xn + lam * (actq(xn, act_bits) - xn)
                    xq = ste(xn, blend)
                else:
                    xq = ste(xn, actq(xn, act_bits))
                if self.probe is not None:
                    self._record_margins(Wp if lam != 0.0 else None, xn, act_bits, lens)
                y = xq @ Weff.T
            si += 1
            return y + b if b is not None else y

        for i, L in enumerate(self.layers):
            h = rmsnorm(x, L["in_norm"], self.eps)
            if self.arch == "phi3":
                qkv = lin("qkv", L, h)
                nq, nk = self.nh * self.hd, self.nkv * self.hd
                q, k, v = qkv[..., :nq], qkv[..., nq:nq + nk], qkv[..., nq + nk:]
            else:
                q, k, v = lin("q", L, h), lin("k", L, h), lin("v", L, h)
            a = self._attention(q, k, v, lens, doc_start, states)
            o = lin("o", L, a)
            if post_attn is not None:
                o = rmsnorm(o, post_attn[i], self.eps)
            x = x + o
            h = rmsnorm(x, L["post_norm"], self.eps)
            if self.arch == "phi3":
                gu = lin("gate_up", L, h)
                g, u = gu[..., :self.hidden], gu[..., self.hidden:]
            else:
                g, u = lin("gate", L, h), lin("up", L, h)
            m = lin("down", L, torch.nn.functional.silu(g) * u)
            x = x + m
            hiddens.append(x)
        x = rmsnorm(x, self.norm, self.eps)
        logits = x @ self.lm_head.T
        return logits, hiddens

    def teacher_forward(self, tokens, lens, doc_start=None, states=None):
        with torch.no_grad():
            return self._forward(tokens, lens, student=False, doc_start=doc_start, states=states)

    def _norm_params(self, subln, post_attn_norm, requires_grad=False):
        def mk(v, n, width):
            if v is None or v is False:
                return None
            if v is True:
                ts = [torch.ones(width[j], dtype=self.dtype) for j in range(n)]
            else:
                ts = [torch.as_tensor(np.asarray(a) if np.asarray(a).dtype == np.float64
                                      else np.asarray(a, np.float32)).to(self.dtype).clone()
                      for a in v]
            for t_ in ts:
                t_.requires_grad_(requires_grad)
            return ts
        sub = mk(subln, self.n_slots, [s[3] for s in self.slots])
        post = mk(post_attn_norm, self.n_layers, [self.dim] * self.n_layers)
        return sub, post

    def student_forward(self, tokens, lens, lam, act_bits, adapters=(), subln=None,
                        post_attn_norm=None, lambda_acts=False, doc_start=None):
        """subln: None, True (weights 1) or a list of n_slots weight vectors [in];
        post_attn_norm: None, True or a list of n_layers vectors [dim]."""
        sub, post = self._norm_params(subln, post_attn_norm)
        with torch.no_grad():
            return self._forward(tokens, lens, True, lam, act_bits, list(adapters),
                                 subln=sub, post_attn=post, lambda_acts=lambda_acts,
                                 doc_start=doc_start)


# ----------------------------------------------------------------------------
# losses and the step
# ----------------------------------------------------------------------------

def _doc_start(doc_start, lens, T):
    """doc_start as a [B, T] long tensor with the padded entries (not part
    of the definition) set to 0: padded rows as in an unpacked batch (their
    output is zeroed and never reaches a loss), or None."""
    if doc_start is None:
        return None
    ds = torch.as_tensor(np.asarray(doc_start), dtype=torch.long)
    t = torch.arange(T)[None, :]
    return torch.where(t < lens[:, None], ds, torch.zeros_like(ds))


def selections(tokens, lens, mask=None, doc_start=None):
    tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    lens = torch.as_tensor(np.asarray(lens), dtype=torch.long)
    B, T = tokens.shape
    t = torch.arange(T)[None, :]
    valid = t < lens[:, None]
    m = valid if mask is None else (torch.as_tensor(np.asarray(mask)).bool() & valid)
    # the row rule (README, "The student, exactly"): row t predicts token
    # t + 1, token and hidden-state losses alike
    sel = m & (t + 1 < lens[:, None])
    ds = _doc_start(doc_start, lens, T)
    if ds is not None:  # ... of the same document
        same = torch.zeros_like(sel)
        same[:, :-1] = ds[:, 1:] == ds[:, :-1]
        sel = sel & same
    return sel, sel


def relation_loss(s_states, t_states, sel, lens, doc_start=None):
    """rel of the module docstring from one layer's (q, k, v) of the student
    and the teacher ([B, heads, T, hd] each), rows sel [B, T]."""
    lens = torch.as_tensor(np.asarray(lens), dtype=torch.long)
    B, _, T, _ = s_states[0].shape
    n_sel = int(sel.sum())
    if n_sel == 0:
        return s_states[0].sum() * 0.0
    t = torch.arange(T)
    win = (t[None, :] <= t[:, None])[None] & (t[None, None, :] < lens[:, None, None])  # [B,T,T]
    ds = _doc_start(doc_start, lens, T)
    if ds is not None:  # j ≥ the document start of row i
        win = win & (t[None, None, :] >= ds[:, :, None])
    win = win[:, None]                                            # [B,1,T,T]
    rows = sel[:, None, :]                                        # [B,1,T]
    terms = []
    for xs, xt in zip(s_states, t_states):
        hd, heads = xs.shape[-1], xs.shape[1]
        ss = (xs @ xs.transpose(-1, -2)) / math.sqrt(hd)
        st = (xt.detach() @ xt.detach().transpose(-1, -2)) / math.sqrt(hd)
        # a large finite fill: rows outside every window (padding) stay finite
        ls = torch.log_softmax(ss.masked_fill(~win, -1e30), dim=-1)
        lt = torch.log_softmax(st.masked_fill(~win, -1e30), dim=-1)
        kl = torch.where(win, lt.exp() * (lt - ls), torch.zeros_like(ls)).sum(-1)  # [B,H,T]
        kl = torch.where(rows, kl, torch.zeros_like(kl))
        terms.append(kl.sum() / (heads * n_sel))
    return sum(terms) / 3.0


def distill_losses(s_logits, t_logits, s_hid, t_hid, tokens, lens, mask=None, tau=2.0,
                   topk=8, layer_weights=None, doc_start=None, s_rel=None, t_rel=None):
    """Every loss term (tensors, differentiable in the student's quantities);
    s_rel / t_rel: the relation layer's (q, k, v) (None: rel = 0)."""
    tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    sel_tok, sel_hid = selections(tokens, lens, mask, doc_start)
    dt = s_logits.dtype
    zero = s_logits.sum() * 0.0
    out = {}
    n_tok = int(sel_tok.sum())
    t_logits = t_logits.detach()
    if n_tok > 0:
        s = s_logits[sel_tok]                                   # [N, V]
        te = t_logits[sel_tok]
        tgt = torch.cat([tokens[:, 1:], tokens[:, :1]], dim=1)[sel_tok]
        ls = torch.log_softmax(s, dim=-1)
        out["ce"] = -ls.gather(1, tgt[:, None]).squeeze(1).mean()
        lsT = torch.log_softmax(s / tau, dim=-1)
        ltT = torch.log_softmax(te / tau, dim=-1)
        pt = ltT.exp()
        out["kl"] = tau * tau * (pt * (ltT - lsT)).sum(-1).mean()
        K = min(int(topk), s.shape[-1])
        ids = torch.topk(te, K, dim=-1).indices
        ptk = pt.gather(1, ids)
        psk = lsT.exp().gather(1, ids)
        ot = torch.clamp(1.0 - ptk.sum(-1), min=1e-12)
        os_ = torch.clamp(1.0 - psk.sum(-1), min=1e-12)
        kl_k = (ptk * (torch.log(ptk) - lsT.gather(1, ids))).sum(-1) \
            + ot * (torch.log(ot) - torch.log(os_))
        out["topk"] = tau * tau * kl_k.mean()
    else:
        out["ce"] = out["kl"] = out["topk"] = zero
    n_hid = int(sel_hid.sum())
    nl = len(s_hid)
    lw = torch.ones(nl, dtype=dt) if layer_weights is None else \
        torch.as_tensor(np.asarray(layer_weights, np.float64)).to(dt)
    if n_hid > 0:
        cos_l, mag_l = [], []
        for hs, ht in zip(s_hid, t_hid):
            a = hs[sel_hid]
            b = ht.detach()[sel_hid]
            na = torch.linalg.vector_norm(a, dim=-1)
            nb = torch.linalg.vector_norm(b, dim=-1)
            cos = (a * b).sum(-1) / torch.clamp(na * nb, min=1e-12)
            cos_l.append((1.0 - cos).mean())
            mag_l.append(((torch.log(na) - torch.log(nb)) ** 2).mean())
        out["cos"] = (torch.stack(cos_l) * lw).sum() / lw.sum()
        out["mag"] = (torch.stack(mag_l) * lw).sum() / lw.sum()
    else:
        out["cos"] = out["mag"] = zero
    out["rel"] = zero if s_rel is None else relation_loss(s_rel, t_rel, sel_hid, lens, doc_start)
    return out


def distill_step(ref: Ref, tokens, lens, lam, act_bits, adapters, mask=None, tau=2.0,
                 topk=8, loss_weights=None, layer_weights=None, subln=None,
                 post_attn_norm=None, lambda_acts=False, doc_start=None, rel_layer=None):
    """One distillation step's forward + backward (lambda_acts: λ blends the
    BitLinear inputs too, x + λ·(actq(x) − x), straight-through; rel_layer:
    the 0-based layer of the relation loss, None: rel = 0).

    Returns dict with
      losses : {"ce","kl","topk","cos","mag","rel","total"} python floats
      dA, dB : lists (adapters.bin order) of numpy float64/float32 gradients of
               the newest adapter (empty when there is no adapter)
      dsubln, dpost : gradients of the SubLN / post-attention norm weights
               (None when off)
      logits, hiddens : the student's (detached)
    """
    w = dict(DEFAULT_LOSS_WEIGHTS)
    if loss_weights:
        w.update(loss_weights)
    adapters = list(adapters)
    t_states, s_states = [], []
    t_logits, t_hid = ref.teacher_forward(tokens, lens, doc_start, states=t_states)
    train = None
    params = []
    if adapters:
        ad = adapters[-1]
        train = {"A": [torch.from_numpy(a).to(ref.dtype).requires_grad_(True) for a in ad.A],
                 "B": [torch.from_numpy(b).to(ref.dtype).requires_grad_(True) for b in ad.B]}
        params += train["A"] + train["B"]
    sub, post = ref._norm_params(subln, post_attn_norm, requires_grad=True)
    params += (sub or []) + (post or [])
    s_logits, s_hid = ref._forward(tokens, lens, True, lam, act_bits, adapters, train=train,
                                   subln=sub, post_attn=post, lambda_acts=lambda_acts,
                                   doc_start=doc_start, states=s_states)
    rl = rel_layer
    L = distill_losses(s_logits, t_logits, s_hid, t_hid, tokens, lens, mask, tau, topk,
                       layer_weights, doc_start, s_rel=None if rl is None else s_states[rl],
                       t_rel=None if rl is None else t_states[rl])
    total = sum(w[k] * L[k] for k in LOSS_NAMES)
    grads = torch.autograd.grad(total, params, allow_unused=True) if params else []
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    npg = [g.detach().numpy() for g in grads]
    ns = ref.n_slots if adapters else 0
    res = {
        "losses": {**{k: float(L[k].detach()) for k in LOSS_NAMES}, "total": float(total.detach())},
        "dA": npg[:ns], "dB": npg[ns:2 * ns],
        "dsubln": npg[2 * ns:2 * ns + len(sub)] if sub else None,
        "dpost": npg[2 * ns + (len(sub) if sub else 0):] if post else None,
        "logits": s_logits.detach(), "hiddens": [h.detach() for h in s_hid],
    }
    return res


def adamw_update(params, grads, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=0.0, max_norm=0.0):
    """AdamW on lists of numpy arrays (float64 math); `step` is the 1-based step
    after this update.  Returns (params, m, v, grad_norm) as new arrays.
    max_norm ≤ 0 disables clipping."""
    g64 = [np.asarray(g, np.float64) for g in grads]
    norm = math.sqrt(sum(float((g * g).sum()) for g in g64))
    c = 1.0
    if max_norm > 0:
        c = min(1.0, max_norm / (norm + 1e-6))
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    P, M, V = [], [], []
    for p, g, mm, vv in zip(params, g64, m, v):
        p = np.asarray(p, np.float64) * (1.0 - lr * weight_decay)
        g = g * c
        mm = beta1 * np.asarray(mm, np.float64) + (1 - beta1) * g
        vv = beta2 * np.asarray(vv, np.float64) + (1 - beta2) * g * g
        p = p - lr * (mm / bc1) / (np.sqrt(vv / bc2) + eps)
        P.append(p); M.append(mm); V.append(vv)
    return P, M, V, norm


# ----------------------------------------------------------------------------
# self-checks (independent of the C code and of make_tiny_model.py)
# ----------------------------------------------------------------------------

def random_tiny(arch: str, seed: int = 0, dim=32, nh=4, nkv=2, hidden=48, n_layers=2,
                vocab=61, tie=None):
    """Random HF-layout weights + config for a tiny model of `arch`."""
    rng = np.random.default_rng(seed)
    hd = dim // nh
    tie = (arch == "llama") if tie is None else tie

    def lin(out, inp):
        return (rng.standard_normal((out, inp)) / math.sqrt(inp)).astype(np.float32)

    def nrm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {"model.embed_tokens.weight": rng.standard_normal((vocab, dim)).astype(np.float32),
         "model.norm.weight": nrm(dim)}
    if not tie:
        w["lm_head.weight"] = lin(vocab, dim)
    for i in range(n_layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = nrm(dim)
        w[p + "post_attention_layernorm.weight"] = nrm(dim)
        if arch == "phi3":
            w[p + "self_attn.qkv_proj.weight"] = lin((nh + 2 * nkv) * hd, dim)
            w[p + "mlp.gate_up_proj.weight"] = lin(2 * hidden, dim)
        else:
            w[p + "self_attn.q_proj.weight"] = lin(nh * hd, dim)
            w[p + "self_attn.k_proj.weight"] = lin(nkv * hd, dim)
            w[p + "self_attn.v_proj.weight"] = lin(nkv * hd, dim)
            w[p + "mlp.gate_proj.weight"] = lin(hidden, dim)
            w[p + "mlp.up_proj.weight"] = lin(hidden, dim)
            if arch == "qwen2":
                for n, o in (("q", nh * hd), ("k", nkv * hd), ("v", nkv * hd)):
                    w[p + f"self_attn.{n}_proj.bias"] = (0.1 * rng.standard_normal(o)).astype(np.float32)
        w[p + "self_attn.o_proj.weight"] = lin(dim, nh * hd)
        w[p + "mlp.down_proj.weight"] = lin(dim, hidden)
    arch_cls = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "phi3": "Phi3ForCausalLM"}
    config = {"architectures": [arch_cls[arch]], "model_type": arch, "hidden_size": dim,
              "num_attention_heads": nh, "num_key_value_heads": nkv, "head_dim": hd,
              "intermediate_size": hidden, "num_hidden_layers": n_layers,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "vocab_size": vocab,
              "tie_word_embeddings": tie, "max_position_embeddings": 256,
              "hidden_act": "silu"}
    return w, config


def _check(name, ok, detail=""):
    print(f"  [{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}")
    return bool(ok)


def _fd_check(arch, seed=1):
    """Central differences in float64 at λ = 0, acts off (smooth), SubLN and
    post-attention norm on, two adapters (the older frozen)."""
    w, c = random_tiny(arch, seed)
    ref = Ref(w, c, torch.float64)
    rng = np.random.default_rng(seed)
    B, T = 2, 7
    tokens = rng.integers(0, ref.vocab, (B, T))
    lens = np.array([7, 5])
    a0 = new_adapter(ref.slots, 4, 8.0, seed=seed + 10, b_std=0.05)
    a1 = new_adapter(ref.slots, 3, 6.0, seed=seed + 11, b_std=0.05)
    a1 = Adapter(a1.rank, a1.alpha, [x.astype(np.float64) for x in a1.A],
                 [x.astype(np.float64) for x in a1.B])
    sub = [(1 + 0.1 * rng.standard_normal(s[3])) for s in ref.slots]
    post = [(1 + 0.1 * rng.standard_normal(ref.dim)) for _ in range(ref.n_layers)]
    kw = dict(tau=1.5, topk=5, layer_weights=np.arange(1, ref.n_layers + 1, dtype=np.float64),
              loss_weights={"ce": 1.0, "kl": 0.7, "topk": 0.5, "cos": 2.0, "mag": 1.3, "rel": 1.7},
              rel_layer=ref.n_layers - 1)
    mask = np.ones((B, T), bool)
    mask[0, 2] = False

    def total(adp, sb, ps):
        r = distill_step(ref, tokens, lens, 0.0, 16, [a0, adp], mask=mask, subln=sb,
                         post_attn_norm=ps, **kw)
        return r["losses"]["total"]

    res = distill_step(ref, tokens, lens, 0.0, 16, [a0, a1], mask=mask, subln=sub,
                       post_attn_norm=post, **kw)
    h = 1e-6
    worst = 0.0
    n = 0
    for si in rng.choice(ref.n_slots, size=min(4, ref.n_slots), replace=False):
        for which in ("A", "B"):
            arr = getattr(a1, which)[si]
            g = res["d" + which][si]
            for _ in range(3):
                idx = tuple(rng.integers(0, d) for d in arr.shape)
                old = arr[idx]
                arr[idx] = old + h; fp = total(a1, sub, post)
                arr[idx] = old - h; fm = total(a1, sub, post)
                arr[idx] = old
                fd = (fp - fm) / (2 * h)
                worst = max(worst, abs(fd - g[idx]) / max(abs(fd), abs(g[idx]), 1e-6)); n += 1
    for vec_list, gl in ((sub, res["dsubln"]), (post, res["dpost"])):
        for _ in range(3):
            j = int(rng.integers(0, len(vec_list)))
            k = int(rng.integers(0, vec_list[j].shape[0]))
            old = vec_list[j][k]
            vec_list[j][k] = old + h; fp = total(a1, sub, post)
            vec_list[j][k] = old - h; fm = total(a1, sub, post)
            vec_list[j][k] = old
            fd = (fp - fm) / (2 * h)
            worst = max(worst, abs(fd - gl[j][k]) / max(abs(fd), abs(gl[j][k]), 1e-6)); n += 1
    return _check(f"{arch}: finite differences vs autograd ({n} entries, f64, λ=0, acts off)",
                  worst < 1e-5, f"max rel err {worst:.2e}")


def random_packing(rng, B, T, max_docs=3):
    """Packed rows: row b holds 2..max_docs documents of random lengths (≥ 1)
    back to back, the last row leaving a padded tail.  Returns (lens,
    doc_start [B, T] with −1 past lens, docs [(row, start, length)])."""
    lens = np.zeros(B, np.int64)
    doc_start = np.full((B, T), -1, np.int64)
    docs = []
    for b in range(B):
        room = T - 2 if b == B - 1 else T
        n = int(rng.integers(2, max_docs + 1))
        cuts = np.sort(rng.choice(np.arange(1, room), n - 1, replace=False))
        bounds = [0] + [int(c) for c in cuts] + [room]
        for s, e in zip(bounds[:-1], bounds[1:]):
            doc_start[b, s:e] = s
            docs.append((b, s, e - s))
        lens[b] = room
    return lens, doc_start, docs


def _packed_check(arch, seed=5):
    """The reference's packed step equals its step over the same documents
    one per row (float64: losses and gradients to summation order)."""
    w, c = random_tiny(arch, seed)
    ref = Ref(w, c, torch.float64)
    rng = np.random.default_rng(seed)
    B, T = 2, 10
    lens, ds, docs = random_packing(rng, B, T)
    tokens = rng.integers(0, ref.vocab, (B, T))
    rows = np.zeros((len(docs), T), np.int64)
    for i, (b, s, n) in enumerate(docs):
        rows[i, :n] = tokens[b, s:s + n]
    rlens = np.array([n for _, _, n in docs], np.int64)
    ads = [new_adapter(ref.slots, 4, 8.0, seed=seed, b_std=0.05),
           new_adapter(ref.slots, 4, 8.0, seed=seed + 1, b_std=0.05)]
    packed = distill_step(ref, tokens, lens, 0.5, 16, ads, tau=2.0, topk=4, doc_start=ds,
                          rel_layer=0)
    one = distill_step(ref, rows, rlens, 0.5, 16, ads, tau=2.0, topk=4, rel_layer=0)
    err = compare_step(one, packed["losses"], packed["dA"], packed["dB"])
    finite = all(math.isfinite(v) for v in packed["losses"].values())
    return _check(f"{arch}: packed rows == the documents one per row ({len(docs)} documents, f64)",
                  finite and err < 1e-10,
                  f"max rel err {err:.1e}" + ("" if finite else ", non-finite losses"))


def _fresh_adapter_check(arch, seed=2):
    w, c = random_tiny(arch, seed)
    ok = True
    for dt in (torch.float64, torch.float32):
        ref = Ref(w, c, dt)
        rng = np.random.default_rng(seed)
        tokens = rng.integers(0, ref.vocab, (2, 6))
        lens = np.array([6, 4])
        a0 = new_adapter(ref.slots, 4, 8.0, seed=3, b_std=0.05)
        a1 = new_adapter(ref.slots, 8, 16.0, seed=4)                 # B = 0
        for lam, bits in ((0.0, 16), (0.5, 8), (1.0, 4)):
            l0, h0 = ref.student_forward(tokens, lens, lam, bits, [a0])
            l1, h1 = ref.student_forward(tokens, lens, lam, bits, [a0, a1])
            ok &= bool(torch.equal(l0, l1)) and all(torch.equal(x, y) for x, y in zip(h0, h1))
        tl, _ = ref.teacher_forward(tokens, lens)
        sl, _ = ref.student_forward(tokens, lens, 0.0, 16, [a1])
        ok &= bool(torch.equal(tl, sl))
    return _check(f"{arch}: fresh adapter (B=0) leaves the student bit-identical; "
                  "λ=0 + acts off + B=0 student == teacher", ok)


def _hf_check(arch, seed=3):
    try:
        import transformers  # noqa: F401
        from transformers import AutoConfig, AutoModelForCausalLM
    except Exception as e:  # pragma: no cover
        print(f"  [skip] {arch}: transformers unavailable ({e})")
        return True
    w, c = random_tiny(arch, seed)
    ref = Ref(w, c, torch.float64)
    cfg = AutoConfig.for_model(arch, **{k: v for k, v in c.items()
                                        if k not in ("architectures", "model_type")})
    cfg.attention_bias = arch == "qwen2" and False
    for k in ("pad_token_id", "eos_token_id", "bos_token_id"):
        if hasattr(cfg, k):
            setattr(cfg, k, None)
    cfg._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float64)
    sd = {k: torch.from_numpy(v).double() for k, v in w.items()}
    if c["tie_word_embeddings"]:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if "rotary" not in m]
    if missing or unexpected:
        return _check(f"{arch}: HF state dict", False, f"missing {missing} unexpected {unexpected}")
    model.eval()
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, ref.vocab, (2, 9))
    lens = np.array([9, 6])
    am = (np.arange(9)[None, :] < lens[:, None]).astype(np.int64)
    with torch.no_grad():
        o = model(input_ids=torch.from_numpy(tokens), attention_mask=torch.from_numpy(am),
                  output_hidden_states=True)
    rl, rh = ref.teacher_forward(tokens, lens)
    v = torch.from_numpy(am).bool()
    err = (o.logits[v] - rl[v]).abs().max().item() / rl[v].abs().max().item()
    for i in range(ref.n_layers - 1):      # HF's last hidden state is after the final norm
        err = max(err, (o.hidden_states[i + 1][v] - rh[i][v]).abs().max().item()
                  / rh[i][v].abs().max().item())
    return _check(f"{arch}: teacher forward vs transformers {transformers.__version__} (f64)",
                  err < 1e-6, f"max rel err {err:.1e} (HF computes RoPE cos/sin in float32)")


def _adamw_check():
    rng = np.random.default_rng(5)
    ps = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    tp = [torch.tensor(p, requires_grad=True) for p in ps]
    opt = torch.optim.AdamW(tp, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    m = [np.zeros_like(p) for p in ps]
    v = [np.zeros_like(p) for p in ps]
    P = [p.copy() for p in ps]
    err = 0.0
    for step in range(1, 5):
        gs = [rng.standard_normal(p.shape) * (3.0 if step % 2 else 0.1) for p in ps]
        for t_, g in zip(tp, gs):
            t_.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_norm_(tp, 1.0)
        opt.step()
        P, m, v, _ = adamw_update(P, gs, m, v, step, 1e-2, 0.9, 0.95, 1e-8, 0.1, 1.0)
        err = max(err, max(np.abs(a - t_.detach().numpy()).max() for a, t_ in zip(P, tp)))
    return _check("adamw_update == clip_grad_norm_ + torch.optim.AdamW (4 steps)", err < 1e-12,
                  f"max abs err {err:.1e}")


def _round_check():
    v = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999997, -0.49999997, 0.0])
    got = round_half_away(v).tolist()
    exp = [-3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0]
    return _check("round half away from zero", got == exp, str(got))


MIN_MARGIN = {"x": 1e-4, "w": 1e-5, "topk": 1e-5}


def pick_inputs(ref: Ref, lam, bits, B=2, T=8, seed=0, tries=200, rank=4, alpha=8.0,
                b_std=0.02, topk=8, min_margin=None, lambda_acts=False, lens=None,
                doc_start=None):
    """Tokens, lens and two adapters (the newest trainable, B ≠ 0 so dA ≠ 0)
    whose student forward keeps every quantiser input at least min_margin
    (MIN_MARGIN by default) away from a rounding boundary, so that any correct
    float32 implementation makes the same rounding decisions as this
    reference.  Exact ties do occur structurally: at λ = 1 the o_proj input
    of position 0 is a ratio of small integers (attention there is v₀ =
    xq·Wqᵀ, on the quantisation lattice), which at 4 bits often lands on k+½.
    lens / doc_start: given lens and packed rows (the margins are those of
    that forward); by default full and shortened rows, one document each.
    Returns (tokens, lens, adapters, margins, seed used)."""
    mm = dict(MIN_MARGIN if min_margin is None else min_margin)
    if lens is None:
        lens = np.array([T] + [max(2, T - 3 * i) for i in range(1, B)], np.int64)
    for k in range(tries):
        sd = seed * 100003 + k
        rng = np.random.default_rng(sd)
        tokens = rng.integers(0, ref.vocab, (B, T))
        ads = [new_adapter(ref.slots, rank, alpha, seed=sd + 1, b_std=b_std),
               new_adapter(ref.slots, rank, alpha, seed=sd + 2, b_std=b_std)]
        m = ref.margins(tokens, lens, lam, bits, ads, topk=topk, lambda_acts=lambda_acts,
                        doc_start=doc_start)
        if all(m.get(key, 1.0) >= mm[key] for key in mm):
            return tokens, lens, ads, m, sd
    raise RuntimeError(f"no input with rounding margins ≥ {mm} in {tries} tries "
                       f"(λ={lam}, bits={bits})")


def precision_spread(arch="llama", seed=7, B=2, T=8, **tiny):
    """How far the float32 reference is from the float64 one (a stand-in for
    what any float32 implementation, e.g. the C code, can be expected to
    show), on arbitrary inputs and on inputs chosen by pick_inputs.
    Returns {(lam, bits): (raw err, picked err)}, max normwise rel err."""
    w, c = random_tiny(arch, seed, **tiny)
    r64, r32 = Ref(w, c, torch.float64), Ref(w, c, torch.float32)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, r64.vocab, (B, T))
    lens = np.array([T] + [max(2, T - 3 * i) for i in range(1, B)])
    a0 = new_adapter(r64.slots, 4, 8.0, seed=seed + 1, b_std=0.02)
    a1 = new_adapter(r64.slots, 4, 8.0, seed=seed + 2, b_std=0.02)
    out = {}
    for lam in (0.0, 0.5, 1.0):
        for bits in (8, 4):
            x = distill_step(r64, tokens, lens, lam, bits, [a0, a1])
            y = distill_step(r32, tokens, lens, lam, bits, [a0, a1])
            tk, ln, ads, _m, _sd = pick_inputs(r64, lam, bits, B, T, seed)
            xp = distill_step(r64, tk, ln, lam, bits, ads)
            yp = distill_step(r32, tk, ln, lam, bits, ads)
            out[(lam, bits)] = (compare_step(x, y), compare_step(xp, yp))
    return out


def compare_step(ref_res, got_losses_or_res, dA=None, dB=None):
    """Max relative error: per loss |a−b|/max(|b|, 1e-6); per gradient tensor
    normwise max|a−b| / max|b| (elementwise relative error is meaningless
    for entries near 0)."""
    if dA is None:
        got_l, dA, dB = got_losses_or_res["losses"], got_losses_or_res["dA"], got_losses_or_res["dB"]
    else:
        got_l = got_losses_or_res
    err = 0.0
    for k in ("ce", "kl", "topk", "cos", "mag", "rel", "total"):
        if k not in got_l:  # out.bin without the relation loss
            continue
        a, b = float(got_l[k]), float(ref_res["losses"][k])
        err = max(err, abs(a - b) / max(abs(b), 1e-6))
    for g, r in zip(list(dA) + list(dB), ref_res["dA"] + ref_res["dB"]):
        g = np.asarray(g, np.float64); r = np.asarray(r, np.float64)
        err = max(err, float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-12)))
    return err


def run_selfcheck(which="all"):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    archs = ("llama", "qwen2", "phi3") if which == "all" else (which,)
    ok = _round_check() and True
    ok &= _adamw_check()
    for a in archs:
        ok &= _hf_check(a)
        ok &= _fresh_adapter_check(a)
        ok &= _fd_check(a)
        ok &= _packed_check(a)
    print("  float32 vs float64 reference, max normwise rel err over losses, dA, dB "
          "(arbitrary inputs -> inputs from pick_inputs):")
    for a in archs:
        sp = precision_spread(a)
        worst = max(v[1] for v in sp.values())
        print("   ", a, " ".join(f"λ={k[0]:g}/{k[1]}b:{v[0]:.0e}->{v[1]:.0e}" for k, v in sp.items()))
        ok &= _check(f"{a}: float32 reference within 1e-4 of float64 on picked inputs",
                     worst < 1e-4, f"max {worst:.1e}")
    print("selfcheck", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------

def _parse_lens(s: str, B: int, T: int):
    if not s:
        return np.full(B, T, np.int64)
    lens = np.array([int(x) for x in s.split(",")], np.int64)
    if lens.shape[0] != B or (lens < 1).any() or (lens > T).any():
        raise SystemExit(f"--lens must hold {B} values in 1..{T}")
    return lens


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("step", help="one distillation step; writes out.bin like step_tool")
    st.add_argument("--model", required=True, help="HF folder or llama GGUF")
    st.add_argument("--adapters", required=True)
    st.add_argument("--tokens", required=True)
    st.add_argument("--lens", default="", help="comma-separated, default all T")
    st.add_argument("--lam", type=float, default=1.0)
    st.add_argument("--bits", type=int, default=8)
    st.add_argument("--tau", type=float, default=2.0)
    st.add_argument("--topk", type=int, default=8)
    for k in LOSS_NAMES:
        st.add_argument(f"--w-{k}", type=float, default=1.0)
    st.add_argument("--rel-layer", type=int, default=None,
                    help="0-based layer of the relation loss (out.bin gets rel)")
    st.add_argument("--dtype", choices=("f32", "f64"), default="f64")
    st.add_argument("--out", required=True)
    st.add_argument("--json", action="store_true", help="also print the losses as JSON")
    sc = sub.add_parser("selfcheck", help="finite-difference and invariance checks")
    sc.add_argument("--arch", default="all")
    a = ap.parse_args(argv)
    if a.cmd == "selfcheck":
        return run_selfcheck(a.arch)
    weights, config = load_model(a.model)
    ref = Ref(weights, config, torch.float64 if a.dtype == "f64" else torch.float32)
    tokens = read_tokens(a.tokens)
    lens = _parse_lens(a.lens, *tokens.shape)
    ads = read_adapters(a.adapters, ref.slots)
    r = distill_step(ref, tokens, lens, a.lam, a.bits, ads, tau=a.tau, topk=a.topk,
                     loss_weights={k: getattr(a, f"w_{k}") for k in LOSS_NAMES},
                     rel_layer=a.rel_layer)
    write_step_out(a.out, r["losses"], r["dA"], r["dB"], rel=a.rel_layer is not None)
    if a.json:
        print(json.dumps(r["losses"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
