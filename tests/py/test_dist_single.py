"""test_dist_single.py - the multi-process parts of issue 15 that a single
process (any build, no mpirun) can check:

1. bitlab.rank() is 0 and bitlab.world_size() 1; bitlab.broadcast returns
   each kind of value unchanged and refuses a function naming its argument;
   trainer:memory().grad_accum is 0 until a step has two micro-batches, then
   one arena of the trainable floats (tests/lua/dist_single.lua);
2. a `stop` line in the control file ends bitlab.train at the next step
   boundary: exit 0, a control_stop event, the checkpoint of the last step;
3. a build without MPI (CMake BITLAB_MPI=OFF) started as one of several
   processes (OMPI_COMM_WORLD_SIZE=2 in its environment, as mpirun sets)
   says so and runs alone, as one process. (Skipped in a build with MPI: there the
   variable means a job to join; tests/mpi covers mpirun.)"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402
from metrics_log import step_records  # noqa: E402

from bitlab_run import BIN, check, finish  # noqa: E402


def built_with_mpi():
    cache = os.path.join(os.environ.get("BITLAB_BUILD_DIR", os.path.dirname(BIN)), "CMakeCache.txt")
    try:
        with open(cache) as f:
            return re.search(r"^BITLAB_MPI:BOOL=(ON|TRUE|1)$", f.read(), re.M) is not None
    except OSError:
        return None


def main():
    tmp = tempfile.mkdtemp(prefix="bitlab_dist1_")
    tm = tiny.write_tiny(tmp, arch="llama", seed=5, fmt="gguf")
    model = tm.gguf_path
    env = dict(os.environ)
    for k in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"):
        env.pop(k, None)

    # 1
    p = subprocess.run([BIN, "tests/lua/dist_single.lua", "--headless", "--", model],
                       capture_output=True, text=True, timeout=300, env=env)
    check(p.returncode == 0 and "BROADCAST ok" in p.stdout, "rank, world_size and broadcast in one process")
    if p.returncode:
        print(p.stdout[-2000:], p.stderr[-2000:])
    m = re.search(r"GRAD_ACCUM (\d+)", p.stdout)
    # the trainable floats: one rank-2 adapter (A [2, in] + B [out, 2]) on every block linear
    cfg = tm.config
    dim, hid, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    hd = dim // cfg["num_attention_heads"]
    kvd = cfg["num_key_value_heads"] * hd
    shapes = [(dim, dim), (kvd, dim), (kvd, dim), (dim, dim), (hid, dim), (hid, dim), (dim, hid)]
    floats = L * sum(2 * (o + i) for o, i in shapes)
    check(m is not None and int(m.group(1)) == 4 * floats,
          f"two micro-batches: grad_accum {m.group(1) if m else None} bytes = 4 x {floats} trainable floats")

    # 2
    d = os.path.join(tmp, "stop")
    os.makedirs(d)
    ctl, log = os.path.join(d, "control.txt"), os.path.join(d, "log.jsonl")
    cmd = [BIN, "tests/mpi/mpi_train.lua", "--headless", "--log", log, "--control", ctl,
           "--", model, d, "40", "2", "0", "0.1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and max(step_records(log), default=0) < 3:
        time.sleep(0.02)
    with open(ctl + ".tmp", "w") as f:
        f.write("# end the run\nstop\n")
    os.replace(ctl + ".tmp", ctl)
    out, err = proc.communicate(timeout=120)
    rec = step_records(log)
    last = max(rec, default=0)
    events = [json.loads(line) for line in open(log)]
    stops = [e for e in events if e.get("event") == "control_stop"]
    check(proc.returncode == 0 and 3 <= last < 40 and "stopped at step %d" % last in out,
          f"a control-file stop ends the run at step {last} (exit {proc.returncode})")
    check(len(stops) == 1 and stops[0].get("line") == 2, f"one control_stop event naming line 2: {stops}")
    ck = [e for e in events if e.get("event") == "checkpoint"]
    check(bool(ck) and ck[-1].get("step") == last, "the last checkpoint is of the last step")

    # 3
    mpi = built_with_mpi()
    if mpi is None or mpi:
        print("skip: built with MPI (or unknown build): the no-MPI launch check needs BITLAB_MPI=OFF")
    else:
        d = os.path.join(tmp, "alone")
        os.makedirs(d)
        p = subprocess.run([BIN, "tests/mpi/mpi_train.lua", "--headless", "--", model, d, "2", "2"],
                           capture_output=True, text=True, timeout=300,
                           env=dict(env, OMPI_COMM_WORLD_SIZE="2"))
        check(p.returncode == 0 and "started as one of 2 processes (OMPI_COMM_WORLD_SIZE) but built "
              "without MPI: running alone" in p.stderr, "a build without MPI under mpirun says so")
        lines = open(os.path.join(d, "rank0.txt")).read().splitlines()
        check(len(lines) == 2 and all(" world 1 " in x for x in lines), "and trains as one process")

    finish()


if __name__ == "__main__":
    main()
