"""test_threads_bitexact.py - the thread count changes no bits: the same run
(tests/lua/threads.lua, shapes large enough that every op is split over
bitlab's worker pool) under OPENBLAS_NUM_THREADS = 1, 2 and 3 logs identical
losses, gradient norms and block norms at every step, and a checkpoint
written under 1 thread resumes under 2 to the same steps as the
uninterrupted runs."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402
from metrics_log import step_records, steps_equal  # noqa: E402

BIN = os.environ.get("BITLAB_BIN", "build/bitlab")
STEPS = 6
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(model, d, threads, steps, log, resume=None):
    os.makedirs(d, exist_ok=True)
    c = [BIN, "tests/lua/threads.lua", "--headless", "--device", "cpu", "--log", log]
    if resume:
        c += ["--resume", resume]
    c += ["--", model, d, str(steps)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    env.pop("OMP_NUM_THREADS", None)
    p = subprocess.run(c, capture_output=True, text=True, timeout=600, env=env)
    check(p.returncode == 0, f"{threads} thread(s), {steps} steps{' resumed' if resume else ''}")
    if p.returncode:
        print(p.stdout[-1500:], p.stderr[-1500:])
    return step_records(log)


def same(a, b, what):
    check(bool(a) and steps_equal(b, a, sorted(b), shown=4), what)


def main():
    tmp = tempfile.mkdtemp(prefix="bitlab_threads_")
    model = tiny.write_tiny(tmp, arch="llama", seed=9, fmt="gguf", dim=256, n_layers=2,
                            n_heads=4, n_kv_heads=2, hidden=768, vocab=400).gguf_path
    runs = {t: run(model, os.path.join(tmp, f"t{t}"), t, STEPS, os.path.join(tmp, f"t{t}.jsonl"))
            for t in (1, 2, 3)}
    check(len(runs[1]) == STEPS, f"the 1-thread run logged {len(runs[1])} of {STEPS} steps")
    same(runs[2], runs[1], "2 threads: every step identical bit for bit to 1 thread")
    same(runs[3], runs[1], "3 threads (uneven shares): identical bit for bit to 1 thread")

    half = os.path.join(tmp, "half")
    run(model, half, 1, STEPS // 2, os.path.join(tmp, "half.jsonl"))
    res = run(model, half, 2, STEPS, os.path.join(tmp, "resumed.jsonl"),
              resume=os.path.join(half, "threads.ckpt"))
    same(res, {s: runs[1][s] for s in res}, "written under 1 thread, resumed under 2: the "
         "uninterrupted run's steps")
    check(min(res, default=0) == STEPS // 2 + 1, f"the resumed run starts at step {STEPS // 2 + 1}")

    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
