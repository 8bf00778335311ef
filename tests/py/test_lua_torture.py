"""test_lua_torture.py - the Lua API cannot crash the host (tests/lua/torture.lua).

Every function of the bitlab module and every method of every userdata
type, enumerated at run time, is called with missing, nil, wrong-typed, NaN,
negative, huge (1e300, 2^63, inf, maxinteger), cyclic and deep arguments;
each call must return or end in a Lua error naming the argument. One bitlab
process per group, so a segfault or abort (a signal) fails its group and a
hang is caught by the timeout. Meant for the release build (Debian's liblua
is not instrumented, so the ASan build misses crashes inside it); it runs
in every build. Also: the interrupt cannot be swallowed by pcall (SIGINTs
into a pcall'd busy loop, also inside a coroutine, end the run with 130).
"""
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402

BIN = os.path.abspath(os.environ.get("BITLAB_BIN", "build/bitlab"))
SCRIPT = os.path.abspath("tests/lua/torture.lua")
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
TIMEOUT = 120 if os.environ.get("BITLAB_SANITIZE", "OFF") not in ("", "0", "OFF") else 60
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run_group(model, tmp, group):
    d = os.path.join(tmp, group.replace(":", "_").replace(".", "_"))
    os.makedirs(d, exist_ok=True)
    t0 = time.time()
    try:
        p = subprocess.run([BIN, SCRIPT, "--headless", "--", model, d, group], cwd=d,
                           capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return group, None, "", "", time.time() - t0
    return group, p.returncode, p.stdout, p.stderr, time.time() - t0


def interrupt(tmp, body, name):
    path = os.path.join(tmp, name + ".lua")
    with open(path, "w") as f:
        f.write('io.stdout:write("ready\\n") io.stdout:flush()\n' + body + "\n")
    p = subprocess.Popen([BIN, path, "--headless"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.readline()
    for _ in range(4):
        time.sleep(0.3)
        if p.poll() is not None:
            break
        p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        rc = None
    err = p.stderr.read()
    check(rc == 130 and "interrupted" in err, f"SIGINTs stop {name} (exit {rc})")


def main():
    tmp = tempfile.mkdtemp(prefix="bitlab_torture_")
    model = tiny.write_tiny(tmp, arch="llama", seed=3, fmt="gguf").gguf_path

    interrupt(tmp, "while true do pcall(function() while true do end end) end", "pcall_loop")
    interrupt(tmp, "while true do coroutine.resume(coroutine.create(function() "
                   "while true do pcall(function() while true do end end) end end)) end", "coroutine_loop")

    _, rc, out, err, _ = run_group(model, tmp, "list")
    check(rc == 0, "every function and method has a case (torture.lua list)")
    if rc != 0:
        print(out[-3000:], err[-3000:])
    groups = [ln[6:] for ln in out.splitlines() if ln.startswith("group ")]
    check(len(groups) > 50, f"{len(groups)} groups enumerated")

    t0 = time.time()
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as ex:
        results = list(ex.map(lambda g: run_group(model, tmp, g), groups))
    for group, rc, out, err, dt in results:
        if rc is None:
            check(False, f"{group}: hangs (> {TIMEOUT} s)")
        elif rc < 0:
            check(False, f"{group}: killed by signal {signal.Signals(-rc).name}")
        else:
            sane = not any(mk in err for mk in SANITIZER_MARKS)
            calls = next((ln for ln in out.splitlines() if " calls, " in ln), "")
            check(rc == 0 and sane and "all checks passed" in out, f"{group} ({calls.split(': ')[-1]}, {dt:.1f} s)")
            if rc != 0 or not sane:
                print("\n".join(ln for ln in out.splitlines() if ln.startswith("FAIL"))[-4000:])
                print(err[-2000:])
    print(f"{len(groups)} groups in {time.time() - t0:.1f} s")

    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
