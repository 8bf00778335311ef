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
"""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

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
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
