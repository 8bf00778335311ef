#!/usr/bin/env python3
"""gpu_table.py - the records of bench/run_gpu_bench.sh (one JSON object per
line) and the markdown table made of them, ready for bench/RESULTS.md.

    gpu_table.py meta                                   the machine: GPU, driver, date, versions
    gpu_table.py check --name N --rc RC --log FILE      a build / test / sanitizer result
    gpu_table.py record --impl I --mode M --config C --rc RC --log FILE
                                                        a benchmark: the last JSON line of
                                                        FILE, or the failure and its log tail
    gpu_table.py table FILE.jsonl [...]                 markdown from one or more runs

Targets (issue #5): bitlab ≥ 2× PyTorch eager tokens/s and ≥ 1.2× torch.compile,
peak GPU memory ≤ 0.6× PyTorch's (compared with torch.cuda.max_memory_allocated,
the smaller of PyTorch's two figures, so the target is not met by
allocator slack), ternary student forward ≥ 1.5× the bf16 one.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import floors  # noqa: E402
from bench_configs import resolve_config  # noqa: E402

# exit statuses run_gpu_bench.sh gives meaning to
RC_NOTES = {124: "timed out", 125: "not started (deadline)", 127: "not run (missing)", 77: "skipped"}
TARGETS = {"eager": 2.0, "compile": 1.2, "memory": 0.6, "ternary": 1.5}


def _tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:]).strip()
    except OSError as e:
        return f"(no log: {e})"


def _last_json(path):
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def _cmd(args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cmd_meta(_a):
    smi = _cmd(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm,"
                "clocks.max.mem,power.limit", "--format=csv,noheader"])
    try:
        import torch
        tv = torch.__version__ + (f", CUDA {torch.version.cuda}" if torch.version.cuda else "")
    except ImportError:
        tv = "absent"
    nvcc = _cmd(["nvcc", "--version"]).splitlines()
    print(json.dumps({"kind": "meta", "date": datetime.datetime.now(datetime.timezone.utc)
                      .strftime("%Y-%m-%d %H:%M UTC"),
                      "gpu": smi or "nvidia-smi gave nothing", "torch": tv,
                      "nvcc": nvcc[-1] if nvcc else "absent",
                      "cpus": os.cpu_count()}))
    return 0


def cmd_check(a):
    rec = {"kind": "check", "name": a.name, "ok": a.rc == 0, "rc": a.rc}
    if a.rc in RC_NOTES:
        rec["note"] = RC_NOTES[a.rc]
    if a.rc != 0 or a.keep_tail:
        rec["tail"] = _tail(a.log, a.lines)
    print(json.dumps(rec))
    return 0


def cmd_record(a):
    r = _last_json(a.log) if a.rc == 0 or a.impl == "torch" else None
    rec = {"kind": "bench", "impl": a.impl, "mode": a.mode, "config": a.config}
    if r is not None:
        r.pop("traceback", None)
        rec.update(r)
        rec.update(kind="bench", impl=a.impl, mode=a.mode, config=a.config)
        rec.setdefault("ok", a.rc == 0)
        if a.rc != 0:
            rec["ok"] = False
    else:
        rec.update(ok=False, rc=a.rc)
    if not rec["ok"]:
        rec["rc"] = a.rc
        rec["tail"] = _tail(a.log)
        last = rec["tail"].splitlines()[-1] if rec["tail"] else ""
        rec.setdefault("error", RC_NOTES.get(a.rc, f"exit status {a.rc}") + (f": {last}" if last else ""))
    print(json.dumps(rec))
    return 0


# ----------------------------------------------------------------------------
# the table

def _peak_mib(r):
    """(MiB, key) of an implementation's peak GPU memory."""
    if r["impl"] == "torch":
        return r.get("peak_allocated_mib"), "peak_allocated_mib"
    for k in sorted(r):
        lk = k.lower()
        if "peak" in lk and ("gpu" in lk or "device" in lk or "alloc" in lk or "cuda" in lk) \
                and isinstance(r[k], (int, float)):
            return r[k], k
    return None, None


def _f(v, fmt="{:.1f}"):
    return "—" if v is None else fmt.format(v)


def table(records):
    meta = next((r for r in records if r.get("kind") == "meta"), {})
    checks = [r for r in records if r.get("kind") == "check"]
    bench = [r for r in records if r.get("kind") == "bench"]
    gpu = meta.get("gpu", "")
    dev_key = floors.device_key(gpu) or "h100"
    dev = floors.DEVICES[dev_key]
    out = [f"## GPU step benchmark, {meta.get('date', 'date unknown')}", "",
           f"Machine: {gpu or 'unknown'}; {meta.get('cpus', '?')} CPUs; PyTorch {meta.get('torch', '?')}; "
           f"{meta.get('nvcc', 'nvcc ?')}. Floors and MFU against {dev['name']} datasheet peaks "
           f"({dev['bf16_tflops']:g} TFLOP/s bf16 dense, {dev['hbm_tbs']:g} TB/s).", ""]
    if checks:
        out += ["| check | result | note |", "| --- | --- | --- |"]
        for c in checks:
            note = c.get("note", "")
            if c.get("tail"):
                note = (note + ": " if note else "") + c["tail"].splitlines()[-1][:160].replace("|", "\\|")
            out.append(f"| {c['name']} | {'pass' if c['ok'] else 'FAIL'} (rc {c['rc']}) | {note} |")
        out.append("")
        for c in checks:
            if c["ok"] and c.get("tail"):
                out += [f"{c['name']}, last lines:", "", "```", c["tail"], "```", ""]
    for cfg_name in dict.fromkeys(r["config"] for r in bench):
        fwd = [r for r in bench if r["config"] == cfg_name and r["mode"] == "forward"]
        rows = [r for r in bench if r["config"] == cfg_name and r["mode"] != "forward"]
        ok = [r for r in rows if r.get("ok")]
        B = next((r["batch"] for r in ok if "batch" in r), 8)
        T = next((r["seq"] for r in ok if "seq" in r), 512)
        try:
            cfg, _ = resolve_config(cfg_name)
            fl = floors.floors(cfg, B, T, dev_key)
        except (ValueError, OSError):
            fl = None
        out.append(f"### {cfg_name}, batch {B} × {T}")
        out.append("")
        if fl:
            out.append(f"Step: {fl['flops']['total'] / 1e12:.3f} TFLOP, FLOP floor "
                       f"{fl['flop_floor_s'] * 1e3:.3f} ms; byte floor {fl['byte_floor_s'] * 1e3:.3f} ms "
                       f"({fl['bytes']['total'] / 1e9:.2f} GB); bound by {fl['bound']}.")
            out.append("")
        out += ["| implementation | step ms median (min) | tokens/s | peak GPU MiB (alloc / reserved) "
                "| TFLOP/s | MFU | × floor | phases ms: teacher / student fwd+loss / backward / optimizer |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            name = f"{r['impl']} {r['mode']}"
            if not r.get("ok"):
                err = (r.get("error") or "").splitlines()[0][:200].replace("|", "\\|") if r.get("error") else ""
                out.append(f"| {name} | failed: {err} | | | | | | |")
                continue
            med = r.get("step_s_median")
            mn = r.get("step_s_min")
            peak, key = _peak_mib(r)
            mem = _f(peak) + (f" / {_f(r.get('peak_reserved_mib'))}" if r["impl"] == "torch" else
                              (f" ({key})" if key else ""))
            tfl = fl["flops"]["total"] / med / 1e12 if fl and med else None
            mfu = tfl / dev["bf16_tflops"] if tfl else None
            gap = med / max(fl["flop_floor_s"], fl["byte_floor_s"]) if fl and med else None
            ph = r.get("phases_ms_median")
            phs = " / ".join(_f(ph.get(k), "{:.2f}") for k in ("teacher_fwd", "student_fwd_loss",
                                                                "backward", "optimizer")) if ph else ""
            if r.get("compile_s") is not None:
                phs += f" (compile {r['compile_s']:.0f} s, graph breaks {r.get('graph_breaks')})"
            out.append(f"| {name} | {_f(med * 1e3 if med else None, '{:.2f}')} "
                       f"({_f(mn * 1e3 if mn else None, '{:.2f}')}) | {_f(r.get('tokens_per_s'), '{:,.0f}')} "
                       f"| {mem} | {_f(tfl)} | {_f(mfu * 100 if mfu else None)}% | {_f(gap, '{:.1f}')}× | {phs} |")
        out.append("")
        bl = next((r for r in ok if r["impl"] == "bitlab"), None)
        pe = next((r for r in ok if r["impl"] == "torch" and r["mode"] == "eager"), None)
        pc = next((r for r in ok if r["impl"] == "torch" and r["mode"] == "compile"), None)
        tgt = []
        if bl and pe:
            s = bl["tokens_per_s"] / pe["tokens_per_s"]
            tgt.append(f"speed vs eager {s:.2f}× (target ≥ {TARGETS['eager']}×: "
                       f"{'met' if s >= TARGETS['eager'] else 'NOT met'})")
        if bl and pc:
            s = bl["tokens_per_s"] / pc["tokens_per_s"]
            tgt.append(f"speed vs torch.compile {s:.2f}× (target ≥ {TARGETS['compile']}×: "
                       f"{'met' if s >= TARGETS['compile'] else 'NOT met'})")
        if bl and pe:
            bm, _ = _peak_mib(bl)
            tms = [x for x in (pe.get("peak_allocated_mib"), (pc or {}).get("peak_allocated_mib")) if x]
            tm = min(tms) if tms else None
            if bm and tm:
                m = bm / tm
                tgt.append(f"peak memory {m:.2f}× PyTorch's smaller peak (target ≤ {TARGETS['memory']}×: "
                           f"{'met' if m <= TARGETS['memory'] else 'NOT met'})")
        if bl:
            extra = {k: v for k, v in bl.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                     and k not in ("batch", "seq", "steps", "rc")}
            tf = {k: v for k, v in extra.items() if "tern" in k.lower() or "bf16" in k.lower()}
            if tf:
                tgt.append("bitlab's forward fields: " + ", ".join(f"{k} {v}" for k, v in tf.items()))
        if fl:
            sf = fl["student_fwd"]
            tgt.append(f"student-forward floors: bf16 {max(sf['bf16'].values()) * 1e3:.3f} ms, ternary int8 "
                       f"{max(sf['ternary_int8'].values()) * 1e3:.3f} ms (best possible ratio "
                       f"{max(sf['bf16'].values()) / max(sf['ternary_int8'].values()):.2f}×, "
                       f"target ≥ {TARGETS['ternary']}×)")
        if tgt:
            out += ["Targets: " + "; ".join(tgt) + ".", ""]
        for r in fwd:
            if not r.get("ok"):
                err = (r.get("error") or "").splitlines()[0][:200] if r.get("error") else ""
                out += [f"Teacher forward, bitlab: failed: {err}", ""]
                continue
            ms = r["seconds"] * 1e3 if isinstance(r.get("seconds"), (int, float)) else None
            ref = [f"PyTorch {p['mode']} teacher phase {p['phases_ms_median']['teacher_fwd']:.2f} ms"
                   for p in ok if p["impl"] == "torch" and p.get("phases_ms_median")]
            floor = (f", floor {fl['flops']['teacher_fwd'] / (dev['bf16_tflops'] * 1e12) * 1e3:.3f} ms"
                     if fl else "")
            out += [f"Teacher forward, bitlab: {_f(ms, '{:.2f}')} ms, {_f(r.get('tokens_per_s'), '{:,.0f}')} "
                    f"tokens/s{floor}" + ("; " + "; ".join(ref) if ref else "") + ".", ""]
    return "\n".join(out)


def cmd_table(a):
    records = []
    for path in a.files:
        try:
            with open(path) as f:
                for i, line in enumerate(f, 1):
                    line = line.strip()
                    if line:
                        try:
                            records.append(json.loads(line))
                        except json.JSONDecodeError as e:
                            sys.exit(f"gpu_table: {path}:{i}: not JSON ({e})")
        except OSError as e:
            sys.exit(f"gpu_table: {e}")
    print(table(records))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("meta", help="GPU, driver, date and versions as one record")
    c = sub.add_parser("check", help="a build/test/sanitizer result as one record")
    c.add_argument("--name", required=True)
    c.add_argument("--rc", type=int, required=True)
    c.add_argument("--log", required=True)
    c.add_argument("--lines", type=int, default=15)
    c.add_argument("--keep-tail", action="store_true", help="keep the log tail on success too")
    r = sub.add_parser("record", help="a benchmark's JSON line (or its failure) as one record")
    r.add_argument("--impl", required=True, choices=("bitlab", "torch"))
    r.add_argument("--mode", required=True, help="eager, compile, cuda, ...")
    r.add_argument("--config", required=True)
    r.add_argument("--rc", type=int, required=True)
    r.add_argument("--log", required=True)
    t = sub.add_parser("table", help="markdown from records")
    t.add_argument("files", nargs="+")
    a = ap.parse_args(argv)
    return {"meta": cmd_meta, "check": cmd_check, "record": cmd_record, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
