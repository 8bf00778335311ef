#!/usr/bin/env python3
"""check_torch_student.py - checks that the benchmark's PyTorch baseline
(bench/torch_student.py) computes bitlab's step: losses and every adapter
gradient against the independent reference tests/py/ref_distill.py (which
bitlab's own step is tested against), on fresh tiny random models, with a
trainable adapter whose B ≠ 0 so that both dA and dB are non-zero.

float32: the baseline against the float32 reference (the quantiser inputs
are computed the same way, so rounding decisions agree on inputs chosen by
ref_distill.pick_inputs); limits 1e-4 for each loss (relative) and 1e-4 for
each gradient (normwise max|a−b|/max|b|). bf16 (the GPU's precision, run on
the CPU here; the code is the same, only the dtypes differ): bf16
activations move quantiser inputs across rounding boundaries and the KL is
a small difference of large logits, so only the total loss is compared
(5e-3 relative) and the gradients loosely (0.25) - a smoke check of the
mixed-precision path, not a precision claim.

    python3 bench/check_torch_student.py [--seeds 3]
"""
import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "py"))
import ref_distill as ref  # noqa: E402
import torch_student as ts  # noqa: E402

GROUP_OF = {"q": ("qkv", 0), "k": ("qkv", 1), "v": ("qkv", 2), "o": ("o", 0),
            "gate": ("gu", 0), "up": ("gu", 1), "down": ("down", 0)}
LIMITS = {torch.float32: (1e-4, 1e-4), torch.bfloat16: (5e-3, 0.25)}


def check(seed, dtype):
    w, c = ref.random_tiny("llama", seed, dim=64, nh=4, nkv=2, hidden=96, n_layers=2, vocab=97,
                           tie=bool(seed % 2))
    r32 = ref.Ref(w, c, torch.float32)
    B, T = 2, 12
    # inputs whose quantiser inputs sit away from rounding boundaries; one
    # adapter, the trainable one, with B ≠ 0 (lens = T: the baseline has no padding)
    tokens, _lens, ads, _m, _sd = ref.pick_inputs(r32, 1.0, 8, B, T, seed, rank=ts.RANK,
                                                  alpha=ts.ALPHA, b_std=0.02)
    ad = ads[-1]
    lens = np.full(B, T)
    want = ref.distill_step(r32, tokens, lens, 1.0, 8, [ad], tau=ts.TAU,
                            loss_weights={"topk": 0.0, "mag": 0.0})
    m = ts.StudentModel(w, c, "cpu", dtype)
    m.prepare(T)
    with torch.no_grad():
        for si, (layer, name, _o, _i) in enumerate(r32.slots):
            g, k = GROUP_OF[name]
            m.layers[layer][g + "_AB"][2 * k].copy_(torch.from_numpy(ad.A[si]))
            m.layers[layer][g + "_AB"][2 * k + 1].copy_(torch.from_numpy(ad.B[si]))
    tok = torch.from_numpy(np.asarray(tokens, np.int64))
    t_logits, t_hid = m.teacher(tok)
    total, ce, kl, cos = m.student_loss(tok, t_logits, t_hid)
    total.backward()
    got = {"ce": ce.item(), "kl": kl.item(), "cos": cos.item(), "total": total.item()}
    keys = got if dtype == torch.float32 else ("total",)
    loss_err = max(abs(got[k] - want["losses"][k]) / max(abs(want["losses"][k]), 1e-6) for k in keys)
    grad_err = 0.0
    for si, (layer, name, _o, _i) in enumerate(r32.slots):
        g, k = GROUP_OF[name]
        for j, ref_g in ((2 * k, want["dA"][si]), (2 * k + 1, want["dB"][si])):
            mine = m.layers[layer][g + "_AB"][j].grad.double().numpy()
            grad_err = max(grad_err, float(np.abs(mine - ref_g).max() / np.abs(ref_g).max()))
    lim_l, lim_g = LIMITS[dtype]
    ok = loss_err < lim_l and grad_err < lim_g
    print(f"  [{'ok' if ok else 'FAIL'}] seed {seed} {str(dtype).split('.')[-1]}: losses rel err "
          f"{loss_err:.1e} (< {lim_l:g}{'' if dtype == torch.float32 else ', total only'}), gradients normwise {grad_err:.1e} (< {lim_g:g})")
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    ok = True
    for seed in range(1, a.seeds + 1):
        for dt in (torch.float32, torch.bfloat16):
            ok &= check(seed, dt)
    print("check_torch_student", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
