"""test_dataset_stats.py - long examples (bitlab.dataset{seq=, long=}), ds:stats()
and their warning, then the instability warnings of bitlab.train.

On a fresh tiny random llama (make_tiny_model), tests/lua/dataset_stats.lua
builds a JSONL file of texts of many lengths under each policy; every count
(examples, tokens, truncated, split, skipped, tokens dropped, padding
fraction) and the split pieces' ids are checked against what this file
computes from the tokenizer's own ids (the `tokenizers` library on the
model's tokenizer.json), and the long-example warning must come once per
dataset, on stderr and as a "warning" event. tests/lua/instability.lua
trains a stable run (no warning) and one made unstable on purpose (a huge
lr, a tight clip), whose warnings are checked in the metrics and on stderr.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402

BIN = os.environ.get("BITLAB_BIN", "build/bitlab")
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
WARN = "bitlab: warning:"
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(script, log, *args, timeout=600):
    p = subprocess.run([BIN, script, "--headless", "--log", log, "--", *args],
                       capture_output=True, text=True, timeout=timeout)
    if any(m in p.stderr for m in SANITIZER_MARKS):
        failures.append(f"sanitizer report from {script}")
        print(p.stderr[-3000:])
    if p.returncode:
        print(p.stdout[-3000:], p.stderr[-3000:])
    with open(log) as f:
        recs = [json.loads(line) for line in f]
    return p, recs


def texts(rng, n):
    """Lines of 1..40 words: a spread of lengths around seq."""
    words = ["the", "model", "ternary", "weights", "hello", "world", "student", "teacher",
             "learns", "from", "tokens", "and", "bits", "42", "is", "a", "of"]
    return [" ".join(words[int(rng.integers(len(words)))] for _ in range(int(rng.integers(1, 41))))
            for _ in range(n)]


def pieces(ids, S):
    """The reference split: pieces of <= S tokens, each starting on the last
    token of the one before (every text token is a target, so all are kept)."""
    if len(ids) <= S:
        return [ids]
    return [ids[at:at + S] for at in range(0, len(ids) - 1, S - 1)]


def expect(lens_or_ids, S, policy):
    """The stats a dataset of these examples must report at seq S."""
    lens = [len(x) for x in lens_or_ids]
    long_ = [n for n in lens if n > S]
    if policy == "truncate":
        kept = [min(n, S) for n in lens]
        return dict(examples=len(lens), tokens=sum(kept), long_examples=len(long_),
                    truncated=len(long_), split=0, skipped=0, tokens_dropped=sum(n - S for n in long_))
    if policy == "skip":
        kept = [n for n in lens if n <= S]
        return dict(examples=len(kept), tokens=sum(kept), long_examples=len(long_), truncated=0,
                    split=0, skipped=len(long_), tokens_dropped=sum(long_))
    ps = [p for x in lens_or_ids for p in pieces(list(x), S)]
    return dict(examples=len(ps), tokens=sum(len(p) for p in ps), long_examples=len(long_),
                truncated=0, split=len(long_), skipped=0, tokens_dropped=0)


def check_stats(got, want, what):
    bad = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    check(not bad, f"{what}: stats match the reference" + (f" (got, want): {bad}" if bad else ""))


def dataset_part(tmp, model, tok):
    S, B, N = 24, 4, 40
    lines = texts(np.random.default_rng(11), N)
    ids = [tok.encode(t).ids for t in lines]
    added = "the model learns from tokens and bits " * 8
    added_ids = tok.encode(added).ids
    assert sum(len(x) > S for x in ids) >= 5 and sum(len(x) <= S for x in ids) >= 5, "lengths spread"
    assert len(added_ids) > S
    data = os.path.join(tmp, "long.jsonl")
    with open(data, "w") as f:
        for t in lines:
            f.write(json.dumps({"text": t}) + "\n")
    log = os.path.join(tmp, "dstats.jsonl")
    p, recs = run("tests/lua/dataset_stats.lua", log, model, data, str(S), str(B))
    check(p.returncode == 0 and "all checks passed" in p.stdout, "dataset_stats.lua passes")
    ev = {r["policy"]: r for r in recs if r.get("event") == "dstats"}
    warns = [r for r in recs if r.get("event") == "warning"]

    # the tokenizer agrees with the dataset on every example's length
    check(ev["whole_before"]["lens"] == [len(x) for x in ids],
          "example lengths are the tokenizer's (no special tokens added by this tokenizer)")

    # no seq: whole examples; batches of length S cut the long rows
    n_long = sum(len(x) > S for x in ids)
    total = sum(len(x) for x in ids)
    st = ev["whole_before"]["stats"]
    check_stats(st, dict(examples=N, tokens=total, longest=max(map(len, ids)), truncated=0,
                         split=0, skipped=0, rows=0, long="truncate"), "no seq, before batches")
    check("seq" not in st, "no seq reported without one")
    check(abs(st["padding_fraction"] - (1 - total / (N * max(map(len, ids))))) < 1e-9,
          "padding fraction before batches: the dataset at its longest example")
    st = ev["whole_epoch"]["stats"]
    served = sum(min(len(x), S) for x in ids)
    check_stats(st, dict(examples=N, tokens=total, truncated=n_long, truncated_rows=n_long,
                         rows=N, tokens_dropped=0), "no seq, one epoch at T = S")
    check(abs(st["padding_fraction"] - (1 - served / (N * S))) < 1e-9,
          f"padding fraction of the served batches ({st['padding_fraction']:.6f} ~ {1 - served / (N * S):.6f})")
    more = sum(len(x) > S for x in ids[:B])
    check(ev["whole_more"]["stats"]["truncated_rows"] == n_long + more,
          "rows cut again in the next epoch are counted again")

    # each policy at seq = S, then one more (long) example added
    for policy in ("truncate", "split", "skip"):
        e = ev[policy]
        check_stats(e["before"], expect(ids, S, policy), f"{policy} at seq {S}")
        check(e["before"]["seq"] == S and e["before"]["long"] == policy, f"{policy}: seq and long reported")
        want = expect(ids, S, policy)
        pf = 1 - want["tokens"] / (want["examples"] * S)
        check(abs(e["before"]["padding_fraction"] - pf) < 1e-9,
              f"{policy}: padding fraction before batches, at seq")
        if policy == "truncate":
            check(e["lens"] == [min(len(x), S) for x in ids], "truncate keeps each example's first S tokens")
        if policy == "skip":
            check(e["lens"] == [len(x) for x in ids if len(x) <= S], "skip keeps the short examples in order")
        if policy == "split":
            ref = [p for x in ids for p in pieces(x, S)]
            check(e["pieces"] == ref, f"split pieces are the reference's ({len(ref)} pieces, one token overlap)")
            covered = sum(len(p) - 1 for p in ref)
            check(covered == sum(len(x) - 1 for x in ids), "split: every token but the first predicted once")
        st = e["stats"]
        T = e["batch_T"]
        lens2 = e["lens"][:2]
        check(st["rows"] == 2 and abs(st["padding_fraction"] - (1 - sum(lens2) / (2 * T))) < 1e-9,
              f"{policy}: padding fraction of two served rows at T = {T}")
        check_stats(e_added := ev[policy + "_added"]["stats"], expect(ids + [added_ids], S, policy),
                    f"{policy}: an example added later is fitted too")
        del e_added

    # the warning: once per dataset that lost tokens (no seq, truncate, skip,
    # the all-skipped one), never for split, with the counts
    kinds = [(w.get("kind"), w.get("long"), w.get("long_examples"), w.get("tokens_dropped")) for w in warns]
    want = [("long_examples", "truncate", n_long, sum(len(x) - S for x in ids if len(x) > S)),
            ("long_examples", "truncate", n_long, sum(len(x) - S for x in ids if len(x) > S)),
            ("long_examples", "skip", n_long, sum(len(x) for x in ids if len(x) > S)),
            ("long_examples", "skip", 1, None)]
    check(len(kinds) == 4 and all(k[:3] == w[:3] and (w[3] is None or k[3] == w[3])
                                  for k, w in zip(kinds, want)),
          f"one warning event per lossy dataset with the counts: {kinds}")
    check(all(str(n_long) in w["message"] for w in warns[:3]), "the warning's message gives the count")
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith(WARN)]
    check(len(lines) == 4 and "lose their tails" in lines[0] and "truncated" in lines[1]
          and "skipped" in lines[2], f"the warning printed once per dataset on stderr ({len(lines)} lines)")


def instability_part(tmp, model):
    log = os.path.join(tmp, "stable.jsonl")
    p, recs = run("tests/lua/instability.lua", log, model, "stable")
    steps = [r for r in recs if "event" not in r and "total" in r]
    check(p.returncode == 0 and len(steps) == 30, "the stable run trains 30 steps")
    check(not any(r.get("event") == "warning" for r in recs), "a stable run logs no warning")
    check(WARN not in p.stderr, "a stable run prints no warning")
    check(all(r["grad_norm"] < 10 for r in steps), "the stable run's gradient norms stay below 10 x clip")

    log = os.path.join(tmp, "unstable.jsonl")
    p, recs = run("tests/lua/instability.lua", log, model, "unstable")
    check(p.returncode == 0, "the unstable run completes")
    steps = [r for r in recs if "event" not in r and "total" in r]
    warns = [r for r in recs if r.get("event") == "warning"]
    ref = reference_warnings(steps, clip=1.0)
    got = [(w["step"], w["kind"], w.get("term")) for w in warns]
    check(got == [(s, k, t) for s, k, t, _ in ref],
          f"the warnings are the reference's (step, kind, term): {got} vs {[x[:3] for x in ref]}")
    kinds = {k for _, k, _, _ in ref}
    check(kinds == {"grad_norm", "loss_jump"}, "the unstable run warns of both (else it is not unstable enough)")
    unlimited = reference_warnings(steps, clip=1.0, every=1)
    check(len(unlimited) > len(ref),
          f"rate-limited: {len(ref)} warnings where every step would give {len(unlimited)}")
    for w, (_, kind, _, fields) in zip(warns, ref):
        ok = all(abs(w[k] - v) <= 1e-9 * max(1.0, abs(v)) if isinstance(v, float) else w[k] == v
                 for k, v in fields.items())
        check(ok, f"step {w['step']} {kind}: fields {fields} (got { {k: w.get(k) for k in fields} })")
        check("lower lr" in w["message"] and "lambda" in w["message"], f"step {w['step']} {kind}: the message says what to try")
    jumps = [w for w in warns if w["kind"] == "loss_jump"]
    before = float(np.median([r["total"] for r in steps if r["step"] < 12]))
    check(bool(jumps) and jumps[0]["step"] == 12 and jumps[0]["term"] in ("kl", "cos")
          and jumps[0]["total"] < 3 * before,
          "the jump of the distillation terms at lambda 0 -> 1 (step 12) is warned at once, "
          "though the CE-dominated total barely moves")
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith(WARN)]
    check(len(lines) == len(warns) and all(f"step {w['step']}:" in ln for ln, w in zip(lines, warns)),
          f"each warning also on stderr ({len(lines)} lines)")


TERMS = ("total", "ce", "kl", "topk", "cos", "mag")


def reference_warnings(steps, clip, grad_factor=10, grad_steps=3, loss_factor=3, window=20,
                       min_jump=0.1, every=50):
    """The documented thresholds of bitlab.train, applied to the logged steps:
    [(step, kind, term, fields)]."""
    out, over, hist, last = [], 0, {k: [] for k in TERMS}, {}

    def warn(step, kind, term, fields):
        if kind in last and step - last[kind] < every:
            return
        last[kind] = step
        out.append((step, kind, term, fields))

    for r in steps:
        if r["skipped"]:
            continue
        g = r["grad_norm"]
        over = over + 1 if g > grad_factor * clip else 0
        if over >= grad_steps:
            warn(r["step"], "grad_norm", None, dict(grad_norm=g, clip=clip, steps=over))
        worst = None
        for k in TERMS:
            v = r[k]
            if v is None or not np.isfinite(v):
                continue
            h = hist[k]
            if (k == "total" or r["weights"].get(k, 0) != 0) and len(h) >= min(5, window):
                med = float(np.median(h))
                ratio = v / max(med, 1e-30)
                if v > loss_factor * med and v - med > min_jump and (worst is None or ratio > worst[0]):
                    worst = (ratio, k, dict(value=v, median=med, window=len(h), term=k))
            h.append(v)
            if len(h) > window:
                h.pop(0)
        if worst:
            warn(r["step"], "loss_jump", worst[1], worst[2])
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="bitlab_dstats_")
    w = tiny.write_tiny(tmp, arch="llama", seed=7, fmt="both")
    tok = Tokenizer.from_file(os.path.join(w.hf_dir, "tokenizer.json"))
    dataset_part(tmp, w.gguf_path, tok)
    instability_part(tmp, w.gguf_path)
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all dataset stats / instability checks passed")


if __name__ == "__main__":
    main()
