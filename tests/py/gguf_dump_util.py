"""gguf_dump_util.py - runs tests/tools/gguf_dump and parses what it printed.

Shared by test_gguf_dequant.py and test_gguf_corrupt.py (not a test itself).
"""
import os
import subprocess
import sys

import numpy as np


def dump_tool():
    """Path of the gguf_dump tool: $BITLAB_GGUF_DUMP, else $BITLAB_BUILD_DIR/gguf_dump."""
    path = os.environ.get("BITLAB_GGUF_DUMP") or os.path.join(
        os.environ.get("BITLAB_BUILD_DIR", "build"), "gguf_dump")
    if not os.access(path, os.X_OK):
        sys.exit(f"FAIL: gguf_dump tool not found at {path} (build it, or set BITLAB_BUILD_DIR)")
    return path


def run_dump(path, out_bin=None, names=(), timeout=120):
    args = [dump_tool(), path] + ([out_bin, *names] if out_bin else [])
    return subprocess.run(args, capture_output=True, timeout=timeout)


def _unhex(field):
    assert field.startswith("s:"), field
    return bytes.fromhex(field[2:])


def _value(typ, field):
    if typ == "string":
        return _unhex(field)
    if typ in ("float32", "float64"):
        return float(field)
    return int(field)


def parse(stdout):
    """Returns {version, alignment, n_kv, n_tensors, data_start, kv: {key: (type, value)},
    tensors: {name: (type, ne list, offset, nbytes)}, data: {name: (byte offset, count)}}.
    Array values are (\"array\", (elemtype, [values])). Keys and names are str."""
    out = {"kv": {}, "tensors": {}, "data": {}}
    for line in stdout.decode().splitlines():
        f = line.split(" ")
        if f[0] in ("version", "alignment", "n_kv", "n_tensors", "data_start"):
            out[f[0]] = int(f[1])
        elif f[0] == "kv":
            key, typ = _unhex(f[1]).decode(), f[2]
            if typ == "array":
                et, n = f[3], int(f[4])
                vals = [_value(et, x) for x in f[5:]]
                assert len(vals) == n, (key, n, len(vals))
                out["kv"][key] = ("array", (et, vals))
            else:
                out["kv"][key] = (typ, _value(typ, f[3]))
        elif f[0] == "tensor":
            nd = int(f[3])
            out["tensors"][_unhex(f[1]).decode()] = (f[2], [int(x) for x in f[4:4 + nd]],
                                                     int(f[4 + nd]), int(f[5 + nd]))
        elif f[0] == "data":
            out["data"][_unhex(f[1]).decode()] = (int(f[2]), int(f[3]))
        else:
            raise AssertionError(f"unexpected dump line: {line[:200]}")
    return out


def read_floats(out_bin, info, name):
    off, count = info["data"][name]
    return np.fromfile(out_bin, dtype="<f4", count=count, offset=off)
