"""test_eval_record.py - every bitlab.eval{} logs one "eval" record to the
metrics stream (what the dashboard's events line and held-out panel read),
checked in a headless Lua run on a tiny random llama (make_tiny_model.py)
with --log:
  - the record's measures are the returned report's, field for field, and
    nothing else;
  - step = N is the record's step; without it, before any step record,
    the record has no step, and after bitlab.poll(7) + bitlab.log{step = 7}
    it carries 7;
  - a step that is not an integer >= 0 is an argument error naming `step`,
    raised before anything is evaluated (no record is written).
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

# the report's fields an eval record carries (src/script/l_evaluate.c)
FIELDS = ["teacher_perplexity", "student_perplexity", "perplexity_ratio", "kl", "agreement",
          "agreement_top5", "agreement_first8", "agreement_first32", "scored_tokens",
          "teacher_cache", "seconds"]

SCRIPT = r"""
local m = bitlab.load_model(arg[1])
local function ev(extra)
  local o = {model = m, data = arg[2], seq = 16}
  for k, v in pairs(extra) do o[k] = v end
  local rep = bitlab.eval(o)
  bitlab.event("report", {report = rep})
end
ev{}                      -- no step record yet: no step
ev{step = 120}
for _, bad in ipairs{"ten", -1, 2.5, true} do
  local ok, err = pcall(bitlab.eval, {model = m, data = arg[2], step = bad})
  bitlab.event("bad_step", {ok = ok, err = tostring(err)})
end
bitlab.poll(7)
bitlab.log{step = 7, total = 1.5}
ev{}                      -- the last step record's step
ev{step = 0, teacher_cache = arg[3]}
"""


def same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def main():
    tmp = tempfile.mkdtemp(prefix="bitlab_evrec_")
    model = tiny.write_tiny(tmp, arch="llama", seed=3, fmt="gguf").gguf_path
    rng = np.random.default_rng(2)
    held = os.path.join(tmp, "heldout.txt")
    with open(held, "w") as f:  # 16-token chunks: no scored token at position >= 32
        f.write(" ".join(" ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), 8)) + "."
                         for _ in range(12)) + "\n")
    script, log = os.path.join(tmp, "ev.lua"), os.path.join(tmp, "ev.jsonl")
    with open(script, "w") as f:
        f.write(SCRIPT)
    p = run([script, "--headless", "--log", log, "--", model, held, os.path.join(tmp, "cache")])
    if not check(p.returncode == 0, f"the script runs ({p.stderr[-800:]!r})"):
        return
    recs = [json.loads(line) for line in open(log)]
    evals = [r for r in recs if r.get("event") == "eval"]
    reports = [r["report"] for r in recs if r.get("event") == "report"]
    bad = [r for r in recs if r.get("event") == "bad_step"]
    check(len(evals) == 4 and len(reports) == 4, f"one eval record per call ({len(evals)})")
    if len(evals) != 4 or len(reports) != 4:
        return
    for i, (e, rep) in enumerate(zip(evals, reports)):
        for k in FIELDS:
            check(k in e and same(e[k], rep.get(k)), f"call {i + 1}: {k} {e.get(k)!r} == report's {rep.get(k)!r}")
        extra = set(e) - set(FIELDS) - {"event", "step"}
        check(not extra, f"call {i + 1}: no other fields ({sorted(extra)})")
    check(evals[0]["agreement_first32"] == evals[0]["agreement"],
          "16-token chunks: every scored token is at a position < 32")
    check(evals[0]["kl"] > 0 and evals[0]["scored_tokens"] > 0, "real measures")
    check("step" not in evals[0], f"no step given, none logged: no step ({evals[0].get('step')!r})")
    check(evals[1].get("step") == 120, f"step = 120 is the record's step ({evals[1].get('step')!r})")
    check(evals[2].get("step") == 7, f"no step given after step 7's record: 7 ({evals[2].get('step')!r})")
    check(evals[3].get("step") == 0 and evals[3]["teacher_cache"] == "written",
          "step = 0 is a step; teacher_cache is the report's")
    check(len(bad) == 4 and all(not b["ok"] and "'step'" in b["err"] for b in bad),
          f"a bad step is an error naming 'step' ({[b['err'] for b in bad]})")
    check(all("must be an integer in 0.." in b["err"] for b in bad),
          f"the error says what was expected ({bad[0]['err']!r})")
    order = [r.get("event") for r in recs if r.get("event") in ("eval", "bad_step")]
    check(order == ["eval", "eval", "bad_step", "bad_step", "bad_step", "bad_step", "eval", "eval"],
          f"a refused call logs no eval record ({order})")


if __name__ == "__main__":
    main()
    finish()
