"""test_resume_kill.py - a run killed with SIGKILL (no handler, no clean
stop) resumes bit for bit: tests/lua/resume.lua, checkpointing after
every step (EVERY = 1), is killed once its log shows step KILL_AT, then resumed with
--resume from whatever checkpoint the kill left, and every step after the
checkpoint's must log exactly the losses, gradient norms and block norms of
an uninterrupted run (same device: the CPU backend, same BLAS settings).
The checkpoint a kill leaves is never torn (it loads), and the writer's
temporary file ("<path>.tmp.PID") is gone after the resumed run's first save.
"""
import glob
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402
from metrics_log import step_records as steps_of, steps_equal  # noqa: E402

BIN = os.environ.get("BITLAB_BIN", "build/bitlab")
STEPS, KILL_AT = 24, 9
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def cmd(log, d, model, resume=None):
    c = [BIN, "tests/lua/resume.lua", "--headless", "--device", "cpu", "--log", log]
    if resume:
        c += ["--resume", resume]
    return c + ["--", model, d, str(STEPS), "1"]


def main():
    tmp = tempfile.mkdtemp(prefix="bitlab_kill_")
    model = tiny.write_tiny(tmp, arch="llama", seed=5, fmt="gguf").gguf_path
    full_dir, kill_dir = os.path.join(tmp, "full"), os.path.join(tmp, "kill")
    os.makedirs(full_dir)
    os.makedirs(kill_dir)

    full_log = os.path.join(tmp, "full.jsonl")
    p = subprocess.run(cmd(full_log, full_dir, model), capture_output=True, text=True, timeout=600)
    check(p.returncode == 0, "the uninterrupted run")
    if p.returncode:
        print(p.stdout[-2000:], p.stderr[-2000:])
    full = steps_of(full_log)

    kill_log = os.path.join(tmp, "killed.jsonl")
    proc = subprocess.Popen(cmd(kill_log, kill_dir, model), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if max(steps_of(kill_log), default=0) >= KILL_AT:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = steps_of(kill_log)
    last = max(killed, default=0)
    check(proc.returncode == -signal.SIGKILL and KILL_AT <= last < STEPS,
          f"killed mid-run by SIGKILL after step {last}")
    ckpt = os.path.join(kill_dir, "resume.ckpt")
    check(os.path.exists(ckpt), "the kill left a checkpoint")

    res_log = os.path.join(tmp, "resumed.jsonl")
    p = subprocess.run(cmd(res_log, kill_dir, model, resume=ckpt), capture_output=True, text=True,
                       timeout=600)
    check(p.returncode == 0 and "resumed from" in p.stdout, "the killed run resumes")
    if p.returncode:
        print(p.stdout[-2000:], p.stderr[-2000:])
    res = steps_of(res_log)
    first = min(res, default=STEPS + 1)
    check(last - 1 <= first - 1 <= last and sorted(res) == list(range(first, STEPS + 1)),
          f"resumed at step {first} (the kill came after step {last}) and ran to {STEPS}")
    check(steps_equal(full, res, range(first, STEPS + 1)),
          f"steps {first}..{STEPS} identical bit for bit to the uninterrupted run")
    check(not glob.glob(os.path.join(kill_dir, "resume.ckpt.tmp.*")),
          "no temporary checkpoint file is left behind")

    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
