# ctest-labels: slow emu
"""test_device_run.py - a script on the CUDA backend, end to end: the code
path a GPU run takes, on the emulated CUDA device (tests/cuda_emu: every
kernel executed on the CPU under ASan) when no GPU is present.

On a tiny random llama (make_tiny_model):
1. `bitlab experiments/overfit.lua --device cuda`: the teacher's and the
   student's greedy answers, the one trainer's step and the result line, all
   on the CUDA backend (the run record names it, the step is finite);
2. resume on the same device is bit-exact: 2 steps == 1 step + --resume 1
   (tests/lua/resume.lua's run, every loss field compared exactly);
3. the checkpoint written on CUDA resumes on the CPU (the file is the same for
   every backend; a CPU checkpoint loading on CUDA is what 2 does after
   bl_checkpoint_load, the upload).
The emulator executes every GPU thread on the CPU (about a minute of CPU per
step of this model), hence the short forms.

Skips (77) when neither a GPU nor the emulated module is there (a build
without CUDA headers), and under the sanitizer build (its own ASan runtime
cannot host the module's).
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402

BIN = os.environ.get("BITLAB_BIN", "build/bitlab")
BUILD = os.environ.get("BITLAB_BUILD_DIR", "build")
EMU_MODULE = os.path.join(BUILD, "libbitlab_cuda_emu_asan.so")
FIELDS = ("ce", "kl", "topk", "cos", "mag", "total", "grad_norm", "block_grad_norm",
          "kind_grad_norm")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def device_env():
    """The environment under which --device cuda runs here, or None."""
    env = {k: v for k, v in os.environ.items() if k != "BITLAB_CUDA_MODULE"}
    probe = subprocess.run([BIN, "tests/lua/device.lua", "--headless", "--device", "cuda"],
                           capture_output=True, text=True, env=env)
    if probe.returncode == 0:
        return env  # a real GPU
    if not os.path.exists(EMU_MODULE):
        return None
    ldd = subprocess.run(["ldd", EMU_MODULE], capture_output=True, text=True).stdout
    asan = re.search(r"libasan\.so\S*\s+=>\s+(\S+)", ldd)
    if not asan:
        return None
    env.update(BITLAB_CUDA_MODULE=EMU_MODULE, LD_PRELOAD=asan.group(1), OPENBLAS_NUM_THREADS="1",
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1")
    return env


def steps_of(path):
    recs = []
    if os.path.exists(path):
        with open(path) as f:
            recs = [json.loads(line) for line in f]
    return recs, {r["step"]: r for r in recs if "event" not in r and "step" in r}


def run(script, device, env, log, args, resume=None, timeout=1200):
    cmd = [BIN, script, "--headless", "--device", device, "--log", log]
    if resume:
        cmd += ["--resume", resume]
    p = subprocess.run(cmd + ["--", *args], capture_output=True, text=True, env=env,
                       timeout=timeout)
    if p.returncode:
        print(p.stdout[-2000:], p.stderr[-3000:])
    return p


def main():
    if os.environ.get("BITLAB_SANITIZE") == "ON":
        print("skip: the sanitizer build (the plain build runs these)")
        sys.exit(77)
    env = device_env()
    if env is None:
        print(f"skip: no CUDA device and no emulated module ({EMU_MODULE})")
        sys.exit(77)
    cpu_env = {k: v for k, v in env.items() if k not in ("LD_PRELOAD",)}
    tmp = tempfile.mkdtemp(prefix="bitlab_devrun_")
    model = tiny.write_tiny(tmp, arch="llama", seed=7, fmt="gguf").gguf_path

    # 1. overfit.lua on the CUDA backend
    log = os.path.join(tmp, "overfit.jsonl")
    p = run("experiments/overfit.lua", "cuda", env, log, (model, "1", "2"))
    check(p.returncode == 0 and "common greedy prefix:" in p.stdout,
          "overfit.lua --device cuda runs end to end")
    recs, steps = steps_of(log)
    run_rec = next((r for r in recs if r.get("event") == "run"), {})
    check(run_rec.get("device") == "cuda", f"the run record names cuda ({run_rec.get('device')!r})")
    totals = [steps[s]["total"] for s in sorted(steps)]
    check(len(totals) == 1 and all(math.isfinite(t) for t in totals),
          f"a finite step on cuda ({totals})")
    check(all("device_mem" in steps[s] for s in steps), "step records carry the device memory")

    # 2. bit-exact resume on the same device
    logs = {}
    for tag, n, resume in (("full", 2, None), ("half", 1, None), ("resumed", 2, "half")):
        d = os.path.join(tmp, "cuda_" + tag)
        os.makedirs(d)
        logs[tag] = os.path.join(tmp, f"cuda_{tag}.jsonl")
        ck = os.path.join(tmp, "cuda_" + resume, "resume.ckpt") if resume else None
        p = run("tests/lua/resume.lua", "cuda", env, logs[tag], (model, d, str(n), "1"), resume=ck)
        check(p.returncode == 0, f"resume_kill.lua on cuda, {tag} run")
    _, full = steps_of(logs["full"])
    _, res = steps_of(logs["resumed"])
    check(sorted(res) == [2], f"the resumed cuda run logs step 2 ({sorted(res)})")
    diff = [(s, k) for s in res for k in FIELDS if s in full and full[s].get(k) != res[s].get(k)]
    check(not diff and all(s in full for s in res), "cuda: 1 + resumed 1 step == 2 steps, bit for bit")
    for s, k in diff[:4]:
        print(f"  step {s} {k}: {full[s].get(k)!r} vs {res[s].get(k)!r}")

    # 3. across devices: the cuda checkpoint on the CPU
    d = os.path.join(tmp, "x_cuda_cpu")
    os.makedirs(d)
    lg = os.path.join(tmp, "x_cuda_cpu.jsonl")
    p = run("tests/lua/resume.lua", "cpu", cpu_env, lg, (model, d, "3", "1"),
            resume=os.path.join(tmp, "cuda_half", "resume.ckpt"))
    _, st = steps_of(lg)
    check(p.returncode == 0 and "resumed from" in p.stdout and sorted(st) == [2, 3] and
          all(math.isfinite(st[s]["total"]) for s in st),
          f"a checkpoint written on cuda resumes on the CPU (steps {sorted(st)})")

    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
