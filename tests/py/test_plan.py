# ctest-labels: slow
"""test_plan.py - `bitlab plan` (the memory planner, src/plan/) against what
runs really use.

1. Exact: on tiny random models (make_tiny_model.py; llama, qwen2, phi3; HF
   folders, sharded safetensors, F32 and Q8_0 GGUF files) and runs with
   several ranks, adapter counts, a dense ΔW, SubLN, the post-attention norm
   and a top-K loss, the planner's CPU trainer figures (JSON
   cpu.trainer_memory) must equal, byte for byte, bl_trainer_memory of a
   trainer really built and stepped on the loaded model
   (tests/tools/plan_trainer_tool).
2. Independent arithmetic: for Llama-2-7B (experiments/configs/llama-2-7b.json)
   the parameter count is the published 6,738,415,616, and the weights, the
   LoRA r=16 tensors, the teacher logits / hidden states and the GPU bf16
   weights follow from the config by the formulas written out here.
3. Resident memory: the planner's CPU peak is within 10% of the peak RSS
   (wait4 ru_maxrss) of a real `bitlab bench step --iters 1 --warmup 0` with
   the same shapes (λ = 1, A8, one LoRA r = 16, CE + KL + cos: the planner's
   defaults) on tiny and medium random models — a GGUF whose load dominates
   the peak included — and on the default model
   (models/SmolLM2-135M-Instruct.Q4_1.gguf) at 1 x 64 and 4 x 128. Skipped
   under the sanitizers (their shadow memory is not the program's).
4. bitlab.plan{} in Lua returns the figures the command line prints.
5. Bad input: a missing file, a folder without config.json, a config without
   hidden_size, zero heads, broken JSON, a GGUF without
   llama.embedding_length, bad run options: exit 1 (2 for misuse of the
   command line) with a message naming the file and field.

Without the default model everything else runs and the test then exits 77
(ctest: skipped), so a missing real-model check is never reported as passed.
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
BIN = os.environ.get("BITLAB_BIN", os.path.join(BUILD, "bitlab"))
TOOL = os.path.join(BUILD, "plan_trainer_tool")
PEAK_RSS = os.path.join(BUILD, "peak_rss")
SANITIZE = os.environ.get("BITLAB_SANITIZE", "OFF").upper() in ("ON", "1", "TRUE", "YES")
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
LLAMA7B = os.path.join(ROOT, "experiments", "configs", "llama-2-7b.json")
MIB = 1024.0 * 1024.0

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def plan_json(source_flag, path, *opts):
    r = subprocess.run([BIN, "plan", source_flag, path, "--json", "-", *opts],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"bitlab plan {path} {opts}: exit {r.returncode}: {r.stderr}")
    return json.loads(r.stdout)


def opts_list(o):
    """{'batch': 2, 'dense': True} -> ['--batch', '2', '--dense']"""
    out = []
    for k, v in o.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        elif v is not False:
            out += [flag, str(v)]
    return out


# ---------------------------------------------------------------------------
# models

def make_models(tmp):
    m = {}
    t = tiny.write_tiny(os.path.join(tmp, "small"), arch="llama", seed=1)
    m["llama-hf"], m["llama-gguf"] = t.hf_dir, t.gguf_path
    t = tiny.write_tiny(os.path.join(tmp, "qwen"), arch="qwen2", seed=2, dim=96, n_layers=3,
                        n_heads=6, n_kv_heads=2, hidden=160, vocab=400, tied=True)
    m["qwen2-hf"], m["qwen2-gguf"] = t.hf_dir, t.gguf_path
    t = tiny.write_tiny(os.path.join(tmp, "phi"), arch="phi3", seed=3, fmt="hf", shards=2)
    m["phi3-hf-sharded"] = t.hf_dir
    t = tiny.write_tiny(os.path.join(tmp, "medium"), arch="llama", seed=4, dim=256, n_layers=4,
                        n_heads=8, n_kv_heads=4, hidden=704, vocab=1000)
    m["medium-hf"], m["medium-gguf"] = t.hf_dir, t.gguf_path
    t = tiny.write_tiny(os.path.join(tmp, "medium-q8"), arch="llama", seed=5, fmt="gguf",
                        dim=256, n_layers=4, n_heads=8, n_kv_heads=4, hidden=704, vocab=1000,
                        gguf_qtype="Q8_0")
    m["medium-q8-gguf"] = t.gguf_path
    return m


# ---------------------------------------------------------------------------
# 1. exact trainer figures

EXACT_RUNS = [
    ("llama-hf", dict(batch=1, seq=16, rank=16, adapters=1)),
    ("llama-gguf", dict(batch=3, seq=12, rank=4, adapters=3, act_bits=4)),
    ("qwen2-hf", dict(batch=2, seq=10, rank=8, adapters=2, subln=True, topk=7)),
    ("qwen2-gguf", dict(batch=4, seq=8, rank=2, adapters=1, post_attn_norm=True)),
    ("phi3-hf-sharded", dict(batch=2, seq=9, rank=8, adapters=1, dense=True, subln=True,
                             post_attn_norm=True)),
    ("phi3-hf-sharded", dict(batch=1, seq=5, rank=4, adapters=0, dense=True)),
    ("medium-q8-gguf", dict(batch=2, seq=16, rank=16, adapters=2, topk=3)),
]


def test_exact(models):
    for name, o in EXACT_RUNS:
        path = models[name]
        r = subprocess.run([TOOL, "--model", path, *opts_list(o)], capture_output=True,
                           text=True, timeout=300)
        check(r.returncode == 0, f"{name} {o}: plan_trainer_tool failed: {r.stderr}")
        if r.returncode != 0:
            continue
        real = json.loads(r.stdout)
        planned = plan_json("--model", path, *opts_list(o))["cpu"]["trainer_memory"]
        check(planned == real, f"{name} {o}: plan {planned} != trainer {real}")
        print(f"exact {name} {o}: {sum(real.values())} bytes in 7 categories, equal")


# ---------------------------------------------------------------------------
# 2. Llama-2-7B, independently

def test_llama7b():
    with open(LLAMA7B) as f:
        cfg = json.load(f)
    D, H, L, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = D // nh
    linears = [(nh * hd, D), (nkv * hd, D), (nkv * hd, D), (D, nh * hd), (H, D), (H, D), (D, H)]
    params = 2 * V * D + D + L * (sum(o * i for o, i in linears) + 2 * D)
    check(params == 6738415616, f"Llama-2-7B has 6,738,415,616 parameters, formula gives {params}")
    B, T, r = 1, 512, 16
    p = plan_json("--config", LLAMA7B, "--batch", str(B), "--seq", str(T), "--rank", str(r),
                  "--baseline-mib", "10")
    check(p["model"]["params"] == params, f"7B params {p['model']['params']} != {params}")
    cpu, gpu = p["cpu"]["bytes"], p["gpu"]["bytes"]
    lora = 4 * r * L * sum(o + i for o, i in linears)
    M = B * T
    expect = {
        ("cpu", "weights"): 4 * params, ("gpu", "weights"): 2 * params,
        ("cpu", "trainable"): lora, ("cpu", "grads"): lora, ("cpu", "optimizer"): 2 * lora,
        ("gpu", "trainable"): lora, ("gpu", "optimizer"): 2 * lora,
        ("cpu", "teacher_logits"): 4 * M * V, ("gpu", "teacher_logits"): 4 * M * V,
        ("cpu", "teacher_hidden"): 4 * L * M * D, ("gpu", "teacher_hidden"): 2 * L * M * D,
        ("cpu", "weff"): 4 * H * D, ("gpu", "weff"): 2 * H * D,
        # the trainer's student in backend memory: the LoRA cat and the
        # arenas of values, gradients, m, v (a second copy on the CPU); on the
        # GPU only the newest adapter's copy in the cat is not a category above
        ("cpu", "device_student"): 5 * lora, ("gpu", "device_student"): lora,
        ("cpu", "baseline"): 10 * 1024 * 1024,
    }
    for (side, key), want in expect.items():
        got = (cpu if side == "cpu" else gpu)[key]
        check(got == want, f"7B {side} {key}: {got} != {want}")
    # the logits and gradient chunks, at least: the CPU trainer chunks the
    # token losses by two sequences (one when B = 1), [chunk, T, V] each
    chunk = min(2, B)
    check(cpu["loss_chunks"] >= 2 * 4 * chunk * T * V,
          f"7B loss chunks smaller than 2 x [{chunk}, T, V] fp32")
    check(p["cpu"]["load"]["weight_files_assumed"] and p["cpu"]["load"]["weight_files"] == 2 * params,
          "7B: a bare config assumes a 2-byte checkpoint")
    # (b) dense ΔW: every linear's [out, in] trains, with its gradient and two moments
    dense = p["alternatives"]["dense_delta_w"]["cpu"]["bytes"]
    dW = 4 * L * sum(o * i for o, i in linears)
    check(dense["trainable"] == dW and dense["optimizer"] == 2 * dW and dense["adapters_frozen"] == 0,
          "7B dense alternative: trainable / optimizer")
    # (a) the copy adds the weights once more to the training peak
    copy = p["alternatives"]["student_weight_copy"]
    check(copy["cpu_peak"] >= p["cpu"]["train_peak"] + 4 * params, "7B (a) CPU")
    check(copy["gpu_peak"] == p["gpu"]["train_peak"] + 2 * params, "7B (a) GPU")
    check(p["gpu"]["design_estimate"] is True, "GPU figures are labelled a design estimate")
    print(f"llama-2-7b 1x512: CPU peak {p['cpu']['peak'] / 2**30:.2f} GiB, "
          f"GPU {p['gpu']['peak'] / 2**30:.2f} GiB (design)")


# ---------------------------------------------------------------------------
# 3. peak RSS of a real step

def measured_peak(path, B, T):
    """ru_maxrss of `bitlab bench step`, in bytes, through tests/tools/peak_rss
    (forked from Python directly, exec would fold Python's own size in)."""
    r = subprocess.run([PEAK_RSS, BIN, "bench", "step", "--model", path, "--batch", str(B),
                        "--seq", str(T), "--iters", "1", "--warmup", "0"],
                       capture_output=True, text=True, timeout=600)
    res = json.loads(r.stdout) if r.returncode == 0 else {"status": -1}
    if res["status"] != 0:
        raise RuntimeError(f"bench step {path} {B}x{T}: {r.stderr}")
    json.loads(r.stderr.strip().splitlines()[-1])  # the step ran and reported
    return res["peak_rss"]


def rss_case(label, path, B, T):
    got = measured_peak(path, B, T)
    p = plan_json("--model", path, "--batch", str(B), "--seq", str(T))
    want = p["cpu"]["peak"]
    rel = (want - got) / got
    phase = "load" if p["cpu"]["load_peak"] > p["cpu"]["train_peak"] else "train"
    print(f"rss {label} {B}x{T}: measured {got / MIB:.1f} MiB, planned {want / MIB:.1f} MiB "
          f"({rel * 100:+.1f}%, {phase}-dominated)")
    check(abs(rel) < 0.10, f"{label} {B}x{T}: plan {want / MIB:.1f} MiB vs measured "
                           f"{got / MIB:.1f} MiB ({rel * 100:+.1f}%)")


def test_rss(models):
    rss_case("tiny llama gguf", models["llama-gguf"], 1, 16)
    rss_case("tiny llama gguf", models["llama-gguf"], 4, 64)
    rss_case("tiny llama hf", models["llama-hf"], 2, 32)
    rss_case("medium llama hf", models["medium-hf"], 4, 64)
    rss_case("medium llama gguf f32", models["medium-gguf"], 1, 16)
    rss_case("medium llama gguf q8_0", models["medium-q8-gguf"], 2, 32)


def test_rss_default_model():
    rss_case("SmolLM2-135M Q4_1", DEFAULT_MODEL, 1, 64)
    rss_case("SmolLM2-135M Q4_1", DEFAULT_MODEL, 4, 128)


# ---------------------------------------------------------------------------
# 4. bad input

def expect_error(args, code, needles, label):
    r = subprocess.run([BIN, "plan", *args], capture_output=True, text=True, timeout=60)
    ok = r.returncode == code and all(n in r.stderr for n in needles)
    check(ok, f"{label}: want exit {code} naming {needles}, got {r.returncode}: {r.stderr.strip()}")


def test_bad_input(tmp, models):
    def write(name, text):
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    with open(os.path.join(models["llama-hf"], "config.json")) as f:
        good = json.load(f)
    no_hidden = {k: v for k, v in good.items() if k != "hidden_size"}
    zero_heads = dict(good, num_attention_heads=0)
    missing = os.path.join(tmp, "nope.json")
    expect_error(["--config", missing], 1, [missing, "no such file"], "missing config")
    empty_dir = os.path.join(tmp, "empty")
    os.makedirs(empty_dir, exist_ok=True)
    expect_error(["--model", empty_dir], 1, [empty_dir, "config.json"], "folder without config.json")
    p = write("no_hidden.json", json.dumps(no_hidden))
    expect_error(["--config", p], 1, [p, '"hidden_size"'], "config without hidden_size")
    p = write("zero_heads.json", json.dumps(zero_heads))
    expect_error(["--config", p], 1, [p, "num_attention_heads"], "zero heads")
    p = write("broken.json", '{"hidden_size": 64,')
    expect_error(["--config", p], 1, [p], "broken JSON")
    p = write("notgguf.bin", "GGMLxxxx")
    expect_error(["--model", p], 1, [p, "GGUF"], "not a GGUF")

    import gguf
    gp = os.path.join(tmp, "no_dim.gguf")
    w = gguf.GGUFWriter(gp, "llama")
    w.add_block_count(2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    expect_error(["--model", gp], 1, [gp, "llama.embedding_length"], "GGUF without embedding_length")

    cfg = models["llama-hf"]
    expect_error(["--model", cfg, "--batch", "0"], 2, ["--batch"], "batch 0")
    expect_error(["--model", cfg, "--act-bits", "5"], 1, ["activation width"], "act bits 5")
    expect_error(["--model", cfg, "--adapters", "1", "--rank", "0"], 2, ["--rank"], "rank 0")
    expect_error(["--model", cfg, "--topk", "100000"], 1, ["top-K"], "top-K beyond the vocab")
    expect_error(["--model", cfg, "--batch", "two"], 2, ["--batch"], "non-numeric batch")
    expect_error(["--model", cfg, "--config", LLAMA7B], 2, ["exactly one"], "both sources")
    expect_error([], 2, ["exactly one"], "no source")
    expect_error(["--model", cfg, "--frobnicate"], 2, ["--frobnicate"], "unknown option")


def test_outputs(tmp, models):
    """--json FILE writes the same plan as --json -; the table shows both sides."""
    out = os.path.join(tmp, "plan.json")
    args = ["--model", models["qwen2-gguf"], "--batch", "2", "--seq", "8", "--baseline-mib", "7"]
    r = subprocess.run([BIN, "plan", *args, "--json", out], capture_output=True, text=True)
    check(r.returncode == 0, f"--json FILE: {r.stderr}")
    with open(out) as f:
        written = json.load(f)
    again = plan_json(*args)
    # the tokenizer is measured afresh by each run (page granularity), the rest is arithmetic
    for key in ("model", "run", "gpu"):
        check(written[key] == again[key], f"--json FILE and --json - differ in {key}")
    check(written["cpu"]["trainer_memory"] == again["cpu"]["trainer_memory"],
          "--json FILE and --json - differ in cpu.trainer_memory")
    for needle in ("GPU (design)", "PEAK", "(a) the student keeps its own weight copy",
                   "(b) dense trainable dW instead of LoRA", "notes:"):
        check(needle in r.stdout, f"table lacks '{needle}'")
    c = written["cpu"]
    check(c["trainer"] == sum(c["bytes"][k] for k in (
        "weights", "adapters_frozen", "trainable", "grads", "optimizer", "activations",
        "teacher_state", "teacher_logits", "teacher_hidden", "loss_chunks", "block_scratch",
        "weff", "lora_scratch")), "CPU trainer total is the sum of its categories")
    check(sum(c["trainer_memory"].values()) == c["trainer"], "trainer_memory sums to the total")


LUA_SCRIPT = """
local path = bitlab.args[1]
local p = bitlab.plan{model = path, batch = 2, seq = 8, rank = 4, adapters = 2, subln = true,
                      baseline_mib = 5}
local t = p.cpu.trainer_memory
print(string.format("PLAN %d %d %d %d %d %d %d %d %s", t.frozen_weights, t.adapters_frozen,
  t.adapters_trainable, t.grads, t.optimizer, t.activations, t.scratch, p.gpu.trainer,
  tostring(p.gpu.design_estimate)))
local ok, err = pcall(bitlab.plan, {config = path .. "/nope.json"})
print("ERR " .. tostring(ok) .. " " .. tostring(err))
"""


def test_lua(tmp, models):
    """bitlab.plan{} returns the same plan as the command line."""
    script = os.path.join(tmp, "plan.lua")
    with open(script, "w") as f:
        f.write(LUA_SCRIPT)
    path = models["qwen2-hf"]
    r = subprocess.run([BIN, script, "--headless", "--", path], capture_output=True, text=True,
                       timeout=120)
    check(r.returncode == 0, f"lua: {r.stderr}")
    lines = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in r.stdout.splitlines()
             if ln.startswith(("PLAN ", "ERR "))}
    p = plan_json("--model", path, "--batch", "2", "--seq", "8", "--rank", "4", "--adapters", "2",
                  "--subln", "--baseline-mib", "5")
    t = p["cpu"]["trainer_memory"]
    want = " ".join(str(v) for v in (t["frozen_weights"], t["adapters_frozen"],
                                     t["adapters_trainable"], t["grads"], t["optimizer"],
                                     t["activations"], t["scratch"], p["gpu"]["trainer"])) + " true"
    check(lines.get("PLAN") == want, f"lua plan {lines.get('PLAN')} != cli {want}")
    check("false" in lines.get("ERR", "") and "nope.json" in lines.get("ERR", ""),
          f"lua error: {lines.get('ERR')}")


def main():
    for exe in (BIN, TOOL, PEAK_RSS):
        if not os.path.exists(exe):
            print(f"SKIP: {exe} not built")
            return 77
    with tempfile.TemporaryDirectory() as tmp:
        models = make_models(tmp)
        test_exact(models)
        test_llama7b()
        test_bad_input(tmp, models)
        test_outputs(tmp, models)
        test_lua(tmp, models)
        if SANITIZE:
            print("rss: skipped under the sanitizers (shadow memory is not the program's)")
        else:
            test_rss(models)
            if os.path.exists(DEFAULT_MODEL):
                test_rss_default_model()
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    if not SANITIZE and not os.path.exists(DEFAULT_MODEL):
        print(f"SKIP: {DEFAULT_MODEL} absent: its resident-memory check did not run")
        return 77
    print("test_plan: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
