"""test_export_gguf.py - `bitlab export` and bitlab.export{} to GGUF, end to end.

Tiny random llama, qwen2 and phi3 models (make_tiny_model; dim 256 so q/k/v/o/gate/
up rows have 256 in-features -> TQ2_0, hidden 96 -> ffn_down is Q4_0; one
llama with hidden 40 for the F16 fallback), from GGUF files and Hugging Face
folders. A student is trained a few steps with a large LR through
tests/lua/export_train.lua (so its LoRA adapters are far from zero), which
also exports it from the script; then `bitlab export` exports the checkpoint.
Checked:
  (a) with the `gguf` package (an independent reader): tensor types by row
      length, shapes, and dequantised block linears (gguf.quants.dequantize)
      equal to bitlab's Weff at lambda 1 (tests/tools/export_tool weff) up to
      the fp16 rounding of the scale - exactly codes x fp16(scale); llama q/k
      rows from HF folders permuted as convert_hf_to_gguf.py does; norms,
      biases and embeddings exact; architecture keys, tokenizer (verbatim from a
      GGUF source; built from tokenizer.json for HF, compared with the
      `tokenizers` library's vocab and merges), chat template, bitlab.* keys;
      --ternary tq1_0 and --embed f16;
  (b) the exported GGUF loaded by bitlab gives the logits of the student
      inside bitlab (lambda 1, same activation bits) to a tight tolerance;
      `bitlab generate` and `bitlab info` run on it;
  (c) a SubLN student is refused with a clear message, no file written;
  (d) missing / corrupt checkpoints, a checkpoint of another model and bad
      options give clear errors;
  (e) training_manifest.json: base model sha256 (hashlib), steps, tokens seen
      (summed from the metrics log), lambda schedule samples (recomputed),
      loss mix, final metrics (the log's last step), adapters,
      compression_ready, tensor_types (the file's own types).
"""
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402

import gguf  # noqa: E402

BIN = os.environ.get("BITLAB_BIN", "build/bitlab")
TOOL = os.path.join(os.environ.get("BITLAB_BUILD_DIR", "build"), "export_tool")
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
LINEAR_STEMS = ("attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(args, timeout=600):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if any(m in p.stderr for m in SANITIZER_MARKS):
        failures.append(f"sanitizer report from {args[:2]}")
        print(p.stderr[-3000:])
    return p


def field(r, key):
    f = r.fields.get(key)
    return None if f is None else f.contents()


def tensors(r):
    return {t.name: t for t in r.tensors}


def dequant(t):
    """fp32 [rows, cols] of a GGUF tensor, decoded by the gguf package."""
    a = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
    return np.asarray(a, dtype=np.float32).reshape([int(x) for x in reversed(t.shape)])


def read_weff(path):
    w, _ = tiny.read_safetensors(path)
    return w


# ---------------------------------------------------------------------------
# (a) the file against the student

def check_linears(tag, r, weff, cfg, from_hf, ternary="TQ2_0"):
    ts = tensors(r)
    ok_types = ok_vals = ok_exact = True
    worst = 0.0
    n = 0
    for name, t in ts.items():
        stem = name.split(".")[2] if name.startswith("blk.") else ""
        if stem not in LINEAR_STEMS or not name.endswith(".weight"):
            continue
        n += 1
        w = weff[name]
        scale = float(weff[name + ".scale"])
        rows, cols = w.shape
        want = ternary if cols % 256 == 0 else "Q4_0" if cols % 32 == 0 else "F16"
        ok_types &= t.tensor_type.name == want and [int(x) for x in t.shape] == [cols, rows]
        if from_hf and cfg["model_type"] == "llama" and stem in ("attn_q", "attn_k"):
            heads = cfg["num_attention_heads"] if stem == "attn_q" else cfg["num_key_value_heads"]
            w = tiny.permute_qk(w, heads)
        got = dequant(t)
        codes = np.rint(w / scale)
        # Weff is ternary x scale exactly; the file holds the same codes x fp16(scale)
        ok_exact &= bool(np.all(np.isin(codes, (-1, 0, 1))) and np.array_equal(codes * np.float32(scale), w))
        d16 = np.float32(np.float16(scale))
        ok_vals &= bool(np.array_equal(got, (codes * d16).astype(np.float32)))
        worst = max(worst, float(np.max(np.abs(got - w))) / scale)
    check(n > 0 and ok_types, f"{tag}: block linear types by row length ({ternary} / Q4_0 / F16) and shapes")
    check(ok_exact, f"{tag}: bitlab's Weff at lambda 1 is ternary codes x 1/s")
    check(ok_vals and worst <= 2.0 ** -11,
          f"{tag}: dequantised block linears == codes x fp16(scale) (max |diff|/scale {worst:.2e})")


def check_other_tensors(tag, r, model, cfg, embed="F32"):
    ts = tensors(r)
    ok = True
    for hf_name, a in model.items():
        if tiny.is_block_linear(hf_name):
            continue
        name = tiny.gguf_name(hf_name)
        t = ts.get(name)
        if t is None:
            ok = False
            print("missing", name)
            continue
        want = a
        if name in ("token_embd.weight", "output.weight") and embed == "F16":
            want = a.astype(np.float16).astype(np.float32)
        got = dequant(t)
        if not np.array_equal(got.reshape(want.shape), want):
            ok = False
            print("differs", name)
    check(ok, f"{tag}: norms, biases, embeddings and lm_head exact ({embed})")


def check_metadata(tag, r, model, act_bits):
    cfg = model.config
    arch = cfg["model_type"]
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    want = {"general.architecture": arch, f"{arch}.block_count": cfg["num_hidden_layers"],
            f"{arch}.embedding_length": cfg["hidden_size"], f"{arch}.feed_forward_length": cfg["intermediate_size"],
            f"{arch}.attention.head_count": cfg["num_attention_heads"],
            f"{arch}.attention.head_count_kv": cfg["num_key_value_heads"],
            f"{arch}.context_length": cfg["max_position_embeddings"], f"{arch}.rope.dimension_count": hd,
            f"{arch}.vocab_size": cfg["vocab_size"], "general.alignment": 32,
            "bitlab.student": True, "bitlab.act_bits": act_bits,
            "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.bos_token_id": 1,
            "tokenizer.ggml.eos_token_id": 2, "tokenizer.chat_template": tiny.CHATML_TEMPLATE}
    bad = {k: field(r, k) for k, v in want.items() if field(r, k) != v}
    check(not bad, f"{tag}: architecture, tokenizer ids, chat template and bitlab.* keys ({bad})")
    eps_ok = abs(field(r, f"{arch}.attention.layer_norm_rms_epsilon") - cfg["rms_norm_eps"]) < 1e-12 and \
        field(r, f"{arch}.rope.freq_base") == cfg["rope_theta"]
    check(eps_ok, f"{tag}: rope theta and norm eps")
    # the tokenizer as the `tokenizers` library reads tokenizer.json (independent of bitlab)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model.hf_dir, "tokenizer.json"))
    tokens, types, merges = tiny._gguf_vocab(tok)
    check(field(r, "tokenizer.ggml.tokens") == tokens and field(r, "tokenizer.ggml.token_type") == types
          and field(r, "tokenizer.ggml.merges") == merges and field(r, "tokenizer.ggml.pre") == "gpt2",
          f"{tag}: tokens, token types, merges and pre type")


# ---------------------------------------------------------------------------
# (b) logits

def check_logits(tag, model_path, ckpt, exported, tmp, vocab):
    """The exported file through bitlab's inference forward (which quantises
    activations per token for a student GGUF) against the student's training
    forward: tightly with the student's scales rounded to fp16 as the file
    stores them (logits16), and by argmax with its fp32 scales (the rounding
    moves values across actq's rounding thresholds, most at 4 bits)."""
    rng = np.random.default_rng(11)
    ids = rng.integers(3, vocab, size=24).astype("<i4")
    ids_path = os.path.join(tmp, "ids.bin")
    ids.tofile(ids_path)
    out = {k: os.path.join(tmp, k + ".bin") for k in ("student", "student16", "exported")}
    ps = [run([TOOL, "logits", model_path, ckpt, ids_path, out["student"]]),
          run([TOOL, "logits16", model_path, ckpt, ids_path, out["student16"]]),
          run([TOOL, "logits", exported, "-", ids_path, out["exported"]])]
    if any(p.returncode for p in ps):
        check(False, f"{tag}: logits tool runs ({''.join(p.stderr for p in ps)})")
        return
    lg = {k: np.fromfile(v, "<f4").reshape(len(ids), -1) for k, v in out.items()}
    scale = float(np.max(np.abs(lg["student16"])))
    rel = float(np.max(np.abs(lg["student16"] - lg["exported"]))) / scale
    check(rel < 1e-4, f"{tag}: exported GGUF logits == the student's in bitlab with fp16 scales "
                      f"(max rel diff {rel:.2e})")
    agree = float(np.mean(lg["student"].argmax(1) == lg["exported"].argmax(1)))
    check(agree >= 0.9, f"{tag}: exported GGUF argmax == the student's (fp32 scales) at {agree:.0%} of positions")


# ---------------------------------------------------------------------------
# (e) manifest

def check_manifest(tag, man_path, model_path, log_path, act_bits, r):
    with open(man_path) as f:
        m = json.load(f)
    if os.path.isdir(model_path):
        h = hashlib.sha256()
        h.update(open(os.path.join(model_path, "config.json"), "rb").read())
        for n in sorted(x for x in os.listdir(model_path) if x.endswith(".safetensors")):
            h.update(open(os.path.join(model_path, n), "rb").read())
        sha = h.hexdigest()
    else:
        sha = hashlib.sha256(open(model_path, "rb").read()).hexdigest()
    recs = [json.loads(line) for line in open(log_path)]
    steps = [x for x in recs if "event" not in x]
    version = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout.split()[-1]
    check(m["base_model"]["sha256"] == sha and m["base_model"]["path"] == model_path,
          f"{tag}: manifest base model path and sha256")
    check(m["steps"] == 6 and m["tokens_seen"] == sum(x["tokens"] for x in steps),
          f"{tag}: manifest steps and tokens seen ({m.get('tokens_seen')})")
    lam = m["lambda_schedule"]
    want_pts = [[s, min(1.0, 0.5 + 0.5 * (s - 1) / 4)] for s in range(1, 7)]
    check(lam["kind"] == "function" and lam["final"] == 1 and
          all(p[0] == q[0] and abs(p[1] - q[1]) < 1e-12 for p, q in zip(lam["points"], want_pts))
          and len(lam["points"]) == 6, f"{tag}: manifest lambda schedule samples")
    check(m["act_bits_schedule"]["final"] == act_bits and m["student"]["act_bits"] == act_bits,
          f"{tag}: manifest activation bits")
    check(m["student"]["lambda_acts"] is False, f"{tag}: manifest lambda_acts ({m['student']})")
    # every term of bitlab.loss.TERMS, 0 when the mix leaves it out (rel: the relation loss)
    check(m["loss_mix"] == {"ce": 1, "kl": 1, "topk": 0, "cos": 0.5, "mag": 0, "rel": 0, "tau": 2},
          f"{tag}: manifest loss mix ({m.get('loss_mix')})")
    last = steps[-1]
    check(all(m["final_metrics"][k] == last[k] for k in ("ce", "kl", "cos", "total", "grad_norm")),
          f"{tag}: manifest final metrics are the last step's")
    check(m["adapters"] == {"count": 2, "ranks": [4, 4], "alpha": [8, 8]},
          f"{tag}: manifest adapters ({m.get('adapters')})")
    check(m["compression_ready"] is True and m["bitlab_version"] == version and m["format"] == "gguf"
          and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m["created"]) is not None,
          f"{tag}: manifest compression_ready, version, format, UTC date")
    types = {t.name: t.tensor_type.name for t in r.tensors}
    check(m["tensor_types"] == types, f"{tag}: manifest tensor_types are the file's")


# ---------------------------------------------------------------------------

def export_case(tmp, arch, src_fmt, seed, act_bits, hidden=96):
    tag = f"{arch}/{src_fmt}" + (f"/hidden{hidden}" if hidden != 96 else "")
    d = os.path.join(tmp, tag.replace("/", "_"))
    os.makedirs(os.path.join(d, "lua"))
    os.makedirs(os.path.join(d, "cli"))
    model = tiny.write_tiny(d, arch=arch, seed=seed, fmt="both", dim=256, hidden=hidden, n_heads=4,
                            n_kv_heads=2)
    path = model.gguf_path if src_fmt == "gguf" else model.hf_dir
    ckpt, log = os.path.join(d, "s.ckpt"), os.path.join(d, "train.jsonl")
    lua_out = os.path.join(d, "lua", "student.gguf")
    p = run([BIN, "tests/lua/export_train.lua", "--headless", "--log", log, "--", path, ckpt, lua_out,
             str(act_bits)])
    check(p.returncode == 0 and os.path.exists(lua_out), f"{tag}: train + bitlab.export from Lua")
    if p.returncode:
        print(p.stdout[-2000:], p.stderr[-2000:])
        return
    out = os.path.join(d, "cli", "student.gguf")
    p = run([BIN, "export", "--model", path, "--checkpoint", ckpt, "--out", out])
    check(p.returncode == 0 and "exported" in p.stdout, f"{tag}: bitlab export runs")
    if p.returncode:
        print(p.stdout, p.stderr)
        return
    weff_path = os.path.join(d, "weff.safetensors")
    p = run([TOOL, "weff", path, ckpt, weff_path])
    check(p.returncode == 0, f"{tag}: Weff dump")
    weff = read_weff(weff_path)
    r = gguf.GGUFReader(out)
    check_linears(tag, r, weff, model.config, src_fmt == "hf")
    check_other_tensors(tag, r, model, model.config)
    check_metadata(tag, r, model, act_bits)
    with open(lua_out, "rb") as f1, open(out, "rb") as f2:
        check(f1.read() == f2.read(), f"{tag}: bitlab.export and bitlab export write the same file")
    check_logits(tag, path, ckpt, out, d, model.config["vocab_size"])
    check_manifest(tag, os.path.join(d, "cli", "training_manifest.json"), path, log, act_bits, r)
    with open(os.path.join(d, "lua", "training_manifest.json")) as f:
        lm = json.load(f)
    check(lm.get("script_note") == "from export_train.lua" and lm["steps"] == 6,
          f"{tag}: bitlab.export merges the script's manifest table")
    return model, path, ckpt, d


def main():
    tmp = tempfile.mkdtemp(prefix="bitlab_export_")
    # bitlab re-executes itself with OPENBLAS_CORETYPE set on CPUs OpenBLAS
    # misdetects, the test tools do not: one kernel choice for every process
    # keeps W + ΔW bit-identical between them (a code near the ternary
    # threshold could otherwise flip)
    if platform.machine() == "x86_64":
        os.environ.setdefault("OPENBLAS_CORETYPE", "Prescott")
    if not os.access(TOOL, os.X_OK):
        sys.exit(f"FAIL: export_tool not found at {TOOL} (set BITLAB_BUILD_DIR)")

    cases = {}
    for arch, src, seed, bits in (("llama", "gguf", 1, 8), ("llama", "hf", 2, 8),
                                  ("qwen2", "gguf", 3, 4), ("qwen2", "hf", 4, 8)):
        cases[(arch, src)] = export_case(tmp, arch, src, seed, bits)
    export_case(tmp, "llama", "gguf", 5, 8, hidden=40)  # ffn_down rows of 40: F16
    export_case(tmp, "phi3", "gguf", 6, 8)  # fused qkv and gate_up

    model, path, ckpt, d = cases[("llama", "hf")]
    # --ternary tq1_0, --embed f16
    out = os.path.join(d, "tq1.gguf")
    p = run([BIN, "export", "--model", path, "--checkpoint", ckpt, "--out", out, "--ternary", "tq1_0",
             "--embed", "f16"])
    check(p.returncode == 0, "tq1_0 / f16 export runs")
    if p.returncode == 0:
        r = gguf.GGUFReader(out)
        weff = read_weff(os.path.join(d, "weff.safetensors"))
        check_linears("llama/hf tq1_0", r, weff, model.config, True, ternary="TQ1_0")
        check_other_tensors("llama/hf f16", r, model, model.config, embed="F16")

    # bitlab generate / info on an export
    out = os.path.join(d, "cli", "student.gguf")
    p = run([BIN, "generate", "--model", out, "--prompt", "the ternary", "--chat", "--max-tokens", "8"])
    check(p.returncode == 0 and p.stdout.strip() != "", "bitlab generate --chat runs on the export")
    p = run([BIN, "info", "--model", out])
    check(p.returncode == 0 and "bitlab student" in p.stdout and "8 bits per token" in p.stdout
          and re.search(r"blk\.0\.attn_q\.weight\s+TQ2_0", p.stdout) is not None
          and re.search(r"blk\.0\.ffn_down\.weight\s+Q4_0", p.stdout) is not None,
          "bitlab info names the student and each tensor's storage type")

    # (c) SubLN refused
    gmodel, gpath, gckpt, gd = cases[("llama", "gguf")]
    sub_ckpt, sub_out = os.path.join(gd, "subln.ckpt"), os.path.join(gd, "subln.gguf")
    p = run([BIN, "tests/lua/export_train.lua", "--headless", "--", gpath, sub_ckpt, sub_out, "8", "subln"])
    check(p.returncode == 3 and "SubLN" in p.stdout and not os.path.exists(sub_out),
          "bitlab.export refuses a SubLN student")
    p = run([BIN, "export", "--model", gpath, "--checkpoint", sub_ckpt, "--out", sub_out])
    check(p.returncode == 1 and "SubLN" in p.stderr and "refused" in p.stderr and not os.path.exists(sub_out)
          and not any(f.startswith("subln.gguf") for f in os.listdir(gd)),
          f"bitlab export refuses a SubLN student, no file left ({p.stderr.strip()})")

    # --format safetensors: the packed folder (export/packed_safetensors.h) gets the manifest too
    packed = os.path.join(gd, "packed")
    p = run([BIN, "export", "--model", gpath, "--checkpoint", gckpt, "--out", packed, "--format", "safetensors"])
    ok = p.returncode == 0 and os.path.exists(os.path.join(packed, "training_manifest.json"))
    if ok:
        with open(os.path.join(packed, "model.safetensors"), "rb") as f:
            raw = f.read()
        header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
        header.pop("__metadata__", None)
        with open(os.path.join(packed, "training_manifest.json")) as f:
            m = json.load(f)
        ok = m["format"] == "safetensors" and m["steps"] == 6 and \
            set(m["tensor_types"]) == {k for k in header if not k.endswith(".scale")}
    check(ok, "--format safetensors writes the packed folder with its manifest")

    # (d) bad inputs
    out = os.path.join(gd, "bad.gguf")
    p = run([BIN, "export", "--model", gpath, "--checkpoint", os.path.join(gd, "absent.ckpt"), "--out", out])
    check(p.returncode == 1 and "absent.ckpt" in p.stderr and "cannot open" in p.stderr,
          f"missing checkpoint named ({p.stderr.strip()})")
    other = tiny.write_tiny(os.path.join(tmp, "other"), arch="llama", seed=9, fmt="gguf")
    p = run([BIN, "export", "--model", other.gguf_path, "--checkpoint", gckpt, "--out", out])
    check(p.returncode == 1 and "checkpoint of a model with" in p.stderr,
          f"checkpoint of another model refused ({p.stderr.strip()})")
    trunc = os.path.join(gd, "trunc.ckpt")
    with open(gckpt, "rb") as f:
        data = f.read()
    with open(trunc, "wb") as f:
        f.write(data[: len(data) // 2])
    p = run([BIN, "export", "--model", gpath, "--checkpoint", trunc, "--out", out])
    check(p.returncode == 1 and "trunc.ckpt" in p.stderr and "truncated" in p.stderr,
          f"truncated checkpoint refused ({p.stderr.strip()})")
    p = run([BIN, "export", "--model", gpath, "--checkpoint", gckpt, "--out", out, "--ternary", "q2"])
    check(p.returncode == 2 and "--ternary" in p.stderr, "bad --ternary refused")
    p = run([BIN, "export", "--model", gpath, "--checkpoint", gckpt])
    check(p.returncode == 2 and "--out" in p.stderr, "missing --out refused")
    p = run([BIN, "export", "--model", gpath, "--checkpoint", gckpt, "--out",
             os.path.join(gd, "no_such_dir", "x.gguf")])
    check(p.returncode == 1 and "no_such_dir" in p.stderr, "unwritable --out named")
    check(not os.path.exists(out), "no file written by a failed export")

    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
