"""metrics_log.py - reading bitlab's metrics stream (--log FILE, one JSON
record per line) in the tests that compare runs step by step."""
import json
import os

# what a bit-exact comparison of two runs' steps looks at
STEP_FIELDS = ("ce", "kl", "topk", "cos", "mag", "total", "grad_norm", "block_grad_norm",
               "kind_grad_norm", "lambda", "lr", "adapter")


def step_records(path):
    """{step: record} of the step records in a log (events left out); {} before it exists."""
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if "event" not in r and "step" in r:
                    out[r["step"]] = r
    return out


def step_diffs(a, b, fields=STEP_FIELDS):
    """(step, field) pairs where b's steps differ from a's (steps missing from a count)."""
    return [(s, k) for s in b for k in fields if s not in a or a[s].get(k) != b[s].get(k)]


def steps_equal(ref, got, steps, fields=STEP_FIELDS, shown=5):
    """Whether got holds exactly the step numbers `steps`, each equal to ref's
    in every field; the first differences are printed."""
    diff = step_diffs(ref, got, fields)
    for s, k in diff[:shown]:
        print(f"  step {s} {k}: {ref.get(s, {}).get(k)!r} vs {got[s].get(k)!r}")
    return sorted(got) == list(steps) and not diff
