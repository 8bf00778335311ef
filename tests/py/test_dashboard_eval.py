"""test_dashboard_eval.py - the real bitlab's dashboard (tmux, 120×40) on
tests/lua/dash_eval.lua: a tiny random llama, step records of a budgeted
loop and one bitlab.eval{step = 4}:
  - the header shows bitlab.info's budget, the step without a total, the
    percentage from the records' `progress` and the ETA from `eta_seconds`;
  - before any eval record the held-out panel takes no rows; v shows it
    saying there are none yet, v hides it again;
  - the eval record is one events line with its measures (the numbers of
    the record in the --log file); the panel stays hidden (the user hid it),
    v shows it with its KL and perplexity-ratio charts, v hides it and
    shows it again. (That the first record shows a panel nobody hid is
    tests/c/test_dash_state.c's.)
Helpers from test_dashboard_live.py. Exits 77 (skipped) without tmux.
"""
import os
import re
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402
import test_dashboard_live as live  # noqa: E402
from bitlab_run import WORDS  # noqa: E402

check = live.check
PANEL = "╭─held-out eval"  # its frame: the key bar's status line names it too


def events_text(s):
    """The events panel's rows joined (eval lines wrap at its edge)."""
    lines = s.splitlines()
    top = next((i for i, l in enumerate(lines) if "╭─events" in l), len(lines))
    rows = []
    for line in lines[top + 1:]:
        i = line.rfind("││")
        if i < 0 or not line.endswith("│"):
            break
        rows.append(line[i + 2:-1])
    return "".join(rows).rstrip()


def go(tmp, n):
    open(os.path.join(tmp, "GO.%d" % n), "w").close()


def run(tmp, model, held):
    log, err, exitfile = (os.path.join(tmp, n) for n in ("ev.jsonl", "ev.err", "ev.rc"))
    live.start("%s tests/lua/dash_eval.lua --log %s -- %s %s %s 2> %s"
               % (live.BIN, log, model, held, tmp, err), exitfile)
    s = live.wait_for(lambda s: "step 3" in s and "30%" in s, "step 3 at 30%")
    header = "\n".join(s.splitlines()[:3])
    check("budget 30 min" in header, "the header shows the budget")
    check("step 3 " in header and "step 3/" not in header, "no total: step N alone")
    check("ETA 7m00s" in header, "ETA from eta_seconds (420 s): %r" % header.splitlines()[1])
    check(PANEL not in s, "no eval record: no held-out panel")
    live.keys("v")
    s = live.wait_for(lambda s: PANEL in s, "v shows the panel")
    check("no eval records yet" in s, "the empty panel says so")
    live.keys("v")
    s = live.wait_for(lambda s: PANEL not in s, "v hides it")

    go(tmp, 1)
    s = live.wait_for(lambda s: "eval:" in s, "the eval record on screen")
    check(PANEL not in s, "hidden by v before: the user's choice holds when a record arrives")
    header = "\n".join(s.splitlines()[:3])
    check("40%" in header and "ETA 6m00s" in header, "step 4's progress and ETA")
    rec = [r for r in live.records(log) if r.get("event") == "eval"]
    check(len(rec) == 1 and rec[0]["step"] == 4, "one eval record at step 4 in the log")
    if rec:
        r = rec[0]
        ppl = r["student_perplexity"]
        want = "     4 eval: ppl %s (×%.3g teacher) KL %.3g top-1 %.1f%% top-5 %.1f%% first-8 %.0f%%" % (
            "%.0f" % ppl if ppl >= 100 else "%.3g" % ppl, r["perplexity_ratio"], r["kl"],
            100 * r["agreement"], 100 * r["agreement_top5"], 100 * r["agreement_first8"])
        text = events_text(s)
        check(want in text, "the events line %r in %r" % (want, text))
    live.keys("v")
    s = live.wait_for(lambda s: PANEL in s, "v shows the panel")
    check("1 eval · v hides" in s and "KL" in s and "ppl ratio" in s,
          "the held-out panel: count, KL and perplexity ratio")
    check(re.search(r"│[\u2800-\u28ff]+", s.split(PANEL)[1]) is not None,
          "the held-out panel draws Braille")
    check("no eval records yet" not in s, "no 'none yet' once there is one")
    live.keys("v")
    live.wait_for(lambda s: PANEL not in s, "v hides the panel")
    live.keys("v")
    live.wait_for(lambda s: PANEL in s and "1 eval" in s, "v shows it again")

    live.keys("q")
    live.wait_for(lambda s: "Save a checkpoint" in s, "the quit question")
    live.keys("n")
    live.exit_code(exitfile)
    with open(err) as f:
        live.clean_stderr(f.read(), "the dashboard eval run")


def main():
    if not shutil.which("tmux"):
        print("tmux not found: skipped")
        return 77
    if not os.path.exists(live.BIN):
        print("FAIL: %s not built" % live.BIN)
        return 1
    tmp = tempfile.mkdtemp(prefix="bitlab_dash_eval_")
    try:
        model = tiny.write_tiny(tmp, arch="llama", seed=5, fmt="gguf").gguf_path
        rng = np.random.default_rng(1)
        held = os.path.join(tmp, "heldout.txt")
        with open(held, "w") as f:
            f.write(" ".join(" ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), 8)) + "."
                             for _ in range(12)) + "\n")
        try:
            run(tmp, model, held)
        except AssertionError as e:
            check(False, str(e))
    finally:
        live.tmux("kill-session", "-t", live.SESSION, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    if live.failures:
        print("%d failure(s)" % len(live.failures))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
