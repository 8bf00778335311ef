"""test_dashboard_live.py - the REAL bitlab binary's dashboard, driven in tmux.

Runs `bitlab tests/lua/dash_live.lua` (bitlab.train on a tiny random llama
GGUF from make_tiny_model, paced at ~0.1 s a step) in a detached tmux
session at 120×40, reads the screen with `capture-pane -p` and types keys
with `send-keys`:
  - the panels and live numbers are there (header step/total, losses, knobs);
  - ↓ → changes the knob w_kl and the metrics log shows the new weight from
    the step the change was applied at (and the old one before);
  - space pauses (no step records arrive), n runs exactly one step;
  - g renders both generation columns; Tab cycles the prompts; e types a new
    prompt that is generated for;
  - r rotates the adapter and s saves a checkpoint (both logged);
  - l, +, ?, Ctrl-L; the layout follows resize-window to 80×24 and back;
  - q then y quits with a checkpoint, bitlab exits 0, and the checkpoint is
    valid: a headless --resume run loads it and continues from its step.
A second, short run hits a script error: the traceback is on screen, the
dashboard pauses, and q y still writes a checkpoint (exit 1).
Exits 77 (skipped) without tmux.
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
sys.path.insert(0, HERE)
import make_tiny_model as tiny  # noqa: E402

BIN = os.environ.get("BITLAB_BIN", "build/bitlab")
SESSION = "bitlab_live_%d" % os.getpid()
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def tmux(*args, check=True):
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=check).stdout


def screen():
    return tmux("capture-pane", "-p", "-t", SESSION)


def keys(*k):
    tmux("send-keys", "-t", SESSION, *k)


def wait_for(pred, what, timeout=15.0):
    end = time.time() + timeout
    while time.time() < end:
        s = screen()
        if pred(s):
            return s
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s; screen:\n%s" % (what, screen()))


def wait_file(pred, what, timeout=15.0):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s" % what)


def records(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            if line.endswith("\n"):  # a line still being written is skipped
                out.append(json.loads(line))
    return out


def steps(path):
    return [r for r in records(path) if "event" not in r]


def events(path, name):
    return [r for r in records(path) if r.get("event") == name]


def start(cmd, exitfile):
    tmux("kill-session", "-t", SESSION, check=False)
    # the exit code goes to a file; the pane stays so the screen can be read
    full = ("env LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=xterm-256color %s; echo $? > %s; sleep 60"
            % (cmd, exitfile))
    # killing the server's last session makes the server exit, and a
    # new-session that reaches it while it is exiting fails: try again
    for attempt in range(10):
        p = subprocess.run(["tmux", "new-session", "-d", "-s", SESSION, "-x", "120", "-y", "40",
                            full], capture_output=True, text=True)
        if p.returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError("tmux new-session failed 10 times: " + p.stderr.strip())


def clean_stderr(text, what):
    check(not any(m in text for m in SANITIZER_MARKS), "no sanitizer report from %s" % what)
    if any(m in text for m in SANITIZER_MARKS):
        print(text[-3000:])


def exit_code(exitfile):
    def read():
        if os.path.exists(exitfile):
            with open(exitfile) as f:
                t = f.read().strip()
            return t if t else None
        return None
    return int(wait_file(read, "bitlab to exit"))


def main_run(tmp, model):
    log, ckpt = os.path.join(tmp, "live.jsonl"), os.path.join(tmp, "live.ckpt")
    err, exitfile = os.path.join(tmp, "live.err"), os.path.join(tmp, "live.rc")
    start("%s tests/lua/dash_live.lua --log %s -- %s %s 100000 0.1 2> %s"
          % (BIN, log, model, ckpt, err), exitfile)

    # panels and numbers
    s = wait_for(lambda s: "RUNNING" in s and "/100000" in s and "w_kl" in s, "the running dashboard")
    wait_file(lambda: len(steps(log)) >= 3, "three step records")
    s = screen()
    for word in ("bitlab dash_live.lua", "tiny-llama", "cpu", "step ", "/100000", "ETA", "tok/s",
                 "elapsed", "λ 1", "lr 0.001", "act 8-bit", "adapter 1/1 r4", "losses", "ce ",
                 "total", "min", "λ · lr", "grad norm", "knobs", "w_ce", "w_kl", "lr_scale",
                 "events", "teacher ⇄ student", "› one two", "dash_live: model"):
        check(word in s, "screen shows %r" % word)
    check(any(0x2800 <= ord(c) <= 0x28FF for c in s), "Braille chart cells on screen")
    check("ETA –" not in s, "the ETA is known (step_seconds)")
    check(all("step_seconds" in r for r in steps(log)), "step records carry step_seconds")

    # a knob with the arrow keys: w_ce is selected first, ↓ selects w_kl
    keys("Down", "Right")
    ev = wait_file(lambda: [e for e in events(log, "knob") if e.get("source") == "dashboard"],
                   "a knob event from the dashboard")[0]
    check(ev["name"] == "w_kl" and ev["old"] == 1 and abs(ev["new"] - 1.1) < 1e-12,
          "knob event w_kl 1 → 1.1: %r" % ev)
    at = ev["step"]
    wait_file(lambda: any(r["step"] >= at + 1 for r in steps(log)), "steps after the change")
    recs = steps(log)
    check(all(abs(r["weights"]["kl"] - (1.1 if r["step"] >= at else 1.0)) < 1e-12 for r in recs),
          "the kl weight is 1 before step %d and 1.1 from it on" % at)
    check(all(abs(r["knobs"]["w_kl"] - 1.1) < 1e-12 for r in recs if r["step"] >= at),
          "the records' knobs show w_kl 1.1 from step %d" % at)
    wait_for(lambda s: "1.1" in s and "knob w_kl 1 → 1.1 by dashboard" in s, "the knob on screen")

    # pause and single-step
    keys("Space")
    wait_for(lambda s: "PAUSED" in s, "PAUSED")
    time.sleep(0.5)  # a step under way finishes; the worker then waits at the boundary
    n0 = len(steps(log))
    time.sleep(0.6)
    check(len(steps(log)) == n0, "no steps while paused")
    keys("n")
    wait_file(lambda: len(steps(log)) == n0 + 1, "one step after n")
    time.sleep(0.6)
    check(len(steps(log)) == n0 + 1, "n ran exactly one step")

    # generation while paused: both columns
    keys("g")
    s = wait_for(lambda s: "common prefix" in s and "│student" in s, "both generation columns")
    check("teacher" in s and "student" in s and "· 1/2" in s, "teacher and student columns, prompt 1/2")
    keys("Tab")
    s = wait_for(lambda s: "› seven eight" in s and "· 2/2" in s, "Tab to the second prompt")
    # e: a new prompt (Ctrl-U clears the current one) is generated for
    keys("e", "C-u")
    tmux("send-keys", "-t", SESSION, "-l", "five six")
    keys("Enter")
    s = wait_for(lambda s: "› five six" in s and "common prefix" in s, "the edited prompt generated")

    # rotate and save at the boundary (still paused)
    keys("r")
    wait_file(lambda: events(log, "rotation"), "a rotation event")
    keys("s")
    wait_file(lambda: events(log, "checkpoint"), "a checkpoint event")
    check(os.path.exists(ckpt), "s wrote the checkpoint file")
    s = wait_for(lambda s: "adapter 2/2" in s and "rotation → adapter 2" in s, "the rotation on screen")

    # view keys
    keys("l")
    wait_for(lambda s: "· log" in s, "log scale")
    keys("+")
    wait_for(lambda s: "EMA 0.95" in s, "more smoothing")
    keys("?")
    s = wait_for(lambda s: "this help" in s, "the help")
    check("quit (asks whether to checkpoint)" in s and "Ctrl-L" in s, "help lists q and Ctrl-L")
    keys("Escape")
    wait_for(lambda s: "this help" not in s, "help closed")
    keys("C-l")
    wait_for(lambda s: "losses" in s and "PAUSED" in s, "a redraw")

    # resize to 80×24 and back
    tmux("resize-window", "-t", SESSION, "-x", "80", "-y", "24")
    s = wait_for(lambda s: "losses" in s and "events" in s and len(s.splitlines()) <= 24
                 and max(len(l.rstrip()) for l in s.splitlines()) <= 80, "the 80x24 layout")
    tmux("resize-window", "-t", SESSION, "-x", "120", "-y", "40")
    s = wait_for(lambda s: "events" in s and max(len(l.rstrip()) for l in s.splitlines()) > 100,
                 "the 120x40 layout again")

    # resume, then quit with a checkpoint
    keys("Space")
    wait_for(lambda s: "RUNNING" in s, "RUNNING again")
    n1 = len(steps(log))
    wait_file(lambda: len(steps(log)) > n1 + 1, "steps after resuming")
    keys("q")
    wait_for(lambda s: "Save a checkpoint" in s, "the quit question")
    keys("y")
    rc = exit_code(exitfile)
    check(rc == 0, "bitlab exited %d after q y" % rc)
    with open(err) as f:
        msg = f.read()
    check("stopped from the dashboard" in msg, "the summary says it was stopped: %r" % msg[-300:])
    clean_stderr(msg, "the dashboard run")
    recs = records(log)
    names = [r.get("event") for r in recs]
    check(names[-2:] == ["checkpoint", "quit"], "a checkpoint then quit end the log: %r" % names[-3:])
    saved = max(r["step"] for r in steps(log))

    # the checkpoint is valid: a headless resume loads it and continues
    p = subprocess.run([BIN, "tests/lua/dash_live.lua", "--headless", "--resume", ckpt, "--",
                        model, os.path.join(tmp, "resumed.ckpt"), str(saved + 2), "0"],
                       capture_output=True, text=True, timeout=60)
    clean_stderr(p.stderr, "the resumed run")
    ok = p.returncode == 0 and ("resumed from %s at step %d" % (ckpt, saved)) in p.stdout
    check(ok, "--resume loads the checkpoint and continues from step %d" % saved)
    if not ok:
        print("rc %d\n%s\n%s" % (p.returncode, p.stdout[-1000:], p.stderr[-1000:]))


def error_run(tmp, model):
    """A script error: traceback on screen, paused, q y still checkpoints."""
    log, err, exitfile = (os.path.join(tmp, n) for n in ("err.jsonl", "err.err", "err.rc"))
    start("%s tests/lua/error_after_ckpt.lua --log %s -- %s %s 2> %s"
          % (BIN, log, model, tmp, err), exitfile)
    s = wait_for(lambda s: "script error" in s and "boom at step 5" in s, "the script error box")
    check("PAUSED" in s, "the dashboard paused on the error")
    check("stack traceback" in s and "error_after_ckpt.lua:11" in s, "the traceback is on screen")
    keys("Escape")
    s = wait_for(lambda s: "any key closes" not in s, "the error box closed")
    check("script error" in s, "the error stays in the events panel")
    n_ck = len(events(log, "checkpoint"))
    keys("q")
    wait_for(lambda s: "Save a checkpoint" in s, "the quit question after the error")
    keys("y")
    rc = exit_code(exitfile)
    check(rc == 1, "exit 1 after a script error (got %d)" % rc)
    with open(err) as f:
        clean_stderr(f.read(), "the script-error run")
    ck = events(log, "checkpoint")
    check(len(ck) == n_ck + 1, "q y after the error wrote a checkpoint")


def main():
    if not shutil.which("tmux"):
        print("tmux not found: skipped")
        return 77
    if not os.path.exists(BIN):
        print("FAIL: %s not built" % BIN)
        return 1
    tmp = tempfile.mkdtemp(prefix="bitlab_live_")
    try:
        model = tiny.write_tiny(tmp, arch="llama", seed=11, fmt="gguf")
        model = os.path.join(tmp, "tiny-llama.gguf")
        for run in (main_run, error_run):
            try:
                run(tmp, model)
            except AssertionError as e:
                check(False, str(e))
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
