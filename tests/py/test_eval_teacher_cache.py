"""test_eval_teacher_cache.py - `bitlab eval --teacher-cache DIR` on a tiny
random llama (make_tiny_model.py): evaluated once without the cache, once
filling it, once from it, once from a truncated copy and once from a file of
another key's name.

Filling runs the direct path, so its numbers equal the uncached run's
exactly. Reading runs only the student: the teacher's NLL and top-1 are
stored, so NLLs, perplexities, every agreement count, token counts and the
greedy ids must match exactly; the KL comes from
Σ p_T log p_T − h_S·m_T + logZ_S instead of the direct sum over the
vocabulary, which differs by float rounding only. Its tolerance from the
magnitudes: the terms are about logZ_S ≈ NLL_S + |max logit| (bounded here
by NLL_S + NLL_T + log V), each a dim-long fp32 product (relative error
≲ dim·2⁻²⁴), so |ΔKL| ≤ 4·dim·2⁻²⁴·(NLL_S + NLL_T + log V).
A truncated cache file is named on stderr, the teacher recomputed, the
numbers right, and the file rewritten. Other options (--max-examples 2) key
another file; so does --tokens N choosing those same 2 chunks (the cap is in
the key), with the same numbers, and a rerun with the cap reads its file.
"""
import json
import math
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402
from bitlab_run import WORDS, check, finish, run  # noqa: E402

EXACT = ["examples", "tokens", "scored_tokens", "teacher_nll", "student_nll",
         "teacher_perplexity", "student_perplexity", "perplexity_ratio", "agreement",
         "agreement_tokens", "agreement_top5", "agreement_top5_tokens", "qei"]


def pos_fields(j):
    return {k: v for k, v in j.items() if "first" in k}


def prompt_ids(j):
    return [(it["teacher_ids"], it["student_ids"], it["common_prefix"])
            for it in j["prompts"]["items"]]


def compare(tag, got, ref, kl_tol):
    for k in EXACT:
        check(got[k] == ref[k], f"{tag}: {k} {got[k]!r} == {ref[k]!r}")
    check(pos_fields(got) == pos_fields(ref), f"{tag}: agreement by position identical")
    check(prompt_ids(got) == prompt_ids(ref), f"{tag}: greedy ids and common prefixes identical")
    check(abs(got["kl"] - ref["kl"]) <= kl_tol,
          f"{tag}: KL {got['kl']:.12g} vs {ref['kl']:.12g} (|d| = {abs(got['kl'] - ref['kl']):.3g}"
          f" <= {kl_tol:.3g})")


def main():
    tmp = tempfile.mkdtemp(prefix="bitlab_evcache_")
    w = tiny.write_tiny(tmp, arch="llama", seed=21, fmt="gguf")
    model = w.gguf_path
    rng = np.random.default_rng(5)
    held = os.path.join(tmp, "heldout.txt")
    with open(held, "w") as f:
        f.write(" ".join(" ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), 8)) + "."
                         for _ in range(40)) + "\n")
    prompts = os.path.join(tmp, "prompts.txt")
    with open(prompts, "w") as f:
        f.write("hello world\nthe teacher learns from tokens\n")
    cache = os.path.join(tmp, "cache")
    base = ["eval", "--model", model, "--data", held, "--seq", "32", "--prompts", prompts,
            "--max-tokens", "12"]

    def ev(name, *extra):
        out = os.path.join(tmp, name + ".json")
        p = run([*base, "--json", out, *extra])
        ok = check(p.returncode == 0, f"{name}: bitlab eval exits 0 ({p.stderr[-400:]!r})")
        return (json.load(open(out)) if ok else None), p

    ref, _ = ev("plain")
    if ref is None:
        return
    check(ref["teacher_cache"] == "off", "no --teacher-cache: off")
    dim, vocab = w.config["hidden_size"], w.config["vocab_size"]
    kl_tol = 4 * dim * 2.0 ** -24 * (ref["student_nll"] + ref["teacher_nll"] + math.log(vocab))

    filled, p = ev("fill", "--teacher-cache", cache)
    files = sorted(os.listdir(cache)) if os.path.isdir(cache) else []
    check(filled is not None and filled["teacher_cache"] == "written" and len(files) == 1
          and files[0].startswith("eval-teacher-") and files[0].endswith(".bin"),
          f"first run with --teacher-cache writes one file ({files})")
    if filled is None or len(files) != 1:
        return
    path = os.path.join(cache, files[0])
    for k in EXACT + ["kl"]:
        check(filled[k] == ref[k], f"fill: {k} identical to the uncached run")
    check(prompt_ids(filled) == prompt_ids(ref), "fill: greedy ids identical")
    size = os.path.getsize(path)
    rows = ref["scored_tokens"]
    check(size >= rows * (4 * dim + 20), f"cache size {size} B >= rows·(4·dim + 20)")

    hit, p = ev("hit", "--teacher-cache", cache)
    if hit is not None:
        check(hit["teacher_cache"] == "read", "second run reads the cache")
        check("teacher cached" in p.stderr, "progress lines say the teacher was cached")
        compare("hit", hit, ref, kl_tol)

    # truncated: named, recomputed, right, rewritten
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    trunc, p = ev("trunc", "--teacher-cache", cache)
    if trunc is not None:
        check(path in p.stderr and "recomputing" in p.stderr,
              f"truncated cache named on stderr ({p.stderr[:300]!r})")
        check(trunc["teacher_cache"] == "written", "truncated cache: recomputed and rewritten")
        for k in EXACT + ["kl"]:
            check(trunc[k] == ref[k], f"trunc: {k} identical to the uncached run")
        check(os.path.getsize(path) == len(data), "rewritten file has the full size")
    again, p = ev("again", "--teacher-cache", cache)
    if again is not None:
        check(again["teacher_cache"] == "read", "after the rewrite the cache is read")
        compare("again", again, ref, kl_tol)

    # a different key (fewer examples) does not use the file: a second one
    other, p = ev("other", "--teacher-cache", cache, "--max-examples", "2")
    if other is not None:
        check(other["teacher_cache"] == "written" and len(os.listdir(cache)) == 2,
              "other options: another key, another file")
        # the tokens cap is in the key: --tokens N choosing the same 2 chunks as
        # --max-examples 2 still writes a file of its own, which a rerun reads
        cap = other["scored_tokens"]
        capped, p = ev("capped", "--teacher-cache", cache, "--tokens", str(cap))
        if capped is not None:
            check(capped["examples"] == 2 and capped["teacher_cache"] == "written"
                  and len(os.listdir(cache)) == 3, "--tokens: the cap in the key, a third file")
            for k in EXACT + ["kl"]:
                check(capped[k] == other[k], f"--tokens {cap}: {k} identical to --max-examples 2")
        recap, p = ev("recap", "--teacher-cache", cache, "--tokens", str(cap))
        if recap is not None:
            check(recap["teacher_cache"] == "read" and len(os.listdir(cache)) == 3,
                  "--tokens again: its own file is read")
            compare("recap", recap, other, kl_tol)

    # Lua: two bitlab.eval{} in one run, the second from the first's cache
    lua = os.path.join(tmp, "eval.lua")
    log = os.path.join(tmp, "eval.jsonl")
    lcache = os.path.join(tmp, "lua_cache")
    with open(lua, "w") as f:
        f.write(r"""
local m = bitlab.load_model(arg[1])
local a = bitlab.eval{model = m, data = arg[2], seq = 32, teacher_cache = arg[3],
                      prompts = {"hello world"}, max_tokens = 6}
local b = bitlab.eval{model = m, data = arg[2], seq = 32, teacher_cache = arg[3],
                      prompts = {"hello world"}, max_tokens = 6}
bitlab.event("reports", {a = a, b = b})
""")
    p = run([lua, "--headless", "--log", log, "--", model, held, lcache])
    if check(p.returncode == 0, f"lua: bitlab.eval{{teacher_cache=}} twice ({p.stderr[-300:]!r})"):
        events = {r["event"]: r for r in map(json.loads, open(log)) if "event" in r}
        a, b = events["reports"]["a"], events["reports"]["b"]
        check(a["teacher_cache"] == "written" and b["teacher_cache"] == "read",
              "lua: the first call writes the cache, the second reads it")
        check(all(a[k] == b[k] for k in EXACT) and abs(a["kl"] - b["kl"]) <= kl_tol,
              "lua: both calls give the same numbers")

    # garbage with the right name: named, recomputed
    with open(path, "wb") as f:
        f.write(b"x" * 4096)
    junk, p = ev("junk", "--teacher-cache", cache)
    if junk is not None:
        check(path in p.stderr and junk["kl"] == ref["kl"],
              "corrupt cache: named, numbers of the direct path")


if __name__ == "__main__":
    main()
    finish()
