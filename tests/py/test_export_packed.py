"""test_export_packed.py - the packed ternary safetensors export and its loader.

For tiny random students (llama and qwen2, GGUF and HF sources, one with a
row length that is not a multiple of 4, one at 4-bit activations) trained for
a few steps at a large learning rate (so the LoRA adapters are non-zero):
  - the safetensors file is read with the `safetensors` package and unpacked
    with numpy from the documented bit layout (code = t + 1, element j at bits
    2*(j%4) of byte j//4, rows padded with code 1); codes * scale must equal
    bitlab's Weff at lambda = 1 bit for bit, and the codes and scale must equal
    an independent numpy absmean ternarisation of W + dW;
  - llama GGUF q/k rows come out in Hugging Face order (llama.cpp's permutation
    applied by numpy gives back the GGUF's rows);
  - with --embed f32 every other tensor is the source's value exactly; by
    default the token embedding / LM head are F16 equal to numpy's float16
    rounding of the student's fp32 values (everything else unchanged), their
    logits are close to the student's, and the tensor data is exactly what
    `bitlab eval` reports as the student's weight bytes; packed bytes are
    out * ceil(in / 4), about n / 4; config.json and the metadata say what the
    format documents;
  - bitlab loads the --embed f32 folder (activation quantisation on) and its
    logits equal the student's, and `bitlab generate --chat` runs it;
  - a GGUF source gets a tokenizer.json that the `tokenizers` package encodes
    and decodes like the source tokenizer (byte-level gpt2 / smollm / llama-bpe
    / qwen2 pre-tokenizers, SentencePiece-style llama and phi3), and that bitlab
    reads back identically; a HF source's tokenizer files are copied verbatim.
Corrupt folders (wrong shapes, code 3, non-zero padding, missing or bad scale,
missing metadata, truncated file, unknown quant_method) and SubLN /
post-attention-norm students must fail with a message naming the tensor or
option, without sanitizer reports.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402
import tok_corpus  # noqa: E402

BUILD = os.environ.get("BITLAB_BUILD_DIR", "build")
BITLAB = os.environ.get("BITLAB_BIN") or os.path.join(BUILD, "bitlab")
TOOL = os.path.join(BUILD, "packed_tool")
TOK_TOOL = os.path.join(BUILD, "tok_tool")
REAL_MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
failures = []

TRAIN_LUA = """
local model = bitlab.load_model(arg[1])
local st = bitlab.student{model = model, lambda = 1, act_bits = tonumber(arg[3]),
                          subln = arg[4] == "subln", post_attn_norm = arg[4] == "post"}
st:add_adapter{rank = 4, alpha = 8, seed = 3}
local data = bitlab.dataset{model = model, text = {"hello world the quick brown fox 42",
                                                   "jumps over the lazy dog, layer 7 weight"}}
local tr = bitlab.trainer{student = st, batch = 2, seq = 32, ce = 1, lr = 0.05}
for _ = 1, 3 do tr:step(data:batch(2)) end
tr:save(arg[2])
"""


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(args, timeout=300):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    bad = [m for m in SANITIZER_MARKS if m in p.stderr]
    if bad:
        failures.append(f"sanitizer report from {' '.join(args[:3])}: {p.stderr[-2000:]}")
    return p


def tool(*args):
    p = run([TOOL, *args])
    if p.returncode != 0:
        raise RuntimeError(f"packed_tool {' '.join(args)}: {p.stderr}")
    return p.stdout


# ---------------------------------------------------------------------------
# the documented format, in numpy

def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def unpack(codes_u8, n_in):
    """[out, ceil(in/4)] bytes -> int codes [out, ceil(in/4)*4] (element j at bits 2*(j%4))."""
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)
    return ((codes_u8[:, :, None] >> shifts) & 3).reshape(codes_u8.shape[0], -1).astype(np.int8)


def ternarise(w):
    """absmean ternary, independent of bitlab: s = 1/max(mean|w|, 1e-5), t = round-half-away clamp."""
    mean = np.float32(np.abs(w.astype(np.float64)).mean())
    s = np.float32(1.0) / np.maximum(mean, np.float32(1e-5))
    v = w * s
    t = (v >= 0.5).astype(np.int8) - (v <= -0.5).astype(np.int8)
    return t, np.float32(1.0) / s


def linears(cfg):
    """(HF name, out, in) of every block linear, in bitlab's layer / kind order."""
    d, h, nl = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    hd = d // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    out = []
    for l in range(nl):
        p = f"model.layers.{l}."
        out += [(p + "self_attn.q_proj.weight", q, d), (p + "self_attn.k_proj.weight", kv, d),
                (p + "self_attn.v_proj.weight", kv, d), (p + "self_attn.o_proj.weight", d, q),
                (p + "mlp.gate_proj.weight", h, d), (p + "mlp.up_proj.weight", h, d),
                (p + "mlp.down_proj.weight", d, h)]
    return out


def split_flat(flat, lins):
    out, at = {}, 0
    for name, o, i in lins:
        out[name] = flat[at:at + o * i].reshape(o, i)
        at += o * i
    assert at == flat.size, (at, flat.size)
    return out


# ---------------------------------------------------------------------------
# one exported student

def train_checkpoint(tmp, model, act_bits, variant="plain"):
    lua = os.path.join(tmp, "train.lua")
    with open(lua, "w") as f:
        f.write(TRAIN_LUA)
    ckpt = os.path.join(tmp, f"{os.path.basename(model)}-{variant}-{act_bits}.ckpt")
    p = run([BITLAB, lua, "--headless", "--", model, ckpt, str(act_bits), variant])
    if p.returncode != 0:
        raise RuntimeError(f"training {model}: {p.stdout}{p.stderr}")
    return ckpt


def check_student(tmp, w, source, act_bits):
    label = f"{w.name} from {'GGUF' if source.endswith('.gguf') else 'HF'} (A{act_bits})"
    cfg = w.config
    lins = linears(cfg)
    ckpt = train_checkpoint(tmp, source, act_bits)
    out = os.path.join(tmp, f"packed-{w.name}-{os.path.basename(source)}")
    p = run([BITLAB, "export", "--model", source, "--checkpoint", ckpt, "--out", out,
             "--format", "safetensors", "--embed", "f32"])
    if p.returncode != 0:
        raise RuntimeError(f"bitlab export --embed f32: {p.stdout}{p.stderr}")
    interleaved = source.endswith(".gguf") and cfg["model_type"] == "llama"

    st_path = os.path.join(out, "model.safetensors")
    tensors = load_file(st_path)
    header = read_header(st_path)
    meta = json.loads(header["__metadata__"]["bitlab_packing"])
    check(meta["format_version"] == 1 and meta["codes"] == [-1, 0, 1] and
          meta["bit_order"] == "lsb_first" and meta["row_padding"] == 4,
          f"{label}: metadata describes the packing")
    check(meta["tensors"] == {n: [o, i] for n, o, i in lins}, f"{label}: metadata lists every block linear")

    weff1 = split_flat(np.fromfile(tool_out(tmp, "weff", source, ckpt, "1"), np.float32), lins)
    wdw = split_flat(np.fromfile(tool_out(tmp, "weff", source, ckpt, "0"), np.float32), lins)
    exact = indep = pad_ok = True
    packed_bytes = n_weights = 0
    moved = 0.0
    for name, o, i in lins:
        u8 = tensors[name]
        nb = (i + 3) // 4
        if u8.dtype != np.uint8 or u8.shape != (o, nb):
            check(False, f"{label}: {name} is U8 [{o}, {nb}], got {u8.dtype} {u8.shape}")
            return
        codes = unpack(u8, i)
        pad_ok &= bool((codes[:, i:] == 1).all()) and bool((codes != 3).all())
        t = codes[:, :i].astype(np.int8) - 1
        scale = tensors[name + ".scale"]
        if scale.shape != () or scale.dtype != np.float32:
            check(False, f"{label}: {name}.scale is an F32 scalar")
            return
        w_unpacked = t.astype(np.float32) * scale
        ref1, ref0 = weff1[name], wdw[name]
        is_qk = ".q_proj." in name or ".k_proj." in name
        if interleaved and is_qk:  # bitlab holds GGUF rows; the export is in HF order
            heads = cfg["num_attention_heads"] if ".q_proj." in name else cfg["num_key_value_heads"]
            w_unpacked = tiny.permute_qk(w_unpacked, heads)
            t = tiny.permute_qk(t, heads)
        exact &= np.array_equal(w_unpacked, ref1)
        t_ref, s_ref = ternarise(ref0)
        indep &= np.array_equal(t, t_ref) and scale == s_ref
        src = w[name] if not interleaved or not is_qk else tiny.permute_qk(
            w[name], cfg["num_attention_heads"] if ".q_proj." in name else cfg["num_key_value_heads"])
        moved = max(moved, float(np.abs(ref0 - src).max()))
        packed_bytes += u8.nbytes
        n_weights += o * i
    check(pad_ok, f"{label}: only codes 0..2, padding code 1")
    check(exact, f"{label}: codes x scale == bitlab's Weff at lambda 1, bit for bit")
    check(indep, f"{label}: codes and scale == numpy absmean ternarisation of W + dW")
    check(moved > 1e-3, f"{label}: the trained adapters are non-zero (max |dW| = {moved:.3g})")
    check(n_weights / 4 <= packed_bytes <= n_weights / 4 + sum(o for _, o, _ in lins),
          f"{label}: packed bytes {packed_bytes} ~ n/4 = {n_weights / 4:.0f}")

    others = [n for n in w if n not in meta["tensors"]]
    same = all(np.array_equal(tensors[n], w[n]) for n in others)
    check(same and set(tensors) == set(others) | set(meta["tensors"]) |
          {n + ".scale" for n in meta["tensors"]},
          f"{label}: --embed f32: embeddings, norms, lm_head, biases exact, nothing else stored")

    conf = json.load(open(os.path.join(out, "config.json")))
    qc = conf["quantization_config"]
    check(qc["quant_method"] == "bitlab_ternary" and qc["bits"] == 2 and qc["act_bits"] == act_bits
          and conf["model_type"] == cfg["model_type"] and conf["hidden_size"] == cfg["hidden_size"]
          and conf["rms_norm_eps"] == cfg["rms_norm_eps"] and conf["rope_theta"] == cfg["rope_theta"],
          f"{label}: config.json holds the architecture and quantization_config")
    info = json.loads(tool("config", out))
    check(info["ternary_act_bits"] == act_bits and not info["rope_interleaved"],
          f"{label}: bitlab loads the folder with {act_bits}-bit activations, rotate-half RoPE")

    ids = np.random.default_rng(7).integers(3, cfg["vocab_size"], size=24).astype(np.int32)
    ids_path = os.path.join(tmp, "ids.bin")
    ids.tofile(ids_path)
    lp = np.fromfile(tool_out(tmp, "logits", out, "-", ids_path), np.float32)
    ls = np.fromfile(tool_out(tmp, "logits", source, ckpt, ids_path), np.float32)
    lt = np.fromfile(tool_out(tmp, "logits", source, "-", ids_path), np.float32)
    V = cfg["vocab_size"]
    err = float(np.abs(lp - ls).max())
    check(err <= 1e-4 * max(1.0, float(np.abs(ls).max())) and
          np.array_equal(lp.reshape(-1, V).argmax(1), ls.reshape(-1, V).argmax(1)),
          f"{label}: packed folder's logits == the student's (max diff {err:.2e}; "
          f"teacher differs by {float(np.abs(lt - ls).max()):.2f})")
    p = run([BITLAB, "generate", "--model", out, "--chat", "--prompt", "hello world",
             "--max-tokens", "6"])
    check(p.returncode == 0 and p.stdout.strip(),
          f"{label}: bitlab generate --chat runs the folder ({(p.stdout + p.stderr).strip()[:80]!r})")
    check_f16_default(tmp, label, source, ckpt, out, ids_path, ls, float(np.abs(lt - ls).max()),
                      act_bits)
    return out, ckpt


def eval_memory(tmp, source, ckpt):
    """bitlab eval's memory fields for the student of ckpt."""
    held, js = os.path.join(tmp, "held.txt"), os.path.join(tmp, "eval.json")
    with open(held, "w") as f:
        f.write("the quick brown fox jumps over the lazy dog, layer 7 weight 42\n" * 4)
    p = run([BITLAB, "eval", "--model", source, "--checkpoint", ckpt, "--data", held, "--seq", "16",
             "--max-examples", "1", "--json", js, "--quiet"])
    if p.returncode != 0:
        raise RuntimeError(f"bitlab eval: {p.stdout}{p.stderr}")
    return json.load(open(js))["memory"]


def check_f16_default(tmp, label, source, ckpt, exact_dir, ids_path, student_logits, teacher_gap,
                      act_bits):
    """The default export (no --embed) against the --embed f32 one in exact_dir."""
    out = exact_dir + "-f16"
    p = run([BITLAB, "export", "--model", source, "--checkpoint", ckpt, "--out", out,
             "--format", "safetensors"])
    if p.returncode != 0:
        raise RuntimeError(f"bitlab export (default embed): {p.stdout}{p.stderr}")
    st_path = os.path.join(out, "model.safetensors")
    half, exact = load_file(st_path), load_file(os.path.join(exact_dir, "model.safetensors"))
    header = read_header(st_path)
    matrices = [n for n in ("model.embed_tokens.weight", "lm_head.weight") if n in exact]
    check(all(half[n].dtype == np.float16 and
              np.array_equal(half[n], exact[n].astype(np.float16)) for n in matrices),
          f"{label}: default export: {', '.join(matrices)} F16 == numpy float16 of the student's fp32")
    rest = [n for n in exact if n not in matrices]
    check(set(half) == set(exact) and
          all(half[n].dtype == exact[n].dtype and np.array_equal(half[n], exact[n]) for n in rest),
          f"{label}: default export: norms, biases (F32), codes and scales as with --embed f32")
    manifest = json.load(open(os.path.join(out, "training_manifest.json")))
    listed = json.dumps(manifest)
    check('"F16"' in listed, f"{label}: the manifest lists the F16 tensors")

    V = json.load(open(os.path.join(out, "config.json")))["vocab_size"]
    lp = np.fromfile(tool_out(tmp, "logits", out, "-", ids_path), np.float32)
    err = float(np.abs(lp - student_logits).max())
    scale = max(1.0, float(np.abs(student_logits).max()))
    agree = float((lp.reshape(-1, V).argmax(1) == student_logits.reshape(-1, V).argmax(1)).mean())
    mean = float(np.abs(lp - student_logits).mean())
    # fp16 rounding (2^-11 relative) can move an input across an int8/int4
    # activation step, so the bound is relative to what distillation itself
    # changes (teacher vs student), not to fp16's epsilon; int4 steps are 16x
    # coarser than int8 ones
    check(err <= 0.25 * teacher_gap and mean <= (0.05 if act_bits == 4 else 0.02) * scale
          and agree >= 0.75,
          f"{label}: F16 export's logits close to the student's (max diff {err:.2e}, mean "
          f"{mean:.2e}, |logit| max {scale:.2f}, teacher-student max diff {teacher_gap:.2f}, "
          f"top-1 agreement {agree:.2f})")

    mem = eval_memory(tmp, source, ckpt)
    data_bytes = sum(int(e["data_offsets"][1] - e["data_offsets"][0])
                     for n, e in header.items() if n != "__metadata__")
    with open(st_path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
    file_size = os.path.getsize(st_path)
    folder = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    check(data_bytes == mem["student_bytes"] and file_size == 8 + header_len + data_bytes,
          f"{label}: tensor data {data_bytes} bytes == bitlab eval's student weight bytes "
          f"{mem['student_bytes']}; model.safetensors {file_size} = that + 8 + {header_len} header "
          f"bytes; folder {folder} bytes incl. json/tokenizer files")
    embd = sum(half[n].nbytes for n in matrices)
    vec = sum(half[n].nbytes for n in rest if half[n].dtype == np.float32 and half[n].ndim == 1)
    check(mem["student_embedding_bytes"] == embd and mem["student_norm_bias_bytes"] == vec,
          f"{label}: eval counts the F16 embedding ({embd}) and F32 norms/biases ({vec}) as stored")


def tool_out(tmp, cmd, *args):
    path = os.path.join(tmp, f"{cmd}.bin")
    tool(cmd, *args, path)
    return path


# ---------------------------------------------------------------------------
# tokenizers

def tok_tool(args, strings_path):
    p = run([TOK_TOOL, *args, strings_path])
    if p.returncode != 0:
        raise RuntimeError(f"tok_tool {args}: {p.stderr}")
    return [json.loads(line) for line in p.stdout.split("\n") if line]  # not splitlines: U+2028


def check_tokenizer(tmp, label, gguf_path, strings, hf_reference=None):
    out = os.path.join(tmp, "tok-" + label)
    os.makedirs(out, exist_ok=True)
    tool("tokjson", gguf_path, out)
    strings_path = os.path.join(tmp, "strings.jsonl")
    with open(strings_path, "w") as f:
        for s in strings:
            f.write(json.dumps(s) + "\n")
    src = tok_tool(["--gguf", gguf_path], strings_path)
    back = tok_tool(["--json", os.path.join(out, "tokenizer.json"), "--config",
                     os.path.join(out, "tokenizer_config.json")], strings_path)
    check(src == back, f"tokenizer {label}: bitlab reads the written tokenizer.json back identically "
          f"(vocab size, bos, eos; {len(strings)} strings)")
    src = src[1:]  # the header line: {vocab_size, bos, eos}
    hf = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    refs = [Tokenizer.from_file(hf_reference)] if hf_reference else []
    bad = 0
    for s, r in zip(strings, src):
        enc, enc_sp = hf.encode(s, add_special_tokens=False).ids, hf.encode(s).ids
        ok = enc == r["ids"] and enc_sp == r["ids_special"] and hf.decode(enc, skip_special_tokens=False) == r["decoded"]
        for ref in refs:
            ok &= ref.encode(s, add_special_tokens=False).ids == enc
        if not ok:
            bad += 1
            if bad <= 3:
                print(f"     mismatch on {s!r}: hf {enc} / {enc_sp}, source {r['ids']} / {r['ids_special']}")
    check(bad == 0, f"tokenizer {label}: `tokenizers` on the written file == the source "
          f"tokenizer{' and the original tokenizer.json' if refs else ''} ({bad} of {len(strings)} differ)")
    return out


def gguf_with_pre(tmp, w, pre):
    """The tiny GGUF's vocabulary with another tokenizer.ggml.pre."""
    import gguf
    src = gguf.GGUFReader(w.gguf_path)
    path = os.path.join(tmp, f"tok-{pre}.gguf")
    wr = gguf.GGUFWriter(path, "llama")
    f = src.fields
    tokens = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode() for i in f["tokenizer.ggml.tokens"].data]
    merges = [bytes(f["tokenizer.ggml.merges"].parts[i]).decode() for i in f["tokenizer.ggml.merges"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre(pre)
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(2)
    wr.add_add_bos_token(pre == "llama-bpe")  # a BOS post-processor on one of them
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path


def check_tokenizers(tmp, w_llama):
    strings = tok_corpus.corpus(21, 400)
    check_tokenizer(tmp, "tiny-gpt2", w_llama.gguf_path, strings,
                    hf_reference=os.path.join(w_llama.hf_dir, "tokenizer.json"))
    for pre in ("llama-bpe", "qwen2", "smollm"):
        check_tokenizer(tmp, "tiny-" + pre, gguf_with_pre(tmp, w_llama, pre), strings)
    import test_tokenizer_parity as parity
    _, j = parity.train_spm(os.path.join(tmp, "spm.json"))
    for arch in ("llama", "phi3"):  # Metaspace pre-tokenizer; phi3: Prepend + Replace normalizer
        spm_gguf = os.path.join(tmp, f"spm-{arch}.gguf")
        write_spm_gguf(parity, spm_gguf, j, arch)
        check_tokenizer(tmp, "spm-" + arch, spm_gguf, strings)
    if os.path.exists(REAL_MODEL):
        out = check_tokenizer(tmp, "SmolLM2", REAL_MODEL, tok_corpus.corpus(5, 600))
        tc = json.load(open(os.path.join(out, "tokenizer_config.json")))
        check("<|im_start|>" in tc.get("chat_template", "") and tc["eos_token"] == "<|im_end|>",
              "tokenizer SmolLM2: tokenizer_config.json carries the chat template and eos token")
    else:
        print(f"skip SmolLM2 tokenizer: {REAL_MODEL} not present")


def write_spm_gguf(parity, path, j, arch):
    """test_tokenizer_parity's SentencePiece GGUF, under another general.architecture."""
    import gguf
    plain = gguf.GGUFWriter

    class ArchWriter(plain):
        def __init__(self, p, _arch, *a, **k):
            super().__init__(p, arch, *a, **k)

    gguf.GGUFWriter = ArchWriter
    try:
        parity.write_spm_gguf(path, j)
    finally:
        gguf.GGUFWriter = plain


# ---------------------------------------------------------------------------
# corrupt folders

def corrupt_cases(tmp, good):
    st_path = os.path.join(good, "model.safetensors")
    tensors = load_file(st_path)
    meta = read_header(st_path)["__metadata__"]
    q = "model.layers.0.self_attn.q_proj.weight"
    down = "model.layers.1.mlp.down_proj.weight"
    pk = json.loads(meta["bitlab_packing"])
    has_pad = pk["tensors"][down][1] % 4 != 0

    def variant(name, edit_tensors=None, edit_meta=None, edit_config=None, raw=None):
        d = os.path.join(tmp, "bad-" + name)
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(good, d)
        t = {k: v.copy() for k, v in tensors.items()}
        m = dict(meta)
        if edit_tensors:
            edit_tensors(t)
        if edit_meta == "drop":
            m.pop("bitlab_packing")
        elif edit_meta:
            p = json.loads(m["bitlab_packing"])
            edit_meta(p)
            m["bitlab_packing"] = json.dumps(p)
        save_file(t, os.path.join(d, "model.safetensors"), metadata=m)
        if edit_config:
            c = json.load(open(os.path.join(d, "config.json")))
            edit_config(c)
            json.dump(c, open(os.path.join(d, "config.json"), "w"))
        if raw:
            raw(os.path.join(d, "model.safetensors"))
        return d

    def set_code3(t):
        t[q][3, 5] = 0xFF

    def clear_pad(t):
        t[down][:, -1] &= 0x0F  # the last byte's upper codes are padding: 0 instead of 1

    def truncate(path):
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size - 100)

    cases = [
        ("narrow", dict(edit_tensors=lambda t: t.__setitem__(q, t[q][:, :-1].copy())), [q, "expected shape"]),
        ("meta-shape", dict(edit_meta=lambda p: p["tensors"].__setitem__(q, [64, 60])), [q, "packing description"]),
        ("code3", dict(edit_tensors=set_code3), [q, "code 3"]),
        ("no-scale", dict(edit_tensors=lambda t: t.pop(q + ".scale")), [q + ".scale", "missing"]),
        ("nan-scale", dict(edit_tensors=lambda t: t.__setitem__(q + ".scale", np.array(np.nan, np.float32))),
         [q + ".scale", "scale"]),
        ("f16-scale", dict(edit_tensors=lambda t: t.__setitem__(q + ".scale", t[q + ".scale"].astype(np.float16))),
         [q + ".scale", "F16"]),
        ("f32-codes", dict(edit_tensors=lambda t: t.__setitem__(q, t[q].astype(np.float32))), [q, "U8"]),
        ("no-meta", dict(edit_meta="drop"), ["__metadata__", "bitlab_packing"]),
        ("truncated", dict(raw=truncate), ["model.safetensors", "data_offsets"]),
        ("quant-method", dict(edit_config=lambda c: c["quantization_config"].__setitem__("quant_method", "gptq")),
         ["config.json", "gptq"]),
        ("act-bits", dict(edit_config=lambda c: c["quantization_config"].__setitem__("act_bits", 5)),
         ["config.json", "act_bits"]),
        ("missing-linear", dict(edit_tensors=lambda t: t.pop(q)), [q, "missing"]),
    ]
    if has_pad:
        cases.append(("padding", dict(edit_tensors=clear_pad), [down, "padding"]))
    else:
        check(False, "corrupt cases: the source should have a row length not divisible by 4")
    for name, kw, needles in cases:
        d = variant(name, **kw)
        p = run([BITLAB, "info", "--model", d])
        ok = p.returncode == 1 and all(n in p.stderr for n in needles)
        check(ok, f"corrupt folder '{name}' is refused naming {needles} ({p.stderr.strip()[:160]})")


def refused_students(tmp, w):
    for variant, needle in (("subln", "SubLN"), ("post", "post_attn_norm")):
        ckpt = train_checkpoint(tmp, w.gguf_path, 8, variant)
        p = run([TOOL, "export", w.gguf_path, ckpt, os.path.join(tmp, "refused-" + variant)])
        check(p.returncode == 1 and needle in p.stderr,
              f"a {variant} student is refused with a clear message ({p.stderr.strip()[:160]})")


def main():
    if not os.path.exists(TOOL):
        print(f"packed_tool not found at {TOOL}")
        sys.exit(1)
    with tempfile.TemporaryDirectory() as tmp:
        wl = tiny.write_tiny(tmp, arch="llama", seed=11)
        # hidden 90: down_proj rows are padded (90 -> 92 codes); tied embeddings
        wq = tiny.write_tiny(tmp, arch="qwen2", seed=12, hidden=90, tied=True)
        check_student(tmp, wl, wl.gguf_path, 8)
        out_hf, _ = check_student(tmp, wl, wl.hf_dir, 4)
        same = all(open(os.path.join(out_hf, f), "rb").read() == open(os.path.join(wl.hf_dir, f), "rb").read()
                   for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"))
        check(same, "HF source: tokenizer files copied byte for byte")
        out_q, _ = check_student(tmp, wq, wq.gguf_path, 8)
        check_student(tmp, wq, wq.hf_dir, 8)
        corrupt_cases(tmp, out_q)
        refused_students(tmp, wl)
        check_tokenizers(tmp, wl)
    print(f"{len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
