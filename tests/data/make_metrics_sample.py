"""make_metrics_sample.py - writes tests/data/metrics_sample.jsonl, the metrics
stream the dashboard replay (tests/tools/dash_replay) and its tmux test feed
into the dashboard: 1,500 steps of decaying loss terms with noise, a λ ramp
over the first 600 steps, an LR schedule restarting with each adapter
rotation (every 300 steps), one non-finite step (777, its losses null as
cJSON writes NaN), a checkpoint and a knob event. Deterministic (seeded).

Run: python3 tests/data/make_metrics_sample.py
"""
import json
import math
import os
import random

STEPS = 1500
ROTATE_EVERY = 300
NAN_STEP = 777
BLOCKS = 8


def main():
    rng = random.Random(1234)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics_sample.jsonl")
    lines = []
    adapter = 0
    for step in range(1, STEPS + 1):
        if step % ROTATE_EVERY == 0:
            adapter += 1
            lines.append({"event": "rotation", "step": step, "adapter": adapter, "rank": 16})
        t = step / STEPS
        noise = lambda scale: 1.0 + scale * (rng.random() - 0.5)
        ce = (0.6 + 2.4 * math.exp(-5 * t)) * noise(0.2)
        kl = (0.05 + 1.5 * math.exp(-6 * t)) * noise(0.3)
        cos = (0.02 + 0.3 * math.exp(-4 * t)) * noise(0.2)
        total = ce + kl + cos
        since = step % ROTATE_EVERY
        warm = min(1.0, since / 20)
        lr = 3e-4 * warm * 0.5 * (1 + math.cos(math.pi * since / ROTATE_EVERY))
        rec = {
            "step": step, "ce": ce, "kl": kl, "cos": cos, "total": total,
            "lambda": min(1.0, step / 600), "lr": lr, "act_bits": 8, "adapter": adapter,
            "grad_norm": 2.0 * math.exp(-2 * t) * noise(0.5),
            "block_grad_norm": [0.1 * (1 + b / BLOCKS) * noise(0.4) for b in range(BLOCKS)],
            "skipped": False, "tokens_per_s": 1200 * noise(0.1),
            "knobs": {"kl_weight": 1.0, "lr_scale": 1.0},
        }
        if step == NAN_STEP:
            for k in ("ce", "kl", "cos", "total", "grad_norm"):
                rec[k] = None
            rec["skipped"] = True
            lines.append({"event": "nonfinite_skip", "step": step, "skipped_total": 1})
        rec["skipped_total"] = 1 if step >= NAN_STEP else 0
        lines.append(rec)
        if step == 1000:
            lines.append({"event": "checkpoint", "step": step, "path": "ckpt/step1000.bin"})
    def rounded(v):  # 3 significant digits keep the file small
        if isinstance(v, float):
            return float(f"{v:.3g}")
        if isinstance(v, list):
            return [rounded(x) for x in v]
        if isinstance(v, dict):
            return {k: rounded(x) for k, x in v.items()}
        return v

    with open(out, "w") as f:
        for rec in lines:
            f.write(json.dumps(rounded(rec), separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
