"""test_dashboard_tmux.py - the live dashboard driven through a real terminal.

Runs tests/tools/dash_replay (the dashboard fed from
tests/data/metrics_sample.jsonl by a fake worker thread) inside a detached
tmux session at 80×24, reads the screen with `capture-pane -p` and types keys
with `send-keys`: the panels and numbers are there; a knob changed with the
arrow keys reaches the worker and is in the next step's record; pause and
`n` advance exactly one step; `g` renders both generation columns and the
common-prefix length; the layout follows `resize-window` to 120×40 and back;
`q` then `y` writes a valid checkpoint. Exits 77 (skipped) without tmux.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SAMPLE = os.path.join(ROOT, "tests", "data", "metrics_sample.jsonl")
SESSION = "bitlab_dash_%d" % os.getpid()


def tool_path():
    build = os.environ.get("BITLAB_BUILD_DIR", "build")
    return os.path.join(build, "dash_replay")


def tmux(*args, check=True):
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=check).stdout


def screen():
    return tmux("capture-pane", "-p", "-t", SESSION)


def wait_for(pred, what, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        s = screen()
        if pred(s):
            return s
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s; screen:\n%s" % (what, screen()))


def log_records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def steps(path):
    return [r for r in log_records(path) if "step" in r and "knobs" in r and "event" not in r]


def keys(*k):
    tmux("send-keys", "-t", SESSION, *k)


def main():
    if not shutil.which("tmux"):
        print("tmux not found: skipped")
        return 77
    tool = tool_path()
    if not os.path.exists(tool):
        print("FAIL: %s not built" % tool)
        return 1
    failures = []

    def check(cond, msg):
        if not cond:
            failures.append(msg)
            print("FAIL:", msg)

    tmp = tempfile.mkdtemp(prefix="bitlab_dash_")
    out, ckpt = os.path.join(tmp, "out.jsonl"), os.path.join(tmp, "ckpt.json")
    cmd = ("env LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=xterm-256color %s --metrics %s --out %s "
           "--checkpoint %s --rate 40 --knob kl_weight=1:0:5:0.25 --knob lr_scale=1:0.1:10:0.1"
           "; echo dash_replay exited $?; sleep 30") % (tool, SAMPLE, out, ckpt)
    tmux("kill-session", "-t", SESSION, check=False)
    tmux("new-session", "-d", "-s", SESSION, "-x", "80", "-y", "24", cmd)
    try:
        # panels and numbers at 80×24
        s = wait_for(lambda s: "step 2" in s or "step 3" in s or "step 4" in s, "steps")
        s = wait_for(lambda s: "losses" in s and "knobs" in s and "events" in s, "panels")
        for word in ("RUNNING", "losses", "total", "min", "λ", "lr", "grad norm", "knobs",
                     "kl_weight", "lr_scale", "teacher", "events", "tok/s", "ETA"):
            check(word in s, "80x24 screen lacks %r" % word)
        check(any(0x2800 <= ord(c) <= 0x28FF for c in s), "no Braille chart cells")
        check(len(s.splitlines()) <= 24 and max(len(l) for l in s.splitlines()) <= 80,
              "screen exceeds 80x24")

        # pause, then one step with n
        keys("Space")
        wait_for(lambda s: "PAUSED" in s, "PAUSED")
        time.sleep(0.5)  # the worker reaches its step boundary and waits there
        n0 = len(steps(out))
        time.sleep(0.5)
        check(len(steps(out)) == n0, "steps advanced while paused")
        keys("n")
        time.sleep(0.6)
        n1 = len(steps(out))
        check(n1 == n0 + 1, "n advanced %d steps, expected 1" % (n1 - n0))

        # a knob change with the arrow keys reaches the next step's record
        keys("Right")  # kl_weight is selected: 1 → 1.25
        wait_for(lambda s: "1.25" in s, "the new knob value on screen")
        keys("n")
        time.sleep(0.6)
        recs = log_records(out)
        knob_events = [r for r in recs if r.get("event") == "knob"]
        check(knob_events and knob_events[-1]["name"] == "kl_weight"
              and knob_events[-1]["new"] == 1.25, "no knob event kl_weight → 1.25: %r" % knob_events)
        last = steps(out)[-1]
        check(last["knobs"].get("kl_weight") == 1.25,
              "the step after the change has kl_weight %r" % last["knobs"].get("kl_weight"))
        # the second knob with ↓ and ←: lr_scale 1 → 0.9
        keys("Down", "Left", "n")
        time.sleep(0.6)
        check(steps(out)[-1]["knobs"].get("lr_scale") == 0.9, "lr_scale not 0.9 after ↓←")

        # generation: both columns and the common prefix (5 tokens)
        keys("g")
        s = wait_for(lambda s: "Paris" in s and "Lyon" in s, "both generation columns")
        check("student" in s and "teacher" in s, "column titles missing")
        check("common prefix 5/" in s, "common-prefix length not shown")
        keys("Tab")
        s = wait_for(lambda s: "· 2/2" in s, "Tab to the second prompt")
        check("river" in s, "the second prompt is not shown")

        # help from the key table
        keys("?")
        s = wait_for(lambda s: "this help" in s, "the help overlay")
        check("quit (asks whether to checkpoint)" in s, "help lacks q")
        keys("Escape")
        wait_for(lambda s: "this help" not in s, "help closed")

        # resize: uses the larger window, then back to 80×24
        tmux("resize-window", "-t", SESSION, "-x", "120", "-y", "40")
        s = wait_for(lambda s: len(s.splitlines()) >= 39 and any(len(l) > 100 for l in s.splitlines())
                     and "events" in s, "a 120x40 layout")
        check(max(len(l.rstrip()) for l in s.splitlines()) > 100, "120x40 not used")
        tmux("resize-window", "-t", SESSION, "-x", "80", "-y", "24")
        s = wait_for(lambda s: "losses" in s and "events" in s and
                     max(len(l.rstrip()) for l in s.splitlines()) <= 80, "the 80x24 layout again")

        # resume, then quit with a checkpoint
        keys("Space")
        wait_for(lambda s: "RUNNING" in s, "RUNNING again")
        keys("q")
        wait_for(lambda s: "Save a checkpoint" in s, "the quit question")
        keys("y")
        wait_for(lambda s: "dash_replay exited 0" in s, "dash_replay to exit 0")
        with open(ckpt) as f:
            ck = json.load(f)
        check(isinstance(ck.get("step"), (int, float)) and ck["step"] > 0, "checkpoint step %r" % ck)
        check(ck.get("knobs") == {"kl_weight": 1.25, "lr_scale": 0.9}, "checkpoint knobs %r" % ck)
        recs = log_records(out)
        check(any(r.get("applied") == "quit" and r.get("checkpoint") for r in recs), "quit not logged")
    except AssertionError as e:
        failures.append(str(e))
        print("FAIL:", e)
    finally:
        tmux("kill-session", "-t", SESSION, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("%d failure(s)" % len(failures))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
