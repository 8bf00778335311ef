"""test_mpi_train.py - data-parallel training under mpirun (issue 15): two
processes with the global batch 4 (one micro-batch of 2 each) take the very
steps of one process with batch 4 in micro-batches of 2, bit for bit
(tests/mpi/mpi_train.lua; the CPU backend, OPENBLAS_NUM_THREADS=1 so the
checkpoints record the same BLAS settings):

1. step records (losses, gradient norms, block and kind norms, lr, lambda,
   adapter) of the metrics stream, which only rank 0 writes, and each
   rank's own per-step line (every loss and norm as %a) equal the one-process
   run's, on both ranks; the final checkpoint's trainable and frozen
   adapters, AdamW moments and counters (every byte before its JSON state)
   equal the one-process checkpoint's, and its state (step, data position,
   rng, knobs) too; progress lines come from rank 0 alone;
2. with adapter rotations at steps 4 and 7, a 2-process checkpoint of step 5
   resumes on one process, and a 1-process one on two, to the same steps
   6..12 as the uninterrupted one-process run;
3. a knob change (lr_scale) and a `stop` line written into the control file
   mid-run reach both ranks at the same step (their per-step lines stay
   equal), and the run ends cleanly with a checkpoint of its last step;
4. a script error on rank 1 ends the whole job with a message naming the
   rank, and SIGKILL of rank 1 mid-run ends it too (mpirun names the rank);
   either way the last checkpoint resumes on one process to the reference
   steps;
5. a batch that does not split over the processes is refused naming
   `batch`.
Registered by CMake only when bitlab is built with MPI (label "mpi")."""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "py"))
import make_tiny_model as tiny  # noqa: E402
from bitlab_run import BIN, check, failures, finish  # noqa: E402
from metrics_log import STEP_FIELDS, step_records, steps_equal  # noqa: E402

MPIRUN = os.environ.get("BITLAB_MPIRUN") or shutil.which("mpirun") or "mpirun"
SCRIPT = os.path.join(HERE, "mpi_train.lua")
STEPS = 12
TAG = uuid.uuid4().hex
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", BITLAB_MPI_TEST_TAG=TAG,
           # shared-memory transport without CMA (ptrace is often refused in containers)
           OMPI_MCA_btl_vader_single_copy_mechanism="none")
if os.environ.get("BITLAB_SANITIZE", "").upper() in ("ON", "1", "TRUE", "YES"):
    # Open MPI leaks by design (its components, unloaded before LeakSanitizer
    # looks, are "<unknown module>" there): the ranks run under ASan without
    # the leak check; test_dist_single.py and test_step_reduce check the same
    # bitlab code for leaks in one process
    ENV["ASAN_OPTIONS"] = ":".join(x for x in (ENV.get("ASAN_OPTIONS"), "detect_leaks=0") if x)
FIELDS = STEP_FIELDS + ("kind_grad_norm", "block_grad_norm")


def command(np_, d, steps, micro, resume=None, control=None, extra=()):
    c = [] if np_ == 0 else [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np_),
                             "-x", "OPENBLAS_NUM_THREADS", "-x", "BITLAB_MPI_TEST_TAG",
                             "-x", "OMPI_MCA_btl_vader_single_copy_mechanism"]
    if "ASAN_OPTIONS" in ENV and np_:
        c += ["-x", "ASAN_OPTIONS"]
    c += [BIN, SCRIPT, "--headless", "--device", "cpu", "--log", os.path.join(d, "log.jsonl")]
    if resume:
        c += ["--resume", resume]
    if control:
        c += ["--control", control]
    return c + ["--", MODEL, d, str(steps), str(micro), *extra]


def run(np_, d, steps, micro, **kw):
    """np_ = 0: bitlab alone (no mpirun); else mpirun -np np_."""
    os.makedirs(d, exist_ok=True)
    p = subprocess.run(command(np_, d, steps, micro, **kw), capture_output=True, text=True,
                       timeout=300, env=ENV)
    return p


def rank_lines(d, r):
    path = os.path.join(d, f"rank{r}.txt")
    if not os.path.exists(path):
        return []
    with open(path) as f:  # "world N" is the one field that differs between the runs
        return [" ".join(w for i, w in enumerate(line.split()) if i not in (2, 3))
                for line in f]


def ckpt_parts(path):
    """(bytes of the payload before its JSON text, the JSON state)."""
    data = open(path, "rb").read()
    assert data[:8] == b"BLCKPT\0\0", "magic"
    pay = data[32:]
    # the payload ends with i64 json_len + the JSON text (checkpoint.h)
    for n in range(2, len(pay) - 8):
        if pay[-n:-n + 1] == b"{" and struct.unpack("<q", pay[-n - 8:-n])[0] == n:
            return pay[:-n - 8], json.loads(pay[-n:].decode())
    raise AssertionError("no JSON state at the end of " + path)


def same_state(a, b):
    """the parts of two checkpoints' JSON that must agree (not the budget's seconds)"""
    ua, ub = a.get("user", {}), b.get("user", {})
    return (ua.get("step") == ub.get("step") and ua.get("data") == ub.get("data")
            and a.get("rng") == b.get("rng") and a.get("knobs") == b.get("knobs"))


def wait_for_step(log, n, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if max(step_records(log), default=0) >= n:
            return True
        time.sleep(0.02)
    return False


def rank_pid(rank):
    """The pid of our bitlab process of that rank (its environment has our tag)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if (f"BITLAB_MPI_TEST_TAG={TAG}".encode() in env and
                f"OMPI_COMM_WORLD_RANK={rank}".encode() in env):
            return int(pid)
    return None


def compare_resumed(ref, d, first, what):
    res = step_records(os.path.join(d, "log.jsonl"))
    check(steps_equal(ref, res, range(first, STEPS + 1), FIELDS),
          f"{what}: steps {first}..{STEPS} equal the one-process run bit for bit")


def main():
    global MODEL
    if shutil.which(MPIRUN) is None:
        print("skip: no mpirun")
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="bitlab_mpi_")
    MODEL = tiny.write_tiny(tmp, arch="llama", seed=5, fmt="gguf").gguf_path

    # 1. one process, micro-batches of 2, against two processes
    one, two = os.path.join(tmp, "one"), os.path.join(tmp, "two")
    p = run(0, one, STEPS, 2)
    check(p.returncode == 0, "the one-process reference run")
    if p.returncode:
        print(p.stdout[-2000:], p.stderr[-2000:])
    ref = step_records(os.path.join(one, "log.jsonl"))
    p = run(2, two, STEPS, 2)
    check(p.returncode == 0, "the two-process run (mpirun -np 2)")
    if p.returncode:
        print(p.stdout[-3000:], p.stderr[-3000:])
    got = step_records(os.path.join(two, "log.jsonl"))
    check(steps_equal(ref, got, range(1, STEPS + 1), FIELDS),
          f"the {len(got)} step records of rank 0's metrics equal the one-process run's bit for bit")
    with open(os.path.join(two, "log.jsonl")) as f:
        first = json.loads(f.readline())
    check(first.get("event") == "run" and first.get("world_size") == 2,
          f"the run record says world_size 2: {first.get('world_size')}")
    l1, l2a, l2b = rank_lines(one, 0), rank_lines(two, 0), rank_lines(two, 1)
    check(len(l1) == STEPS and l2a == l1 and l2b == l1,
          "each rank's own per-step results (%a) equal the one-process run's, on both ranks")
    check(sum(line.startswith("step 1/") for line in p.stdout.splitlines()) == 1,
          "progress lines come from rank 0 alone")
    pa, ja = ckpt_parts(os.path.join(one, "run.ckpt"))
    pb, jb = ckpt_parts(os.path.join(two, "run.ckpt"))
    check(pa == pb, f"the final checkpoints' adapters, moments and counters are the same "
          f"{len(pa)} bytes")
    check(same_state(ja, jb), "and the same step, data position, rng and knobs")

    # 2. resume across process counts, rotations (steps 4, 7) on both sides of the resume
    half2, half1 = os.path.join(tmp, "half2"), os.path.join(tmp, "half1")
    p2 = run(2, half2, 5, 2)
    p1 = run(0, half1, 5, 2)
    check(p2.returncode == 0 and p1.returncode == 0, "the 5-step runs on two and on one process")
    r21, r12 = os.path.join(tmp, "res21"), os.path.join(tmp, "res12")
    p = run(0, r21, STEPS, 2, resume=os.path.join(half2, "run.ckpt"))
    check(p.returncode == 0 and "resumed from" in p.stdout, "a 2-process checkpoint resumes on one")
    compare_resumed(ref, r21, 6, "2 -> 1 processes")
    p = run(2, r12, STEPS, 2, resume=os.path.join(half1, "run.ckpt"))
    check(p.returncode == 0 and p.stdout.count("resumed from") == 1,
          "a 1-process checkpoint resumes on two")
    if p.returncode:
        print(p.stdout[-2000:], p.stderr[-2000:])
    compare_resumed(ref, r12, 6, "1 -> 2 processes")
    check(rank_lines(r12, 0) == rank_lines(r12, 1), "both ranks of the resumed run agree")

    # 3. the control file: a knob change, then stop, on both ranks at the same step
    ctl_dir = os.path.join(tmp, "ctl")
    os.makedirs(ctl_dir)
    ctl = os.path.join(ctl_dir, "control.txt")
    log = os.path.join(ctl_dir, "log.jsonl")
    proc = subprocess.Popen(command(2, ctl_dir, 40, 2, control=ctl, extra=("0", "0.15")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    if wait_for_step(log, 3, proc):
        with open(ctl + ".tmp", "w") as f:
            f.write("lr_scale=0.5\n")
        os.replace(ctl + ".tmp", ctl)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            rec = step_records(log)
            if any(r.get("knobs", {}).get("lr_scale") == 0.5 for r in rec.values()):
                break
            time.sleep(0.02)
        wait_for_step(log, max(step_records(log)) + 2, proc)
        with open(ctl + ".tmp", "w") as f:
            f.write("lr_scale=0.5\nstop\n")
        os.replace(ctl + ".tmp", ctl)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    rec = step_records(log)
    last = max(rec, default=0)
    changed = [s for s in sorted(rec) if rec[s].get("knobs", {}).get("lr_scale") == 0.5]
    check(proc.returncode == 0 and 3 < last < 40, f"the control file's stop ended the run at step "
          f"{last} (exit {proc.returncode})")
    if proc.returncode:
        print(out[-2000:], err[-2000:])
    a, b = rank_lines(ctl_dir, 0), rank_lines(ctl_dir, 1)
    check(len(a) == last and a == b, f"both ranks ran the same {len(b)} steps with the same results")
    check(bool(changed) and 3 < changed[0] < last and
          all("lr_scale 0x1p-1" in line for line in a[changed[0] - 1:]) and
          all("lr_scale 0x1p+0" in line for line in a[:changed[0] - 1]),
          f"lr_scale changed at step {changed[0] if changed else None} on both ranks")
    _, js = ckpt_parts(os.path.join(ctl_dir, "run.ckpt"))
    check(js.get("user", {}).get("step") == last, "the checkpoint holds the last step")

    # 4a. a script error on rank 1 ends the job, naming the rank
    err_dir = os.path.join(tmp, "err")
    t0 = time.time()
    p = run(2, err_dir, STEPS, 2, extra=("3",))
    check(p.returncode != 0 and time.time() - t0 < 120, f"rank 1's error ends the job "
          f"(exit {p.returncode}, {time.time() - t0:.1f} s)")
    check("rank 1 of 2: script error" in p.stderr and "fails on purpose at step 3" in p.stderr,
          "the message names the rank and the error")
    if "rank 1 of 2" not in p.stderr:
        print(p.stderr[-3000:])
    _, js = ckpt_parts(os.path.join(err_dir, "run.ckpt"))
    at = js.get("user", {}).get("step")
    res_dir = os.path.join(tmp, "err_res")
    p = run(0, res_dir, STEPS, 2, resume=os.path.join(err_dir, "run.ckpt"))
    check(p.returncode == 0 and at in (2, 3), f"its checkpoint (step {at}) resumes on one process")
    compare_resumed(ref, res_dir, (at or 0) + 1, "after the error")

    # 4b. SIGKILL of rank 1 mid-run
    kill_dir = os.path.join(tmp, "kill")
    os.makedirs(kill_dir)
    log = os.path.join(kill_dir, "log.jsonl")
    proc = subprocess.Popen(command(2, kill_dir, 40, 2, extra=("0", "0.1")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    killed = None
    if wait_for_step(log, 4, proc):
        killed = rank_pid(1)
        if killed:
            os.kill(killed, signal.SIGKILL)
    t0 = time.time()
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    check(killed is not None and proc.returncode != 0 and time.time() - t0 < 120,
          f"killing rank 1 (pid {killed}) ends the job (exit {proc.returncode}, "
          f"{time.time() - t0:.1f} s)")
    check("process rank 1" in out + err, "mpirun's message names rank 1")
    if "process rank 1" not in out + err:
        print(out[-2000:], err[-2000:])
    _, js = ckpt_parts(os.path.join(kill_dir, "run.ckpt"))
    at = js.get("user", {}).get("step") or 0
    res_dir = os.path.join(tmp, "kill_res")
    p = run(0, res_dir, STEPS, 2, resume=os.path.join(kill_dir, "run.ckpt"))
    check(p.returncode == 0 and 4 <= at <= STEPS, f"the checkpoint it left (step {at}) resumes")
    if at < STEPS:
        compare_resumed(ref, res_dir, at + 1, "after the kill")

    # 5. a batch that does not split
    p = run(3, os.path.join(tmp, "three"), 2, 2)
    check(p.returncode != 0 and "option 'batch' (4) must be a multiple of the 3 processes" in p.stderr,
          "batch 4 on 3 processes is refused naming batch")

    if not failures:  # a failed run's folder stays for a look
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
