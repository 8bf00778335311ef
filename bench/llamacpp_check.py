#!/usr/bin/env python3
"""llamacpp_check.py - does llama.cpp run a GGUF written by `bitlab export` the
way bitlab does? (a check with figures, not a test: llama-cpp-python is not a
test dependency.)

Both sides get the same prompt token ids (the GGUF's chat template rendered
with llama-cpp-python's Jinja formatter and tokenized by llama.cpp; bitlab's
own tokenization of that text is compared and reported) and decode greedily
for --max-tokens tokens without stopping at end-of-turn tokens:
  bitlab     tests/tools/fwd_tool (the KV-cache decoder of `bitlab generate`;
             a ternary GGUF quantises every block linear's input per token, absmax)
  llama.cpp  llama-cpp-python, argmax of the logits after each eval (lowest id
             on ties, as bitlab), n_threads from --threads.
Expect small differences: llama.cpp's TQ2_0 / Q4_0 dot products quantise
activations to 8 bits per block of 256 / 32 values (q8_K / q8_0), bitlab per
token. Printed: prompt tokenization agreement, the first step's logits
(max |diff|, cosine, top-1, top-5 overlap), both continuations, the length of
their common greedy prefix, and wall times.

    $VENV/bin/python bench/llamacpp_check.py --gguf student.gguf [--prompt TEXT]
        [--raw] [--max-tokens 48] [--build build] [--threads 2] [--json OUT]
where $VENV has llama-cpp-python and numpy (see bench/README.md).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PROMPT = "Can you provide ways to eat combinations of bananas and dragonfruits?"


def render_prompt(llm, text, chat):
    """The chat-templated (or raw) prompt as llama.cpp token ids, and its text."""
    if chat:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        meta = llm.metadata
        template = meta.get("tokenizer.chat_template")
        if not template:
            sys.exit("the GGUF has no tokenizer.chat_template; use --raw")
        vocab = [llm.detokenize([i], special=True).decode("utf-8", "replace") for i in
                 (llm.token_bos(), llm.token_eos())]
        fmt = Jinja2ChatFormatter(template=template, bos_token=vocab[0], eos_token=vocab[1])
        text = fmt(messages=[{"role": "user", "content": text}]).prompt
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True), text


def bitlab_tokenize(bitlab, gguf, text):
    p = subprocess.run([bitlab, "tokenize", "--model", gguf, "--text", text, "--bos"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return None
    return [int(x) for x in p.stdout.split()]


def bitlab_run(fwd_tool, gguf, ids, max_new, tmp):
    ids_path, lens_path = os.path.join(tmp, "ids.bin"), os.path.join(tmp, "lens.bin")
    logits_path = os.path.join(tmp, "logits.bin")
    np.asarray(ids, np.int32).tofile(ids_path)
    np.asarray([len(ids)], np.int32).tofile(lens_path)
    p = subprocess.run([fwd_tool, "forward", gguf, "1", str(len(ids)), ids_path, lens_path,
                        logits_path, "-"], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bitlab forward failed: {p.stderr.strip()}")
    logits = np.fromfile(logits_path, np.float32).reshape(len(ids), -1)[-1]
    t0 = time.perf_counter()
    p = subprocess.run([fwd_tool, "generate", gguf, ids_path, str(max_new), "nostop"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bitlab generate failed: {p.stderr.strip()}")
    return logits, [int(x) for x in p.stdout.split()], time.perf_counter() - t0


def llamacpp_run(llm, ids, max_new):
    t0 = time.perf_counter()
    llm.reset()
    llm.eval(ids)
    first = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    out = []
    logits = first
    for _ in range(max_new):
        tok = int(np.argmax(logits))  # lowest index on ties, as bitlab
        out.append(tok)
        llm.eval([tok])
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    return first, out, time.perf_counter() - t0


def common_prefix(a, b):
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True, help="a GGUF written by bitlab export")
    ap.add_argument("--prompt", default=DEFAULT_PROMPT)
    ap.add_argument("--raw", action="store_true", help="no chat template")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    try:
        import llama_cpp
    except ImportError:
        sys.exit("llama-cpp-python is not installed in this interpreter (see the docstring)")
    fwd_tool = os.path.join(args.build, "fwd_tool")
    if not os.path.exists(fwd_tool):
        sys.exit(f"{fwd_tool} not found: build bitlab first (--build)")

    t0 = time.perf_counter()
    # logits_all: llm.scores holds every evaluated row (without it this version leaves them 0)
    llm = llama_cpp.Llama(model_path=args.gguf, n_ctx=1024, n_batch=512, n_threads=args.threads,
                          verbose=False, logits_all=True)
    load_s = time.perf_counter() - t0
    ids, text = render_prompt(llm, args.prompt, not args.raw)
    bl_ids = bitlab_tokenize(os.path.join(args.build, "bitlab"), args.gguf, text)

    with tempfile.TemporaryDirectory() as tmp:
        bl_first, bl_out, bl_s = bitlab_run(fwd_tool, args.gguf, ids, args.max_tokens, tmp)
    lc_first, lc_out, lc_s = llamacpp_run(llm, ids, args.max_tokens)

    diff = float(np.abs(bl_first - lc_first).max())
    cos = float(bl_first @ lc_first / (np.linalg.norm(bl_first) * np.linalg.norm(lc_first)))
    top5 = len(set(np.argsort(-bl_first)[:5]) & set(np.argsort(-lc_first)[:5]))
    prefix = common_prefix(bl_out, lc_out)

    def show(toks):
        return llm.detokenize(toks).decode("utf-8", "replace")

    res = {
        "gguf": args.gguf, "llama_cpp_python": llama_cpp.__version__,
        "prompt_tokens": len(ids), "tokenization_agrees": bl_ids == ids if bl_ids is not None else None,
        "first_logits_max_abs_diff": diff, "first_logits_cosine": cos,
        "first_top1_agrees": int(np.argmax(bl_first)) == int(np.argmax(lc_first)),
        "first_top5_overlap": top5, "max_tokens": args.max_tokens, "common_prefix": prefix,
        "bitlab_tokens": bl_out, "llamacpp_tokens": lc_out,
        "bitlab_text": show(bl_out), "llamacpp_text": show(lc_out),
        "llamacpp_load_s": load_s, "llamacpp_s": lc_s, "bitlab_s": bl_s,
    }
    print(f"model            {args.gguf} (llama-cpp-python {llama_cpp.__version__})")
    print(f"prompt           {len(ids)} tokens; bitlab's tokenization "
          f"{'agrees' if res['tokenization_agrees'] else 'DIFFERS' if bl_ids is not None else 'unavailable'}")
    print(f"first step       logits max |diff| {diff:.4f}, cosine {cos:.6f}, top-1 "
          f"{'agrees' if res['first_top1_agrees'] else 'differs'}, top-5 overlap {top5}/5")
    print(f"greedy           common prefix {prefix} of {args.max_tokens} tokens")
    print(f"--- bitlab ({bl_s:.1f} s incl. load) ---\n{res['bitlab_text']}")
    print(f"--- llama.cpp ({lc_s:.1f} s, load {load_s:.1f} s) ---\n{res['llamacpp_text']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
