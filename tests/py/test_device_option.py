"""test_device_option.py - `--device cpu|cuda|auto` of bitlab SCRIPT.lua, run,
trace, eval and generate, and the script's view of it (bitlab.device(),
tests/lua/device.lua), on a tiny random model (make_tiny_model.py).

1. `--device bogus` exits 2 naming the option and the command, before any
   work (the script does not run).
2. `--device cuda` where CUDA cannot run (BITLAB_CUDA_MODULE unset: a build
   without the module says "built without CUDA"; a CUDA build on a machine
   without a GPU says "no CUDA device" or why the module does not load)
   exits 2 with "--device cuda: <reason>" and the script does not run. On a
   machine where CUDA does run, the same call must succeed on cuda instead.
3. `--device cpu` (and no --device, and `bitlab run SCRIPT --device cpu`)
   runs the script: bitlab.device() is {name="cpu", device="cpu", memory}
   and refuses arguments; the metrics stream names the device in its `run`
   record and every step record carries `device_mem`; under the dashboard
   (tmux, when installed) the header shows "· cpu" and the memory.
4. `bitlab trace --device cpu` writes the same bytes as without --device,
   and says "device": "cpu"; eval and generate take --device cpu.
5. With the emulated CUDA device built (BITLAB_BUILD_DIR/
   libbitlab_cuda_emu_asan.so, tests/cuda_emu) and BITLAB_CUDA_MODULE
   pointing at it: bitlab.device() reports cuda for a script that does not
   train, `--device auto` picks it, BITLAB_EMU_NO_DEVICE=1 makes
   `--device cuda` exit 2 with "no CUDA device" (and auto fall back to the
   CPU), and `bitlab trace --device cuda` traces on it. Skipped (only this
   part, with a line saying so) when the module is absent.
"""
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BITLAB_BUILD_DIR", os.path.join(ROOT, "build"))
BIN = os.path.abspath(os.environ.get("BITLAB_BIN", os.path.join(BUILD, "bitlab")))
SCRIPT = os.path.join(ROOT, "tests", "lua", "device.lua")
EMU_MODULE = os.path.join(BUILD, "libbitlab_cuda_emu_asan.so")
CUDA_REASONS = ("built without CUDA", "no CUDA device", "cannot load", "CUDA")

failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def env_without_cuda_module(**extra):
    env = {k: v for k, v in os.environ.items() if k != "BITLAB_CUDA_MODULE"}
    env.update(extra)
    return env


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def run(args, env=None, timeout=300):
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                       env=env if env is not None else env_without_cuda_module())
    if any(m in p.stderr for m in SANITIZER_MARKS):
        check(False, f"sanitizer report from bitlab {' '.join(args)}:\n{p.stderr[-3000:]}")
    return p


def device_line(stdout):
    """DEVICE name=... device=... live=... -> dict, or None"""
    m = re.search(r"^DEVICE (.*)$", stdout, re.M)
    return dict(kv.split("=", 1) for kv in m.group(1).split()) if m else None


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def refused(p, cmd, reason_any):
    """exit 2, the command and --device named, one of the reasons given"""
    return (p.returncode == 2 and f"bitlab {cmd}" in p.stderr and "--device" in p.stderr
            and any(r in p.stderr for r in reason_any) and "DEVICE" not in p.stdout)


def trace_records(b):
    """(tokens, ids [n-1, K], logp [n-1, K], hidden f32) per record of a trace
    (src/trace/trace.h: 320-byte header, u32 n[records] padded to 8, records
    padded to 8)"""
    K, = struct.unpack_from("<I", b, 16)
    R, = struct.unpack_from("<I", b, 28)
    hidden, L, D = struct.unpack_from("<3I", b, 48)
    n = struct.unpack_from(f"<{R}I", b, 320)
    off, out = 320 + (4 * R + 7) // 8 * 8, []
    for ni in n:
        rows = ni - 1
        t = np.frombuffer(b, np.int32, ni, off)
        off += 4 * ni
        ids = np.frombuffer(b, np.int32, rows * K, off).reshape(rows, K)
        off += 4 * rows * K
        lp = np.frombuffer(b, np.float32, rows * K, off).reshape(rows, K)
        off += 4 * rows * K + 4 * rows  # logp, other
        nh = L * ni * D if hidden == 1 else 0
        h = np.frombuffer(b, np.float32, nh, off)
        off = (off + 4 * nh + 7) // 8 * 8
        out.append((t, ids, lp, h))
    return out


def dashboard_header(model, tmp):
    """device.lua under the live dashboard in tmux: once its two steps are
    logged the header's first line shows the backend and its memory"""
    if not shutil.which("tmux"):
        print("skip: the dashboard header check (no tmux)")
        return
    session = f"bitlab_device_{os.getpid()}"
    err = os.path.join(tmp, "dash.err")
    cmd = " ".join(shlex.quote(a) for a in (BIN, SCRIPT, "--device", "cpu", "--", model))
    env_prefix = "env -u BITLAB_CUDA_MODULE TERM=xterm-256color "
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40",
                    f"{env_prefix}{cmd} 2> {shlex.quote(err)}"], check=True)
    try:
        screen, deadline = "", time.time() + 60
        while time.time() < deadline:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True).stdout
            if "FINISHED" in screen and "dev-mem" in screen:
                break
            time.sleep(0.3)
        head = screen.splitlines()[0] if screen else ""
        check("device.lua" in head and "· cpu" in head and "dev-mem " in head and "peak " in head
              and "free " not in head,
              f"the header shows the backend and its memory (no free/total on the CPU): {head!r}")
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], capture_output=True)
    finally:
        time.sleep(0.5)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def main(tmp):
    model = tiny.write_tiny(tmp, "llama", seed=3, fmt="gguf").gguf_path
    jl = os.path.join(tmp, "texts.jsonl")
    with open(jl, "w") as f:
        for t in ("the ternary student", "learns from tokens", "one two three four"):
            f.write(json.dumps({"text": t}) + "\n")
    txt = os.path.join(tmp, "held.txt")
    with open(txt, "w") as f:
        f.write("the ternary student learns from tokens. " * 8)

    # --- 1. an unknown device name ---------------------------------------------------
    for form in (["--device", "bogus"], ["--device=bogus"]):
        p = run([SCRIPT, "--headless", *form])
        check(refused(p, SCRIPT, ["'bogus'"]) and "cpu, cuda or auto" in p.stderr,
              f"SCRIPT.lua {' '.join(form)}: exit 2 naming the option: rc {p.returncode} {p.stderr.strip()}")
    p = run(["run", SCRIPT, "--headless", "--device", "gpu"])
    check(refused(p, SCRIPT, ["'gpu'"]), f"run SCRIPT --device gpu: rc {p.returncode} {p.stderr.strip()}")
    for cmd, rest in (("trace", ["--data", jl, "--k", "2", "--out", f"{tmp}/b.trace"]),
                      ("eval", ["--data", txt]),
                      ("generate", ["--prompt", "hi"])):
        p = run([cmd, "--model", model, *rest, "--device", "bogus"])
        check(refused(p, cmd, ["'bogus'"]), f"{cmd} --device bogus: rc {p.returncode} {p.stderr.strip()}")
    p = run([SCRIPT, "--device"])
    check(p.returncode == 2 and "'--device' needs a value" in p.stderr,
          f"SCRIPT.lua --device without a value: {p.stderr.strip()}")

    # --- 2. --device cuda without a usable CUDA (BITLAB_CUDA_MODULE unset) -----------------
    p = run([SCRIPT, "--headless", "--device", "cuda"])
    d = device_line(p.stdout)
    if p.returncode == 0 and d and d.get("name") == "cuda":
        print("note: CUDA runs on this machine: --device cuda ran on", d.get("device"))
        cuda_here = True
    else:
        cuda_here = False
        check(refused(p, SCRIPT, CUDA_REASONS) and "--device cuda:" in p.stderr,
              f"SCRIPT.lua --device cuda without CUDA: exit 2 with the reason: rc {p.returncode} "
              f"{p.stderr.strip()}")
        if not os.path.exists(os.path.join(os.path.dirname(BIN), "libbitlab_cuda.so")):
            check("built without CUDA" in p.stderr,
                  f"no module beside bitlab: the message says it was built without CUDA: {p.stderr.strip()}")
        for cmd, rest in (("trace", ["--data", jl, "--k", "2", "--out", f"{tmp}/c.trace"]),
                          ("eval", ["--data", txt]),
                          ("generate", ["--prompt", "hi", "--max-tokens", "2"])):
            p = run([cmd, "--model", model, *rest, "--device", "cuda"])
            check(refused(p, cmd, CUDA_REASONS) and "--device cuda:" in p.stderr,
                  f"{cmd} --device cuda without CUDA: rc {p.returncode} {p.stderr.strip()}")
        # auto falls back to the CPU
        p = run([SCRIPT, "--headless", "--device", "auto"])
        d = device_line(p.stdout)
        check(p.returncode == 0 and d and d["name"] == "cpu",
              f"SCRIPT.lua --device auto without CUDA runs on the CPU: rc {p.returncode} {p.stderr[-300:]}")

    # --- 3. --device cpu: the script runs, bitlab.device(), the metrics --------------------
    log = os.path.join(tmp, "cpu.jsonl")
    p = run([SCRIPT, "--headless", "--device", "cpu", "--log", log, "--", model])
    d = device_line(p.stdout)
    check(p.returncode == 0 and "all checks passed" in p.stdout and d and d["name"] == "cpu"
          and d["device"] == "cpu",
          f"SCRIPT.lua --device cpu: bitlab.device() is the CPU: rc {p.returncode} "
          f"{p.stdout[-300:]} {p.stderr[-600:]}")
    if os.path.exists(log):
        recs = read_jsonl(log)
        first = recs[0] if recs else {}
        check(first.get("event") == "run" and first.get("device") == "cpu"
              and first.get("device_name") == "cpu" and "blas_core" in first,
              f"the run record names the device: {first}")
        steps = [r for r in recs if "event" not in r]
        check(len(steps) == 2, f"two step records, got {len(steps)}")
        keys = ("live", "peak", "device_free", "device_total")
        check(all(isinstance(r.get("device_mem"), dict)
                  and all(isinstance(r["device_mem"].get(k), (int, float)) and r["device_mem"][k] >= 0
                          for k in keys)
                  and r["device_mem"]["peak"] >= r["device_mem"]["live"] for r in steps),
              f"every step record carries device_mem {keys}: {[r.get('device_mem') for r in steps]}")
        check(all("knobs" in r and "ce" in r for r in steps), "step records keep their fields")
    else:
        check(False, "SCRIPT.lua --log writes the metrics")
    p = run([SCRIPT, "--headless"])
    d = device_line(p.stdout)
    check(p.returncode == 0 and d and d["name"] == "cpu", f"no --device: the CPU: rc {p.returncode}")
    p = run(["run", SCRIPT, "--headless", "--device=cpu"])
    d = device_line(p.stdout)
    check(p.returncode == 0 and d and d["name"] == "cpu", f"bitlab run SCRIPT --device=cpu: rc {p.returncode}")
    p = run([SCRIPT, "--help"])
    check(p.returncode == 0 and "--device cpu|cuda|auto" in p.stdout and "cpu (the default)" in p.stdout,
          "SCRIPT.lua --help names --device and its default")
    for cmd in ("trace", "eval", "generate"):
        p = run([cmd, "--help"])
        check(p.returncode == 0 and "--device cpu|cuda|auto" in p.stdout, f"{cmd} --help names --device")

    # --- 3b. the dashboard's header: the device and its memory (tmux) -------------------
    dashboard_header(model, tmp)

    # --- 4. trace / eval / generate on the CPU ------------------------------------------
    outs = {}
    for label, dev in (("default", []), ("cpu", ["--device", "cpu"])):
        out = os.path.join(tmp, f"{label}.trace")
        p = run(["trace", "--model", model, "--data", jl, "--k", "3", "--out", out, "--batch", "2",
                 "--hidden", *dev])
        ok = p.returncode == 0 and os.path.exists(out)
        check(ok, f"trace {' '.join(dev) or '(no --device)'}: rc {p.returncode} {p.stderr[-300:]}")
        if ok:
            outs[label] = open(out, "rb").read()
            s = json.loads(p.stdout.strip().splitlines()[-1])
            check(s.get("device") == "cpu", f"trace's summary says device cpu: {s.get('device')}")
    if len(outs) == 2:
        check(outs["default"] == outs["cpu"], "trace --device cpu writes the same bytes as the default")
    p = run(["eval", "--model", model, "--data", txt, "--seq", "16", "--max-examples", "1", "--quiet",
             "--device", "cpu"])
    check(p.returncode == 0, f"eval --device cpu: rc {p.returncode} {p.stderr[-300:]}")
    p = run(["generate", "--model", model, "--prompt", "hi", "--max-tokens", "3", "--device", "cpu"])
    check(p.returncode == 0, f"generate --device cpu: rc {p.returncode} {p.stderr[-300:]}")

    # --- 5. the emulated CUDA device -------------------------------------------------
    if cuda_here:
        print("skip: the emulated-device checks (a real CUDA device is present)")
        return
    if os.environ.get("BITLAB_SANITIZE", "").upper() in ("ON", "1", "TRUE", "YES"):
        print("skip: the emulated-device checks (a sanitizer build; the plain build runs them)")
        return
    if not os.path.exists(EMU_MODULE):
        print(f"skip: the emulated-device checks ({EMU_MODULE} is not built)")
        return
    # the module carries ASan: its runtime must come first in the (uninstrumented) process
    ldd = subprocess.run(["ldd", EMU_MODULE], capture_output=True, text=True).stdout
    asan = re.search(r"libasan\.so\S*\s+=>\s+(\S+)", ldd)
    if not asan:
        print(f"skip: the emulated-device checks (no libasan in ldd {EMU_MODULE})")
        return
    emu = dict(BITLAB_CUDA_MODULE=EMU_MODULE, LD_PRELOAD=asan.group(1),
               ASAN_OPTIONS="detect_leaks=0:halt_on_error=1", OPENBLAS_NUM_THREADS="1")
    p = run([SCRIPT, "--headless", "--device", "cuda"], env=env_without_cuda_module(**emu))
    d = device_line(p.stdout)
    check(p.returncode == 0 and d and d["name"] == "cuda" and int(d["device_total"]) > 0,
          f"emulated device: bitlab.device() reports cuda: rc {p.returncode} {p.stdout[-300:]} "
          f"{p.stderr[-600:]}")
    p = run([SCRIPT, "--headless", "--device", "auto"], env=env_without_cuda_module(**emu))
    d = device_line(p.stdout)
    check(p.returncode == 0 and d and d["name"] == "cuda",
          f"emulated device: --device auto picks cuda: rc {p.returncode} {p.stderr[-300:]}")
    nodev = env_without_cuda_module(**emu, BITLAB_EMU_NO_DEVICE="1")
    p = run([SCRIPT, "--headless", "--device", "cuda"], env=nodev)
    check(refused(p, SCRIPT, ["no CUDA device"]) and "--device cuda:" in p.stderr,
          f"emulated device absent: --device cuda exits 2, no CUDA device: rc {p.returncode} "
          f"{p.stderr.strip()[-400:]}")
    p = run([SCRIPT, "--headless", "--device", "auto"], env=nodev)
    d = device_line(p.stdout)
    check(p.returncode == 0 and d and d["name"] == "cpu",
          f"emulated device absent: --device auto runs on the CPU: rc {p.returncode} {p.stderr[-300:]}")
    out = os.path.join(tmp, "cuda.trace")
    p = run(["trace", "--model", model, "--data", jl, "--k", "3", "--out", out, "--batch", "2",
             "--hidden", "--device", "cuda"], env=env_without_cuda_module(**emu), timeout=900)
    ok = p.returncode == 0 and os.path.exists(out)
    check(ok, f"emulated device: trace --device cuda: rc {p.returncode} {p.stderr[-600:]}")
    if ok and "cpu" in outs:
        s = json.loads(p.stdout.strip().splitlines()[-1])
        c = outs["cpu"]
        g = open(out, "rb").read()
        # same layout (header fields up to the model sha, the n[] table); values are bf16's
        check(s.get("device") == "cuda" and len(g) == len(c) and g[8:80] == c[8:80],
              f"emulated device: the cuda trace has the CPU trace's layout ({len(g)} vs {len(c)} bytes)")
        if len(g) == len(c):
            rg, rc = trace_records(g), trace_records(c)
            tok_same = all((a[0] == b[0]).all() for a, b in zip(rg, rc))
            top1 = np.concatenate([a[1][:, 0] == b[1][:, 0] for a, b in zip(rg, rc)]).mean()
            dlogp = max(float(np.abs(a[2] - b[2]).max()) for a, b in zip(rg, rc))
            dhid = max(float(np.abs(a[3] - b[3]).max() / max(np.abs(b[3]).max(), 1e-30))
                       for a, b in zip(rg, rc))
            # bf16 weights on the device: the emulator gave top-1 0.97, |dlogp| 0.02, hidden 8e-3
            check(tok_same and top1 >= 0.8 and dlogp < 0.1 and dhid < 0.05,
                  f"emulated device: the cuda trace's values are the CPU's to bf16 precision: tokens "
                  f"{tok_same}, top-1 agreement {top1:.3f}, max |dlogp| {dlogp:.4f}, "
                  f"max hidden diff {dhid:.4f} (relative)")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bitlab_device_") as d:
        main(d)
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all device-option checks passed")
