"""make_tiny_model.py - writes small random Llama-family models for tests.

One call writes the same weights twice: as a Hugging Face folder
(config.json, model.safetensors written by hand with numpy, tokenizer.json,
tokenizer_config.json with a ChatML chat_template, generation_config.json)
and as a GGUF written with the `gguf` package. The tokenizer is a small
byte-level BPE trained with `tokenizers` on seeded generated text, with
special tokens <|endoftext|> (0), <|im_start|> (1, bos), <|im_end|> (2, eos).

    import make_tiny_model as tiny
    w = tiny.write_tiny("/tmp/t", arch="qwen2", seed=1)
    w["model.layers.0.self_attn.q_proj.weight"]   # numpy fp32, HF layout
    w.hf_dir, w.gguf_path, w.config               # folder, file, config.json dict

write_tiny returns a TinyModel: a dict of the original fp32 weights keyed by
HF name, plus attributes hf_dir, gguf_path (None for a format not written),
config (the config.json dict) and name. The weights are the values before
storage; stored values differ only when a lossy dtype is chosen: use
gguf_stored() / st_stored() for exact expectations, and permute_qk() for the
q/k rows of a llama GGUF (llama.cpp stores them permuted for interleaved
RoPE; qwen2 and phi3 are stored as in HF).

CLI: python3 make_tiny_model.py OUTDIR [--arch llama] [--fmt both] [--seed 0]
"""
import argparse
import json
import os
import struct

import numpy as np

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# per-arch config.json details that differ, so parsing is exercised
ARCH_CONFIG = {
    "llama": dict(architectures=["LlamaForCausalLM"], rope_theta=100000.0, rms_norm_eps=1e-5,
                  attention_bias=False),
    "qwen2": dict(architectures=["Qwen2ForCausalLM"], rope_theta=1000000.0, rms_norm_eps=1e-6,
                  use_sliding_window=False),
    "phi3": dict(architectures=["Phi3ForCausalLM"], rope_theta=10000.0, rms_norm_eps=1e-5,
                 sliding_window=2047),
}


class TinyModel(dict):
    """HF-name -> fp32 array, with .hf_dir, .gguf_path, .config, .name."""


# ---------------------------------------------------------------------------
# storage round trips (what a reader must return)

def permute_qk(w, n_head):
    """llama.cpp's convert_hf_to_gguf LlamaModel.permute: rotate-half rows to interleaved."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def bf16_bits(a):
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def st_stored(a, dtype):
    """Value a safetensors reader returns for a written with dtype F32/F16/BF16."""
    if dtype == "F32":
        return a.astype(np.float32)
    if dtype == "F16":
        return a.astype(np.float16).astype(np.float32)
    return (bf16_bits(a).astype(np.uint32) << 16).view(np.float32)


def gguf_stored(a, qtype):
    """Value a GGUF reader returns for a written as F32/F16/Q8_0."""
    import gguf
    if qtype == "F32":
        return a.astype(np.float32)
    if qtype == "F16":
        return a.astype(np.float16).astype(np.float32)
    t = gguf.GGMLQuantizationType[qtype]
    return gguf.quants.dequantize(gguf.quants.quantize(a.astype(np.float32), t), t).reshape(a.shape)


def is_block_linear(hf_name):
    return hf_name.startswith("model.layers.") and hf_name.endswith("proj.weight")


# ---------------------------------------------------------------------------
# safetensors, by hand

def write_safetensors(path, tensors, dtype="F32", metadata=None):
    """Writes {name: array} as one safetensors file, every tensor as dtype."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        if dtype == "F32":
            raw = np.ascontiguousarray(a, dtype="<f4").tobytes()
        elif dtype == "F16":
            raw = np.ascontiguousarray(a, dtype="<f2").tobytes()
        else:
            raw = bf16_bits(a).astype("<u2").tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path):
    """Returns ({name: fp32 array}, metadata) for an F32/F16/BF16 safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        raw = data[8 + n + b:8 + n + end]
        if e["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, {"F32": "<f4", "F16": "<f2"}[e["dtype"]]).astype(np.float32)
        out[name] = a.reshape(e["shape"])
    return out, meta


# ---------------------------------------------------------------------------
# tokenizer

def _corpus(rng, n_lines=400):
    words = ["the", "model", "ternary", "weights", "hello", "world", "student", "teacher",
             "learns", "from", "tokens", "and", "bits", "42", "2024", "is", "a", "of"]
    letters = list("abcdefghijklmnopqrstuvwxyz")
    for _ in range(n_lines):
        k = int(rng.integers(3, 12))
        line = [words[int(rng.integers(len(words)))] if rng.random() < 0.7
                else "".join(rng.choice(letters, int(rng.integers(2, 7)))) for _ in range(k)]
        yield " ".join(line) + "."


def train_tokenizer(vocab, seed):
    """A byte-level BPE Tokenizer with SPECIALS at ids 0..2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(_corpus(np.random.default_rng(seed))), trainer)
    return tok


def _gguf_vocab(tok):
    j = json.loads(tok.to_str())
    vocab = tok.get_vocab(with_added_tokens=True)
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    types = [3 if t in SPECIALS else 1 for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    return tokens, types, merges


# ---------------------------------------------------------------------------
# weights

def make_config(arch, dim, n_layers, n_heads, n_kv_heads, hidden, vocab, tied):
    cfg = {
        "model_type": arch, "hidden_size": dim, "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads, "num_key_value_heads": n_kv_heads,
        "intermediate_size": hidden, "vocab_size": vocab, "max_position_embeddings": 256,
        "tie_word_embeddings": tied, "hidden_act": "silu", "rope_scaling": None,
        "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2,
    }
    cfg.update(ARCH_CONFIG[arch])
    return cfg


def make_weights(cfg, seed):
    """{HF name: fp32 array} for cfg, seeded, no zeros."""
    rng = np.random.default_rng(seed)
    arch, dim, hid = cfg["model_type"], cfg["hidden_size"], cfg["intermediate_size"]
    hd = dim // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd

    def lin(out, inp):
        return (rng.standard_normal((out, inp)) / np.sqrt(inp)).astype(np.float32)

    def vec(n, base):
        return (base + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {"model.embed_tokens.weight": (0.5 * rng.standard_normal((cfg["vocab_size"], dim))).astype(np.float32)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = vec(dim, 1.0)
        if arch == "phi3":
            w[p + "self_attn.qkv_proj.weight"] = lin(q + 2 * kv, dim)
        else:
            for n, rows in (("q", q), ("k", kv), ("v", kv)):
                w[p + f"self_attn.{n}_proj.weight"] = lin(rows, dim)
                if arch == "qwen2":
                    w[p + f"self_attn.{n}_proj.bias"] = vec(rows, 0.0)
        w[p + "self_attn.o_proj.weight"] = lin(dim, q)
        w[p + "post_attention_layernorm.weight"] = vec(dim, 1.0)
        if arch == "phi3":
            w[p + "mlp.gate_up_proj.weight"] = lin(2 * hid, dim)
        else:
            w[p + "mlp.gate_proj.weight"] = lin(hid, dim)
            w[p + "mlp.up_proj.weight"] = lin(hid, dim)
        w[p + "mlp.down_proj.weight"] = lin(dim, hid)
    w["model.norm.weight"] = vec(dim, 1.0)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = lin(cfg["vocab_size"], dim)
    return w


GGUF_STEMS = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.qkv_proj": "attn_qkv", "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.gate_up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
GGUF_TOP = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
            "lm_head.weight": "output.weight"}


def gguf_name(hf_name):
    """Canonical (GGUF) name of an HF weight name."""
    if hf_name in GGUF_TOP:
        return GGUF_TOP[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)
    stem, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{GGUF_STEMS[stem]}.{kind}"


def gguf_tensor(hf_name, a, cfg):
    """The fp32 tensor as the GGUF stores it (llama q/k permuted)."""
    if cfg["model_type"] in ("llama", "mistral"):
        if hf_name.endswith("q_proj.weight"):
            return permute_qk(a, cfg["num_attention_heads"])
        if hf_name.endswith("k_proj.weight"):
            return permute_qk(a, cfg["num_key_value_heads"])
    return a


# ---------------------------------------------------------------------------
# writers

def write_hf(folder, cfg, weights, tok, st_dtype="F32", shards=1):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    names = list(weights)
    if shards == 1:
        write_safetensors(os.path.join(folder, "model.safetensors"), weights, st_dtype, {"format": "pt"})
    else:
        weight_map = {}
        for s in range(shards):
            part = names[s * len(names) // shards:(s + 1) * len(names) // shards]
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            write_safetensors(os.path.join(folder, fname), {n: weights[n] for n in part}, st_dtype)
            weight_map.update({n: fname for n in part})
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)
    tok.save(os.path.join(folder, "tokenizer.json"))
    tc = {"add_bos_token": False, "add_eos_token": False, "bos_token": "<|im_start|>",
          "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
          "model_max_length": cfg["max_position_embeddings"], "tokenizer_class": "GPT2Tokenizer",
          "clean_up_tokenization_spaces": False, "chat_template": CHATML_TEMPLATE}
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, indent=2)
    with open(os.path.join(folder, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": [2, 0]}, f, indent=2)


def write_gguf(path, name, cfg, weights, tok, gguf_qtype="F32", extra=None):
    """Writes weights (HF names) as a GGUF; extra: {GGUF name: array, or (raw bytes array,
    GGMLQuantizationType) for pre-quantised data} added as is."""
    import gguf
    arch = cfg["model_type"]
    w = gguf.GGUFWriter(path, arch)
    w.add_name(name)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_dimension_count(cfg["hidden_size"] // cfg["num_attention_heads"])
    if arch == "llama":  # the others exercise the token-list fallback
        w.add_vocab_size(cfg["vocab_size"])
    tokens, types, merges = _gguf_vocab(tok)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML_TEMPLATE)
    for hf_name, a in weights.items():
        t = gguf_tensor(hf_name, a, cfg)
        if not is_block_linear(hf_name) or gguf_qtype == "F32":
            w.add_tensor(gguf_name(hf_name), t)
        elif gguf_qtype == "F16":
            w.add_tensor(gguf_name(hf_name), t.astype(np.float16))
        else:
            qt = gguf.GGMLQuantizationType[gguf_qtype]
            w.add_tensor(gguf_name(hf_name), gguf.quants.quantize(t, qt), raw_dtype=qt)
    for gname, a in (extra or {}).items():
        if isinstance(a, tuple):
            w.add_tensor(gname, a[0], raw_dtype=a[1])
        else:
            w.add_tensor(gname, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_tiny(outdir, arch="llama", seed=0, fmt="both", dim=64, n_layers=2, n_heads=4,
               n_kv_heads=2, hidden=96, vocab=320, tied=False, gguf_qtype="F32",
               st_dtype="F32", shards=1):
    """Writes outdir/tiny-<arch>/ (HF) and/or outdir/tiny-<arch>.gguf; returns a TinyModel.

    vocab is the BPE trainer's target; config vocab_size is the size reached.
    gguf_qtype ("F32", "F16", "Q8_0") applies to the block linears of the GGUF;
    st_dtype ("F32", "F16", "BF16") to every safetensors tensor; shards > 1
    writes model.safetensors.index.json with that many shard files."""
    os.makedirs(outdir, exist_ok=True)
    tok = train_tokenizer(vocab, seed)
    cfg = make_config(arch, dim, n_layers, n_heads, n_kv_heads, hidden, tok.get_vocab_size(), tied)
    name = f"tiny-{arch}"
    out = TinyModel(make_weights(cfg, seed))
    out.config, out.name, out.hf_dir, out.gguf_path = cfg, name, None, None
    if fmt in ("hf", "both"):
        out.hf_dir = os.path.join(outdir, name)
        write_hf(out.hf_dir, cfg, out, tok, st_dtype, shards)
    if fmt in ("gguf", "both"):
        out.gguf_path = os.path.join(outdir, name + ".gguf")
        write_gguf(out.gguf_path, name, cfg, out, tok, gguf_qtype)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--arch", default="llama", choices=sorted(ARCH_CONFIG))
    ap.add_argument("--fmt", default="both", choices=["gguf", "hf", "both"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--n-layers", type=int, default=2)
    ap.add_argument("--n-heads", type=int, default=4)
    ap.add_argument("--n-kv-heads", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--vocab", type=int, default=320)
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--gguf-qtype", default="F32", choices=["F32", "F16", "Q8_0"])
    ap.add_argument("--st-dtype", default="F32", choices=["F32", "F16", "BF16"])
    ap.add_argument("--shards", type=int, default=1)
    a = ap.parse_args()
    m = write_tiny(a.outdir, a.arch, a.seed, a.fmt, a.dim, a.n_layers, a.n_heads, a.n_kv_heads,
                   a.hidden, a.vocab, a.tied, a.gguf_qtype, a.st_dtype, a.shards)
    for p in (m.hf_dir, m.gguf_path):
        if p:
            print(p)


if __name__ == "__main__":
    main()
