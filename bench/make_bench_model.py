#!/usr/bin/env python3
"""make_bench_model.py - writes a Hugging Face folder with random weights of
a benchmark shape (bench_configs.py: default, 1b, tiny, or a config.json),
for `bitlab bench step --model FOLDER` where the real weights are not at
hand (the GPU machine: models/ does not travel, nothing can be downloaded).
Timings do not depend on the weights' values.

Weights as bench/torch_student.py's random_weights (float32 safetensors);
the tokenizer is tests/py/make_tiny_model.py's small byte-level BPE (the
step draws token ids from the whole embedding table and never tokenizes).

    python3 bench/make_bench_model.py --config 1b OUTDIR [--seed 0]
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "py"))
import make_tiny_model as tiny  # noqa: E402
import torch_student as ts  # noqa: E402
from bench_configs import CONFIGS, resolve_config  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", help="the folder to write (config.json, model.safetensors, tokenizer)")
    ap.add_argument("--config", default="default", help=f"{', '.join(CONFIGS)} or a config.json")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        cfg, kind = resolve_config(a.config)
    except (ValueError, OSError) as e:
        sys.exit(f"make_bench_model: {e}")
    if kind == "model":
        sys.exit(f"make_bench_model: --config {a.config} already holds weights")
    full = tiny.make_config("llama", cfg["hidden_size"], cfg["num_hidden_layers"],
                            cfg["num_attention_heads"],
                            cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
                            cfg["intermediate_size"], cfg["vocab_size"],
                            bool(cfg.get("tie_word_embeddings", True)))
    full.update(rope_theta=float(cfg["rope_theta"]), rms_norm_eps=float(cfg["rms_norm_eps"]),
                max_position_embeddings=8192)
    torch.set_num_threads(os.cpu_count() or 1)
    weights = {k: v.numpy() for k, v in ts.random_weights(full, "cpu", torch.float32, a.seed).items()}
    tok = tiny.train_tokenizer(320, a.seed)
    tiny.write_hf(a.outdir, full, weights, tok, st_dtype="F32")
    n = sum(v.size for v in weights.values())
    print(f"make_bench_model: {a.outdir}: {n / 1e6:.1f} M random parameters ({a.config})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
