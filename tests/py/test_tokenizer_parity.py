"""test_tokenizer_parity.py - bitlab's tokenizer against Hugging Face, per family.

References are Hugging Face objects, never bitlab output:
  smollm-gguf / smollm-json: the SmolLM2 GGUF through transformers' GGUF tokenizer conversion
      (bitlab reads the GGUF directly, and the tokenizer.json transformers saves from it).
      transformers 5.x maps tokenizer.ggml.pre "smollm" to the plain GPT-2 split, whereas
      llama.cpp and SmolLM2's own tokenizer.json put Digits(individual) first; bitlab follows
      the latter, so the GGUF reference gets that pre-tokenizer back.
  llama3 / qwen2: byte-level BPEs trained here with `tokenizers`, using each family's
      published normalizer / pre-tokenizer / decoder / post-processor.
  spm-json / spm-gguf: a SentencePiece-style BPE with byte fallback trained here (Llama-2
      normalizer), and the same vocabulary written as a "llama" GGUF, read back by
      transformers for the reference.
For every corpus string: ids without and with special tokens, decode(ids), decode(ids with
specials, skip_special_tokens=True) must equal HF's, and decode(encode(s)) == s wherever HF
round-trips too. Any mismatch fails the test.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tok_corpus  # noqa: E402

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers  # noqa: E402
from tokenizers import processors, trainers  # noqa: E402

N = 2000
GGUF = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def tool():
    if os.environ.get("TOK_TOOL"):
        return os.environ["TOK_TOOL"]
    return os.path.join(os.environ.get("BITLAB_BUILD_DIR", "build"), "tok_tool")


def training_text():
    return tok_corpus.corpus(12345, 6000)


def train_byte_level(path, split, nfc, specials, bos):
    tok = Tokenizer(models.BPE(ignore_merges=bos is not None))  # Llama-3 sets ignore_merges
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2500, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    post = [processors.ByteLevel(trim_offsets=False)]
    if bos:
        post.append(processors.TemplateProcessing(single=f"{bos} $A",
                                                  special_tokens=[(bos, tok.token_to_id(bos))]))
    tok.post_processor = processors.Sequence(post)
    tok.save(path)
    return Tokenizer.from_file(path)


def train_spm(path):
    """Llama-2 style: Prepend + Replace normalizer, no pre-tokenizer, byte fallback."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=120, show_progress=False)
    tok.train_from_iterator(training_text(), trainer)
    j = json.loads(tok.to_str())
    old = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    names = [t for t, _ in old[:3]] + [f"<0x{b:02X}>" for b in range(256)] + [t for t, _ in old[3:]]
    j["model"]["vocab"] = {t: i for i, t in enumerate(names)}
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    j["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    return Tokenizer.from_file(path), j


def write_spm_gguf(path, j):
    """The same vocabulary as a llama.cpp "llama" tokenizer: scores rank the merged tokens
    (earlier merge = higher score), as SentencePiece BPE scores do."""
    import gguf
    vocab = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    merged_rank = {}
    for r, m in enumerate(j["model"]["merges"]):
        a, b = m if isinstance(m, list) else m.split(" ")
        merged_rank.setdefault(a + b, r)
    tokens, scores, types = [], [], []
    for t, i in vocab:
        tokens.append(t)
        scores.append(-float(merged_rank[t] + 1) if t in merged_rank else 0.0)
        types.append(2 if t == "<unk>" else 3 if t in ("<s>", "</s>") else
                     6 if t.startswith("<0x") and len(t) == 6 else 1)
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()


def from_gguf(directory, name):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(directory, gguf_file=name).backend_tokenizer


def compare(family, ref, args, strings, tmp):
    path = os.path.join(tmp, family + ".jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for s in strings:
            f.write(json.dumps(s) + "\n")
    out = subprocess.run([tool()] + args + [path], capture_output=True, check=False)
    if out.returncode != 0:
        print(f"{family}: tok_tool failed: {out.stderr.decode(errors='replace')}")
        return len(strings)
    lines = out.stdout.decode("utf-8").split("\n")[1:-1]  # not splitlines: U+2028 is data
    bad = round_trips = 0
    for s, line in zip(strings, lines):
        got = json.loads(line)
        ids = ref.encode(s, add_special_tokens=False).ids
        ids_sp = ref.encode(s, add_special_tokens=True).ids
        want = {"ids": ids, "ids_special": ids_sp, "decoded": ref.decode(ids, skip_special_tokens=False),
                "decoded_skip": ref.decode(ids_sp, skip_special_tokens=True)}
        diff = [k for k in want if got.get(k) != want[k]]
        if want["decoded"] == s:
            round_trips += 1
            if got.get("decoded") != s:
                diff.append("round trip")
        if diff:
            bad += 1
            if bad <= 5:
                print(f"{family}: MISMATCH {diff} for {s!r}\n  bitlab {got}\n  hf     {want}")
    bad += abs(len(lines) - len(strings))
    print(f"{family}: {len(strings)} strings, {round_trips} round-trip, {bad} mismatches")
    return bad


def main():
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        if os.path.exists(GGUF):
            smol = from_gguf(os.path.dirname(GGUF), os.path.basename(GGUF))
            smol.save(os.path.join(tmp, "smol.json"))
            bad += compare("smollm-json", smol, ["--json", os.path.join(tmp, "smol.json")],
                           tok_corpus.corpus(1, N), tmp)
            smol.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
            bad += compare("smollm-gguf", smol, ["--gguf", GGUF], tok_corpus.corpus(2, N), tmp)
        else:
            print(f"skipping SmolLM2: {GGUF} not present")
        l3 = os.path.join(tmp, "llama3.json")
        ref = train_byte_level(l3, LLAMA3_SPLIT, False,
                               ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                "<|end_header_id|>", "<|eot_id|>"], "<|begin_of_text|>")
        bad += compare("llama3", ref, ["--json", l3], tok_corpus.corpus(3, N), tmp)
        q2 = os.path.join(tmp, "qwen2.json")
        ref = train_byte_level(q2, QWEN2_SPLIT, True, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None)
        bad += compare("qwen2", ref, ["--json", q2], tok_corpus.corpus(4, N), tmp)
        sp = os.path.join(tmp, "spm.json")
        ref, j = train_spm(sp)
        bad += compare("spm-json", ref, ["--json", sp], tok_corpus.corpus(5, N), tmp)
        write_spm_gguf(os.path.join(tmp, "spm.gguf"), j)
        ref = from_gguf(tmp, "spm.gguf")
        bad += compare("spm-gguf", ref, ["--gguf", os.path.join(tmp, "spm.gguf")], tok_corpus.corpus(6, N), tmp)
    print("FAIL" if bad else "OK")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
