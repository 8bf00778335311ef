"""report.py - the recipe study's table and chart from its runs' metrics logs.

Each run (bench/study/recipe.lua --log RUNS/NAME.jsonl) logged step records
(with "tokens": tokens trained on in that step, and "step_seconds") and
"eval" events (held-out perplexity ratio, KL, top-1 agreement at the step).
This prints a Markdown table (one row per run: tokens and wall seconds
trained, the last evaluation's figures and the best KL) and draws held-out
perplexity, KL and top-1 agreement against tokens trained on, one line per
run, into a PNG.

  python3 bench/study/report.py --png docs/distill-default-model.png RUNS/*.jsonl
  python3 bench/study/report.py --trim OUT_DIR RUNS/*.jsonl

--trim writes each log's eval events and the step records' fields the
report and a reader of the curves need (step, tokens, step_seconds, the loss
terms, lambda, lr) into OUT_DIR/NAME.jsonl: what the study commits.
"""
import argparse
import json
import os
import sys


def read_run(path):
    """(name, [(tokens, eval record)], tokens, seconds, steps) of one log."""
    cum, secs, at_step, evals, steps = 0, 0.0, {0: 0}, [], 0
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            ev = r.get("event")
            if ev is None and "step" in r and "tokens" in r:
                cum += r["tokens"]
                secs += r.get("step_seconds", 0.0)
                at_step[r["step"]] = cum
                steps = r["step"]
            elif ev == "eval" and "step" in r:
                evals.append((at_step.get(r["step"], cum), r))
    return os.path.basename(path).rsplit(".", 1)[0], evals, cum, secs, steps


STEP_KEEP = ("step", "tokens", "step_seconds", "total", "ce", "kl", "cos", "rel", "lambda", "lr")


def trim(path, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, os.path.basename(path))
    with open(path) as f, open(out, "w") as g:
        for line in f:
            r = json.loads(line)
            if r.get("event") == "eval":
                g.write(json.dumps(r) + "\n")
            elif r.get("event") is None and "step" in r and "tokens" in r:
                g.write(json.dumps({k: r[k] for k in STEP_KEEP if k in r}) + "\n")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("logs", nargs="+")
    ap.add_argument("--png", help="write the chart here (needs matplotlib)")
    ap.add_argument("--title", default="held-out evaluation against tokens trained on")
    ap.add_argument("--trim", metavar="OUT_DIR", help="write the trimmed logs there and stop")
    a = ap.parse_args()
    if a.trim:
        for p in a.logs:
            print(trim(p, a.trim))
        return
    runs = [read_run(p) for p in a.logs]
    runs = [r for r in runs if r[1]]
    if not runs:
        sys.exit("report.py: no run with eval records")
    print("| run | steps | tokens | seconds | ppl ratio | KL | top-1 | top-5 | best KL (step) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, evals, tok, secs, steps in runs:
        last = evals[-1][1]
        best = min(evals, key=lambda e: e[1]["kl"])[1]
        print(f"| {name} | {steps} | {tok:,} | {secs:.0f} | {last['perplexity_ratio']:.4g} | "
              f"{last['kl']:.3f} | {100 * last['agreement']:.2f} % | {100 * last['agreement_top5']:.2f} % | "
              f"{best['kl']:.3f} ({best['step']}) |")
    if a.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
        panels = (("perplexity_ratio", "perplexity ratio student / teacher (log)", True),
                  ("kl", "KL(teacher || student), nats/token", False),
                  ("agreement", "top-1 agreement", False))
        for ax, (key, label, log) in zip(axes, panels):
            for name, evals, *_ in runs:
                ax.plot([t for t, _ in evals], [e[key] for _, e in evals], marker="o", ms=3, label=name)
            ax.set_xlabel("tokens trained on")
            ax.set_ylabel(label)
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(a.title)
        fig.tight_layout()
        fig.savefig(a.png, dpi=110)
        print(f"chart: {a.png}")


if __name__ == "__main__":
    main()
