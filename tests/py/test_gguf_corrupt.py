"""test_gguf_corrupt.py - bitlab's GGUF reader refuses broken files cleanly.

Builds a small valid GGUF byte by byte (checked with the PyPI gguf reader), then
a corpus of broken variants: truncations at every header offset and a sample of
data offsets, bad magic/version/counts/strings/types/alignment/offsets/shapes,
plus an empty file, a directory and a missing path. For each, gguf_dump must
exit with status 1 (no signal, no sanitizer report) and its message must name
the file and the expected reason.
"""
import os
import re
import struct
import sys
import tempfile

import gguf
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_dump_util import run_dump  # noqa: E402

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
T_F32, T_Q8_0, T_Q8_K = 0, 8, 15
rng = np.random.default_rng(7)
failures = []


def s(b):
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return s(key) + struct.pack("<I", vtype) + payload


def tinfo(name, ne, ttype, off, n_dims=None):
    dims = b"".join(struct.pack("<Q", x) for x in ne)
    return s(name) + struct.pack("<I", len(ne) if n_dims is None else n_dims) + dims + struct.pack("<IQ", ttype, off)


A_DATA = rng.normal(size=64).astype("<f4").tobytes()
B_DATA = rng.integers(0, 256, size=68, dtype=np.uint8).tobytes()
B_DATA = np.float16(0.5).tobytes() + B_DATA[2:34] + np.float16(-0.25).tobytes() + B_DATA[36:]
BASE_KVS = [
    kv(b"general.architecture", STR, s(b"llama")),
    kv(b"general.alignment", U32, struct.pack("<I", 32)),
    kv(b"test.f32", F32, struct.pack("<f", 1.5)),
    kv(b"test.tokens", ARR, struct.pack("<IQ", STR, 3) + s(b"a") + s(b"bc") + s(b"")),
    kv(b"test.ints", ARR, struct.pack("<IQ", I32, 4) + struct.pack("<4i", 1, -2, 3, -4)),
]
BASE_INFOS = [tinfo(b"a", [32, 2], T_F32, 0), tinfo(b"b", [64], T_Q8_0, 256)]


def build(kvs=BASE_KVS, infos=BASE_INFOS, data=A_DATA + B_DATA, version=3, align=32, n_tensors=None,
          n_kv=None, magic=b"GGUF"):
    head = magic + struct.pack("<IQQ", version, len(infos) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(infos)
    return body + b"\0" * ((-len(body)) % align) + data


def with_kv(i, new):
    kvs = list(BASE_KVS)
    kvs[i] = new
    return kvs


def with_info(i, new):
    infos = list(BASE_INFOS)
    infos[i] = new
    return infos


def align_kv(vtype, payload):
    return with_kv(1, kv(b"general.alignment", vtype, payload))


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def expect_refused(path, reason, label):
    r = run_dump(path, timeout=30)
    err = r.stderr.decode(errors="replace")
    clean = not re.search(r"Sanitizer|runtime error|LeakSanitizer", err)
    ok = r.returncode == 1 and clean and path in err and re.search(reason, err) is not None
    check(ok, f"{label}: exit {r.returncode} == 1, names file, /{reason}/ in: {err.strip()[:160]}")


def cases():
    """label -> (file bytes, reason regex)."""
    c = {
        "bad magic": (build(magic=b"GGML"), "magic"),
        "version 1": (build(version=1), "version 1 "),
        "version 99": (build(version=99), "version 99"),
        "big-endian version": (build(version=3 << 24), "big-endian"),
        "huge n_kv": (build(n_kv=1 << 40), "n_kv"),
        "max n_kv": (build(n_kv=2**64 - 1), "n_kv"),
        "huge n_tensors": (build(n_tensors=1 << 40), "n_tensors"),
        "n_kv one too many": (build(n_kv=len(BASE_KVS) + 1), "value type|truncated|string length"),
        "key length past EOF": (build(with_kv(2, struct.pack("<Q", 1 << 40) + b"x")), "string length"),
        "key length 2^64-1": (build(with_kv(2, struct.pack("<Q", 2**64 - 1) + b"x")), "string length"),
        "string value past EOF": (build(with_kv(0, kv(b"general.architecture", STR, struct.pack("<Q", 1 << 33)))),
                                  "string length"),
        "array string past EOF": (build(with_kv(3, kv(b"test.tokens", ARR, struct.pack("<IQQ", STR, 1, 1 << 50)))),
                                  "string length"),
        "array count past EOF": (build(with_kv(4, kv(b"test.ints", ARR, struct.pack("<IQ", I32, 1 << 61)))),
                                 "runs past end of file"),
        "string array count past EOF": (build(with_kv(3, kv(b"test.tokens", ARR, struct.pack("<IQ", STR, 1 << 60)))),
                                        "runs past end of file"),
        "unknown kv type": (build(with_kv(2, kv(b"test.f32", 13, struct.pack("<f", 1.5)))), "unknown value type 13"),
        "unknown array element type": (build(with_kv(4, kv(b"test.ints", ARR, struct.pack("<IQ", 77, 0)))),
                                       "unknown array element type 77"),
        "nested array": (build(with_kv(4, kv(b"test.ints", ARR, struct.pack("<IQ", ARR, 1) + struct.pack("<IQ", I32, 0)))),
                         "nested"),
        "duplicate key": (build(with_kv(2, kv(b"general.architecture", STR, s(b"x")))), "duplicate metadata key"),
        "alignment 3": (build(align_kv(U32, struct.pack("<I", 3))), "alignment"),
        "alignment 0": (build(align_kv(U32, struct.pack("<I", 0))), "alignment"),
        "alignment as string": (build(align_kv(STR, s(b"32"))), "alignment"),
        "tensor offset past EOF": (build(infos=with_info(1, tinfo(b"b", [64], T_Q8_0, 1 << 40))), "past end of file"),
        "tensor offset 2^64-32": (build(infos=with_info(1, tinfo(b"b", [64], T_Q8_0, 2**64 - 32))), "past end of file"),
        "tensor data past EOF": (build(data=A_DATA + B_DATA[:-1]), "past end of file"),
        "unknown tensor type": (build(infos=with_info(0, tinfo(b"a", [32, 2], 99, 0))), "unknown ggml tensor type 99"),
        "unsupported tensor type": (build(infos=with_info(0, tinfo(b"a", [256], T_Q8_K, 0))), "Q8_K is not supported"),
        "duplicate tensor": (build(infos=with_info(1, tinfo(b"a", [64], T_Q8_0, 256))), "duplicate tensor name 'a'"),
        "misaligned offset": (build(infos=with_info(1, tinfo(b"b", [64], T_Q8_0, 8))), "not aligned"),
        "n_dims 0": (build(infos=with_info(0, tinfo(b"a", [], T_F32, 0))), "n_dims"),
        "n_dims 5": (build(infos=with_info(0, tinfo(b"a", [1, 1, 1, 1, 64], T_F32, 0))), "n_dims"),
        "ne[0] not a block multiple": (build(infos=with_info(1, tinfo(b"b", [33], T_Q8_0, 256))), "block size"),
        "element count overflow": (build(infos=with_info(0, tinfo(b"a", [2**32, 2**32, 2**32], T_F32, 0))), "overflow"),
        "zero dimension": (build(infos=with_info(0, tinfo(b"a", [32, 0], T_F32, 0))), r"ne\[1\] is 0"),
        "huge tensor size": (build(infos=with_info(0, tinfo(b"a", [2**62], T_F32, 0))), "too large|past end of file"),
        # the tensor table must describe the data section exactly (issue 11)
        "overlapping tensors": (build(infos=with_info(1, tinfo(b"b", [64], T_Q8_0, 224))), "overlaps tensor 'a'"),
        "tensors out of order": (build(infos=[tinfo(b"b", [64], T_Q8_0, 256), tinfo(b"a", [32, 2], T_F32, 0)]),
                                 "out of order"),
        "gap between tensors": (build(infos=with_info(1, tinfo(b"b", [64], T_Q8_0, 288)), data=A_DATA + bytes(32) + B_DATA),
                                "leaves 32 unclaimed bytes after tensor 'a'"),
        "first tensor not at 0": (build(infos=[tinfo(b"a", [32, 2], T_F32, 32), tinfo(b"b", [64], T_Q8_0, 288)],
                                        data=bytes(32) + A_DATA + B_DATA), "first tensor 'a' is at data offset 32"),
        "n_tensors one short": (build(infos=BASE_INFOS[:1]), "does not account for 68 bytes"),
        "type edited F32 -> F16": (build(infos=with_info(0, tinfo(b"a", [32, 2], 1, 0))), "leaves 128 unclaimed bytes"),
        "trailing bytes past the padding": (build(data=A_DATA + B_DATA + bytes(29)), "does not account for 29 bytes"),
    }
    return c


def test_base(tmp):
    path = os.path.join(tmp, "base.gguf")
    for version in (3, 2):
        with open(path, "wb") as f:
            f.write(build(version=version))
        if version == 3:
            r = gguf.GGUFReader(path)
            check([t.name for t in r.tensors] == ["a", "b"], "base file is valid for the gguf package's reader")
        res = run_dump(path)
        check(res.returncode == 0, f"base file v{version} accepted: exit {res.returncode} {res.stderr.decode()[:200]}")
    # the last tensor's alignment padding, whole or in part, is allowed (llama.cpp and the
    # gguf package pad the data section to the alignment; some writers stop at the last byte)
    for extra in (28, 5):
        with open(path, "wb") as f:
            f.write(build(data=A_DATA + B_DATA + bytes(extra)))
        res = run_dump(path)
        check(res.returncode == 0, f"base file + {extra} padding bytes accepted: exit {res.returncode} "
              f"{res.stderr.decode()[:200]}")


def test_truncations(tmp):
    data = build()
    header_end = len(data) - len(A_DATA + B_DATA)
    offsets = list(range(1, header_end)) + list(range(header_end, len(data), 7))
    path = os.path.join(tmp, "truncated.gguf")
    for n in offsets:
        with open(path, "wb") as f:
            f.write(data[:n])
        expect_refused(path, "truncated|past end of file|cannot fit|too short", f"truncated to {n} of {len(data)} bytes")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        test_base(tmp)
        test_truncations(tmp)
        for i, (label, (data, reason)) in enumerate(cases().items()):
            path = os.path.join(tmp, f"case{i:02d}.gguf")
            with open(path, "wb") as f:
                f.write(data)
            expect_refused(path, reason, label)
        empty = os.path.join(tmp, "empty.gguf")
        open(empty, "wb").close()
        expect_refused(empty, "empty", "empty file")
        expect_refused(tmp, "directory", "directory")
        expect_refused(os.path.join(tmp, "missing.gguf"), "No such file", "missing file")
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
