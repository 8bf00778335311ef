"""test_gguf_dequant.py - bitlab's GGUF reader and dequantizers against the PyPI gguf package.

Writes a GGUF with metadata of every kind and random tensors of every type bitlab
reads (quantized with gguf.quants.quantize where the package can, else random
valid raw blocks), dumps it with tests/tools/gguf_dump and compares metadata,
tensor infos and dequantized values with gguf + numpy. Then does the same for
the real default model if it is present.
"""
import os
import sys
import tempfile

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_dump_util import parse, read_floats, run_dump  # noqa: E402

MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
QUANT_TYPES = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K,
               Q.TQ1_0, Q.TQ2_0]
# byte offsets of the fp16 scale fields in one block (ggml-common.h)
FP16_FIELDS = {Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0],
               Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
               Q.TQ1_0: [52], Q.TQ2_0: [64]}
ALIGNMENT = 64

rng = np.random.default_rng(20240611)
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def random_blocks(qtype, n_rows, n_cols):
    """Random raw blocks whose fp16 scales are finite, of moderate size and either sign."""
    bs, ts = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_rows * n_cols // bs, ts), dtype=np.uint8)
    for off in FP16_FIELDS[qtype]:
        scale = (rng.uniform(2.0**-10, 4.0, size=len(blocks)) * rng.choice([-1, 1], len(blocks)))
        blocks[:, off:off + 2] = scale.astype("<f2").view(np.uint8).reshape(-1, 2)
    return blocks.reshape(n_rows, -1)


def metadata():
    """key -> (gguf value type, value, array element type or None)."""
    ints = {V.UINT8: (0, 255), V.INT8: (-128, 127), V.UINT16: (0, 65535), V.INT16: (-32768, 32767),
            V.UINT32: (0, 2**32 - 1), V.INT32: (-2**31, 2**31 - 1), V.UINT64: (0, 2**64 - 1),
            V.INT64: (-2**63, 2**63 - 1)}
    md = {}
    for vt, (lo, hi) in ints.items():
        name = vt.name.lower()
        md[f"test.{name}"] = (vt, int(rng.integers(lo, hi, endpoint=True, dtype=np.int64 if lo < 0
                                                      else np.uint64)), None)
        md[f"test.{name}_max"] = (vt, hi, None)
        md[f"test.{name}_min"] = (vt, lo, None)
        vals = [int(x) for x in rng.integers(lo, hi, size=7, endpoint=True,
                                             dtype=np.int64 if lo < 0 else np.uint64)]
        md[f"test.arr.{name}"] = (V.ARRAY, vals + [lo, hi], vt)
    md["test.float32"] = (V.FLOAT32, float(np.float32(rng.normal() * 1e3)), None)
    md["test.float32_tiny"] = (V.FLOAT32, float(np.float32(1e-42)), None)  # subnormal
    md["test.float64"] = (V.FLOAT64, float(rng.normal() * 1e-200), None)
    md["test.bool_true"] = (V.BOOL, True, None)
    md["test.bool_false"] = (V.BOOL, False, None)
    md["test.string"] = (V.STRING, "h\u00e9llo w\u00f6rld \u2603 " + str(rng.integers(1 << 30)), None)
    md["test.string_empty"] = (V.STRING, "", None)
    md["test.arr.float32"] = (V.ARRAY, [float(x) for x in rng.normal(size=9).astype(np.float32)], V.FLOAT32)
    md["test.arr.float64"] = (V.ARRAY, [float(x) for x in rng.normal(size=9) * 1e100], V.FLOAT64)
    md["test.arr.bool"] = (V.ARRAY, [bool(x) for x in rng.integers(0, 2, size=11)], V.BOOL)
    md["test.arr.string"] = (V.ARRAY, ["", "a", "tok\u0120en", "\u4e2d\u6587"] +
                             [f"w{x}" for x in rng.integers(0, 10**6, size=50)], V.STRING)
    return md


def tensors():
    """name -> (ggml type, raw array for the writer, reference float32 values in file order)."""
    ts = {}
    f32 = rng.normal(size=(3, 5, 7, 32)).astype(np.float32)
    f32.flat[:4] = [np.inf, -np.inf, -0.0, 1e-45]
    ts["t.f32_4d"] = (Q.F32, f32, f32.ravel())
    v1 = rng.normal(size=96).astype(np.float32)
    ts["t.f32_1d"] = (Q.F32, v1, v1)
    all16 = rng.permutation(np.arange(65536, dtype=np.uint32)).astype(np.uint16).reshape(256, 256)
    ts["t.f16_all"] = (Q.F16, all16.view(np.float16), all16.view(np.float16).astype(np.float32).ravel())
    bf_bytes = all16.astype("<u2").view(np.uint8).reshape(256, 512)
    ts["t.bf16_all"] = (Q.BF16, bf_bytes, gguf.quants.dequantize(bf_bytes, Q.BF16).ravel())
    for qt in QUANT_TYPES:
        raw = random_blocks(qt, 3, 512)
        ts[f"t.{qt.name.lower()}_raw"] = (qt, raw, gguf.quants.dequantize(raw, qt).ravel())
        x = (rng.normal(size=(2, 768)) * rng.uniform(0.01, 10)).astype(np.float32)
        try:
            raw = gguf.quants.quantize(x, qt)
        except NotImplementedError:
            continue  # the package only dequantizes this type; the raw blocks above cover it
        ts[f"t.{qt.name.lower()}_quantized"] = (qt, raw, gguf.quants.dequantize(raw, qt).ravel())
    return ts


def write_file(path, md, ts):
    w = gguf.GGUFWriter(path, "llama")
    w.add_custom_alignment(ALIGNMENT)
    for key, (vt, val, et) in md.items():
        w.add_key_value(key, val, vt, sub_type=et)
    for name, (qt, raw, _) in ts.items():
        if qt in (Q.F32, Q.F16):
            w.add_tensor(name, raw)
        else:
            w.add_tensor(name, raw, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def same_value(typ, exp, got):
    if typ == "string":
        return (exp if isinstance(exp, bytes) else exp.encode()) == got
    if typ == "float32":
        return np.float32(exp).tobytes() == np.float32(got).tobytes()
    if typ == "float64":
        return np.float64(exp).tobytes() == np.float64(got).tobytes()
    return int(exp) == got


def compare_kv(key, typ, val, et, got):
    if key not in got["kv"]:
        check(False, f"kv {key}: missing from dump")
        return
    gtyp, gval = got["kv"][key]
    if typ != "array":
        check(gtyp == typ and same_value(typ, val, gval), f"kv {key}: {typ} {val!r:.60} == {gtyp} {gval!r:.60}")
        return
    getype, gvals = gval if gtyp == "array" else (None, [])
    ok = gtyp == "array" and getype == et and len(gvals) == len(val) and all(
        same_value(et, a, b) for a, b in zip(val, gvals))
    check(ok, f"kv {key}: array[{et}] of {len(val)} == {gtyp}[{getype}] of {len(gvals)}")


def compare_values(name, qt, ref, got):
    ref = np.asarray(ref, dtype=np.float32)
    if got.shape != ref.shape:
        check(False, f"{name} ({qt.name}): {got.size} values read, {ref.size} expected")
        return
    if qt in (Q.F32, Q.F16, Q.BF16):
        nan_r, nan_g = np.isnan(ref), np.isnan(got)
        ok = (np.array_equal(nan_r, nan_g) and np.array_equal(np.signbit(ref), np.signbit(got))
              and np.array_equal(ref[~nan_r].view(np.uint32), got[~nan_g].view(np.uint32)))
        bad = int(np.sum(ref[~nan_r].view(np.uint32) != got[~nan_r].view(np.uint32))) if ok is False else 0
        check(ok, f"{name} ({qt.name}): {ref.size} values bit-exact ({bad} differ, nan count {nan_r.sum()})")
        return
    scale = max(1.0, float(np.max(np.abs(ref))))
    err = float(np.max(np.abs(got.astype(np.float64) - ref)))
    check(err <= 1e-6 * scale, f"{name} ({qt.name}): {ref.size} values, max abs err {err:.3g} <= {1e-6 * scale:.3g}")


def test_synthetic():
    md, ts = metadata(), tensors()
    with tempfile.TemporaryDirectory() as tmp:
        path, out_bin = os.path.join(tmp, "all_types.gguf"), os.path.join(tmp, "values.f32")
        write_file(path, md, ts)
        r = run_dump(path, out_bin)
        check(r.returncode == 0, f"gguf_dump exit status {r.returncode} == 0 {r.stderr.decode()[:300]}")
        if r.returncode:
            return
        got = parse(r.stdout)
        reader = gguf.GGUFReader(path)
        check(got["version"] == 3, f"version {got['version']} == 3")
        check(got["alignment"] == ALIGNMENT, f"alignment {got['alignment']} == {ALIGNMENT}")
        check(got["data_start"] == reader.data_offset, f"data start {got['data_start']} == {reader.data_offset}")
        md["general.architecture"] = (V.STRING, "llama", None)
        md["general.alignment"] = (V.UINT32, ALIGNMENT, None)
        check(got["n_kv"] == len(md), f"n_kv {got['n_kv']} == {len(md)}")
        for key, (vt, val, et) in md.items():
            compare_kv(key, vt.name.lower(), val, et.name.lower() if et is not None else None, got)
        check(got["n_tensors"] == len(ts), f"n_tensors {got['n_tensors']} == {len(ts)}")
        for t in reader.tensors:
            qt, _, ref = ts[t.name]
            gt = got["tensors"].get(t.name)
            exp = (qt.name, [int(x) for x in t.shape], t.data_offset - reader.data_offset, t.n_bytes)
            check(gt == exp, f"tensor {t.name}: (type, ne, offset, nbytes) {gt} == {exp}")
            compare_values(t.name, qt, ref, read_floats(out_bin, got, t.name))


def reader_value(field):
    """(type name, value, element type name) of a GGUFReader field."""
    vt = field.types[0]
    if vt == V.ARRAY:
        et = field.types[1]
        vals = [bytes(field.parts[i]) if et == V.STRING else field.parts[i][0].item() for i in field.data]
        return "array", vals, et.name.lower()
    part = field.parts[field.data[0]]
    return vt.name.lower(), bytes(part) if vt == V.STRING else part[0].item(), None


def test_model():
    if not os.path.exists(MODEL):
        print(f"skip: {MODEL} not present, real-model comparison not run")
        return
    reader = gguf.GGUFReader(MODEL)
    names = ["token_embd.weight", "blk.0.ffn_down.weight", "blk.0.attn_norm.weight", "output_norm.weight"]
    with tempfile.TemporaryDirectory() as tmp:
        out_bin = os.path.join(tmp, "model.f32")
        r = run_dump(MODEL, out_bin, names)
        check(r.returncode == 0, f"{MODEL}: gguf_dump exit status {r.returncode} == 0 {r.stderr.decode()[:300]}")
        if r.returncode:
            return
        got = parse(r.stdout)
        fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
        check(got["n_kv"] == len(fields), f"{MODEL}: n_kv {got['n_kv']} == {len(fields)}")
        for key, field in fields.items():
            compare_kv(key, *reader_value(field), got)
        check(got["n_tensors"] == len(reader.tensors), f"{MODEL}: n_tensors {got['n_tensors']} == {len(reader.tensors)}")
        shapes_ok = all(got["tensors"].get(t.name) == (t.tensor_type.name, [int(x) for x in t.shape],
                                                       t.data_offset - reader.data_offset, t.n_bytes)
                        for t in reader.tensors)
        check(shapes_ok, f"{MODEL}: all {len(reader.tensors)} tensor infos match GGUFReader")
        by_name = {t.name: t for t in reader.tensors}
        for name in names:
            t = by_name[name]
            ref = gguf.quants.dequantize(t.data, t.tensor_type).ravel()
            compare_values(f"{MODEL}:{name}", t.tensor_type, ref, read_floats(out_bin, got, name))


if __name__ == "__main__":
    test_synthetic()
    test_model()
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")
