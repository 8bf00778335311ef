"""test_mpi_outputs.py - bitlab.export and bitlab.eval{json=} called by a
script inside a data-parallel run (tests/mpi/mpi_outputs.lua, mpirun -np 2):
rank 0's call is the one that writes, and every rank returns what it wrote.
Each rank names its own output file, so the files on disk say who wrote:

1. only rank 0's export (student0.gguf, a GGUF with tensors) and eval report
   (eval0.json, valid JSON) exist; rank 1's names were never written;
2. both ranks returned the same export result (path student0.gguf, format,
   manifest, tensor count) and the same held-out KL bit for bit (%a);
3. one process writes its files as before (the single-rank path is the same
   code, its broadcasts no-ops).
Registered by CMake only when bitlab is built with MPI (label "mpi")."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "py"))
import make_tiny_model as tiny  # noqa: E402
from bitlab_run import BIN, check, finish  # noqa: E402

MPIRUN = os.environ.get("BITLAB_MPIRUN") or shutil.which("mpirun") or "mpirun"
SCRIPT = os.path.join(HERE, "mpi_outputs.lua")
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")
if os.environ.get("BITLAB_SANITIZE", "").upper() in ("ON", "1", "TRUE", "YES"):
    # Open MPI leaks by design (test_mpi_train.py says why)
    ENV["ASAN_OPTIONS"] = ":".join(x for x in (ENV.get("ASAN_OPTIONS"), "detect_leaks=0") if x)


def run(np_, model, d):
    os.makedirs(d)
    c = [] if np_ == 0 else [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np_),
                             "-x", "OPENBLAS_NUM_THREADS", "-x", "OMPI_MCA_btl_vader_single_copy_mechanism"]
    if "ASAN_OPTIONS" in ENV and np_:
        c += ["-x", "ASAN_OPTIONS"]
    p = subprocess.run(c + [BIN, SCRIPT, "--headless", "--device", "cpu", "--", model, d],
                       capture_output=True, text=True, timeout=300, env=ENV)
    if p.returncode:
        print(p.stdout[-2000:], p.stderr[-4000:])
    return p


def result(d, r):
    path = os.path.join(d, f"rank{r}.json")
    return json.load(open(path)) if os.path.exists(path) else None


def main():
    if not shutil.which(MPIRUN):
        print("skip: no mpirun")
        sys.exit(77)
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny.write_tiny(tmp, arch="llama", seed=7, fmt="gguf").gguf_path
        two = os.path.join(tmp, "two")
        p = run(2, model, two)
        check(p.returncode == 0, "mpirun -np 2: the script ran")
        gguf = os.path.join(two, "student0.gguf")
        check(os.path.exists(gguf) and open(gguf, "rb").read(4) == b"GGUF",
              "rank 0 wrote its export (a GGUF)")
        check(not os.path.exists(os.path.join(two, "student1.gguf")), "rank 1 wrote no export")
        ev = os.path.join(two, "eval0.json")
        check(os.path.exists(ev) and "kl" in json.dumps(json.load(open(ev))), "rank 0 wrote its eval report")
        check(not os.path.exists(os.path.join(two, "eval1.json")), "rank 1 wrote no eval report")
        r0, r1 = result(two, 0), result(two, 1)
        check(r0 is not None and r0 == r1, f"both ranks returned rank 0's results: {r0} / {r1}")
        check(r0 is not None and r0["path"] == gguf and r0["format"] == "gguf" and r0["n_tensors"] > 0,
              "the result names rank 0's file, its format and its tensors")
        one = os.path.join(tmp, "one")
        p = run(0, model, one)
        check(p.returncode == 0 and os.path.exists(os.path.join(one, "student0.gguf"))
              and os.path.exists(os.path.join(one, "eval0.json")), "one process writes its files")
        s = result(one, 0)
        check(s is not None and r0 is not None and s["n_tensors"] == r0["n_tensors"]
              and s["format"] == r0["format"], "one process returns the same kind of result")
    finish()


if __name__ == "__main__":
    main()
