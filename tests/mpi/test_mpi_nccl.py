"""test_mpi_nccl.py - data-parallel training on CUDA through NCCL (issue 15),
on the emulated CUDA device (tests/cuda_emu/README.md): `mpirun -np 2 bitlab
--device cuda` with the uninstrumented emulated module (BITLAB_CUDA_MODULE)
and the emulated NCCL on MPI (BITLAB_NCCL_LIBRARY = libbitlab_emu_nccl.so),
against one process on the same emulated device with the same global batch
(tests/mpi/mpi_nccl.lua: batch 4; one process: micro-batches of 2; two
processes: one of 2 each):

1. the step records (losses, gradient norms, lr, lambda, adapter) of rank
   0's metrics and each rank's own per-step line (every loss and norm as
   %a) equal the one-process run's bit for bit (the emulated all-reduce sums
   in rank order, as the host path does: real NCCL's ring sum would give
   equality only up to rounding), and so do the final checkpoints' adapters,
   moments and counters;
2. the device path ran, not the host path: the emulated NCCL's log has one
   communicator per rank (rank r of 2) and, on each rank, exactly one
   all-reduce per step of the whole gradient arena (its length computed
   here from the tiny model's shapes: LoRA rank 4 on every linear), on a
   stream of its own (not the legacy default stream 0); the ranks hold no
   host copy of the gradients (trainer:memory().grad_accum is 0; the host
   path would hold the arena's 4 bytes per float), and the one-process run,
   whose micro-batch accumulator is one arena, reports 4 x the all-reduce's
   length; one GPU per local rank: rank r runs on emulated device r
   (BITLAB_EMU_DEVICES=2);
3. with no NCCL library (BITLAB_NCCL_LIBRARY=/nonexistent) the 2-rank run
   fails with a message that says data-parallel CUDA needs NCCL, names the
   library and BITLAB_NCCL_LIBRARY; with one emulated device both ranks
   share it and say so.

Skipped (77) without mpirun or without the emulated module and NCCL in the
build dir (they need the CUDA headers, nccl.h and MPI). Registered by CMake
with the MPI tests (labels "mpi;emu")."""
# ctest-labels: emu
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "py"))
sys.path.insert(0, HERE)
import make_tiny_model as tiny  # noqa: E402
from bitlab_run import BIN, check, failures, finish  # noqa: E402
from metrics_log import step_records, steps_equal  # noqa: E402
from test_mpi_train import ckpt_parts, same_state  # noqa: E402

MPIRUN = os.environ.get("BITLAB_MPIRUN") or shutil.which("mpirun") or "mpirun"
BUILD = os.environ.get("BITLAB_BUILD_DIR", "build")
MODULE = os.path.join(BUILD, "libbitlab_cuda_emu.so")
NCCL = os.path.join(BUILD, "libbitlab_emu_nccl.so")
SCRIPT = os.path.join(HERE, "mpi_nccl.lua")
STEPS = 3
RANK, ALPHA = 4, 8  # mpi_nccl.lua's adapter
PASS = ("OPENBLAS_NUM_THREADS", "BITLAB_CUDA_MODULE", "BITLAB_NCCL_LIBRARY", "BITLAB_EMU_NCCL_LOG",
        "BITLAB_EMU_DEVICES", "OMPI_MCA_btl_vader_single_copy_mechanism")


def run(np_, d, nccl=NCCL, devices="2"):
    """np_ = 0: bitlab alone (no mpirun); else mpirun -np np_. (process, the NCCL log's lines)"""
    os.makedirs(d, exist_ok=True)
    log = os.path.join(d, "nccl.log")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", BITLAB_CUDA_MODULE=os.path.abspath(MODULE),
               BITLAB_NCCL_LIBRARY=nccl, BITLAB_EMU_NCCL_LOG=log, BITLAB_EMU_DEVICES=devices,
               # shared-memory transport without CMA (ptrace is often refused in containers)
               OMPI_MCA_btl_vader_single_copy_mechanism="none")
    c = [] if np_ == 0 else [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np_),
                             *[a for v in PASS for a in ("-x", v)]]
    c += [BIN, SCRIPT, "--headless", "--device", "cuda", "--log", os.path.join(d, "log.jsonl"),
          "--", MODEL, d, str(STEPS)]
    t0 = time.time()
    p = subprocess.run(c, capture_output=True, text=True, timeout=600, env=env)
    print(f"  ({'bitlab' if np_ == 0 else f'mpirun -np {np_}'}: {time.time() - t0:.1f} s)")
    lines = open(log).read().splitlines() if os.path.exists(log) else []
    return p, lines


def rank_file(d, r):
    """(device line, per-step lines without grad_accum, grad_accum values)"""
    path = os.path.join(d, f"rank{r}.txt")
    if not os.path.exists(path):
        return None, [], []
    lines = open(path).read().splitlines()
    steps = [re.sub(r" grad_accum \d+$", "", x) for x in lines[1:]]
    acc = [int(x.rsplit(" ", 1)[1]) for x in lines[1:]]
    return lines[0] if lines else None, steps, acc


def arena_floats(cfg):
    """the trainable floats: LoRA A (rank x in) and B (out x rank) of every linear of every layer"""
    d, h = cfg["hidden_size"], cfg["intermediate_size"]
    hd = d // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes = [(q, d), (kv, d), (kv, d), (d, q), (h, d), (h, d), (d, h)]  # (out, in)
    return cfg["num_hidden_layers"] * sum(RANK * (o + i) for o, i in shapes)


def main():
    global MODEL
    if shutil.which(MPIRUN) is None:
        print("skip: no mpirun")
        sys.exit(77)
    if not (os.path.exists(MODULE) and os.path.exists(NCCL)):
        print(f"skip: no {MODULE} or {NCCL} (the emulated device needs the CUDA headers, nccl.h, MPI)")
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="bitlab_nccl_")
    t = tiny.write_tiny(tmp, arch="llama", seed=5, fmt="gguf")
    MODEL = t.gguf_path
    n = arena_floats(t.config)

    # 1. one process against two, on the emulated device
    one, two = os.path.join(tmp, "one"), os.path.join(tmp, "two")
    p, log1 = run(0, one)
    check(p.returncode == 0, "the one-process run on the emulated device")
    if p.returncode:
        print(p.stdout[-2000:], p.stderr[-2000:])
    ref = step_records(os.path.join(one, "log.jsonl"))
    p, log2 = run(2, two)
    check(p.returncode == 0, "the two-process run (mpirun -np 2 --device cuda)")
    if p.returncode:
        print(p.stdout[-3000:], p.stderr[-3000:])
    got = step_records(os.path.join(two, "log.jsonl"))
    check(steps_equal(ref, got, range(1, STEPS + 1)),
          f"the {len(got)} step records of rank 0's metrics equal the one-process run's bit for bit")
    dev1, l1, acc1 = rank_file(one, 0)
    dev2a, l2a, acc2a = rank_file(two, 0)
    dev2b, l2b, acc2b = rank_file(two, 1)
    check(len(l1) == STEPS and l2a == l1 and l2b == l1,
          "each rank's own per-step results (%a) equal the one-process run's, on both ranks")
    if l2a != l1 or l2b != l1:
        print("\n".join(f"  {a}\n  {b}\n  {c}" for a, b, c in zip(l1, l2a, l2b)))
    pa, ja = ckpt_parts(os.path.join(one, "run.ckpt"))
    pb, jb = ckpt_parts(os.path.join(two, "run.ckpt"))
    check(pa == pb and same_state(ja, jb),
          f"the final checkpoints (adapters, moments, counters: {len(pa)} bytes; state) are the same")

    # 2. the device path: NCCL's log, no host copy, one device per rank
    check(log1 == [], f"one process makes no NCCL call ({len(log1)} lines)")
    inits = sorted(x for x in log2 if x.startswith("init "))
    check(inits == ["init rank 0 size 2", "init rank 1 size 2"],
          f"one NCCL communicator per rank, rank r of 2: {inits}")
    for r in (0, 1):
        ar = [x.split() for x in log2 if x.startswith(f"allreduce rank {r} ")]
        counts = [int(x[4]) for x in ar]
        streams = {x[8] for x in ar}
        check(counts == [n] * STEPS,
              f"rank {r}: one all-reduce per step of the whole arena ({n} floats): {counts}")
        check(len(streams) == 1 and not streams & {"(nil)", "0x0", "0"},
              f"rank {r}: on one stream of its own: {sorted(streams)}")
    check(acc2a == [0] * STEPS and acc2b == [0] * STEPS,
          f"the ranks hold no host copy of the gradients (grad_accum {acc2a}, {acc2b})")
    check(acc1 == [4 * n] * STEPS, f"the one-process accumulator is one arena, 4 x {n} bytes: {acc1}")
    check(dev2a and dev2a.startswith("device cuda ") and dev2a.endswith("device 0)") and
          dev2b and dev2b.endswith("device 1)"),
          f"one GPU per local rank: {dev2a!r}, {dev2b!r}")
    check("shares" not in p.stderr and "another process of the node" not in p.stderr,
          "no sharing warning with a device per rank")

    # 3. no NCCL: a clear message (and with one device, two ranks share it, saying so)
    p, _ = run(2, os.path.join(tmp, "missing"), nccl="/nonexistent/libnccl.so.2", devices="1")
    check(p.returncode != 0 and "data-parallel on CUDA needs NCCL: cannot load "
          "/nonexistent/libnccl.so.2" in p.stderr and "set BITLAB_NCCL_LIBRARY" in p.stderr,
          f"no NCCL library: refused with the reason (exit {p.returncode})")
    check("process 1 of this node, which shows it 1 CUDA device: it takes device 0" in p.stderr,
          "two ranks on one device: rank 1 says it shares device 0")
    if p.returncode == 0 or "needs NCCL" not in p.stderr:
        print(p.stderr[-3000:])

    if not failures:  # a failed run's folder stays for a look
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
