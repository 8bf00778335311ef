"""bitlab_run.py - what the Python tests that drive the bitlab binary share:
where the binary is, running it with sanitizer reports counted as failures,
the check/failure list, and the word list tiny-model data is drawn from."""
import os
import subprocess
import sys

BIN = os.environ.get("BITLAB_BIN", "build/bitlab")
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error:")
# the words the tests' held-out and training text is made of
WORDS = ["the", "model", "ternary", "weights", "hello", "world", "student", "teacher",
         "learns", "from", "tokens", "and", "bits", "42", "2024", "is", "a", "of"]
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)
    return ok


def run(args, timeout=600):
    """bitlab ARGS; a sanitizer report on stderr is a failure of its own."""
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)
    if any(m in p.stderr for m in SANITIZER_MARKS):
        failures.append(f"sanitizer report from {' '.join(args[:2])}")
        print(p.stderr[-3000:])
    return p


def finish():
    """The test's exit: 1 with the failure count, else 0."""
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")
