# ctest-labels: slow
"""test_experiments_default.py - every shipped experiment (experiments/*.lua)
headless on the default model (models/SmolLM2-135M-Instruct.Q4_1.gguf), in
a short form: a few steps or a small token budget, through the one trainer
on the CPU backend (--device cpu). Each must exit 0, print its own summary
line, and log finite step records and a "run" record naming the device.
test_lua_api.py runs the same scripts on a tiny random model; this one runs
them on the real model and tokenizer a user starts from.

Skips (77) when the default model is absent (scripts/setup.sh fetches it).
"""
import json
import math
import os
import subprocess
import sys
import tempfile

BIN = os.environ.get("BITLAB_BIN", "build/bitlab")
MODEL = os.environ.get("BITLAB_MODEL", "models/SmolLM2-135M-Instruct.Q4_1.gguf")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(script, log, args, timeout=900):
    cmd = [BIN, f"experiments/{script}.lua", "--headless", "--device", "cpu", "--log", log,
           "--", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def records(path):
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                out.append(json.loads(line))
    return out


def main():
    if not os.path.exists(MODEL):
        print(f"skip: {MODEL} is absent (scripts/setup.sh fetches it)")
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="bitlab-exp-")
    sg = os.path.join(tmp, "selfgen.jsonl")
    trace = os.path.join(tmp, "chat_small.k8.trace")
    # (script, arguments, what its output must contain)
    cases = [
        ("overfit", (MODEL, "3", "8"), "common greedy prefix:"),
        ("selfgen", (MODEL, "experiments/data/eval_prompts.txt", sg, "8"), ""),
        ("gradual", (MODEL, "2", "experiments/data/chat_small.jsonl",
                     "experiments/data/chat_eval.jsonl"), ""),
        ("kd_topk", (MODEL, "400", "experiments/data/chat_small.jsonl", "8"), ""),
        ("kd_trace", (MODEL, "2", "experiments/data/chat_small.jsonl", "8", trace), ""),
        ("bitllama", (MODEL, "2"), "non-finite steps skipped:"),
        ("distill", (MODEL, "2", "experiments/data/chat_small.jsonl",
                     "experiments/data/chat_eval.jsonl", os.path.join(tmp, "distill")),
         "best held-out KL"),
    ]
    shipped = sorted(f[:-4] for f in os.listdir("experiments") if f.endswith(".lua"))
    check(sorted(c[0] for c in cases) == shipped,
          f"every shipped experiment is covered ({', '.join(shipped)})")
    for script, args, marker in cases:
        log = os.path.join(tmp, f"{script}.jsonl")
        p = run(script, log, args)
        ok = p.returncode == 0 and marker in p.stdout
        check(ok, f"{script}.lua runs on the default model (exit {p.returncode})")
        if not ok:
            print(p.stdout[-2000:], p.stderr[-2000:])
            continue
        recs = records(log)
        steps = [r for r in recs if "step" in r and "total" in r]
        if script == "distill":
            evals = [r for r in recs if r.get("event") == "eval"]
            check([r.get("step") for r in evals] == [1, 2] and all(math.isfinite(r["kl"]) for r in evals),
                  f"distill.lua logs a held-out eval record per step ({[r.get('step') for r in evals]})")
            check(all(os.path.exists(os.path.join(tmp, "distill" + x)) for x in (".ckpt", ".ckpt.best", ".gguf")),
                  "distill.lua writes its checkpoint, the best one and the export")
        if script == "selfgen":
            check(os.path.exists(sg) and os.path.getsize(sg) > 0, "selfgen.lua writes its JSONL")
            continue
        check(len(steps) > 0 and all(math.isfinite(r["total"]) for r in steps),
              f"{script}.lua logs {len(steps)} finite step record(s)")
        run_rec = next((r for r in recs if r.get("event") == "run"), {})
        check(run_rec.get("device") == "cpu",
              f"{script}.lua's run record names the device (got {run_rec.get('device')!r})")
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
