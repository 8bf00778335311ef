"""bench_configs.py - the model shapes the GPU benchmarks run (HF config.json
keys), and reading a shape from a config.json, a Hugging Face folder or a
llama GGUF. Shared by floors.py, torch_student.py and make_bench_model.py.

    default  SmolLM2-135M-Instruct, the project's default teacher
    1b       a Llama-3.2-1B-shaped model (tied embeddings as in Llama 3.2,
             no RoPE scaling: bitlab refuses it and timings don't depend on it)
    tiny     a smoke-test shape (seconds on a CPU)
"""
from __future__ import annotations

import json
import os

CONFIGS = {
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 512,
             "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True},
    "default": {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
                "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
                "rope_theta": 100000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True},
    "1b": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
           "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256,
           "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True},
}

REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "vocab_size")


def dims(cfg: dict) -> dict:
    """Short names for a config's shape, validated."""
    d = {"dim": int(cfg["hidden_size"]), "n_layers": int(cfg["num_hidden_layers"]),
         "nh": int(cfg["num_attention_heads"]),
         "nkv": int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"]),
         "hidden": int(cfg["intermediate_size"]), "vocab": int(cfg["vocab_size"]),
         "tied": bool(cfg.get("tie_word_embeddings", True))}
    d["hd"] = int(cfg.get("head_dim") or d["dim"] // d["nh"])
    if min(d["dim"], d["n_layers"], d["nh"], d["nkv"], d["hidden"], d["vocab"], d["hd"]) < 1 \
            or d["nh"] % d["nkv"] or d["hd"] % 2:
        raise ValueError(f"inconsistent model shape {d}")
    return d


def _from_json(path: str) -> dict:
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read a config ({e})") from e
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    if cfg.get("rope_scaling"):
        raise ValueError(f"{path}: rope_scaling is not supported (bitlab refuses it)")
    cfg.setdefault("rope_theta", 10000.0)
    cfg.setdefault("rms_norm_eps", 1e-5)
    cfg.setdefault("tie_word_embeddings", False)
    return cfg


def _from_gguf(path: str) -> dict:
    """The shape from a llama GGUF's metadata (no tensor data is read)."""
    import gguf
    r = gguf.GGUFReader(path)

    def field(key, default=None):
        f = r.fields.get(key)
        return default if f is None else f.contents()

    arch = field("general.architecture")
    if arch != "llama":
        raise ValueError(f"{path}: only llama GGUFs are supported here (got {arch})")
    names = {t.name: t for t in r.tensors}
    if "token_embd.weight" not in names:
        raise ValueError(f"{path}: no token_embd.weight")
    nh = int(field("llama.attention.head_count"))
    return {"hidden_size": int(field("llama.embedding_length")),
            "num_hidden_layers": int(field("llama.block_count")),
            "num_attention_heads": nh,
            "num_key_value_heads": int(field("llama.attention.head_count_kv", nh)),
            "intermediate_size": int(field("llama.feed_forward_length")),
            "vocab_size": int(names["token_embd.weight"].shape[-1]),
            "rope_theta": float(field("llama.rope.freq_base", 10000.0)),
            "rms_norm_eps": float(field("llama.attention.layer_norm_rms_epsilon", 1e-5)),
            "tie_word_embeddings": "output.weight" not in names}


def resolve_config(spec: str) -> tuple[dict, str]:
    """(config, kind) for a preset name, a config.json, an HF folder or a
    .gguf; kind is "preset", "json" or "model" (a file that holds weights)."""
    if spec in CONFIGS:
        return dict(CONFIGS[spec]), "preset"
    if os.path.isdir(spec):
        return _from_json(os.path.join(spec, "config.json")), "model"
    if spec.endswith(".gguf"):
        if not os.path.exists(spec):
            raise ValueError(f"{spec}: no such file")
        return _from_gguf(spec), "model"
    if spec.endswith(".json"):
        return _from_json(spec), "json"
    raise ValueError(f"--config {spec}: expected one of {', '.join(CONFIGS)}, a .json config, "
                     "an HF folder or a .gguf")
