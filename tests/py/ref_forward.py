"""ref_forward.py - an independent numpy float64 reference of the Llama /
Qwen2 / Phi-3 teacher forward, with Hugging Face semantics, for parity tests.

Weights are a dict {HF name: array} in HF layout (as make_tiny_model.py
returns them); the config is the HF config.json dict. Nothing here is shared
with the C code.

* RMSNorm y = x / sqrt(mean(x²) + eps) · g.
* Rotate-half RoPE (pairs i, i + hd/2), inv_freq_i = theta^(-2i/hd), angles in
  float64, positions 0..T-1.
* Causal attention with GQA: query head h reads kv head h // (nh / nkv);
  scale 1/sqrt(hd). Qwen2 adds q/k/v biases (any *_proj.bias present is used).
* Phi-3: qkv_proj = [q; k; v] rows, gate_up_proj = [gate; up] rows.
* MLP down(silu(gate) · up); final norm; lm_head (tied when absent).
* hidden[l] = the output of block l (after its MLP residual add).

load_gguf() turns a GGUF file into the same form: every tensor dequantized
with gguf.quants.dequantize, names mapped to HF, and a llama GGUF's q/k rows
un-permuted from llama.cpp's interleaved layout back to rotate-half.
"""
import numpy as np


def _dims(cfg):
    nh, nkv, dim = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    hd = cfg.get("head_dim") or dim // nh
    return dim, nh, nkv, hd


def rmsnorm(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def rope(x, n_heads, hd, theta):
    """x [T, n_heads*hd] at positions 0..T-1, rotate-half pairing."""
    T = x.shape[0]
    inv = theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :].astype(x.dtype), np.sin(ang)[:, None, :].astype(x.dtype)
    x = x.reshape(T, n_heads, hd)
    a, b = x[..., : hd // 2], x[..., hd // 2:]
    return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(T, n_heads * hd)


def attention(q, k, v, nh, nkv, hd):
    T = q.shape[0]
    q, k, v = q.reshape(T, nh, hd), k.reshape(T, nkv, hd), v.reshape(T, nkv, hd)
    out = np.zeros((T, nh, hd), dtype=q.dtype)
    causal = np.tril(np.ones((T, T), dtype=bool))
    for h in range(nh):
        g = h // (nh // nkv)
        s = q[:, h] @ k[:, g].T * (1.0 / hd ** 0.5)
        s = np.where(causal, s, -np.inf)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        out[:, h] = p @ v[:, g]
    return out.reshape(T, nh * hd)


def forward(w, cfg, tokens, want_hidden=True, last_only=False, dtype=np.float64):
    """One sequence. Returns (logits [T, vocab] or [1, vocab], [hidden_l [T, dim]]).
    dtype float32 is for benchmarks only; parity always uses float64."""
    W = {n: np.asarray(a, dtype=dtype) for n, a in w.items()}
    dim, nh, nkv, hd = _dims(cfg)
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    x = W["model.embed_tokens.weight"][np.asarray(tokens)]
    hidden = []

    def lin(name, h):
        y = h @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        if p + "self_attn.qkv_proj.weight" in W:
            qkv = lin(p + "self_attn.qkv_proj", h)
            q, k, v = np.split(qkv, [nh * hd, nh * hd + nkv * hd], axis=1)
        else:
            q, k, v = (lin(p + f"self_attn.{n}_proj", h) for n in "qkv")
        q, k = rope(q, nh, hd, theta), rope(k, nkv, hd, theta)
        x = x + lin(p + "self_attn.o_proj", attention(q, k, v, nh, nkv, hd))
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        if p + "mlp.gate_up_proj.weight" in W:
            gate, up = np.split(lin(p + "mlp.gate_up_proj", h), 2, axis=1)
        else:
            gate, up = lin(p + "mlp.gate_proj", h), lin(p + "mlp.up_proj", h)
        x = x + lin(p + "mlp.down_proj", gate / (1 + np.exp(-gate)) * up)
        if want_hidden:
            hidden.append(x)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    xo = rmsnorm(x[-1:] if last_only else x, W["model.norm.weight"], eps)
    return xo @ head.T, hidden


def greedy(w, cfg, prompt, n_new):
    """Greedy tokens by full (uncached) forwards; ties go to the lowest id."""
    seq = list(prompt)
    for _ in range(n_new):
        logits, _ = forward(w, cfg, seq, want_hidden=False, last_only=True)
        seq.append(int(np.argmax(logits[0])))
    return seq[len(prompt):]


# ---------------------------------------------------------------------------
# GGUF -> HF names and layout

_STEMS = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_qkv": "self_attn.qkv_proj", "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_down": "mlp.down_proj",
}
_TOP = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight"}


def _unpermute(w, n_head):
    """Inverse of llama.cpp's permute: interleaved rows back to rotate-half."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_gguf(path):
    """(weights {HF name: float32 array}, HF-style config dict) of a GGUF file."""
    import gguf
    r = gguf.GGUFReader(path)

    def field(key, default=None):
        f = r.fields.get(key)
        return default if f is None else f.contents()

    arch = field("general.architecture")
    cfg = {
        "model_type": arch,
        "hidden_size": int(field(f"{arch}.embedding_length")),
        "num_hidden_layers": int(field(f"{arch}.block_count")),
        "num_attention_heads": int(field(f"{arch}.attention.head_count")),
        "num_key_value_heads": int(field(f"{arch}.attention.head_count_kv",
                                         field(f"{arch}.attention.head_count"))),
        "intermediate_size": int(field(f"{arch}.feed_forward_length")),
        "rope_theta": float(field(f"{arch}.rope.freq_base", 10000.0)),
        "rms_norm_eps": float(field(f"{arch}.attention.layer_norm_rms_epsilon")),
    }
    w = {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        a = np.asarray(a, dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])
        if t.name in _TOP:
            name = _TOP[t.name]
        else:
            _, layer, stem, kind = t.name.split(".")
            if stem == "ffn_up":
                stem_hf = "mlp.gate_up_proj" if arch == "phi3" else "mlp.up_proj"
            else:
                stem_hf = _STEMS[stem]
            name = f"model.layers.{layer}.{stem_hf}.{kind}"
        w[name] = a
    if arch in ("llama", "mistral"):
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}.self_attn."
            w[p + "q_proj.weight"] = _unpermute(w[p + "q_proj.weight"], cfg["num_attention_heads"])
            w[p + "k_proj.weight"] = _unpermute(w[p + "k_proj.weight"], cfg["num_key_value_heads"])
    cfg["vocab_size"] = w["model.embed_tokens.weight"].shape[0]
    return w, cfg
