"""test_checkpoint_bf16.py - frozen LoRA adapters stored in bf16, seen from Lua:
`trainer:save(path, state, {frozen_adapters = "bf16"})` (the layout itself,
value by value, is test_checkpoint_layout.py's).

On a tiny random llama (make_tiny_model.py) a student (λ = 0, 16-bit
activations) trains an adapter, rotates, trains the second, rotates again:
two frozen adapters and a new one whose B is zero, so that the student's ΔW is
the frozen adapters' alone. That state is saved in bf16 (first, so that its
size breakdown is the one printed) and in fp32.
1. Sizes: the bf16 file is smaller than the fp32 one by exactly 2 bytes per
   frozen value less 8 bytes per adapter (version 3's dtype field); the
   `checkpoint` events carry the dtype and the files' real sizes
   (adapters_frozen 2 bytes a value in bf16, the parts summing to the file);
   the printed breakdown names the dtype.
2. Both files load into a fresh student (`trainer:load`); the resume event
   and a one-line note say the bf16 one is not bit for bit. A bf16 file loaded
   and saved in fp32 holds the bf16 values exactly (widening is exact), so a
   second bf16 save of it is the first bf16 file byte for byte. The fp32 resume
   staying bit for bit is test_resume_kill.py's and test_lua_api.py's.
3. The students loaded from the two files agree within what bf16 rounding
   can move: mean next-token NLL per held-out sentence (student:forward; Lua
   has no logits), right after loading and after three more steps on each.
   The tolerance: round to nearest even moves each value of A and B by at most
   2^-9 of itself (half an ulp of an 8-bit significand), so each frozen
   (α/r)·B·A moves by at most 2^-8 of Σ|B||A| (to first order). The student
   is smooth in ΔW (λ = 0: W + ΔW, no ternary rounding to flip; 16-bit
   activations: steps of 2^-15), so the NLL moves by the derivative applied to
   that perturbation, while ΔW itself (the frozen adapters alone: the newest B
   is zero) moved it from the teacher's by E = |NLL_student − NLL_teacher|.
   If every rounding error lined up with ΔW, NLL would move by 2^-8·E; the
   bound allowed is that times 2 (the derivative is taken at the student, not
   between teacher and student: the NLL is not linear in ΔW), over every
   sentence with E the largest sentence's. Rounding errors have random signs,
   so the differences seen are far below it, and a reader that misplaced or
   mis-widened a value would be far above it. The three steps run at lr 3e-3,
   a tenth of the training's: the optimizer was reset by the rotation, and
   AdamW's first steps are near ±lr per value whatever the gradient's size, so
   a value whose gradient is near zero takes the opposite step when the
   rounding tips its sign; each such flip moves the NLL by about 2·lr·|g|, a
   divergence that grows with lr (at 3e-2 it passes the bound: 0.026 here),
   where the loaded students' does not. The steps must move the students by
   ten times more than they differ.
4. Errors: a wrong frozen_adapters value (a string or a number) is an
   argument error naming frozen_adapters and both accepted values, and writes
   no file; a truncated bf16 file, and one cut inside its bf16 values with size
   and checksum made to match, are refused with messages naming the file.
"""
import json
import os
import re
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402
from bitlab_run import WORDS, check, finish, run  # noqa: E402
from test_checkpoint_layout import parse_checkpoint, resealed  # noqa: E402

LUA = r"""
-- MODEL TRAIN_TXT HELD_TXT MODE DIR [CKPT]
-- train: train, rotate twice, save DIR/bf16.ckpt and DIR/fp32.ckpt
-- resume: load CKPT, save it again as CKPT.fp32 and CKPT.bf16, train on (lr 3e-3)
-- bad: trainer:save with wrong options
local m = bitlab.load_model(arg[1])
local mode, dir, ckpt = arg[4], arg[5], arg[6]
local texts, held = {}, {}
for line in io.lines(arg[2]) do texts[#texts + 1] = line end
for line in io.lines(arg[3]) do held[#held + 1] = m:encode(line) end
local st = bitlab.student{model = m, lambda = 0, act_bits = 16}
st:add_adapter{rank = 4, alpha = 8, seed = 11}
local tr = bitlab.trainer{student = st, batch = 2, seq = 32, ce = 1, lr = 3e-2}
local function report(tag, who)  -- mean NLL per held-out sentence
  local t = {}
  for i, ids in ipairs(held) do
    local _, nll = who:forward(ids)
    t[i] = string.format("%.9g", nll)
  end
  print(tag .. " " .. table.concat(t, " "))
end
if mode == "train" then
  local d = bitlab.dataset{model = m, text = texts, seed = 3}
  for _, rank in ipairs{3, 2} do
    for _ = 1, 4 do tr:step(d:batch(2, 32)) end
    st:rotate{rank = rank, alpha = 2 * rank, seed = 11 + rank}
  end
  report("teacher", m)
  report("saved", st)
  tr:save(dir .. "/bf16.ckpt", {note = "x"}, {frozen_adapters = "bf16"})
  tr:save(dir .. "/fp32.ckpt", {note = "x"}, {frozen_adapters = "fp32"})
elseif mode == "resume" then
  tr:load(ckpt)
  report("loaded", st)
  tr:save(ckpt .. ".fp32", {note = "x"})
  tr:save(ckpt .. ".bf16", {note = "x"}, {frozen_adapters = "bf16"})
  local d = bitlab.dataset{model = m, text = texts, seed = 9}
  for _ = 1, 3 do tr:step(d:batch(2, 32), {lr = 3e-3}) end
  report("continued", st)
else
  for _, v in ipairs{"fp16", 16} do
    local ok, e = pcall(function() tr:save(dir .. "/bad.ckpt", nil, {frozen_adapters = v}) end)
    print("error " .. tostring(ok) .. " " .. e)
  end
end
"""


def numbers(out, tag):
    g = re.search(rf"^{tag} (.*)$", out, re.M)
    return [float(x) for x in g.group(1).split()] if g else []


def events(log, name):
    return [x for x in map(json.loads, open(log)) if x.get("event") == name] if os.path.exists(log) else []


def main():
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        m = tiny.write_tiny(tmp, arch="llama", seed=8, fmt="gguf")
        cfg = m.config
        train_txt, held_txt = os.path.join(tmp, "train.txt"), os.path.join(tmp, "held.txt")
        for path, n in ((train_txt, 24), (held_txt, 6)):
            with open(path, "w") as f:
                for _ in range(n):
                    f.write(" ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), 12)) + ".\n")
        lua = os.path.join(tmp, "bf16.lua")
        with open(lua, "w") as f:
            f.write(LUA)

        def bitlab(mode, ckpt="", log=None):
            return run([lua, "--headless", *(["--log", log] if log else []), "--",
                        m.gguf_path, train_txt, held_txt, mode, tmp, ckpt])

        log = os.path.join(tmp, "train.jsonl")
        p = bitlab("train", log=log)
        check(p.returncode == 0, f"train: rc={p.returncode} {p.stderr.strip()[-400:]}")
        if p.returncode:
            return
        bf, fp = os.path.join(tmp, "bf16.ckpt"), os.path.join(tmp, "fp32.ckpt")

        # 1. sizes
        D, H, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
        hd = D // cfg["num_attention_heads"]
        q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
        io_sum = L * sum(o + i for o, i in [(q, D), (kv, D), (kv, D), (D, q), (H, D), (H, D), (D, H)])
        frozen_values = (4 + 3) * io_sum  # ranks of the two frozen adapters
        size_bf, size_fp = os.path.getsize(bf), os.path.getsize(fp)
        check(size_fp - size_bf == 2 * frozen_values - 8 * 3,
              f"bf16 file smaller by 2 bytes a frozen value less 8 per adapter: {size_fp} - {size_bf} "
              f"= {size_fp - size_bf}, {frozen_values} frozen values")
        ev = {os.path.basename(e["path"]): e for e in events(log, "checkpoint")}
        for name, size, dtype, per in (("bf16.ckpt", size_bf, "bf16", 2), ("fp32.ckpt", size_fp, "fp32", 4)):
            e = ev.get(name, {})
            by = e.get("bytes", {})
            parts = sum(v for k, v in by.items() if k != "total")
            check(e.get("frozen_adapters") == dtype and by.get("total") == size and parts == size
                  and by.get("adapters_frozen") == per * frozen_values
                  and by.get("adapters_trainable") == 4 * 2 * io_sum,
                  f"{name}: the checkpoint event's dtype and bytes: {e}")
        other = [ev.get(n, {}).get("bytes", {}).get("other") for n in ("bf16.ckpt", "fp32.ckpt")]
        check(None not in other and other[0] - other[1] == 8 * 3, f"'other' holds the dtype fields: {other}")
        said = [x for x in p.stderr.splitlines() if x.startswith("bitlab: checkpoint ")]
        check(len(said) == 1 and bf in said[0] and "bf16" in said[0],
              f"one printed breakdown, of the bf16 save, naming the dtype: {said}")

        # 2. loading both; 3. the two students agree within the bf16 bound
        teacher, saved = numbers(p.stdout, "teacher"), numbers(p.stdout, "saved")
        rlog = os.path.join(tmp, "resume.jsonl")
        r16, r32 = bitlab("resume", bf, log=rlog), bitlab("resume", fp)
        check(r16.returncode == 0 and r32.returncode == 0,
              f"both load and train on: {r16.stderr.strip()[-300:]} | {r32.stderr.strip()[-300:]}")
        res = events(rlog, "resume")
        check(bool(res) and res[0].get("frozen_adapters") == "bf16",
              f"the resume event names the dtype: {res[:1]}")
        note = "stores its frozen adapters in bf16"
        check(r16.stderr.count(note) == 1 and "not bit for bit" in r16.stderr and note not in r32.stderr,
              f"a one-line note for the bf16 resume only: {r16.stderr.strip()[-300:]}")
        resaved = parse_checkpoint(bf + ".fp32", 7 * L)
        want = parse_checkpoint(bf, 7 * L)
        check(all(np.array_equal(x[0], y[0]) for la, lb in zip(resaved["linears"], want["linears"])
                  for name in ("A", "B") for x, y in zip(la[name], lb[name])),
              "loaded bf16, saved fp32: every adapter value is the bf16 file's, widened exactly")
        check(open(bf + ".bf16", "rb").read() == open(bf, "rb").read(),
              "and saved in bf16 again it is the bf16 file byte for byte")
        E = max(abs(s - t) for s, t in zip(saved, teacher)) if saved and teacher else 0.0
        tol = 2 * 2.0 ** -8 * E
        diff = {}
        for tag in ("loaded", "continued"):
            a, b = numbers(r32.stdout, tag), numbers(r16.stdout, tag)
            diff[tag] = max((abs(x - y) for x, y in zip(a, b)), default=float("inf"))
            check(len(a) == len(b) == 6 and diff[tag] <= tol,
                  f"{tag}: NLL per sentence from the bf16 file within {tol:.3g} (2·2^-8·{E:.4g}) of "
                  f"the fp32 file's: max |Δ| {diff[tag]:.3g}")
        moved = max((abs(x - y) for x, y in zip(numbers(r32.stdout, "continued"),
                                                 numbers(r32.stdout, "loaded"))), default=0.0)
        check(moved > 10 * diff["continued"],
              f"the three steps moved the student (max |Δ NLL| {moved:.3g}) by more than the two differ")
        check(numbers(r32.stdout, "loaded") == saved, "the fp32 file gives back the saved student exactly")
        check(E > 0.1, f"ΔW moved the student from the teacher (E = {E:.4g})")

        # 4. errors
        p = bitlab("bad")
        errs = [x for x in p.stdout.splitlines() if x.startswith("error ")]
        check(len(errs) == 2 and all("error false" in x and "bad argument #3 to 'save'" in x
                                     and "frozen_adapters" in x and '"fp32"' in x and '"bf16"' in x
                                     for x in errs) and '"fp16"' in errs[0] and "number" in errs[1],
              f"a wrong frozen_adapters is an argument error naming the accepted values: {errs}")
        check(not os.path.exists(os.path.join(tmp, "bad.ckpt")), "and writes no file")
        data = open(bf, "rb").read()
        cut = os.path.join(tmp, "cut.ckpt")
        with open(cut, "wb") as f:
            f.write(data[:len(data) // 2])
        p = bitlab("resume", cut)
        check(p.returncode == 1 and cut in p.stderr and "truncated" in p.stderr,
              f"a truncated bf16 file is refused, naming it: {p.stderr.strip()[-300:]}")
        # cut inside the first frozen A: integrity checks pass, the reader must not
        seg = next(s for n, s, _ in want["segments"] if n == "lin0.A0")
        with open(cut, "wb") as f:
            f.write(resealed(data, want["payload"][:seg + 10]))
        p = bitlab("resume", cut)
        check(p.returncode == 1 and cut in p.stderr and "truncated checkpoint weights" in p.stderr,
              f"cut inside its bf16 values (size and checksum matching): refused: {p.stderr.strip()[-300:]}")


if __name__ == "__main__":
    main()
    finish()
