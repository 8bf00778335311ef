"""test_eval.py - `bitlab eval` and `bitlab.eval{}` against independent
references, on a tiny random llama (make_tiny_model.py, GGUF for bitlab,
the same weights as a Hugging Face folder for the references).

Checkpoints with non-zero adapters are trained by a short Lua script (large
LR, two adapters via a rotation; one variant with SubLN + post-attention
norm, 4-bit activations and λ = 0.5 recorded, which eval must override to
1). The references never use bitlab's numbers:
* checkpoints are parsed here from the documented layout (checkpoint.h);
* text is tokenised with the `tokenizers` package, prompts rendered with
  transformers' apply_chat_template;
* teacher and student logits come from ref_distill.Ref (PyTorch) in
  float32, where the quantiser inputs round as bitlab's do (ref_distill's
  note on discontinuous quantisers: in float64 one activation of the chat
  data lands on the other side of a rounding tie, moving a perplexity by
  3e-5); NLL, KL(teacher‖student), top-1 agreement are computed from the
  logits here, in float64;
* greedy answers are the argmax of repeated full forwards (no cache);
* weight bytes from the weight arrays and the accounting rule (what the packed
  export stores: embedding / lm_head at 16 bits, norms and biases at 32);
Compared: perplexities, mean NLL, KL, the perplexity ratio (rel. 1e-4
beyond the range that rounding every near-tie quantiser input either way
spans: compare_scores), top-1 agreement overall and at positions < 8 / < 32,
top-5 agreement (counts in that range; top-5 from a stable sort here, a
count of higher-ranked tokens in bitlab),
greedy ids and common prefixes, every memory field, QEI = (ppl_T/ppl_S) /
(bytes_S/bytes_T), token counts, the JSON fields; the JSONL (chat) path
through the Lua binding on examples read with ds:example; a fresh student;
--max-examples; --tokens N (whole chunks up to the one reaching N scored
tokens, counted from the tokenizers package's chunks; equal to --max-examples
k, also from Lua, bad values refused by name); bad inputs (missing/empty data, a checkpoint of another
model, a missing prompts file) exit 1 naming the file.
"""
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402
from bitlab_run import WORDS, check, failures, run  # noqa: E402
import ref_distill as rd  # noqa: E402

TOL = 1e-4
STOP_IDS = {0, 2}  # <|endoftext|>, <|im_end|> (eos): what bitlab stops on for this tokenizer


def close(a, b, tol=TOL):
    return abs(a - b) <= tol * max(abs(b), 1e-12)


def sentences(rng, n):
    return [" ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), int(rng.integers(4, 10))))
            + "." for _ in range(n)]


# ----------------------------------------------------------------------------
# checkpoints: trained by Lua, parsed here from the layout in checkpoint.h

TRAIN_LUA = r"""
local path, out, variant = arg[1], arg[2], arg[3]
local m = bitlab.load_model(path)
local texts = {}
for line in io.lines(arg[4]) do texts[#texts + 1] = line end
local ds = bitlab.dataset{model = m, text = texts, seed = 3}
local opts = {model = m, lambda = 1, act_bits = 8}
if variant == "norms" then opts.subln = true; opts.post_attn_norm = true; opts.act_bits = 4 end
local st = bitlab.student(opts)
st:add_adapter{rank = 4, alpha = 8, seed = 11}
local tr = bitlab.trainer{student = st, batch = 2, seq = 48, ce = 1, kl = 1, cos = 1, lr = 3e-2}
for _ = 1, 4 do tr:step(ds:batch(2, 48)) end
st:rotate{rank = 3, alpha = 6, seed = 12}
for _ = 1, 3 do tr:step(ds:batch(2, 48)) end
if variant == "norms" then st:set_lambda(0.5) end
tr:save(out)
"""


def parse_checkpoint(path, ref):
    """{lambda, act_bits, adapters: [rd.Adapter], subln, post} from a bitlab checkpoint."""
    data = open(path, "rb").read()
    assert data[:8] == b"BLCKPT\0\0", "magic"
    (n_payload,) = struct.unpack_from("<Q", data, 16)
    off = 32
    assert len(data) == off + n_payload

    def i64():
        nonlocal off
        (v,) = struct.unpack_from("<q", data, off)
        off += 8
        return v

    def f32s(n):
        nonlocal off
        a = np.frombuffer(data, "<f4", n, off).astype(np.float32)
        off += 4 * n
        return a

    (version,) = struct.unpack_from("<I", data, 8)
    L, D, V = i64(), i64(), i64()
    assert (L, D, V) == (ref.n_layers, ref.dim, ref.vocab)
    if version >= 2:  # q/k row layout, BLAS threads, BLAS core name
        _interleaved, _threads, core_len = i64(), i64(), i64()
        off += core_len
    flags = i64()
    lam = float(f32s(1)[0])
    act_bits, _steps, _skipped, na = i64(), i64(), i64(), i64()
    ranks = []
    for _ in range(na):
        r = i64()
        ranks.append((r, float(f32s(1)[0])))
    A = [[] for _ in range(na)]
    B = [[] for _ in range(na)]
    subln = []
    heads = {"q": ref.nh, "k": ref.nkv}
    for (_layer, name, out, inp) in ref.slots:  # q,k,v,o,gate,up,down = the kind order
        assert (i64(), i64()) == (out, inp)
        for a, (r, _alpha) in enumerate(ranks):
            A[a].append(f32s(r * inp).reshape(r, inp))
            b = f32s(out * r).reshape(out, r)
            # trained on a llama GGUF, whose q/k rows are permuted for
            # interleaved RoPE: ΔW's rows (B's) back to the HF order of ref
            B[a].append(rd.unpermute_qk(b, heads[name]).copy() if name in heads else b)
        assert not flags & 4, "dense ΔW is not part of this test"
        if flags & 1:
            subln.append(f32s(inp))
    post = None
    if flags & 2:
        post = list(f32s(L * D).reshape(L, D))
    ads = [rd.Adapter(r, alpha, A[a], B[a]) for a, (r, alpha) in enumerate(ranks)]
    return {"lambda": lam, "act_bits": act_bits, "adapters": ads,
            "subln": subln or None, "post": post}


# ----------------------------------------------------------------------------
# the reference evaluation

POS_CUTS = (8, 32)  # agreement by position: rows at positions < 8, < 32 of their example
STATS = ("nll_t", "nll_s", "kl", "agree", "rows", "agree5",
         *(f"agree{c}" for c in POS_CUTS), *(f"rows{c}" for c in POS_CUTS))


def row_stats(tl, sl, ids, targets):
    """Sums (STATS) of NLL (teacher, student), KL(T‖S), top-1 agreement, rows,
    top-5 agreement (the teacher's argmax among the student's 5 largest
    logits, ties to the lower id by a stable sort) and top-1 agreement / rows
    at positions t < each cut, over the rows t with targets[t+1], from [n, V]
    logits (float64)."""
    lt = torch.log_softmax(tl.to(torch.float64), -1)
    ls = torch.log_softmax(sl.to(torch.float64), -1)
    rows = [t for t in range(len(ids) - 1) if targets[t + 1]]
    if not rows:
        return np.zeros(len(STATS))
    r = torch.tensor(rows)
    nxt = torch.tensor([ids[t + 1] for t in rows])
    nll_t = -lt[r, nxt].sum().item()
    nll_s = -ls[r, nxt].sum().item()
    kl = (lt[r].exp() * (lt[r] - ls[r])).sum().item()
    top_t = tl[r].argmax(-1)
    same = top_t == sl[r].argmax(-1)
    top5 = torch.sort(sl[r], dim=-1, descending=True, stable=True).indices[:, :5]
    agree5 = int((top5 == top_t[:, None]).any(-1).sum())
    pos = [int((same & (r < c)).sum()) for c in POS_CUTS] + [int((r < c).sum()) for c in POS_CUTS]
    return np.array([nll_t, nll_s, kl, int(same.sum()), len(rows), agree5, *pos], dtype=np.float64)


def ref_eval(ref, ck, examples, bits=None):
    """examples: [(ids, targets)]; ck: parsed checkpoint or None (fresh, 8
    bits); bits overrides the activation width."""
    bits = bits or (ck["act_bits"] if ck else 8)
    ads = ck["adapters"] if ck else []
    sums = np.zeros(len(STATS))
    for ids, tg in examples:
        toks = np.array([ids])
        lens = np.array([len(ids)])
        tl, _ = ref.teacher_forward(toks, lens)
        sl, _ = ref.student_forward(toks, lens, 1.0, bits, ads,
                                    ck["subln"] if ck else None, ck["post"] if ck else None)
        sums += row_stats(tl[0], sl[0], ids, tg)
    S = dict(zip(STATS, sums))
    rows = S["rows"]
    out = {"teacher_nll": S["nll_t"] / rows, "student_nll": S["nll_s"] / rows, "kl": S["kl"] / rows,
           "teacher_perplexity": math.exp(S["nll_t"] / rows),
           "student_perplexity": math.exp(S["nll_s"] / rows),
           "perplexity_ratio": math.exp(S["nll_s"] / rows) / math.exp(S["nll_t"] / rows),
           "agreement_tokens": int(S["agree"]), "scored_tokens": int(rows),
           "agreement_top5_tokens": int(S["agree5"]),
           "tokens": int(sum(len(i) for i, _ in examples))}
    for c in POS_CUTS:
        out[f"agreement_first{c}_tokens"] = int(S[f"agree{c}"])
        out[f"scored_tokens_first{c}"] = int(S[f"rows{c}"])
    return out


def ref_greedy(ref, prompt, max_new, ck):
    """Greedy ids by full forwards; ck None = the teacher."""
    ids = list(prompt)
    out = []
    for _ in range(max_new):
        toks = np.array([ids])
        lens = np.array([len(ids)])
        if ck is None:
            lg, _ = ref.teacher_forward(toks, lens)
        else:
            lg, _ = ref.student_forward(toks, lens, 1.0, ck["act_bits"], ck["adapters"],
                                        ck["subln"], ck["post"])
        nxt = int(lg[0, -1].argmax())
        if nxt in STOP_IDS:
            break
        out.append(nxt)
        ids.append(nxt)
    return out


def common_prefix(a, b):
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


def ref_memory(w, ref, ck, gguf_path):
    total = sum(int(a.size) for a in w.values())
    lin = [out * inp for (_l, _n, out, inp) in ref.slots]
    extra = 0
    if ck and ck["subln"] is not None:
        extra += sum(inp for (_l, _n, _o, inp) in ref.slots)
    if ck and ck["post"] is not None:
        extra += ref.n_layers * ref.dim
    # the packed export's storage: matrices other than block linears (token
    # embedding, untied lm_head) F16, vectors (norms, biases) F32
    matrix = sum(int(a.size) for a in w.values() if a.ndim == 2) - sum(lin)
    vector = sum(int(a.size) for a in w.values() if a.ndim == 1) + extra
    other_bytes = 2 * matrix + 4 * vector
    packed = sum(out * ((inp + 3) // 4) for (_l, _n, out, inp) in ref.slots)
    return {"teacher_params": total, "teacher_bytes": 2 * total,
            "source_file_bytes": os.path.getsize(gguf_path),
            "student_ternary_weights": sum(lin), "student_ternary_tensors": len(lin),
            "student_ternary_bytes": packed, "student_scale_bytes": 4 * len(lin),
            "student_embedding_params": matrix, "student_embedding_bytes": 2 * matrix,
            "student_norm_bias_params": vector, "student_norm_bias_bytes": 4 * vector,
            "student_other_params": matrix + vector, "student_other_bytes": other_bytes,
            "student_bytes": packed + 4 * len(lin) + other_bytes}


# ----------------------------------------------------------------------------
# comparisons

# Near-tie rounding (ref_distill.TIE_SHIFT), in quantisation steps. An
# activation entering actq differs from the reference's by its float32
# summation order through the layers before it, about 1e-6 relative, i.e.
# ≤ 127·1e-6 ≈ 1.3e-4 steps at 8 bits: TIE_DX = 4× that. A weight entering wq
# is W + ΔW with ΔW a rank-r product summed in another order, ~1e-7 relative
# of a value near one step: TIE_DW = 100× that. Any input that close to a
# boundary may round either way, and the reference runs with all of them
# rounded each way.
TIE_DX, TIE_DW = 5e-4, 1e-5


def ref_eval_envelope(ref, ck, examples, bits=None):
    """ref_eval at the plain rounding and with every near-tie quantiser input
    rounded away from / towards zero: {key: (lo, mid, hi)}."""
    runs = [ref_eval(ref, ck, examples, bits)]
    for sign in (1, -1):
        with rd.tie_shift(sign * TIE_DX, sign * TIE_DW):
            runs.append(ref_eval(ref, ck, examples, bits))
    return {k: (min(r[k] for r in runs), runs[0][k], max(r[k] for r in runs)) for k in runs[0]}


# the scores that are exp of NLLs: perplexity = exp(nll), ratio = exp(nll_S − nll_T)
EXP_OF = {"teacher_perplexity": ("teacher_nll",), "student_perplexity": ("student_nll",),
          "perplexity_ratio": ("student_nll", "teacher_nll")}


def compare_scores(tag, got, want):
    """want from ref_eval_envelope: each score within TOL of the range the
    near-tie roundings span (a one-code flip of bitlab's float32 forward at a
    tie moves the scores by more than the summation-order error alone)."""
    for k in ("teacher_perplexity", "student_perplexity", "teacher_nll", "student_nll", "kl",
              "perplexity_ratio"):
        lo, mid, hi = want[k]
        if k in EXP_OF:
            # exp of NLLs held to TOL relative: its log may move by TOL·|NLL| each
            slack = TOL * sum(abs(want[n][1]) for n in EXP_OF[k])
            ok = got[k] > 0 and lo > 0 and \
                math.log(lo) - slack <= math.log(got[k]) <= math.log(hi) + slack
        else:
            ok = lo - TOL * abs(lo) <= got[k] <= hi + TOL * abs(hi)
        check(ok, f"{tag}: {k} {got[k]:.9g} vs reference {mid:.9g} (near-tie range {lo:.9g}..{hi:.9g})")
    counts = ["agreement_tokens", "scored_tokens", "tokens", "agreement_top5_tokens"]
    for c in POS_CUTS:
        counts += [f"agreement_first{c}_tokens", f"scored_tokens_first{c}"]
    for k in counts:
        lo, mid, hi = want[k]
        check(lo <= got[k] <= hi, f"{tag}: {k} {got[k]} vs reference {mid} (range {lo}..{hi})")
    check(close(got["agreement"], got["agreement_tokens"] / got["scored_tokens"], 1e-12),
          f"{tag}: agreement = agreeing / scored tokens")
    check(close(got["agreement_top5"], got["agreement_top5_tokens"] / got["scored_tokens"], 1e-12)
          and got["agreement_top5_tokens"] >= got["agreement_tokens"],
          f"{tag}: agreement_top5 = in the student's top 5 / scored tokens, >= top-1 "
          f"({got['agreement_top5']:.4f} vs {got['agreement']:.4f})")
    for c in POS_CUTS:
        rows, agree = got[f"scored_tokens_first{c}"], got[f"agreement_first{c}_tokens"]
        frac = got.get(f"agreement_first{c}")
        ok = frac is None if rows == 0 else close(frac, agree / rows, 1e-12)
        check(ok and agree <= got["agreement_tokens"] and rows <= got["scored_tokens"],
              f"{tag}: agreement_first{c} = {agree} of {rows} (null when none)")
    check(close(got["perplexity_ratio"], got["student_perplexity"] / got["teacher_perplexity"], 1e-9),
          f"{tag}: perplexity_ratio = student / teacher perplexity")


def compare_memory_qei(tag, got, want_mem):
    for k, v in want_mem.items():
        check(got["memory"][k] == v, f"{tag}: memory {k} {got['memory'][k]} vs {v}")
    m = got["memory"]
    qei = (got["teacher_perplexity"] / got["student_perplexity"]) / \
          (m["student_bytes"] / m["teacher_bytes"])
    check(close(got["qei"], qei, 1e-12), f"{tag}: QEI {got['qei']:.9g} = (ppl_T/ppl_S)/(mem_S/mem_T)")
    check("1/perplexity" in got["qei_definition"], f"{tag}: the QEI definition is stated")


def compare_prompts(tag, got, ref, ck, hf_tok, prompts, max_new):
    items = got["prompts"]["items"]
    check(len(items) == len(prompts), f"{tag}: one result per prompt")
    for p, it in zip(prompts, items):
        text = hf_tok.apply_chat_template([{"role": "user", "content": p}],
                                          add_generation_prompt=True, tokenize=False)
        ids = hf_tok(text, add_special_tokens=False)["input_ids"]
        check(it["prompt"] == p and it["prompt_tokens"] == len(ids),
              f"{tag}: prompt '{p}' rendered in the chat template ({len(ids)} tokens)")
        t = ref_greedy(ref, ids, max_new, None)
        s = ref_greedy(ref, ids, max_new, ck)
        check(it["teacher_ids"] == t, f"{tag}: teacher greedy ids on '{p}'")
        check(it["student_ids"] == s, f"{tag}: student greedy ids on '{p}'")
        check(it["common_prefix"] == common_prefix(t, s),
              f"{tag}: common prefix {it['common_prefix']} on '{p}'")
    mean = sum(it["common_prefix"] for it in items) / len(items)
    check(close(got["prompts"]["mean_common_prefix"], mean, 1e-12), f"{tag}: mean common prefix")


JSON_FIELDS = ("model", "checkpoint", "student_source", "data", "data_format", "seq",
               "max_examples", "tokens_cap", "examples", "examples_truncated", "tokens", "scored_tokens",
               "student", "teacher_perplexity", "student_perplexity", "teacher_nll",
               "student_nll", "kl", "kl_tau", "agreement", "agreement_tokens", "prompts",
               "memory", "qei", "qei_definition", "seconds",
               "agreement_first8", "agreement_first8_tokens", "scored_tokens_first8",
               "agreement_first32", "agreement_first32_tokens", "scored_tokens_first32",
               "agreement_top5", "agreement_top5_tokens", "agreement_definition",
               "perplexity_ratio")


def text_chunks(tok, text, seq):
    ids = tok.encode(text, add_special_tokens=False).ids
    return [(ids[i:i + seq], [1] * len(ids[i:i + seq]))
            for i in range(0, len(ids), seq) if len(ids) - i >= 2]


# ----------------------------------------------------------------------------

def main():
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    torch.set_num_threads(2)
    tmp = tempfile.mkdtemp(prefix="bitlab_eval_")
    w = tiny.write_tiny(tmp, arch="llama", seed=21, fmt="both")
    model = w.gguf_path
    ref = rd.Ref(dict(w), w.config, torch.float32)
    tok = Tokenizer.from_file(os.path.join(w.hf_dir, "tokenizer.json"))
    hf_tok = AutoTokenizer.from_pretrained(w.hf_dir)
    rng = np.random.default_rng(5)

    train_txt = os.path.join(tmp, "train.txt")
    with open(train_txt, "w") as f:
        f.write("\n".join(sentences(rng, 40)) + "\n")
    held = os.path.join(tmp, "heldout.txt")
    held_text = " ".join(sentences(rng, 30)) + "\n"
    with open(held, "w") as f:
        f.write(held_text)
    prompts = ["the student learns from the teacher", "hello world", "ternary bits and weights"]
    prompts_file = os.path.join(tmp, "prompts.txt")
    with open(prompts_file, "w") as f:
        f.write(prompts[0] + "\n\n" + prompts[1] + "  \r\n" + prompts[2] + "\n")
    lua = os.path.join(tmp, "train.lua")
    with open(lua, "w") as f:
        f.write(TRAIN_LUA)

    cks = {}
    for variant in ("plain", "norms"):
        path = os.path.join(tmp, f"{variant}.ckpt")
        p = run([lua, "--headless", "--", model, path, variant, train_txt])
        if not check(p.returncode == 0, f"training the {variant} checkpoint"):
            print(p.stdout[-2000:], p.stderr[-2000:])
            return 1
        cks[variant] = (path, parse_checkpoint(path, ref))
        ck = cks[variant][1]
        nonzero = all(float(np.abs(b).max()) > 0 for a in ck["adapters"] for b in a.B)
        check(len(ck["adapters"]) == 2 and nonzero, f"{variant} checkpoint: 2 adapters, every B ≠ 0")
    check(cks["norms"][1]["lambda"] == 0.5 and cks["norms"][1]["act_bits"] == 4,
          "norms checkpoint records λ 0.5 and 4-bit activations")

    seq, max_new = 24, 6
    chunks = text_chunks(tok, held_text, seq)
    check(len(chunks) >= 6, f"held-out text gives {len(chunks)} chunks of {seq} tokens")

    # the CLI on each checkpoint: scores, prompts, memory, QEI, JSON
    for variant, (path, ck) in cks.items():
        out = os.path.join(tmp, f"{variant}.json")
        p = run(["eval", "--model", model, "--checkpoint", path, "--data", held, "--seq", str(seq),
                 "--prompts", prompts_file, "--max-tokens", str(max_new), "--json", out])
        if not check(p.returncode == 0, f"bitlab eval with the {variant} checkpoint"):
            print(p.stdout[-2000:], p.stderr[-2000:])
            continue
        got = json.load(open(out))
        tag = f"cli {variant}"
        check(all(k in got for k in JSON_FIELDS), f"{tag}: JSON has every field")
        check(got["model"] == model and got["checkpoint"] == path and got["data"] == held
              and got["data_format"] == "text" and got["seq"] == seq
              and got["examples"] == len(chunks) and got["examples_truncated"] == 0,
              f"{tag}: paths, format and example counts")
        check(got["student"]["lambda"] == 1 and got["student"]["act_bits"] == ck["act_bits"]
              and got["student"]["adapters"] == 2, f"{tag}: evaluated at λ 1 with the checkpoint's bits")
        compare_scores(tag, got, ref_eval_envelope(ref, ck, chunks))
        compare_memory_qei(tag, got, ref_memory(w, ref, ck, model))
        compare_prompts(tag, got, ref, ck, hf_tok, prompts, max_new)
        for k in ("perplexity", "KL(teacher||student)", "top-1 agreement", "QEI =",
                  "quality = 1/perplexity", "common greedy prefix", "perplexity ratio",
                  "positions < 8", "positions < 32", "top-5 agreement",
                  f"report: {out} (JSON)"):
            check(k in p.stdout, f"{tag}: the table shows '{k}'")
        check(f"JSON report written to {out}" in p.stderr and "eval: example" in p.stderr
              and "eval: example" not in p.stdout,
              f"{tag}: progress and the JSON path on stderr, the table on stdout")

    # a fresh student (no checkpoint), only the first 3 chunks
    out = os.path.join(tmp, "fresh.json")
    p = run(["eval", "--model", model, "--data", held, "--seq", str(seq), "--max-examples", "3",
             "--json", out, "--quiet"])
    if check(p.returncode == 0, "bitlab eval without a checkpoint"):
        got = json.load(open(out))
        check(got["checkpoint"] is None and "fresh" in got["student_source"]
              and got["student"]["adapters"] == 0 and got["examples"] == 3
              and "before training" in p.stdout and p.stderr == "",
              "fresh student: baseline named, 3 examples, --quiet prints no progress")
        compare_scores("fresh", got, ref_eval_envelope(ref, None, chunks[:3]))
        compare_memory_qei("fresh", got, ref_memory(w, ref, None, model))
        check(got["prompts"]["items"] == [], "fresh: no prompts given, none evaluated")

    # --act-bits overrides the checkpoint's activation width
    out = os.path.join(tmp, "bits16.json")
    p = run(["eval", "--model", model, "--checkpoint", cks["plain"][0], "--data", held,
             "--seq", str(seq), "--max-examples", "2", "--act-bits", "16", "--json", out, "--quiet"])
    if check(p.returncode == 0, "bitlab eval --act-bits 16"):
        got = json.load(open(out))
        check(got["student"]["act_bits"] == 16 and "full-precision activations" in p.stdout,
              "--act-bits 16: reported")
        compare_scores("act-bits 16", got, ref_eval_envelope(ref, cks["plain"][1], chunks[:2], bits=16))

    # agreement by position where the cuts split the rows: chunks of 64 tokens
    out = os.path.join(tmp, "seq64.json")
    p = run(["eval", "--model", model, "--data", held, "--seq", "64", "--max-examples", "2",
             "--json", out, "--quiet"])
    if check(p.returncode == 0, "bitlab eval --seq 64"):
        got = json.load(open(out))
        check(got["scored_tokens_first8"] == 16 and got["scored_tokens_first32"] == 64
              and got["scored_tokens"] == 126, "seq 64: 2 chunks, 8 / 32 / 63 rows of each scored")
        compare_scores("seq 64", got, ref_eval_envelope(ref, None, text_chunks(tok, held_text, 64)[:2]))

    # --tokens N: the chunks in order up to the first that brings the scored
    # tokens (here every chunk's len - 1 rows, from the tokenizers package) to
    # N, whole chunks, so the set is --max-examples k's
    rows = [len(ids) - 1 for ids, _ in chunks]
    for n_tok, k, what in ((rows[0] + rows[1] + 5, 3, "inside the third chunk"),
                           (rows[0] + rows[1], 2, "exactly at the end of the second")):
        outs = {}
        for tag, extra in (("tokens", ["--tokens", str(n_tok)]), ("examples", ["--max-examples", str(k)])):
            outs[tag] = os.path.join(tmp, f"cap_{n_tok}_{tag}.json")
            p = run(["eval", "--model", model, "--checkpoint", cks["plain"][0], "--data", held,
                     "--seq", str(seq), "--json", outs[tag], *extra])
            check(p.returncode == 0, f"bitlab eval {' '.join(extra)}")
            if tag == "tokens":
                check("up to the first reaching" in p.stdout, f"--tokens {n_tok}: the table names the cap")
        if not all(os.path.exists(o) for o in outs.values()):
            continue
        got, ex = json.load(open(outs["tokens"])), json.load(open(outs["examples"]))
        check(got["examples"] == k and got["scored_tokens"] == sum(rows[:k]) and got["tokens_cap"] == n_tok
              and ex["tokens_cap"] == 0,
              f"--tokens {n_tok} ({what}): {k} chunks, {sum(rows[:k])} scored tokens "
              f"(got {got['examples']}, {got['scored_tokens']})")
        same = [f for f in ("kl", "teacher_nll", "student_nll", "agreement", "agreement_top5",
                            "scored_tokens", "tokens", "examples") if got[f] != ex[f]]
        check(not same, f"--tokens {n_tok} equals --max-examples {k} exactly (differing: {same})")
        compare_scores(f"tokens {n_tok}", got, ref_eval_envelope(ref, cks["plain"][1], chunks[:k]))
    out = os.path.join(tmp, "cap_all.json")
    p = run(["eval", "--model", model, "--data", held, "--seq", str(seq), "--tokens", str(sum(rows) + 1000),
             "--json", out, "--quiet"])
    if check(p.returncode == 0, "bitlab eval --tokens beyond the data"):
        got = json.load(open(out))
        check(got["examples"] == len(chunks) and got["scored_tokens"] == sum(rows)
              and "fewer than the cap" in p.stdout, "a cap beyond the data: every chunk, and the table says so")
    for bad in ("0", "-3", "x"):
        p = run(["eval", "--model", model, "--data", held, "--tokens", bad])
        check(p.returncode == 2 and "--tokens" in p.stderr, f"--tokens {bad}: usage error naming --tokens")

    # chat lines score assistant turns only, after the prompt: no row at
    # positions < 8, the agreement there is null (n/a in the table)
    chat_only = os.path.join(tmp, "chat_only.jsonl")
    with open(chat_only, "w") as f:
        for _ in range(2):
            msgs = [{"role": "user", "content": " ".join(sentences(rng, 2))},
                    {"role": "assistant", "content": sentences(rng, 1)[0]}]
            f.write(json.dumps({"messages": msgs}) + "\n")
    out = os.path.join(tmp, "chat_only.json")
    p = run(["eval", "--model", model, "--data", chat_only, "--json", out, "--quiet"])
    if check(p.returncode == 0, "bitlab eval on chat-only JSONL"):
        got = json.load(open(out))
        check(got["scored_tokens_first8"] == 0 and got["agreement_first8"] is None
              and got["agreement_first8_tokens"] == 0 and got["scored_tokens"] > 0
              and "n/a" in p.stdout,
              "chat only: no scored row at positions < 8, agreement_first8 null, n/a in the table")

    # the Lua binding on chat JSONL (loss on assistant turns), against ds:example
    jsonl = os.path.join(tmp, "chat.jsonl")
    with open(jsonl, "w") as f:
        for _ in range(5):
            msgs = [{"role": "user", "content": sentences(rng, 1)[0]},
                    {"role": "assistant", "content": " ".join(sentences(rng, 2))}]
            f.write(json.dumps({"messages": msgs}) + "\n")
        f.write(json.dumps({"text": " ".join(sentences(rng, 2))}) + "\n")
    path, ck = cks["plain"]
    lua_eval = os.path.join(tmp, "eval.lua")
    log = os.path.join(tmp, "eval.jsonl")
    lua_json = os.path.join(tmp, "lua.json")
    with open(lua_eval, "w") as f:
        f.write(r"""
local m = bitlab.load_model(arg[1])
local rep, text = bitlab.eval{model = m, checkpoint = arg[2], data = arg[3], json = arg[4],
                              prompts = {"hello world"}, max_tokens = 4}
print(text)
local ds = bitlab.dataset{model = m, file = arg[3]}
local ex = {}
for i = 1, ds:size() do
  local ids, tg = ds:example(i)
  ex[i] = {ids = ids, targets = tg}
end
bitlab.event("examples", {list = ex})
bitlab.event("report", {report = rep})
-- a Dataset object and a live student give the same numbers
local st = bitlab.student{model = m}
local rep2 = bitlab.eval{student = st, data = ds}
bitlab.event("report2", {report = rep2})
local ok, err = pcall(bitlab.eval, {model = m, data = arg[5]})
bitlab.event("missing", {ok = ok, err = tostring(err)})
local capped = bitlab.eval{student = st, data = ds, tokens = 1}
local first = bitlab.eval{student = st, data = ds, max_examples = 1}
bitlab.event("capped", {capped = capped, first = first})
local bad = {}
for i, v in ipairs{0, -1, 2.5, "many"} do
  local ok2, e2 = pcall(bitlab.eval, {student = st, data = ds, tokens = v})
  bad[i] = {ok = ok2, err = tostring(e2)}
end
bitlab.event("bad_tokens", {list = bad})
""")
    p = run([lua_eval, "--headless", "--log", log, "--",
             model, path, jsonl, lua_json, os.path.join(tmp, "nope.jsonl")])
    if check(p.returncode == 0, "bitlab.eval from Lua"):
        ev = {r["event"]: r for r in map(json.loads, open(log)) if "event" in r}
        examples = [(e["ids"], e["targets"]) for e in ev["examples"]["list"]]
        rep = ev["report"]["report"]
        fj = json.load(open(lua_json))
        scalars = [k for k, v in fj.items() if isinstance(v, (int, float)) and k != "seconds"]
        check(all(close(rep[k], fj[k], 1e-12) for k in scalars) and rep["memory"] == fj["memory"]
              and rep["data"] == fj["data"] and rep["checkpoint"] == fj["checkpoint"],
              "lua: the returned report holds the JSON file's numbers")
        check(rep["data_format"] == "jsonl" and rep["examples"] == 6,
              "lua: JSONL data, every line an example")
        want = ref_eval_envelope(ref, ck, examples)
        check(want["scored_tokens"][1] < want["tokens"][1] - len(examples),
              "chat examples score only assistant turns (fewer rows than tokens)")
        compare_scores("lua jsonl", rep, want)
        compare_prompts("lua jsonl", rep, ref, ck, hf_tok, ["hello world"], 4)
        check("KL(teacher||student)" in p.stdout, "lua: the table text is returned")
        rep2 = ev["report2"]["report"]
        check(rep2["data_format"] == "dataset" and rep2["student"]["adapters"] == 0,
              "lua: a Dataset and a live student are accepted")
        compare_scores("lua dataset + live fresh student", rep2, ref_eval_envelope(ref, None, examples))
        check(ev["missing"]["ok"] is False and "nope.jsonl" in ev["missing"]["err"],
              "lua: a missing data file raises an error naming it")
        cap, first = ev["capped"]["capped"], ev["capped"]["first"]
        rows0 = sum(examples[0][1][1:])  # row t is scored when token t+1 is a target
        check(cap["examples"] == 1 and cap["scored_tokens"] == rows0 == first["scored_tokens"]
              and cap["kl"] == first["kl"] and cap["tokens_cap"] == 1,
              f"lua: tokens = 1 is the first example ({rows0} scored rows), = max_examples 1")
        bad = ev["bad_tokens"]["list"]
        check(all(not b["ok"] and "'tokens'" in b["err"] for b in bad),
              f"lua: tokens 0, -1, 2.5, a string refused naming 'tokens' ({[b['err'][:80] for b in bad]})")
    else:
        print(p.stdout[-2000:], p.stderr[-2000:])

    # bad inputs
    empty = os.path.join(tmp, "empty.txt")
    open(empty, "w").write("  \n")
    empty_jsonl = os.path.join(tmp, "empty.jsonl")
    open(empty_jsonl, "w").write("\n")
    other = tiny.write_tiny(os.path.join(tmp, "other"), arch="llama", seed=4, fmt="gguf",
                            n_layers=3).gguf_path
    cases = [
        (["--data", os.path.join(tmp, "missing.txt")], "missing.txt", "a missing data file"),
        (["--data", empty], "empty.txt", "an empty text file"),
        (["--data", empty_jsonl], "empty.jsonl", "an empty JSONL file"),
        (["--data", held, "--prompts", os.path.join(tmp, "noprompts.txt")], "noprompts.txt",
         "a missing prompts file"),
        (["--data", held, "--checkpoint", os.path.join(tmp, "none.ckpt")], "none.ckpt",
         "a missing checkpoint"),
    ]
    for extra, name, what in cases:
        p = run(["eval", "--model", model, *extra])
        check(p.returncode == 1 and name in p.stderr and "bitlab eval:" in p.stderr,
              f"{what}: exit 1, message names {name} ({p.stderr.strip()[:120]})")
    p = run(["eval", "--model", other, "--checkpoint", cks["plain"][0], "--data", held])
    check(p.returncode == 1 and "plain.ckpt" in p.stderr and "layers" in p.stderr,
          f"a checkpoint of another model: exit 1 ({p.stderr.strip()[:160]})")
    p = run(["eval", "--model", model])
    check(p.returncode == 2 and "--data" in p.stderr, "no --data: usage error (exit 2)")
    p = run(["eval", "--help"])
    check(p.returncode == 0 and all(k in p.stdout for k in (
        "QEI", "top-5 agreement", "5 most likely", "< 8 and < 32", "perplexity ratio",
        "stdout", "stderr")), "eval --help: the measures and where the output goes")

    for f in failures:
        print("FAIL:", f)
    print(f"{len(failures)} failure(s)" if failures else "all eval checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
