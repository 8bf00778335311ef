"""test_model_load.py - bl_model_load on GGUF files and HF folders against numpy.

Writes tiny random models of every arch with make_tiny_model (HF safetensors
in F32/F16/BF16, single file and sharded; GGUF in F32/F16/Q8_0), loads each
with tests/tools/model_dump and checks the config and every weight (exactly:
the expected values are the stored values decoded by numpy / the gguf
package, llama GGUF q/k permuted as llama.cpp does). Then feeds corrupted
inputs and checks each fails cleanly (exit 1, message naming the file and
field, no sanitizer report). Finally, if the real SmolLM2 GGUF is present,
checks its config and a few tensors against the gguf package.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402

REAL_MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
DUMP = os.environ.get("BITLAB_MODEL_DUMP") or os.path.join(os.environ.get("BITLAB_BUILD_DIR", "build"),
                                                           "model_dump")
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run_dump(model, out):
    p = subprocess.run([DUMP, model, out], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stderr


def load(model, tmp):
    out = os.path.join(tmp, "dump.safetensors")
    rc, err = run_dump(model, out)
    if rc != 0:
        check(False, f"load {model}: rc={rc} {err.strip()}")
        return None, None
    return tiny.read_safetensors(out)


# ---------------------------------------------------------------------------
# loading matches numpy

CASES = [
    # arch, tied, gguf_qtype, st_dtype, shards
    ("llama", False, "F32", "F32", 1),
    ("llama", False, "Q8_0", "BF16", 2),
    ("qwen2", True, "F16", "BF16", 1),
    ("qwen2", False, "F32", "F32", 2),
    ("phi3", False, "Q8_0", "F16", 2),
    ("phi3", False, "F32", "F32", 1),
]


def expected_weights(w, fmt, qtype, st_dtype):
    """canonical name -> the fp32 values the loader must produce."""
    exp = {}
    for hf_name, a in w.items():
        if fmt == "hf":
            exp[tiny.gguf_name(hf_name)] = tiny.st_stored(a, st_dtype)
        else:
            t = tiny.gguf_tensor(hf_name, a, w.config)
            exp[tiny.gguf_name(hf_name)] = tiny.gguf_stored(t, qtype if tiny.is_block_linear(hf_name) else "F32")
    return exp


def check_config(meta, w, fmt, tag):
    c = w.config
    want = {
        "arch": c["model_type"], "dim": str(c["hidden_size"]), "n_layers": str(c["num_hidden_layers"]),
        "n_heads": str(c["num_attention_heads"]), "n_kv_heads": str(c["num_key_value_heads"]),
        "head_dim": str(c["hidden_size"] // c["num_attention_heads"]),
        "hidden_dim": str(c["intermediate_size"]), "vocab_size": str(c["vocab_size"]),
        "max_seq_len": str(c["max_position_embeddings"]),
        "tied_embeddings": str(int(c["tie_word_embeddings"])),
        "rope_interleaved": str(int(fmt == "gguf" and c["model_type"] == "llama")),
        "qkv_bias": str(int(c["model_type"] == "qwen2")),
        "fused_qkv": str(int(c["model_type"] == "phi3")),
        "fused_gate_up": str(int(c["model_type"] == "phi3")),
        "name": w.name, "chat_template": tiny.CHATML_TEMPLATE, "stop_tokens": "2,0",
    }
    for k, v in want.items():
        check(meta.get(k) == v, f"{tag}: {k} = {meta.get(k)!r} (want {v!r})")
    for k, v in (("rope_theta", c["rope_theta"]), ("norm_eps", c["rms_norm_eps"])):
        check(np.float32(meta[k]) == np.float32(v), f"{tag}: {k} = {meta[k]} (want {v})")
    n_params = sum(a.size for a in w.values())
    check(meta["param_count"] == str(n_params), f"{tag}: param_count {meta['param_count']} == {n_params}")
    check(meta["weight_bytes"] == str(4 * n_params), f"{tag}: weight_bytes {meta['weight_bytes']}")


def test_load(tmp):
    for i, (arch, tied, qtype, st_dtype, shards) in enumerate(CASES):
        d = os.path.join(tmp, f"case{i}")
        w = tiny.write_tiny(d, arch=arch, seed=100 + i, tied=tied, gguf_qtype=qtype,
                            st_dtype=st_dtype, shards=shards)
        for fmt, path in (("hf", w.hf_dir), ("gguf", w.gguf_path)):
            tag = f"{arch} {fmt} ({qtype if fmt == 'gguf' else st_dtype}, tied={tied}, shards={shards})"
            got, meta = load(path, d)
            if got is None:
                continue
            check_config(meta, w, fmt, tag)
            exp = expected_weights(w, fmt, qtype, st_dtype)
            check(sorted(got) == sorted(exp), f"{tag}: weight names {sorted(set(got) ^ set(exp))}")
            bad = [n for n in exp if n in got and not (got[n].shape == exp[n].shape
                                                        and np.array_equal(got[n], exp[n]))]
            check(not bad, f"{tag}: {len(exp)} weights equal numpy exactly (differ: {bad[:4]})")


# ---------------------------------------------------------------------------
# corrupted inputs

def edit_json(path, fn):
    with open(path) as f:
        j = json.load(f)
    fn(j)
    with open(path, "w") as f:
        json.dump(j, f)


def edit_st_header(path, fn):
    """Applies fn to the parsed safetensors header and rewrites it, data unchanged."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    fn(header)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data[8 + n:])


def write_bytes(path, fn):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(fn(data))


def rewrite_gguf_table(src, dst, edit):
    """Rewrites src's tensor table, data section unchanged: edit(infos) gets and returns a list of
    [name, ne list, ggml type, offset] (drop, reorder or change entries)."""
    import gguf
    r = gguf.GGUFReader(src)
    with open(src, "rb") as f:
        data = f.read()
    start = min(t.field.offset for t in r.tensors)
    data_start = min(int(t.data_offset) for t in r.tensors)
    infos, at = [], start
    for _ in r.tensors:
        (n,) = struct.unpack_from("<Q", data, at)
        name = data[at + 8:at + 8 + n]
        at += 8 + n
        (nd,) = struct.unpack_from("<I", data, at)
        ne = list(struct.unpack_from(f"<{nd}Q", data, at + 4))
        at += 4 + 8 * nd
        ttype, off = struct.unpack_from("<IQ", data, at)
        at += 12
        infos.append([name, ne, ttype, off])
    infos = edit(infos)
    head = bytearray(data[:start])
    struct.pack_into("<Q", head, 8, len(infos))
    for name, ne, ttype, off in infos:
        head += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(ne))
        head += b"".join(struct.pack("<Q", x) for x in ne) + struct.pack("<IQ", ttype, off)
    head += b"\0" * ((-len(head)) % 32)
    with open(dst, "wb") as f:
        f.write(bytes(head) + data[data_start:])


def expect_fail(tag, model, tmp, *needles):
    rc, err = run_dump(model, os.path.join(tmp, "x.safetensors"))
    sanitizer = any(m in err for m in SANITIZER_MARKS)
    missing = [s for s in needles if s not in err]
    check(rc == 1 and not sanitizer and not missing,
          f"corrupt {tag}: rc={rc} message names {needles}: {err.strip()[:300]}")


def test_corrupt(tmp):
    base = tiny.write_tiny(os.path.join(tmp, "base"), arch="llama", seed=7)
    cfg_w = tiny.write_tiny(os.path.join(tmp, "p3"), arch="phi3", seed=8, fmt="hf")
    q_name = "model.layers.0.self_attn.q_proj.weight"
    n = [0]

    def fresh(src=base.hf_dir):
        n[0] += 1
        d = os.path.join(tmp, f"bad{n[0]}")
        shutil.copytree(src, d)
        return d, os.path.join(d, "config.json"), os.path.join(d, "model.safetensors")

    d, cfg, st = fresh()
    edit_json(cfg, lambda j: j.pop("hidden_size"))
    expect_fail("config missing field", d, tmp, "config.json", "hidden_size")
    d, cfg, st = fresh()
    edit_json(cfg, lambda j: j.update(num_hidden_layers="2"))
    expect_fail("config wrong type", d, tmp, "config.json", "num_hidden_layers")
    d, cfg, st = fresh()
    edit_json(cfg, lambda j: j.update(rms_norm_eps=[1e-5]))
    expect_fail("config wrong float type", d, tmp, "config.json", "rms_norm_eps")
    d, cfg, st = fresh()
    write_bytes(cfg, lambda b: b[:len(b) // 2])
    expect_fail("config bad JSON", d, tmp, "config.json", "invalid JSON")
    d, cfg, st = fresh()
    os.remove(cfg)
    expect_fail("config.json absent", d, tmp, "config.json")
    d, cfg, st = fresh()
    edit_json(cfg, lambda j: j.update(rope_scaling={"type": "linear", "factor": 2.0}))
    expect_fail("rope_scaling", d, tmp, "config.json", "rope_scaling")
    d, cfg, st = fresh()
    edit_json(cfg, lambda j: j.update(model_type="gpt2"))
    expect_fail("unknown model_type", d, tmp, "config.json", "model_type", "gpt2")
    d, cfg, st = fresh()
    edit_json(cfg, lambda j: j.update(num_key_value_heads=3))
    expect_fail("kv heads do not divide heads", d, tmp, "config.json", "n_kv_heads")
    d, cfg, st = fresh(cfg_w.hf_dir)
    edit_json(cfg, lambda j: j.update(intermediate_size=64))
    expect_fail("phi3 shape mismatch via config", d, tmp, "model.safetensors",
                "model.layers.0.mlp.gate_up_proj.weight", "expected shape [128, 64], got [192, 64]")

    d, cfg, st = fresh()
    write_bytes(st, lambda b: b[:4])
    expect_fail("safetensors shorter than 8 bytes", d, tmp, "model.safetensors", "too small")
    d, cfg, st = fresh()
    write_bytes(st, lambda b: b[:200])
    expect_fail("safetensors header truncated", d, tmp, "model.safetensors", "header length")
    d, cfg, st = fresh()
    write_bytes(st, lambda b: b[:8] + b"{not json" + b[17:])
    expect_fail("safetensors header not JSON", d, tmp, "model.safetensors", "header")
    d, cfg, st = fresh()
    write_bytes(st, lambda b: b[:-16])
    expect_fail("safetensors data truncated", d, tmp, "model.safetensors", "data_offsets")
    d, cfg, st = fresh()
    edit_st_header(st, lambda h: h[q_name].update(data_offsets=[0, 10 ** 12]))
    expect_fail("bad data_offsets", d, tmp, "model.safetensors", q_name, "data_offsets")
    d, cfg, st = fresh()
    edit_st_header(st, lambda h: h[q_name].update(data_offsets=[4, 4 + 64 * 64 * 4 - 8]))
    expect_fail("data_offsets size mismatch", d, tmp, "model.safetensors", q_name, "data_offsets")
    d, cfg, st = fresh()
    edit_st_header(st, lambda h: h[q_name].update(data_offsets=[x - 4 for x in h[q_name]["data_offsets"]]))
    expect_fail("overlapping data_offsets", d, tmp, "model.safetensors", q_name, "overlap")
    d, cfg, st = fresh()
    write_bytes(st, lambda b: b + bytes(16))
    expect_fail("bytes unclaimed by any tensor", d, tmp, "model.safetensors", "16 bytes unclaimed")
    d, cfg, st = fresh()
    edit_st_header(st, lambda h: h[q_name].update(shape=[2 ** 40, 2 ** 40]))
    expect_fail("shape overflow", d, tmp, "model.safetensors", q_name)
    d, cfg, st = fresh()
    edit_st_header(st, lambda h: h[q_name].update(dtype="Q7"))
    expect_fail("unknown dtype", d, tmp, "model.safetensors", q_name, "Q7")
    d, cfg, st = fresh()
    edit_st_header(st, lambda h: h[q_name].update(dtype="I32"))
    expect_fail("unsupported dtype", d, tmp, "model.safetensors", q_name, "I32")
    d, cfg, st = fresh()
    edit_st_header(st, lambda h: h[q_name].update(shape=[32, 128]))
    expect_fail("shape mismatch", d, tmp, "model.safetensors", q_name,
                "expected shape [64, 64], got [32, 128]")
    d, cfg, st = fresh()
    edit_st_header(st, lambda h: h.pop("model.layers.1.mlp.down_proj.weight"))
    expect_fail("tensor dropped from the header", d, tmp, "model.safetensors", "unclaimed")
    d, cfg, st = fresh()
    tiny.write_safetensors(st, {k: v for k, v in base.items() if k != "model.layers.1.mlp.down_proj.weight"})
    expect_fail("missing tensor", d, tmp, "model.safetensors", "missing tensor",
                "model.layers.1.mlp.down_proj.weight")
    d, cfg, st = fresh()
    os.remove(st)
    expect_fail("no weights file", d, tmp, "model.safetensors")

    # sharded: a shard the index names is missing, or lacks its tensor
    sh = tiny.write_tiny(os.path.join(tmp, "sh"), arch="qwen2", seed=9, fmt="hf", shards=2)
    d, cfg, st = fresh(sh.hf_dir)
    os.remove(os.path.join(d, "model-00002-of-00002.safetensors"))
    expect_fail("missing shard", d, tmp, "model-00002-of-00002.safetensors")
    d, cfg, st = fresh(sh.hf_dir)
    idx = os.path.join(d, "model.safetensors.index.json")
    edit_json(idx, lambda j: j["weight_map"].update({"model.norm.weight": "model-00001-of-00002.safetensors"}))
    expect_fail("index points at the wrong shard", d, tmp, "model.safetensors.index.json",
                "model.norm.weight")

    # GGUF: wrong arch, missing tensor, wrong shape
    tok = tiny.train_tokenizer(320, 7)
    p = os.path.join(tmp, "badarch.gguf")
    tiny.write_gguf(p, "x", dict(base.config, model_type="gpt2"), base, tok)
    expect_fail("gguf unknown arch", p, tmp, "badarch.gguf", "general.architecture", "gpt2")
    p = os.path.join(tmp, "missing.gguf")
    tiny.write_gguf(p, "x", base.config, {k: v for k, v in base.items()
                                          if k != "model.layers.1.mlp.down_proj.weight"}, tok)
    expect_fail("gguf missing tensor", p, tmp, "missing.gguf", "blk.1.ffn_down.weight")
    p = os.path.join(tmp, "shape.gguf")
    k_name = "model.layers.0.self_attn.k_proj.weight"
    tiny.write_gguf(p, "x", base.config, dict(base, **{k_name: np.ascontiguousarray(base[k_name].T)}), tok)
    expect_fail("gguf shape mismatch", p, tmp, "shape.gguf", "blk.0.attn_k.weight",
                "expected shape [32, 64], got [64, 32]")
    p = os.path.join(tmp, "ropefreqs.gguf")
    tiny.write_gguf(p, "x", base.config, base, tok, extra={"rope_freqs.weight": np.ones(8, np.float32)})
    expect_fail("gguf rope scaling", p, tmp, "ropefreqs.gguf", "rope_freqs.weight", "not supported")
    p = os.path.join(tmp, "trunc.gguf")
    shutil.copy(base.gguf_path, p)
    write_bytes(p, lambda b: b[:len(b) - 1000])
    expect_fail("gguf truncated", p, tmp, "trunc.gguf")
    expect_fail("no such path", os.path.join(tmp, "nope"), tmp, "nope")

    # issue 11: a tensor table that does not describe the data, wrong tensor types, sizes
    # from the header that the tensors contradict, unsupported architectures
    p = os.path.join(tmp, "short.gguf")
    rewrite_gguf_table(base.gguf_path, p, lambda t: [i for i in t if i[0] != b"output.weight"])
    expect_fail("gguf n_tensors one short (output.weight dropped)", p, tmp, "short.gguf",
                "the tensor table does not")
    p = os.path.join(tmp, "overlap.gguf")
    rewrite_gguf_table(base.gguf_path, p, lambda t: [i if k != 3 else i[:3] + [t[2][3]] for k, i in enumerate(t)])
    expect_fail("gguf overlapping tensors", p, tmp, "overlap.gguf", "overlaps tensor")
    p = os.path.join(tmp, "order.gguf")
    rewrite_gguf_table(base.gguf_path, p, lambda t: [t[1], t[0]] + t[2:])
    expect_fail("gguf tensors out of order", p, tmp, "order.gguf", "out of order")
    p = os.path.join(tmp, "normf16.gguf")
    rewrite_gguf_table(base.gguf_path, p,
                       lambda t: [i[:2] + [1, i[3]] if i[0] == b"blk.0.ffn_norm.weight" else i for i in t])
    expect_fail("gguf norm type edited F32 -> F16", p, tmp, "normf16.gguf", "the tensor table does not")
    import gguf
    norm = "model.layers.0.post_attention_layernorm.weight"
    q8 = gguf.quants.quantize(base[norm], gguf.GGMLQuantizationType.Q8_0)
    p = os.path.join(tmp, "normq8.gguf")
    tiny.write_gguf(p, "x", base.config, {k: v for k, v in base.items() if k != norm}, tok,
                    extra={"blk.0.ffn_norm.weight": (q8, gguf.GGMLQuantizationType.Q8_0)})
    expect_fail("gguf Q8_0 norm", p, tmp, "normq8.gguf", "blk.0.ffn_norm.weight", "type Q8_0",
                "must be F32, F16 or BF16")
    p = os.path.join(tmp, "normf16ok.gguf")
    tiny.write_gguf(p, "x", base.config, {k: v for k, v in base.items() if k != norm}, tok,
                    extra={"blk.0.ffn_norm.weight": base[norm].astype(np.float16)})
    got, _ = load(p, tmp)
    check(got is not None, "a consistently written F16 norm is accepted")
    for field, value, needles in (("num_hidden_layers", 10 ** 6, ("llama.block_count = 1000000", "blocks 0..1")),
                                  ("vocab_size", 10 ** 9, ("vocab_size 1000000000", "token_embd.weight"))):
        p = os.path.join(tmp, f"big_{field}.gguf")
        tiny.write_gguf(p, "x", dict(base.config, **{field: value}), base, tok)
        t0 = time.time()
        expect_fail(f"gguf {field} = {value}", p, tmp, f"big_{field}.gguf", *needles)
        check(time.time() - t0 < 10, f"gguf {field} = {value} refused before allocating ({time.time() - t0:.1f} s)")
        d, cfg, st = fresh()
        edit_json(cfg, lambda j: j.update({field: value}))
        t0 = time.time()
        expect_fail(f"config {field} = {value}", d, tmp, "config.json", field)
        check(time.time() - t0 < 10, f"config {field} = {value} refused before allocating ({time.time() - t0:.1f} s)")
    d, cfg, st = fresh()
    edit_json(cfg, lambda j: j.update(intermediate_size=10 ** 8))
    expect_fail("config intermediate_size = 1e8", d, tmp, "model.safetensors", "mlp.gate_proj.weight",
                "expected shape [100000000, 64]")
    d, cfg, st = fresh()
    edit_json(cfg, lambda j: j.update(architectures=["GPT2LMHeadModel"]))
    expect_fail("config architectures GPT2LMHeadModel", d, tmp, "config.json", "GPT2LMHeadModel",
                "not supported", "LlamaForCausalLM")
    d, cfg, st = fresh()
    edit_json(cfg, lambda j: j.update(architectures=["Qwen2ForCausalLM"]))
    expect_fail("config architectures contradict model_type", d, tmp, "config.json", "Qwen2ForCausalLM",
                "contradicts model_type")

    # unknown extra tensors (rotary inv_freq buffers) are ignored
    p = os.path.join(tmp, "extra.gguf")
    tiny.write_gguf(p, "x", base.config, base, tok, extra={"blk.0.unknown.weight": np.ones(8, np.float32)})
    got, _ = load(p, tmp)
    check(got is not None, "extra unknown GGUF tensor is ignored")
    d, cfg, st = fresh()
    extra = dict(base, **{"model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(8, np.float32) * 0.5})
    tiny.write_safetensors(st, extra)
    got, _ = load(d, tmp)
    check(got is not None and np.array_equal(got["blk.0.attn_q.weight"], base[q_name]),
          "extra unknown tensor is ignored")


# ---------------------------------------------------------------------------
# the real model, when present

def test_real_model(tmp):
    if not os.path.exists(REAL_MODEL):
        print(f"skip real model: {REAL_MODEL} not present")
        return
    import gguf
    got, meta = load(REAL_MODEL, tmp)
    if got is None:
        return
    want = {"arch": "llama", "dim": "576", "n_layers": "30", "n_heads": "9", "n_kv_heads": "3",
            "head_dim": "64", "hidden_dim": "1536", "vocab_size": "49152", "tied_embeddings": "1",
            "rope_interleaved": "1"}
    for k, v in want.items():
        check(meta.get(k) == v, f"SmolLM2: {k} = {meta.get(k)!r} (want {v!r})")
    r = gguf.GGUFReader(REAL_MODEL)
    tensors = {t.name: t for t in r.tensors}
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight", "output_norm.weight"):
        t = tensors[name]
        ref = gguf.quants.dequantize(t.data, t.tensor_type).reshape(got[name].shape)
        check(np.array_equal(got[name], ref), f"SmolLM2: {name} ({t.tensor_type.name}) equals gguf dequantize")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        test_load(tmp)
        test_corrupt(tmp)
        test_real_model(tmp)
    print(f"{len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
