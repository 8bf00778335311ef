"""test_cli.py - the command line of every subcommand (src/cli/args.c).

For info, tokenize, generate, bench forward, bench step, export, eval, plan,
trace and SCRIPT.lua, on a tiny random model (make_tiny_model.py):

1. --help and -h exit 0 and print the command's usage on stdout.
2. A real run with every value given as --opt=value exits 0, and the same
   with a dash-leading model path (`--model --tiny.gguf`, a file of that
   name): values that begin with dashes are values, not options.
3. An unknown option, an option missing its value and a stray argument exit
   2 with a message naming the option (or argument) and the subcommand.
4. Every numeric option refuses non-numeric, negative, zero-where-meaningless
   and absurdly large values (exit 2, the option named).
5. `--` ends the options; after a script it passes dash-leading arguments on
   to the script; `bitlab tokenize --text "--- *** ___"` works.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BITLAB_BUILD_DIR", os.path.join(ROOT, "build"))
BIN = os.path.abspath(os.environ.get("BITLAB_BIN", os.path.join(BUILD, "bitlab")))

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def run(args, cwd=None):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


TRAIN_LUA = """-- one step on the tiny model, checkpointed; prints its script arguments
local model = bitlab.load_model(arg[1])
local texts = {"the ternary student learns from tokens", "--- *** ___ and more tokens"}
local data = bitlab.dataset{model = model, text = texts, seed = 5}
bitlab.train{
  model = model, data = data, steps = 1, batch = 1, seq = 16,
  adapter = {rank = 2, alpha = 4, seed = 7}, lr = 1e-3,
  loss = {ce = 1}, checkpoint = arg[2], progress_every = 100,
}
print("ARGS " .. table.concat(arg, "|", 3))
"""


def main(tmp):
    m = tiny.write_tiny(tmp, "llama", seed=3, fmt="gguf")
    model = m.gguf_path
    dashed = os.path.join(tmp, "--tiny.gguf")  # a model path that begins with dashes
    os.symlink(model, dashed)
    txt = os.path.join(tmp, "held.txt")
    with open(txt, "w") as f:
        f.write("the ternary student learns from tokens. " * 8)
    jl = os.path.join(tmp, "texts.jsonl")
    with open(jl, "w") as f:
        for t in ("the ternary student", "learns from tokens", "--- *** ___"):
            f.write(json.dumps({"text": t}) + "\n")
    script = os.path.join(tmp, "train.lua")
    with open(script, "w") as f:
        f.write(TRAIN_LUA)
    ckpt = os.path.join(tmp, "s.ckpt")

    # --- the script first: it makes the checkpoint export needs --------------------
    p = run([script, "--headless", f"--log={tmp}/log.jsonl", "--", model, ckpt, "--x", "-y", "--"])
    check(p.returncode == 0 and "ARGS --x|-y|--" in p.stdout and os.path.exists(ckpt),
          f"SCRIPT.lua --log=FILE -- dash-leading args: rc {p.returncode} {p.stderr[-400:]}")
    check(os.path.getsize(f"{tmp}/log.jsonl") > 0 if os.path.exists(f"{tmp}/log.jsonl") else False,
          "SCRIPT.lua --log=FILE writes the metrics")

    # (name, argv prefix, a successful run in --opt=value form with {M} the model)
    M = "{M}"
    cmds = [
        ("info", ["info"], [f"--model={M}"]),
        ("tokenize", ["tokenize"], [f"--model={M}", "--text=--- *** ___", "--bos"]),
        ("generate", ["generate"], [f"--model={M}", "--prompt=-- hi", "--max-tokens=3"]),
        ("bench forward", ["bench", "forward"],
         [f"--model={M}", "--batch=1", "--seq=4", "--iters=1", "--device=cpu"]),
        ("bench step", ["bench", "step"],
         [f"--model={M}", "--batch=1", "--seq=4", "--iters=1", "--warmup=0",
          "--device=cpu"]),
        ("export", ["export"],
         [f"--model={M}", f"--checkpoint={ckpt}", f"--out={tmp}/out.gguf", "--ternary=tq2_0"]),
        ("eval", ["eval"],
         [f"--model={M}", f"--data={txt}", "--seq=16", "--max-examples=1", "--quiet",
          f"--json={tmp}/eval.json"]),
        ("plan", ["plan"], [f"--model={M}", "--batch=2", "--seq=8", "--rank=4", "--json=-"]),
        ("trace", ["trace"],
         [f"--model={M}", f"--data={jl}", "--k=2", f"--out={tmp}/t.trace", "--tau=1.5",
          "--batch=2"]),
        ("SCRIPT.lua", [script], ["--headless", "--", M, ckpt + "2"]),
    ]
    for name, pre, ok_args in cmds:
        shown = "bitlab " + (name if name != "SCRIPT.lua" else "SCRIPT.lua")
        for h in ("--help", "-h"):
            p = run([*pre, h])
            check(p.returncode == 0 and p.stdout.startswith("usage: bitlab " +
                                                            ("SCRIPT.lua" if name == "SCRIPT.lua" else name)),
                  f"{shown} {h}: rc {p.returncode}, stdout {p.stdout[:80]!r} stderr {p.stderr[:200]}")
        # --opt=value, then the model as a dash-leading value (run from tmp)
        for label, mval, cwd in (("--opt=value", model, None), ("dash-leading --model", "--tiny.gguf", tmp)):
            args = [a.replace(M, mval) for a in ok_args]
            if label != "--opt=value" and name != "SCRIPT.lua":
                args = [a for a in args if not a.startswith("--model=")] + ["--model", mval]
            p = run([*pre, *args], cwd=cwd)
            check(p.returncode == 0, f"{shown} {label}: rc {p.returncode}: {p.stderr[-400:]}")
        # unknown option, missing value, stray argument
        p = run([*pre, "--no-such-option=1"])
        check(p.returncode == 2 and "--no-such-option" in p.stderr and
              f"bitlab {name if name != 'SCRIPT.lua' else script}:" in p.stderr,
              f"{shown} unknown option: rc {p.returncode}: {p.stderr.strip()}")
        opt = "--log" if name == "SCRIPT.lua" else "--model"
        p = run([*pre, opt])
        check(p.returncode == 2 and f"'{opt}' needs a value" in p.stderr,
              f"{shown} {opt} without a value: rc {p.returncode}: {p.stderr.strip()}")
        p = run([*pre, "stray"] if name != "SCRIPT.lua" else [*pre, "--headless", "stray"])
        check(p.returncode == 2 and "'stray'" in p.stderr,
              f"{shown} stray argument: rc {p.returncode}: {p.stderr.strip()}")

    # --- numbers: (command, option, the other arguments, bad values) --------------
    huge = ["1e9", "1000000000", "99999999999999999999"]
    numeric = [
        (["generate"], "--max-tokens", ["--prompt", "x"], ["abc", "-5", "0", "2.5", *huge]),
        (["bench", "forward"], "--batch", [], ["two", "-1", "0", *huge]),
        (["bench", "forward"], "--seq", [], ["x", "-5", "0", *huge]),
        (["bench", "forward"], "--iters", [], ["", "-1", "0", "99999999999"]),
        (["bench", "step"], "--warmup", [], ["w", "-1", "99999999999"]),
        (["bench", "step"], "--peak-tflops", [], ["fast", "-1", "0", "nan", "inf", "1e300"]),
        (["eval"], "--max-tokens", ["--data", txt], ["abc", "-5", "0", *huge]),
        (["eval"], "--seq", ["--data", txt], ["abc", "1", "0", *huge]),
        (["eval"], "--max-examples", ["--data", txt], ["abc", "-1", "99999999999"]),
        (["eval"], "--act-bits", ["--data", txt], ["abc", "0", "5", "64"]),
        (["plan"], "--batch", [], ["two", "-1", "0", "99999999999"]),
        (["plan"], "--seq", [], ["x", "0", "99999999999"]),
        (["plan"], "--rank", [], ["x", "0", "-4", "99999999999"]),
        (["plan"], "--adapters", [], ["x", "-1", "99999999999"]),
        (["plan"], "--topk", [], ["x", "-1", "99999999999"]),
        (["plan"], "--baseline-mib", [], ["x", "-1", "nan", "1e300"]),
        (["trace"], "--k", ["--data", jl, "--out", f"{tmp}/u.trace"], ["x", "0", "-3", *huge]),
        (["trace"], "--seq", ["--data", jl, "--k", "2", "--out", f"{tmp}/u.trace"], ["x", "0", "99999999999"]),
        (["trace"], "--batch", ["--data", jl, "--k", "2", "--out", f"{tmp}/u.trace"], ["x", "0", *huge]),
        (["trace"], "--tau", ["--data", jl, "--k", "2", "--out", f"{tmp}/u.trace"], ["x", "0", "-1", "nan", "inf"]),
    ]
    for pre, opt, rest, bad in numeric:
        for v in bad:
            for form in ([opt, v], [f"{opt}={v}"]):
                p = run([*pre, "--model", model, *rest, *form])
                check(p.returncode == 2 and opt in p.stderr and "bitlab " + " ".join(pre) in p.stderr,
                      f"bitlab {' '.join(pre)} {' '.join(form)}: rc {p.returncode}: {p.stderr.strip()}")

    # --- odds and ends ------------------------------------------------------------
    p = run(["tokenize", "--model", model, "--text", "--- *** ___"])
    q = run(["tokenize", "--model", model, "--text=--- *** ___"])
    check(p.returncode == 0 and p.stdout.strip() and p.stdout == q.stdout,
          f"tokenize --text '--- *** ___': rc {p.returncode}: {p.stderr.strip()}")
    p = run(["tokenize", "--model", model, "--", "--text", "x"])
    check(p.returncode == 2 and "'--text'" in p.stderr, f"-- ends the options: {p.stderr.strip()}")
    p = run(["tokenize", "--model", model, "--text", "x", "--bos=yes"])
    check(p.returncode == 2 and "--bos" in p.stderr, f"a flag given a value: {p.stderr.strip()}")
    p = run(["eval", "--m", model, "--data", txt])
    check(p.returncode == 2 and "ambiguous" in p.stderr and "--max-tokens" in p.stderr,
          f"an ambiguous prefix names the candidates: {p.stderr.strip()}")
    p = run(["tokenize", "--mod", model, "--text", "x"])
    check(p.returncode == 0, f"an unambiguous prefix is the option: {p.stderr.strip()}")
    p = run(["tokenize", "-model", model])
    check(p.returncode == 2 and "-model" in p.stderr, f"a single-dash long option: {p.stderr.strip()}")
    p = run(["tokenize", "--text", "x"])
    check(p.returncode == 2 and "--model" in p.stderr, f"a missing --model: {p.stderr.strip()}")
    p = run(["bench", "--help"])
    check(p.returncode == 0 and "bench forward" in p.stdout and "bench step" in p.stdout,
          "bench --help shows both benches")
    p = run(["bench", "sideways"])
    check(p.returncode == 2 and "sideways" in p.stderr, f"bench sideways: {p.stderr.strip()}")
    p = run(["bench", "forward", "--model", model, "--warmup", "1"])
    check(p.returncode == 2 and "--warmup" in p.stderr, "bench forward has no --warmup")
    p = run(["run", "--help"])
    check(p.returncode == 0 and p.stdout.startswith("usage: bitlab SCRIPT.lua"), "run --help")
    plain = os.path.join(tmp, "args_script")
    with open(plain, "w") as f:
        f.write('print("ARGS " .. table.concat(arg, "|"))\n')
    p = run(["run", plain, "--headless", "--", "-a", "--b=c"])
    check(p.returncode == 0 and "ARGS -a|--b=c" in p.stdout,
          f"bitlab run SCRIPT -- args: rc {p.returncode}: {p.stderr[-300:]}")
    p = run(["run"])
    check(p.returncode == 2 and "script" in p.stderr, "bitlab run without a script")
    p = run(["--help"])
    check(p.returncode == 0 and all(f"bitlab {c}" in p.stdout for c, _, _ in cmds),
          "bitlab --help lists every command")



if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bitlab_cli_") as d:
        main(d)
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all passed")
