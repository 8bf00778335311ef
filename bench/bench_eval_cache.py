"""bench_eval_cache.py - what `bitlab eval --teacher-cache DIR` saves: the same
held-out evaluation run twice into an empty cache directory, the first run
computing both models (and writing the teacher's side), the second only the
student. Prints both wall times, the ratio second / first (target ≤ 0.4)
and whether every number but the KL agrees exactly (the KL to float
rounding).

  python3 bench/bench_eval_cache.py [--bin build/bitlab]
      [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
      [--data experiments/data/heldout.txt] [--prompts FILE] [--seq 256]
      [--max-examples 0] [--max-tokens 64]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/bitlab")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--data", default="experiments/data/heldout.txt")
    ap.add_argument("--prompts", default=None)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--max-examples", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=64)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bitlab_bench_evcache_")
    cache = os.path.join(tmp, "cache")
    base = [a.bin, "eval", "--model", a.model, "--data", a.data, "--seq", str(a.seq),
            "--max-examples", str(a.max_examples), "--teacher-cache", cache, "--quiet"]
    if a.prompts:
        base += ["--prompts", a.prompts, "--max-tokens", str(a.max_tokens)]
    runs = []
    for name in ("first (empty cache)", "second (from the cache)"):
        out = os.path.join(tmp, f"{len(runs)}.json")
        t0 = time.monotonic()
        p = subprocess.run([*base, "--json", out], capture_output=True, text=True)
        wall = time.monotonic() - t0
        if p.returncode != 0:
            sys.exit(f"{name}: bitlab eval failed ({p.returncode}):\n{p.stderr[-2000:]}")
        j = json.load(open(out))
        runs.append((name, wall, j))
        print(f"{name:25s} {wall:8.2f} s wall  (eval {j['seconds']:.2f} s: held-out "
              f"{j['seconds_data']:.2f} s, prompts {j['seconds_prompts']:.2f} s; "
              f"teacher cache {j['teacher_cache']})")
    size = sum(os.path.getsize(os.path.join(cache, f)) for f in os.listdir(cache))
    (_, w1, j1), (_, w2, j2) = runs
    same = all(j1[k] == j2[k] for k in ("teacher_nll", "student_nll", "agreement_tokens",
                                        "agreement_top5_tokens", "scored_tokens"))
    same_ids = [(i["teacher_ids"], i["student_ids"]) for i in j1["prompts"]["items"]] == \
               [(i["teacher_ids"], i["student_ids"]) for i in j2["prompts"]["items"]]
    print(f"scored tokens {j1['scored_tokens']}, cache {size / 1e6:.1f} MB "
          f"({size / max(j1['scored_tokens'], 1):.0f} B per scored token)")
    print(f"ratio second / first: {w2 / w1:.3f} wall, {j2['seconds'] / j1['seconds']:.3f} "
          f"inside eval (target <= 0.4)")
    print(f"NLLs, agreement counts and greedy ids identical: {same and same_ids}; "
          f"KL {j1['kl']:.9g} vs {j2['kl']:.9g} (|d| = {abs(j1['kl'] - j2['kl']):.2g})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
