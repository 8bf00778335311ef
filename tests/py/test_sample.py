"""test_sample.py - batched teacher sampling beyond the C test (tests/c/test_sample.c).

The draw (bl_sample_token, through tests/tools/sample_tool) against the
distribution numpy computes independently on a fixed random logit vector:
over N seeded draws every token's count lies within a binomial bound of
N·q (q: softmax(logits / T) cut to the top-p nucleus and renormalised), and
no token outside the nucleus is ever drawn. Then, on the tiny random model,
tests/lua/sample.lua (bitlab.sample's options, greedy rows against
model:generate, seeded reproducibility, every filter reason, teacher_data →
dataset → JSONL → bitlab.train) and `bitlab bench sample`.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402

BIN = os.environ.get("BITLAB_BIN", "build/bitlab")
TOOL = os.path.join(os.environ.get("BITLAB_BUILD_DIR", "build"), "sample_tool")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def nucleus_probs(logits, temperature, top_p):
    """The reference: float64 softmax(l / T), tokens ranked by logit (ties:
    lower id), the shortest prefix reaching top_p, renormalised."""
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = sorted(range(len(logits)), key=lambda i: (-float(logits[i]), i))
    cum, keep = 0.0, []
    for i in order:
        if cum >= top_p:
            break
        keep.append(i)
        cum += p[i]
    q = np.zeros_like(p)
    q[keep] = p[keep]
    return q / q.sum(), p, order


def test_draws():
    rng = np.random.default_rng(20261203)
    logits = (rng.standard_normal(50) * 2.0).astype(np.float32)
    n = 40000
    for temperature, top_p in ((1.0, 1.0), (0.7, 0.9), (1.5, 0.5), (0.5, 0.3), (2.0, 0.97)):
        q, p, order = nucleus_probs(logits, temperature, top_p)
        # the cut must not sit within rounding of a prefix sum, or the two
        # implementations could legitimately keep different sets
        sums = np.cumsum(p[order])
        check(np.min(np.abs(sums - top_p)) > 1e-6 or top_p == 1.0,
              f"T={temperature} top_p={top_p}: the nucleus boundary is well defined")
        out = subprocess.run([TOOL, str(temperature), str(top_p), str(n), "11"],
                             input=" ".join(repr(float(x)) for x in logits),
                             capture_output=True, text=True, timeout=120)
        check(out.returncode == 0, f"sample_tool runs ({out.stderr.strip()})")
        if out.returncode:
            continue
        counts = np.array([int(c) for c in out.stdout.split()])
        check(len(counts) == len(logits) and counts.sum() == n, "one count per token, N in all")
        outside = int(counts[q == 0].sum())
        check(outside == 0, f"T={temperature} top_p={top_p}: {outside} draws outside the nucleus")
        # each count is Binomial(n, q_i): 5 sigma (+1 for the discreteness)
        # fails a correct sampler with probability < 1e-5 over these tokens
        sigma = np.sqrt(n * q * (1 - q))
        dev = np.abs(counts - n * q) - (5 * sigma + 1)
        worst = int(np.argmax(dev))
        check(dev.max() <= 0, f"T={temperature} top_p={top_p}: counts within 5 sigma of N*q "
              f"(worst token {worst}: {counts[worst]} vs {n * q[worst]:.1f})")
    # temperature 0 is the argmax, ties to the lowest id, whatever u
    tied = np.array([0.5, 2.0, 2.0, -1.0], dtype=np.float32)
    out = subprocess.run([TOOL, "0", "1", "100", "3"], input=" ".join(map(str, tied)),
                         capture_output=True, text=True, timeout=60)
    check(out.stdout.split() == ["0", "100", "0", "0"], "temperature 0: the lowest tied argmax")


def run_bitlab(*args, timeout=600):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


def main():
    test_draws()
    tmp = tempfile.mkdtemp(prefix="bitlab_sample_")
    model = tiny.write_tiny(tmp, arch="llama", seed=3, fmt="gguf").gguf_path
    p = run_bitlab("tests/lua/sample.lua", "--headless", "--", model, tmp)
    check(p.returncode == 0 and "all checks passed" in p.stdout, "sample.lua passes")
    if p.returncode or "FAIL" in p.stdout:
        print(p.stdout[-4000:], p.stderr[-3000:])

    p = run_bitlab("bench", "sample", "--model", model, "--batch", "4", "--rows", "6",
                   "--max-tokens", "8")
    rec = json.loads(p.stdout) if p.returncode == 0 else {}
    check(rec.get("bench") == "sample" and rec.get("rows") == 6 and rec.get("tokens", 0) > 0
          and rec.get("tokens_per_s", 0) > 0 and 1 <= rec.get("mean_live_rows", 0) <= 4,
          f"bench sample prints its JSON line ({p.stdout.strip()} {p.stderr.strip()})")
    p = run_bitlab("bench", "sample", "--model", model, "--batch", "0")
    check(p.returncode == 2 and "--batch" in p.stderr, "bench sample: --batch 0 refused by name")
    p = run_bitlab("bench", "sample", "--model", model, "--max-tokens", "100000")
    check(p.returncode == 1 and "context" in p.stderr, "bench sample: a too long answer refused")

    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("test_sample: all passed")


if __name__ == "__main__":
    main()
