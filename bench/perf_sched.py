#!/usr/bin/env python3
"""perf_sched.py - where a bitlab step's CPU samples go between the work:
records `bitlab bench step` under `perf record` from --delay-ms on, past
the model load and the first steps (or reads a perf.data given with --data) and prints the share of all samples in the kernel's scheduler
and futex paths (a thread sleeping or being woken), in sched_yield (a
spinning OpenBLAS worker), in bitlab's own pool waits (spin_wait, inlined in
worker_main / bl_parallel_for), in GEMM (OpenBLAS) and in page clearing.

    bench/perf_sched.py [--bin build/bitlab] [--model M] [--iters 4] [--data FILE]
"""
import argparse
import os
import re
import subprocess
import sys

SCHED = re.compile(r"^(schedule|__schedule|finish_task_switch.*|try_to_wake_up|"
                   r"_raw_spin_unlock_irqrestore|_raw_spin_lock.*|futex_.*|__futex.*|"
                   r"do_futex|__x64_sys_futex|pick_next_task.*|update_curr.*|"
                   r"dequeue_.*|enqueue_.*|select_task_rq.*|wake_up_q|ttwu_.*|"
                   r"native_write_msr|psi_.*|__switch_to.*|switch_mm.*|"
                   r"pthread_cond_.*|__pthread_mutex_.*|pthread_mutex_.*)$")
YIELD = re.compile(r"(sched_yield|yield_task|do_sched_yield)")
POOL = re.compile(r"^(worker_main|bl_parallel_for|spin_wait)$")
GEMM = re.compile(r"^(sgemm_|cblas_sgemm|.*_SKYLAKEX|.*_HASWELL|.*_ZEN|.*_SANDYBRIDGE)")
PAGES = re.compile(r"^(clear_page.*|exc_page_fault|handle_mm_fault|do_anonymous_page)$")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bitlab")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--delay-ms", type=int, default=8000,
                    help="start sampling this late, past the model load and warm-up")
    ap.add_argument("--data")
    a = ap.parse_args()
    data = a.data
    if not data:
        data = "/tmp/bitlab_perf_sched.data"
        subprocess.run(["perf", "record", "-F", "499", "-D", str(a.delay_ms), "-o", data, "--",
                        a.bin, "bench", "step",
                        "--model", a.model, "--iters", str(a.iters), "--warmup", "1"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "sym",
                          "--stdio"], capture_output=True, text=True, check=True).stdout
    share = {"scheduler+futex": 0.0, "sched_yield": 0.0, "pool waits": 0.0, "gemm": 0.0,
             "page clearing": 0.0}
    for line in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[[.k]\]\s+(\S+)", line)
        if not m:
            continue
        pct, sym = float(m.group(1)), m.group(2)
        if YIELD.search(sym):
            share["sched_yield"] += pct
        elif SCHED.match(sym):
            share["scheduler+futex"] += pct
        elif POOL.match(sym):
            share["pool waits"] += pct
        elif GEMM.match(sym):
            share["gemm"] += pct
        elif PAGES.match(sym):
            share["page clearing"] += pct
    for k, v in share.items():
        print(f"{k:>16}: {v:5.2f} % of samples")


if __name__ == "__main__":
    sys.exit(main())
