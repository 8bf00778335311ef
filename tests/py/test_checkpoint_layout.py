"""test_checkpoint_layout.py - checkpoints know their layout and clean up (issue 11).

1. A checkpoint trained on a tiny llama HF folder, loaded on the GGUF of the same
   weights (llama.cpp permutes q/k rows there), gives the same student, and the next
   step agrees too (B rows, dense ΔW rows and their AdamW moments are converted).
2. The header's reserved bytes must be zero; a version-1 file still loads.
3. A stale `*.ckpt.tmp.PID` of a dead writer is removed by the next save; one of a
   live process is kept.
4. The checkpoint records the BLAS core and thread count; the metrics stream's
   first record (`run`) and the `resume` event carry them, and a resume with a
   different thread count prints a one-line notice.
5. Frozen adapters in bf16 (`trainer:save(path, state, {frozen_adapters =
   "bf16"})`): both files of one state (a rotated stack of three with dense ΔW,
   SubLN and post-attention norms) are parsed here from the layout documented
   in checkpoint.h (parse_checkpoint, numpy). The bf16 file is version 3 with a
   dtype per adapter (bf16 for the two frozen ones only); its frozen A and B,
   widened by numpy, are the fp32 file's values rounded to nearest even by
   rne_bf16 (an independent rounding: the nearer of the two bf16 neighbours,
   found in float64); every other byte (trainable adapter, dense ΔW, norms,
   AdamW moments, counters, JSON) is the fp32 file's. The fp32 file stays
   version 2, the layout earlier bitlab wrote.
"""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402

BIN = os.environ.get("BITLAB_BIN") or os.path.join(os.environ.get("BITLAB_BUILD_DIR", "build"), "bitlab")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(script, *args, env=None, log=None):
    cmd = [BIN, script, "--headless"] + (["--log", log] if log else []) + ["--", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **(env or {})))


def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


# ----------------------------------------------------------------------------
# the layout of checkpoint.h, parsed independently

DTYPES = {0: "fp32", 1: "bf16"}


def parse_checkpoint(path, n_linears):
    """The checkpoint at path as {version, flags, adapters: [(r, alpha, dtype)],
    linears: [{out, in, A: [...], B: [...]}], segments}; n_linears: how many
    BitLinears the model has (the file does not say). segments lists every
    field as (name, start, end) byte ranges of the payload, in order, so that
    callers can compare files field by field; A/B tensors are fp32 arrays
    (bf16 widened) with their raw bytes."""
    data = open(path, "rb").read()
    assert data[:8] == b"BLCKPT\0\0", "magic"
    version, reserved, n_payload, _sum = struct.unpack_from("<IIQQ", data, 8)
    assert reserved == 0 and len(data) == 32 + n_payload, "header"
    pay = data[32:]
    off = 0
    segments = []

    def take(name, n):
        nonlocal off
        assert off + n <= len(pay), f"{name} past the end"
        segments.append((name, off, off + n))
        off += n
        return pay[off - n:off]

    def i64(name):
        return struct.unpack("<q", take(name, 8))[0]

    def f32(name):
        return struct.unpack("<f", take(name, 4))[0]

    def tensor(name, n, dtype):
        raw = take(name, n * (2 if dtype == "bf16" else 4))
        if dtype == "fp32":
            return np.frombuffer(raw, "<f4").copy(), raw
        wide = np.frombuffer(raw, "<u2").astype(np.uint32) << 16  # bf16 = fp32's upper half
        return wide.view(np.float32), raw

    shape = (i64("layers"), i64("dim"), i64("vocab"))
    if version >= 2:
        i64("qk_layout"), i64("blas_threads")
        take("blas_core", i64("blas_core_len"))
    flags = i64("flags")
    f32("lambda"), i64("act_bits"), i64("steps"), i64("skipped")
    adapters = []
    for a in range(i64("n_adapters")):
        r, alpha = i64(f"r{a}"), f32(f"alpha{a}")
        adapters.append((r, alpha, DTYPES[i64(f"dtype{a}")] if version >= 3 else "fp32"))
    linears = []
    for j in range(n_linears):
        out, inp = i64(f"lin{j}.out"), i64(f"lin{j}.in")
        lin = {"out": out, "in": inp, "A": [], "B": []}
        for a, (r, _alpha, dtype) in enumerate(adapters):
            lin["A"].append(tensor(f"lin{j}.A{a}", r * inp, dtype))
            lin["B"].append(tensor(f"lin{j}.B{a}", out * r, dtype))
        if flags & 4:
            tensor(f"lin{j}.dense", out * inp, "fp32")
        if flags & 1:
            tensor(f"lin{j}.subln", inp, "fp32")
        linears.append(lin)
    if flags & 2:
        tensor("post_norm", shape[0] * shape[1], "fp32")
    for i in range(i64("n_params")):
        n = i64(f"opt{i}.n")
        i64(f"opt{i}.t")
        tensor(f"opt{i}.m", n, "fp32"), tensor(f"opt{i}.v", n, "fp32")
    take("json", i64("json_len"))
    assert off == len(pay), f"{len(pay) - off} bytes after the JSON text"
    return {"version": version, "flags": flags, "adapters": adapters, "linears": linears,
            "segments": segments, "payload": pay}


def rne_bf16(x):
    """float32 array -> its bf16 bit patterns (uint16), round to nearest, ties
    to even: of the two bf16 values next to x (its fp32 bits with the low half
    cleared, and the one a bf16 ulp further from zero), the nearer in float64,
    the even one on a tie; past the largest bf16 the next one up is ±2^128
    (IEEE: rounds to ±Inf). Finite x only."""
    u = x.astype(np.float32).view(np.uint32)
    down = u & np.uint32(0xFFFF0000)
    up = down + np.uint32(0x10000)
    x64 = x.astype(np.float64)
    up64 = up.view(np.float32).astype(np.float64)
    up64 = np.where(np.isinf(up64), np.copysign(2.0 ** 128, x64), up64)
    d_down = np.abs(x64 - down.view(np.float32).astype(np.float64))
    d_up = np.abs(up64 - x64)
    odd = (down >> 16) & 1
    pick_up = (d_up < d_down) | ((d_up == d_down) & (odd == 1))
    return (np.where(pick_up, up, down) >> 16).astype(np.uint16)


BF16_LUA = r"""
-- MODEL FP32_CKPT BF16_CKPT [FROM]: a rotated stack of three adapters with
-- every other part a checkpoint can hold (trained, or loaded from FROM),
-- saved twice in one state
local m = bitlab.load_model(arg[1])
local text = {}
for i = 1, 6 do text[i] = string.rep("alpha beta gamma ", i) .. "delta " .. i end
local st = bitlab.student{model = m, lambda = 0.5, act_bits = 8, dense = true, subln = true,
                          post_attn_norm = true}
st:add_adapter{rank = 4, seed = 1}
local tr = bitlab.trainer{student = st, batch = 2, seq = 32, lr = 2e-2, ce = 1}
local d = bitlab.dataset{model = m, text = text, seed = 1}
if arg[4] then
  tr:load(arg[4])
else
  for _, rank in ipairs{3, 2} do
    for _ = 1, 2 do tr:step(d:batch(2, 32)) end
    st:rotate{rank = rank, seed = rank}
  end
  tr:step(d:batch(2, 32))
end
tr:save(arg[2], {k = 1})
tr:save(arg[3], {k = 1}, {frozen_adapters = "bf16"})
"""


def fnv1a(data):
    h = 0xcbf29ce484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def resealed(data, payload):
    """A checkpoint with data's header fields and this payload, size and checksum
    made to match (a file bitlab reads past its integrity checks)."""
    return data[:16] + struct.pack("<QQ", len(payload), fnv1a(payload)) + payload


# fp32 bit patterns -> the bf16 bits round-to-nearest-even gives
SPECIALS = {
    0x3F808000: 0x3F80,  # 1 + 2^-8: a tie, to the even 1.0
    0x3F818000: 0x3F82,  # 1 + 3·2^-8: a tie, to the even neighbour above
    0xBF808000: 0xBF80,  # the negative tie
    0x3F808001: 0x3F81,  # just past the tie
    0x7F7F7FFF: 0x7F7F,  # below the half-way point past the largest bf16
    0x7F7FFFFF: 0x7F80,  # the largest float: rounds to Inf
    0x7F800000: 0x7F80, 0xFF800000: 0xFF80,  # ±Inf stay
    0x00000001: 0x0000, 0x00008000: 0x0000, 0x00018000: 0x0002,  # subnormals, ties
    0x80000000: 0x8000,  # -0
}
NANS = (0x7FC00001, 0x7F800001, 0xFF800001)  # the last two: cut to 16 bits they would be ±Inf


def check_specials(tmp, gguf, f32_ck, n_linears):
    """Ties, overflow, Inf, NaN, subnormals written into a frozen A of the
    fp32 file, loaded and saved in bf16 by bitlab: the bits of SPECIALS, NaN
    stays NaN (its sign too)."""
    data = open(f32_ck, "rb").read()
    c = parse_checkpoint(f32_ck, n_linears)
    name = "lin0.A0"
    start = next(s for n, s, _ in c["segments"] if n == name)
    pats = list(SPECIALS) + list(NANS)
    patch = struct.pack(f"<{len(pats)}I", *pats)
    pay = c["payload"][:start] + patch + c["payload"][start + len(patch):]
    src = os.path.join(tmp, "specials.ckpt")
    with open(src, "wb") as f:
        f.write(resealed(data, pay))
    lua = os.path.join(tmp, "bf16_layout.lua")
    out32, out16 = os.path.join(tmp, "specials32.ckpt"), os.path.join(tmp, "specials16.ckpt")
    p = run(lua, gguf, out32, out16, src)
    check(p.returncode == 0, f"the patched checkpoint loads and saves: {p.stderr.strip()[-300:]}")
    if p.returncode:
        return
    check(open(out32, "rb").read() == open(src, "rb").read(),
          "saved in fp32 again, it is the loaded file byte for byte")
    got = np.frombuffer(parse_checkpoint(out16, n_linears)["linears"][0]["A"][0][1], "<u2")
    want = list(SPECIALS.values())
    check(list(got[:len(want)]) == want, f"ties, overflow, Inf, subnormals: {[hex(x) for x in got[:len(want)]]}")
    nans = got[len(want):len(pats)]
    check(all((x & 0x7F80) == 0x7F80 and x & 0x7F for x in nans)
          and [x >> 15 for x in nans] == [p >> 31 for p in NANS],
          f"NaN stays NaN, with its sign: {[hex(x) for x in nans]}")
    check(list(rne_bf16(np.array(list(SPECIALS), np.uint32).view(np.float32))) == want,
          "and rne_bf16 (the reference) agrees on them")


def check_bf16_layout(tmp, gguf, n_linears):
    """Item 5 of the docstring."""
    lua = os.path.join(tmp, "bf16_layout.lua")
    with open(lua, "w") as f:
        f.write(BF16_LUA)
    f32_ck, bf_ck = os.path.join(tmp, "f32.ckpt"), os.path.join(tmp, "bf16.ckpt")
    p = run(lua, gguf, f32_ck, bf_ck)
    check(p.returncode == 0, f"bf16_layout.lua runs: rc={p.returncode} {p.stderr.strip()[-400:]}")
    if p.returncode:
        return
    a, b = parse_checkpoint(f32_ck, n_linears), parse_checkpoint(bf_ck, n_linears)
    check(a["version"] == 2 and [x[2] for x in a["adapters"]] == ["fp32"] * 3,
          f"the fp32 file is version 2: {a['version']} {a['adapters']}")
    check(b["version"] == 3 and [x[2] for x in b["adapters"]] == ["bf16", "bf16", "fp32"],
          f"the bf16 file is version 3, its frozen adapters bf16: {b['version']} {b['adapters']}")
    check(a["flags"] == b["flags"] == 7, f"dense, SubLN, post-norm in both: {a['flags']}")
    same = frozen = 0
    total = 0
    for la, lb in zip(a["linears"], b["linears"]):
        for name in ("A", "B"):
            for k in range(2):  # the frozen ones
                (va, _), (vb, raw) = la[name][k], lb[name][k]
                total += va.size
                frozen += np.array_equal(np.frombuffer(raw, "<u2"), rne_bf16(va))
                same += np.array_equal(vb.view(np.uint32), rne_bf16(va).astype(np.uint32) << 16)
    n_frozen = 2 * 2 * n_linears
    check(frozen == n_frozen and same == n_frozen,
          f"every frozen A, B is the fp32 value rounded to nearest even ({frozen}, widened "
          f"{same} of {n_frozen} tensors, {total} values)")
    check(any(not np.array_equal(la["A"][0][0], lb["A"][0][0]) for la, lb in
              zip(a["linears"], b["linears"])), "and the rounding changed some values")

    def rest(c):
        skip = re.compile(r"lin\d+\.[AB][01]$|dtype\d+$")
        return b"".join(c["payload"][s:e] for name, s, e in c["segments"] if not skip.match(name))
    check(rest(a) == rest(b) and len(rest(a)) > 0,
          "everything but the frozen adapters (and v3's dtype fields) byte for byte the fp32 file's")
    check(len(a["payload"]) - len(b["payload"]) == 2 * total - 8 * 3,
          f"2 bytes less per frozen value, 8 more per adapter for its dtype: "
          f"{len(a['payload'])} vs {len(b['payload'])}, {total} frozen values")
    check_specials(tmp, gguf, f32_ck, n_linears)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        m = tiny.write_tiny(tmp, arch="llama", seed=3)
        ck = os.path.join(tmp, "hf.ckpt")
        log = os.path.join(tmp, "m.jsonl")
        p = run("tests/lua/ckpt_layout.lua", m.hf_dir, m.gguf_path, ck, log=log)
        check(p.returncode == 0, f"ckpt_layout.lua runs: rc={p.returncode} {p.stderr.strip()[-400:]}")
        g = re.search(r"teacher (\S+) hf (\S+) gguf (\S+)", p.stdout)
        g2 = re.search(r"after step hf (\S+) gguf (\S+)", p.stdout)
        if g and g2:
            teacher, a, b = map(float, g.groups())
            a2, b2 = map(float, g2.groups())
            check(rel(a, teacher) > 1e-3, f"the trained student differs from the teacher ({a} vs {teacher})")
            check(rel(a, b) < 1e-4, f"HF checkpoint on the GGUF: the same student (nll {a} vs {b})")
            check(rel(a2, b2) < 1e-4, f"and the same next step (nll {a2} vs {b2})")
        else:
            check(False, f"ckpt_layout.lua output: {p.stdout.strip()[-300:]}")
        # the first save prints where the checkpoint's bytes go; the event carries them
        lines = [json.loads(x) for x in open(log)] if os.path.exists(log) else []
        said = [x for x in p.stderr.splitlines() if x.startswith(f"bitlab: checkpoint {ck}:")]
        check(len(said) == 1 and "AdamW moments" in said[0],
              f"one size breakdown on the first save: {said}")
        ev = [x for x in lines if x.get("event") == "checkpoint"]
        by = ev[0].get("bytes", {}) if ev else {}
        cfg = json.load(open(os.path.join(m.hf_dir, "config.json")))
        D, H, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
        hd = D // cfg["num_attention_heads"]
        q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
        shapes = [(q, D), (kv, D), (kv, D), (D, q), (H, D), (H, D), (D, H)]  # (out, in)
        lora = 4 * L * sum(4 * (o + i) for o, i in shapes)  # rank 4, fp32
        dense = 4 * L * sum(o * i for o, i in shapes)
        parts = ("adapters_frozen", "adapters_trainable", "dense", "norms", "optimizer", "state",
                 "other")
        check(by.get("total") == os.path.getsize(ck) and sum(by.get(k, 0) for k in parts) == by.get("total")
              and by.get("adapters_trainable") == lora and by.get("adapters_frozen") == 0
              and by.get("dense") == dense and by.get("optimizer") == 2 * (lora + dense)
              and by.get("norms") == 0 and 0 < by.get("other", 0) < 4096,
              f"checkpoint bytes: {by} (file {os.path.getsize(ck)}, LoRA {lora}, dense {dense})")
        # the metrics stream: first record names the BLAS; the resume event both
        first = lines[0] if lines else {}
        check(first.get("event") == "run" and isinstance(first.get("blas_core"), str)
              and isinstance(first.get("blas_threads"), (int, float)),
              f"metrics stream opens with a run record naming the BLAS: {first}")
        res = [x for x in lines if x.get("event") == "resume"]
        check(bool(res) and "checkpoint_blas_core" in res[0] and "checkpoint_blas_threads" in res[0],
              f"the resume event records the checkpoint's BLAS: {res[:1]}")

        # reserved header bytes; version 1 compatibility is kept (v2 adds fields)
        data = open(ck, "rb").read() if os.path.exists(ck) else b""
        check(len(data) > 32 and struct.unpack_from("<I", data, 8)[0] == 2, "checkpoint version 2")
        bad = os.path.join(tmp, "reserved.ckpt")
        with open(bad, "wb") as f:
            f.write(data[:12] + struct.pack("<I", 7) + data[16:])
        q = run("tests/lua/ckpt_load.lua", m.gguf_path, bad)
        check(q.returncode == 1 and "reserved" in q.stderr and bad in q.stderr,
              f"non-zero reserved header bytes refused: {q.stderr.strip()[-200:]}")
        # the thread count changes no bits (ops/parallel.h): no notice for it;
        # another kernel family (Nehalem: SSE only, runs on any x86-64) does
        q = run("tests/lua/ckpt_load.lua", m.gguf_path, ck, env={"OPENBLAS_NUM_THREADS": "1"})
        q2 = run("tests/lua/ckpt_load.lua", m.gguf_path, ck, env={"OPENBLAS_NUM_THREADS": "3"})
        q3 = run("tests/lua/ckpt_load.lua", m.gguf_path, ck, env={"OPENBLAS_CORETYPE": "Nehalem"})
        notes = [("note:" in x.stderr and "BLAS" in x.stderr) for x in (q, q2, q3)]
        check(all(x.returncode == 0 for x in (q, q2, q3)) and notes == [False, False, True],
              f"a one-line BLAS notice exactly when the kernel family differs: {notes} "
              f"{q.stderr.strip()[-200:]} | {q3.stderr.strip()[-200:]}")

        # stale temp files: a dead PID's is removed, a live one's (ours) kept
        stale = ck + ".tmp.999999999"
        live = ck + f".tmp.{os.getpid()}"
        for x in (stale, live):
            with open(x, "wb") as f:
                f.write(b"partial")
        q = run("tests/lua/ckpt_load.lua", m.gguf_path, ck, "save")
        check(q.returncode == 0, f"re-save: {q.stderr.strip()[-200:]}")
        check(not os.path.exists(stale), "the dead writer's temp file is removed by the next save")
        check(os.path.exists(live), "a live process's temp file is kept")

        check_bf16_layout(tmp, m.gguf_path, L * len(shapes))
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
