"""test_train_ops_ref.py - bitlab's training ops against an independent reference.

bitlab's side is tests/tools/trainops_tool (raw arrays in, raw arrays out).
The reference is written here from the definitions only:

* wq / actq in numpy float32, mirroring the C arithmetic (mean|W| summed in
  float64 then cast, products and divisions in float32) because quantisers
  are discontinuous and any difference in the value entering round() could
  flip a level. Rounding is C roundf, half away from zero: numpy.round and
  torch.round are half-to-even (round(0.5) = 0), so round_half_away()
  implements the tie rule explicitly (trunc-based, which is exact; the
  sign·floor(|v|+½) formula is not: 0.49999997 + 0.5 rounds up in float32).
* BitLinear forward and straight-through backward, and every loss with its
  gradient, by PyTorch autograd in float64: STE is written the usual way,
  v + (q(v) − v).detach(), with the quantised values from the numpy mirror.

Quantiser outputs must match exactly; everything else within a max relative
error (max|a − b| / max|b| over the array) of 1e-4. Inputs are fresh seeded
random arrays with odd sizes.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

F32 = np.float32
TOL = 1e-4
failures = []


def tool_path():
    if os.environ.get("TRAINOPS_TOOL"):
        return os.environ["TRAINOPS_TOOL"]
    return os.path.join(os.environ.get("BITLAB_BUILD_DIR", "build"), "trainops_tool")


def run_tool(op, inputs, args, outputs):
    """Writes inputs {name: array}, runs the tool, reads outputs {name: dtype}."""
    with tempfile.TemporaryDirectory() as d:
        for name, arr in inputs.items():
            np.ascontiguousarray(arr).tofile(os.path.join(d, name + ".bin"))
        cmd = [tool_path(), op, d] + [str(a) for a in args]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}: {p.stderr}")
        if "runtime error:" in p.stderr or "Sanitizer" in p.stderr:
            sys.exit(f"FAIL: sanitizer report from {op}: {p.stderr}")
        return {n: np.fromfile(os.path.join(d, n + ".out"), dtype=dt) for n, dt in outputs.items()}


def check(name, got, want, tol=TOL):
    got = np.asarray(got, np.float64).ravel()
    want = np.asarray(want, np.float64).ravel()
    if got.shape != want.shape:
        failures.append(f"{name}: shape {got.shape} vs {want.shape}")
        return
    scale = max(np.abs(want).max(), 1e-30)
    err = np.abs(got - want).max() / scale
    ok = err <= tol and np.all(np.isfinite(got))
    print(f"  {'ok ' if ok else 'BAD'} {name:<34} max rel err {err:.2e}")
    if not ok:
        failures.append(f"{name}: max rel err {err:.3g} > {tol}")


def check_exact(name, got, want):
    ok = np.array_equal(np.asarray(got), np.asarray(want))
    print(f"  {'ok ' if ok else 'BAD'} {name:<34} exact")
    if not ok:
        bad = np.flatnonzero(np.asarray(got).ravel() != np.asarray(want).ravel())
        failures.append(f"{name}: {bad.size} values differ, first at {bad[:5]}")


# ----------------------------------------------------------------------------
# the quantisers (numpy float32 mirror)

def round_half_away(v):
    t = np.trunc(v)
    return t + np.sign(v) * (np.abs(v - t) >= 0.5)


def wq_ref(w):
    mean = F32(np.abs(w.astype(np.float64)).mean())
    s = F32(1.0) / max(mean, F32(1e-5))
    q = np.clip(round_half_away(w * s), -1, 1).astype(F32)
    return (q / s).astype(F32), q.astype(np.int8), s


def actq_ref(x, bits):
    if bits == 16:
        return x.copy(), np.ones(x.shape[0], F32)
    Q = {8: 127, 4: 7}[bits]
    amax = np.abs(x).max(axis=1)
    s = (F32(Q) / np.maximum(amax, F32(1e-5))).astype(F32)
    q = np.clip(round_half_away(x * s[:, None]), -Q - 1, Q).astype(F32)
    return (q / s[:, None]).astype(F32), s


def rmsnorm_f32(x, g, eps):
    ss = (x.astype(np.float64) ** 2).sum(axis=1)
    r = (1.0 / np.sqrt(ss / x.shape[1] + eps)).astype(F32)
    return (x * r[:, None]) * g


def test_quantisers(rng):
    print("quantisers")
    for n, scale in ((1001, 1.0), (37, 1e-3), (5, 1e-7)):
        w = (rng.standard_normal(n) * scale).astype(F32)
        out = run_tool("wq", {"w": w}, [n], {"wq": F32, "q": np.int8, "scale": F32})
        wq, q, s = wq_ref(w)
        check_exact(f"wq values n={n} scale={scale:g}", out["wq"], wq)
        check_exact(f"wq int8 n={n}", out["q"], q)
        check_exact(f"wq scale n={n}", out["scale"], [s])
    # ties: mean|w| = 0.5 → s = 2, so ±0.25 and ±0.75 land on ±0.5, ±1.5
    w = np.array([0.25, -0.25, 0.75, -0.75, 0.5, -0.5, 0.2, -0.2, 1.0, 0.6], F32)
    out = run_tool("wq", {"w": w}, [10], {"wq": F32, "q": np.int8, "scale": F32})
    check_exact("wq ties (half away from zero)", out["q"], [1, -1, 1, -1, 1, -1, 0, 0, 1, 1])
    assert np.round(0.5) == 0.0  # why round_half_away exists

    for bits in (8, 4, 16):
        M, D = 7, 33
        x = (rng.standard_normal((M, D)) * rng.uniform(0.1, 10, (M, 1))).astype(F32)
        x[3] = 0.0  # the eps floor
        out = run_tool("actq", {"x": x}, [M, D, bits], {"xq": F32, "scale": F32})
        xq, s = actq_ref(x, bits)
        check_exact(f"actq {bits}-bit values", out["xq"], xq.ravel())
        check_exact(f"actq {bits}-bit scales", out["scale"], s)
    # exact ties at s = 1 (max|x| = Q)
    x = np.array([[127.0, 2.5, -2.5, 0.5, -0.5, 126.5]], F32)
    out = run_tool("actq", {"x": x}, [1, 6, 8], {"xq": F32, "scale": F32})
    check_exact("actq 8-bit ties", out["xq"], [127, 3, -3, 1, -1, 127])


# ----------------------------------------------------------------------------
# BitLinear: forward + STE backward

def test_bitlinear(rng):
    print("bitlinear")
    M, O, I, r1, r2, a1, a2 = 5, 11, 13, 3, 4, 6.0, 8.0
    for lam, bits, subln in ((0.0, 16, 0), (0.5, 8, 1), (1.0, 4, 1), (0.3, 8, 0)):
        x = rng.standard_normal((M, I)).astype(F32)
        w = (rng.standard_normal((O, I)) * 0.2).astype(F32)
        b = rng.standard_normal(O).astype(F32)
        A1 = rng.uniform(-0.3, 0.3, (r1, I)).astype(F32)
        B1 = (rng.standard_normal((O, r1)) * 0.1).astype(F32)
        A2 = rng.uniform(-0.3, 0.3, (r2, I)).astype(F32)
        B2 = (rng.standard_normal((O, r2)) * 0.1).astype(F32)
        g = rng.uniform(0.5, 1.5, I).astype(F32)
        dy = rng.standard_normal((M, O)).astype(F32)
        ins = {"x": x, "w": w, "b": b, "A1": A1, "B1": B1, "A2": A2, "B2": B2, "dy": dy}
        outs = {"y": F32, "dx": F32, "dA": F32, "dB": F32}
        if subln:
            ins["g"] = g
            outs["dg"] = F32
        out = run_tool("bitlinear", ins, [M, O, I, r1, a1, r2, a2, lam, bits, subln], outs)

        # quantised values: the float32 mirror
        xn = rmsnorm_f32(x, g, 1e-5) if subln else x
        xq_c, _ = actq_ref(xn, bits)
        V = (w + F32(a1 / r1) * (B1 @ A1) + F32(a2 / r2) * (B2 @ A2)).astype(F32)
        weff_c = ((F32(1 - lam) * V) + F32(lam) * wq_ref(V)[0]).astype(F32)

        # gradients: float64 autograd with STE
        T = lambda a, grad=False: torch.tensor(a, dtype=torch.float64, requires_grad=grad)
        tx, tg, tA2, tB2 = T(x, True), T(g, True), T(A2, True), T(B2, True)
        if subln:
            xn_t = tx * torch.rsqrt((tx * tx).mean(1, keepdim=True) + 1e-5) * tg
        else:
            xn_t = tx
        xq_t = xn_t + (T(xq_c) - xn_t).detach()
        V_t = T(w) + (a1 / r1) * T(B1) @ T(A1) + (a2 / r2) * tB2 @ tA2
        weff_t = V_t + (T(weff_c) - V_t).detach()
        y = xq_t @ weff_t.T + T(b)
        (y * T(dy)).sum().backward()
        tag = f"λ={lam} bits={bits} subln={subln}"
        check(f"y  ({tag})", out["y"], y.detach().numpy())
        check(f"dx ({tag})", out["dx"], tx.grad.numpy())
        check(f"dA ({tag})", out["dA"], tA2.grad.numpy())
        check(f"dB ({tag})", out["dB"], tB2.grad.numpy())
        if subln:
            check(f"dg ({tag})", out["dg"], tg.grad.numpy())


# ----------------------------------------------------------------------------
# losses

def token_inputs(rng, B, T, V):
    s = (rng.standard_normal((B, T, V)) * 3).astype(F32)
    t = (rng.standard_normal((B, T, V)) * 3).astype(F32)
    tokens = rng.integers(0, V, (B, T)).astype(np.int32)
    tokens[1, 4] = -1                      # no target for row (1, 3)
    mask = (rng.random((B, T)) < 0.8).astype(np.uint8)
    mask[0, 0] = 1
    sel = np.zeros((B, T), bool)
    for b in range(B):
        for i in range(T - 1):
            sel[b, i] = mask[b, i] and 0 <= tokens[b, i + 1] < V
    return s, t, tokens, mask, torch.tensor(sel)


def test_losses(rng):
    print("losses")
    B, T, V, K, tau = 3, 7, 37, 5, 2.0
    s, t, tokens, mask, sel = token_inputs(rng, B, T, V)
    base = {"s": s, "tokens": tokens, "mask": mask}
    outs = {"loss": np.float64, "grad": F32}
    tgt = torch.tensor(np.concatenate([tokens[:, 1:], tokens[:, :1]], 1), dtype=torch.long)[sel]
    te = torch.tensor(t, dtype=torch.float64)[sel]

    def student():
        leaf = torch.tensor(s, dtype=torch.float64, requires_grad=True)
        return leaf, leaf[sel]

    # CE
    out = run_tool("ce", base, [B, T, V], outs)
    leaf, z = student()
    loss = torch.nn.functional.cross_entropy(z, tgt)
    loss.backward()
    check("CE loss", out["loss"], [loss.item()])
    check("CE dlogits", out["grad"], leaf.grad.numpy())

    # KL
    out = run_tool("kl", dict(base, t=t), [B, T, V, tau], outs)
    leaf, z = student()
    lq = torch.log_softmax(z / tau, -1)
    lp = torch.log_softmax(te / tau, -1)
    loss = tau * tau * (lp.exp() * (lp - lq)).sum(-1).mean()
    loss.backward()
    check("KL loss (τ=2)", out["loss"], [loss.item()])
    check("KL dlogits", out["grad"], leaf.grad.numpy())

    # top-K KL with the "other" bucket
    out = run_tool("topk", dict(base, t=t), [B, T, V, K, tau],
                   dict(outs, ids=np.int32, logp=F32))
    tall = torch.tensor(t, dtype=torch.float64).reshape(B * T, V)
    ids_all = torch.topk(tall, K, -1).indices
    lp_all = torch.log_softmax(tall / tau, -1).gather(1, ids_all)
    check_exact("top-K teacher ids", out["ids"], ids_all.numpy().ravel())
    check("top-K teacher log-probs", out["logp"], lp_all.numpy())
    leaf, z = student()
    ids = ids_all.reshape(B, T, K)[sel]
    lq = torch.log_softmax(z / tau, -1)
    lpk = torch.log_softmax(te / tau, -1).gather(1, ids)
    lqk = lq.gather(1, ids)
    po = 1.0 - lpk.exp().sum(-1)
    qo = 1.0 - lqk.exp().sum(-1)
    kl = (lpk.exp() * (lpk - lqk)).sum(-1) + po * (torch.log(po) - torch.log(qo))
    loss = tau * tau * kl.mean()
    loss.backward()
    check("top-K KL loss", out["loss"], [loss.item()])
    check("top-K KL dlogits", out["grad"], leaf.grad.numpy())

    # hidden cosine + magnitude
    L, M, D, wc, wm = 3, 9, 17, 1.0, 0.5
    hs = rng.standard_normal((L, M, D)).astype(F32)
    ht = (hs + rng.standard_normal((L, M, D)) * 0.7).astype(F32) * 1.3
    lw = np.array([1.0, 0.25, 2.0], F32)
    hm = (rng.random(M) < 0.7).astype(np.uint8)
    hm[0] = 1
    out = run_tool("hidden", {"hs": hs, "ht": ht, "lw": lw, "mask": hm}, [L, M, D, wc, wm],
                   {"loss": np.float64, "mag": np.float64, "grad": F32})
    a = torch.tensor(hs, dtype=torch.float64, requires_grad=True)
    bsel = torch.tensor(ht, dtype=torch.float64)[:, torch.tensor(hm.astype(bool))]
    asel = a[:, torch.tensor(hm.astype(bool))]
    cos = torch.nn.functional.cosine_similarity(asel, bsel, dim=-1, eps=0.0)
    na, nb = asel.norm(dim=-1), bsel.norm(dim=-1)
    w = torch.tensor(lw, dtype=torch.float64)
    lcos = ((1 - cos).mean(-1) * w).sum() / w.sum()
    lmag = (((na.log() - nb.log()) ** 2).mean(-1) * w).sum() / w.sum()
    (wc * lcos + wm * lmag).backward()
    check("hidden cosine loss", out["loss"], [lcos.item()])
    check("hidden magnitude loss", out["mag"], [lmag.item()])
    check("hidden dh (cos + 0.5·mag)", out["grad"], a.grad.numpy())


def main():
    if not os.path.exists(tool_path()):
        sys.exit(f"FAIL: trainops_tool not found at {tool_path()} (set BITLAB_BUILD_DIR)")
    rng = np.random.default_rng(20240611)
    test_quantisers(rng)
    test_bitlinear(rng)
    test_losses(rng)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("test_train_ops_ref: ok")


if __name__ == "__main__":
    main()
