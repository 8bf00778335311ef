"""test_forward_parity.py - bitlab's teacher forward and KV-cache greedy
decoder against the independent numpy float64 reference (ref_forward.py).

1. Tiny random models (make_tiny_model.py) of each arch, each written as GGUF
   (llama: q/k permuted, interleaved RoPE) and as an HF folder: a batch of
   sequences of different lengths through tests/tools/fwd_tool; logits and
   every block's output hidden state must match at all non-padded positions
   to a max error < 1e-4 relative to the largest reference magnitude.
2. On the same models, 16 greedy tokens from the KV-cache decoder equal the
   reference's greedy tokens (full forwards) and the argmax of bitlab's own
   full forward over the produced sequence.
3. On models/SmolLM2-135M-Instruct.Q4_1.gguf (skipped when absent): for three
   chat prompts (token ids from transformers' GGUF tokenizer and the model's
   own chat template), bitlab's first 32 greedy tokens equal the reference's
   greedy tokens. The reference runs one teacher-forced forward over prompt +
   bitlab's tokens: if its argmax at every step equals bitlab's next token,
   its own greedy decoding produces exactly those tokens.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402
import ref_forward as ref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
TOL = 1e-4


def tool():
    if os.environ.get("FWD_TOOL"):
        return os.environ["FWD_TOOL"]
    return os.path.join(os.environ.get("BITLAB_BUILD_DIR", "build"), "fwd_tool")


def run(args):
    r = subprocess.run([tool()] + [str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"fwd_tool {' '.join(map(str, args[:2]))} failed ({r.returncode}): "
                             f"{r.stdout}{r.stderr}")
    return r.stdout


def bitlab_forward(path, tokens, lens, n_layers, dim, vocab, tmp):
    B, T = tokens.shape
    ids, ln = os.path.join(tmp, "ids.i32"), os.path.join(tmp, "lens.i32")
    lg, hd = os.path.join(tmp, "logits.f32"), os.path.join(tmp, "hidden.f32")
    tokens.astype("<i4").tofile(ids)
    np.asarray(lens, "<i4").tofile(ln)
    run(["forward", path, B, T, ids, ln, lg, hd])
    return (np.fromfile(lg, "<f4").reshape(B, T, vocab),
            np.fromfile(hd, "<f4").reshape(n_layers, B, T, dim))


def bitlab_generate(path, prompt, n_new, tmp, nostop=True):
    p = os.path.join(tmp, "prompt.i32")
    np.asarray(prompt, "<i4").tofile(p)
    out = run(["generate", path, p, n_new] + (["nostop"] if nostop else []))
    return [int(t) for t in out.split()]


def rel_err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


# ---------------------------------------------------------------------------

def check_tiny(arch, seed, tied, tmp):
    w = tiny.write_tiny(tmp, arch=arch, seed=seed, fmt="both", tied=tied)
    cfg = w.config
    V, L, D = cfg["vocab_size"], cfg["num_hidden_layers"], cfg["hidden_size"]
    rng = np.random.default_rng(seed)
    B, T = 4, 13
    lens = [13, 6, 1, 9]
    tokens = rng.integers(0, V, (B, T)).astype(np.int32)
    for b in range(B):
        tokens[b, lens[b]:] = -1  # padding is never read
    refs = [ref.forward(w, cfg, tokens[b, :lens[b]]) for b in range(B)]
    prompt = rng.integers(3, V, 5).tolist()
    want_gen = ref.greedy(w, cfg, prompt, 16)
    failures = []
    for fmt, path in (("gguf", w.gguf_path), ("hf", w.hf_dir)):
        name = f"{arch}/{fmt}{' tied' if tied else ''}"
        logits, hidden = bitlab_forward(path, tokens, lens, L, D, V, tmp)
        e_log = max(rel_err(logits[b, :lens[b]], refs[b][0]) for b in range(B))
        e_hid = max(rel_err(hidden[l, b, :lens[b]], refs[b][1][l]) for b in range(B) for l in range(L))
        print(f"  {name:16s} logits rel err {e_log:.2e}  hidden rel err {e_hid:.2e}")
        if not (e_log < TOL and e_hid < TOL):
            failures.append(f"{name}: logits {e_log:.2e}, hidden {e_hid:.2e} (tolerance {TOL})")

        gen = bitlab_generate(path, prompt, 16, tmp)
        seq = np.array([prompt + gen], dtype=np.int32)
        own, _ = bitlab_forward(path, seq, [seq.shape[1]], L, D, V, tmp)
        own_argmax = own[0, len(prompt) - 1:-1].argmax(axis=1).tolist()
        if gen != want_gen:
            failures.append(f"{name}: KV-cache greedy {gen} != reference greedy {want_gen}")
        if gen != own_argmax:
            failures.append(f"{name}: KV-cache greedy {gen} != argmax of full forward {own_argmax}")
    return failures


# ---------------------------------------------------------------------------

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in one sentence why the sky is blue.",
]
N_GREEDY = 32


def check_default_model(tmp):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(os.path.dirname(DEFAULT_MODEL),
                                        gguf_file=os.path.basename(DEFAULT_MODEL))
    w, cfg = ref.load_gguf(DEFAULT_MODEL)
    w = {n: a.astype(np.float64) for n, a in w.items()}
    failures = []
    for text in PROMPTS:
        enc = tok.apply_chat_template([{"role": "user", "content": text}],
                                      add_generation_prompt=True, tokenize=True)
        prompt = list(enc["input_ids"] if hasattr(enc, "keys") else enc)
        gen = bitlab_generate(DEFAULT_MODEL, prompt, N_GREEDY, tmp)
        if len(gen) != N_GREEDY:
            failures.append(f"{text!r}: bitlab produced {len(gen)} tokens, not {N_GREEDY}")
            continue
        logits, _ = ref.forward(w, cfg, prompt + gen, want_hidden=False)
        steps = logits[len(prompt) - 1:-1]
        want = steps.argmax(axis=1)
        top2 = np.sort(steps, axis=1)[:, -2:]
        print(f"  {text!r}: {tok.decode(gen)!r} (smallest top-2 gap {np.min(top2[:, 1] - top2[:, 0]):.3g})")
        bad = [i for i in range(N_GREEDY) if want[i] != gen[i]]
        if bad:
            i = bad[0]
            failures.append(f"{text!r}: token {i} is {gen[i]}, reference argmax {want[i]} "
                            f"(reference gap {steps[i, want[i]] - steps[i, gen[i]]:.3g})")
    return failures


def main():
    failures = []
    with tempfile.TemporaryDirectory(prefix="bitlab_fwd_") as tmp:
        print("tiny models: batch forward (lens 13, 6, 1, 9) and 16 greedy tokens")
        for i, (arch, tied) in enumerate([("llama", False), ("qwen2", False), ("phi3", False),
                                           ("llama", True)]):
            failures += check_tiny(arch, 1000 + i, tied, os.path.join(tmp, f"m{i}"))
        if os.path.exists(DEFAULT_MODEL):
            print(f"default model: {N_GREEDY} greedy tokens for {len(PROMPTS)} chat prompts")
            failures += check_default_model(tmp)
        else:
            print(f"SKIP default model: {DEFAULT_MODEL} is absent")
    for f in failures:
        print("FAIL:", f)
    if failures:
        sys.exit(1)
    print("test_forward_parity: ok")


if __name__ == "__main__":
    main()
