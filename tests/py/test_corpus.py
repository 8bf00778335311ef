"""test_corpus.py - bitlab.corpus (src/data/corpus.c, src/script/l_corpus.c), the
shard format and `bitlab tokenize --corpus` (src/data/shard.c,
src/cli/cmd_tokenize.c), and bitlab.train on a corpus.

On a fresh tiny random llama (make_tiny_model), corpora of generated prose are
written as a folder tree (.txt, .md, .jsonl with "text" and "messages" lines,
blank lines, files that must be ignored), and tests/lua/corpus.lua serves
packed batches from them: from a folder, from files, from a glob, from .jsonl
and from shards. Every batch is compared, token for token, with an independent
packer written here on the `tokenizers` library's encoding of each document
(chat lines rendered with jinja2 from the model's ChatML template): documents
in sorted file order (or the per-epoch permutation of the seed), each its
tokens then EOS, laid end to end in rows of T; doc_start and the mask from
the document boundaries. A big .txt read in 256-byte pieces must give the
whole document's tokens. A seek to a saved position must give the same
batches as the uninterrupted run. Shard headers are parsed with struct and
numpy against the layout of shard.h. Bad inputs must fail with messages
naming the path, the line or the option. bitlab.train on a corpus must resume
bit-exactly and train on full rows.
"""
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile

import jinja2
import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402

from bitlab_run import BIN, check, finish, run  # noqa: E402


def run_lua(script, log, *args, timeout=600):
    p = run([script, "--headless", "--log", log, "--", *args], timeout=timeout)
    recs = []
    if os.path.exists(log):
        with open(log) as f:
            recs = [json.loads(line) for line in f]
    return p, recs


# ---------------------------------------------------------------------------
# the corpus on disk

WORDS = ["the", "model", "ternary", "weights", "hello", "world", "student", "teacher", "learns",
         "from", "tokens", "and", "bits", "42", "is", "a", "of", "distillation", "rows"]


def prose(rng, n_words):
    return " ".join(WORDS[int(rng.integers(len(WORDS)))] for _ in range(n_words))


def paragraphs(rng, n):
    """Paragraphs of 5..80 words (some longer than a 256-byte piece) joined by blank lines."""
    return "\n\n".join(prose(rng, int(rng.integers(5, 80))) + "." for _ in range(n))


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def make_tree(root, rng):
    """A folder tree; returns {path: [document, ...]} for the corpus files only, where a
    document is ("text", str) or ("chat", messages)."""
    docs = {}
    for name in ("b.txt", "a.md", "sub/c.txt", "sub/deeper/d.md"):
        t = paragraphs(rng, int(rng.integers(1, 4)))
        write(os.path.join(root, name), t)
        docs[os.path.join(root, name)] = [("text", t)]
    big = paragraphs(rng, 40)  # ~ 9 kB: many 256-byte pieces
    write(os.path.join(root, "sub/big.txt"), big)
    docs[os.path.join(root, "sub/big.txt")] = [("text", big)]
    lines, jd = [], []
    for i in range(6):
        if i == 2:
            lines.append("")  # blank lines are skipped
        if i % 3 == 1:
            msgs = [{"role": "user", "content": prose(rng, 6)}, {"role": "assistant", "content": prose(rng, 9)}]
            lines.append(json.dumps({"messages": msgs}))
            jd.append(("chat", msgs))
        else:
            t = prose(rng, int(rng.integers(3, 30)))
            lines.append(json.dumps({"text": t}))
            jd.append(("text", t))
    write(os.path.join(root, "sub/e.jsonl"), "\n".join(lines) + "\n")
    docs[os.path.join(root, "sub/e.jsonl")] = jd
    write(os.path.join(root, "notes.csv"), "not,a,corpus,file\n")  # filtered out
    write(os.path.join(root, ".hidden.txt"), "hidden files are skipped")
    return docs


# ---------------------------------------------------------------------------
# the reference: tokenise, order, pack

class Ref:
    def __init__(self, model_dir):
        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        with open(os.path.join(model_dir, "tokenizer_config.json")) as f:
            cfg = json.load(f)
        self.eos = self.tok.token_to_id(cfg["eos_token"])
        self.tpl = jinja2.Template(cfg["chat_template"])

    def doc(self, d):
        kind, x = d
        if kind == "text":
            ids = self.tok.encode(x, add_special_tokens=True).ids
        else:
            ids = self.tok.encode(self.tpl.render(messages=x, add_generation_prompt=False),
                                  add_special_tokens=False).ids
        return ids if ids and ids[-1] == self.eos else ids + [self.eos]


MASK64 = (1 << 64) - 1


def epoch_order(n, seed, epoch):
    """data/dataset.h's per-epoch permutation: Fisher-Yates over splitmix64 of
    seed ^ epoch * 0xd1b54a32d192ed03."""
    order = list(range(n))
    if seed == 0:
        return order
    s = (seed ^ (epoch * 0xd1b54a32d192ed03)) & MASK64
    for i in range(n - 1, 0, -1):
        s = (s + 0x9e3779b97f4a7c15) & MASK64
        z = s
        z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & MASK64
        z ^= z >> 31
        j = z % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def doc_stream(file_docs, seed):
    """Documents (token lists) forever: the files in each epoch's order."""
    epoch = 0
    while True:
        for fi in epoch_order(len(file_docs), seed, epoch):
            yield from file_docs[fi]
        epoch += 1


def pack(file_docs, seed, B, T, n_batches):
    """[(tokens, lens, mask, doc_start)] flattened row-major, and the documents started."""
    stream = doc_stream(file_docs, seed)
    cur, at, serial, started = None, 0, -1, 0
    out = []
    for _ in range(n_batches):
        toks, lens, mask, ds = [], [], [], []
        for _ in range(B):
            row, ser = [], []
            while len(row) < T:
                if cur is None or at == len(cur):
                    cur, at, serial = next(stream), 0, serial + 1
                    started += 1
                k = min(T - len(row), len(cur) - at)
                row += cur[at:at + k]
                ser += [serial] * k
                at += k
            toks += row
            lens.append(T)
            ds += [ser.index(s) for s in ser]
            mask += [int(t + 1 < T and ser[t + 1] == ser[t]) for t in range(T)]
        out.append((toks, lens, mask, ds))
    return out, started


def batches_of(recs, name):
    return [r for r in recs if r.get("event") == name]


def compare(got, want, what):
    if len(got) != len(want):
        check(False, f"{what}: {len(got)} batches, want {len(want)}")
        return
    bad = [i for i, (g, w) in enumerate(zip(got, want))
           if (g["tokens"], g["lens"], g["mask"], g["doc_start"]) != w]
    check(not bad, f"{what}: {len(want)} batches equal the reference packer's"
          + (f" (first differing batch {bad[0] + 1})" if bad else ""))


def serve(tmp, model, name, spec, B=2, n=12, resume_at=None):
    log = os.path.join(tmp, name + ".jsonl")
    args = [model, f"B={B}", f"batches={n}"] + [f"{k}={v}" for k, v in spec]
    if resume_at:
        args.append(f"resume_at={resume_at}")
    p, recs = run_lua("tests/lua/corpus.lua", log, *args)
    ok = p.returncode == 0 and "corpus.lua done" in p.stdout
    check(ok, f"{name}: corpus.lua runs")
    if not ok:
        print(p.stdout[-2000:], p.stderr[-2000:])
    return recs


# ---------------------------------------------------------------------------
# parts

def sources_part(tmp, model, ref, docs):
    root = os.path.join(tmp, "tree")
    files = sorted(docs)
    file_docs = [[ref.doc(d) for d in docs[f]] for f in files]
    T, B = 48, 2
    total = sum(len(d) for fd in file_docs for d in fd)
    n = total // (B * T) + 3  # past the first epoch

    # the big .txt in pieces: the whole document's tokens
    big = os.path.join(root, "sub/big.txt")
    check(len(open(big, "rb").read()) > 20 * 256, "the big file spans many 256-byte pieces")
    want, started = pack(file_docs, 0, B, T, n)
    recs = serve(tmp, model, "folder", [("seq", T), ("path", root), ("piece_bytes", 256)], B, n, resume_at=4)
    got = batches_of(recs, "corpus_batch")
    compare(got, want, "a folder (recursive, sorted, .txt/.md/.jsonl), 256-byte pieces")
    st = batches_of(recs, "corpus_stats")[0]
    check(st["files"] == files, f"the folder's files: sorted, filtered, hidden skipped ({len(st['files'])})")
    s = st["stats"]
    check(s["files"] == len(files) and s["rows"] == n * B and s["tokens"] == n * B * T
          and s["padding_fraction"] == 0 and s["epoch"] >= 1,
          f"stats: files, rows, tokens, no padding, epoch wrapped ({s})")
    check(s["documents"] == started, f"stats: documents started {s['documents']} == {started}")
    check(s["bytes_read"] >= sum(os.path.getsize(f) for f in files) and s["tokens_per_s"] > 0,
          "stats: the reader read the whole corpus at a positive rate")
    check(st["text"] == f"bitlab.Corpus ({len(files)} files, seq {T})", f"__tostring: {st['text']}")
    check(all(g["packed"] and g["B"] == B and g["T"] == T for g in got), "batches are packed B x T")
    mid = [g["position"] for g in got if g["position"]["consumed"] > 0 and g["position"]["offset"] > 0]
    check(len(mid) > 0, "some positions fall inside a document read in pieces")
    res = batches_of(recs, "corpus_resumed")
    check([r["tokens"] for r in res] == [g["tokens"] for g in got[4:]]
          and [r["doc_start"] for r in res] == [g["doc_start"] for g in got[4:]]
          and [r["position"] for r in res] == [g["position"] for g in got[4:]],
          f"seek(position after batch 4): the {len(res)} batches that follow, token for token")
    rs = batches_of(recs, "corpus_resumed_stats")[0]["stats"]
    check(all(rs[k] == s[k] for k in ("documents", "rows", "tokens", "padding_fraction")),
          f"a resumed corpus's stats count from the start, not the resume ({rs} vs {s})")

    # a position inside the big file: resume there too
    k = next(i for i, g in enumerate(got) if g["position"]["file"] == files.index(big)
             and g["position"]["consumed"] > 0 and g["position"]["offset"] > 0) + 1
    recs = serve(tmp, model, "folder_mid", [("seq", T), ("path", root), ("piece_bytes", 256)], B, n,
                 resume_at=k)
    res = batches_of(recs, "corpus_resumed")
    check(res and [r["tokens"] for r in res] == [g["tokens"] for g in got[k:]],
          f"seek to a position inside a piece of the big file (after batch {k})")

    # a seed: the files in each epoch's permutation, resumable too
    seed = 987654321
    want, _ = pack([file_docs[i] for i in range(len(files))], seed, B, T, n)
    recs = serve(tmp, model, "seeded", [("seq", T), ("path", root), ("seed", seed)], B, n, resume_at=n // 2)
    got = batches_of(recs, "corpus_batch")
    compare(got, want, f"seed {seed}: files in the per-epoch permutation")
    res = batches_of(recs, "corpus_resumed")
    check([r["tokens"] for r in res] == [g["tokens"] for g in got[n // 2:]], "seeded: resume by position")

    # files named one by one, and a glob, of a smaller queue
    two = [os.path.join(root, "sub/c.txt"), os.path.join(root, "a.md")]
    want, _ = pack([[ref.doc(d) for d in docs[f]] for f in two], 0, 1, 16, 6)
    recs = serve(tmp, model, "files", [("seq", 16), ("path", two[0]), ("path", two[1]),
                                       ("queue_tokens", 8)], 1, 6)
    compare(batches_of(recs, "corpus_batch"), want, "two files in the order given, an 8-token queue")
    g = sorted(glob.glob(os.path.join(root, "*.md")) + glob.glob(os.path.join(root, "sub/*.txt")))
    want, _ = pack([[ref.doc(d) for d in docs[f]] for f in g], 0, 2, 32, 8)
    recs = serve(tmp, model, "glob", [("seq", 32), ("path", os.path.join(root, "*.md")),
                                      ("path", os.path.join(root, "sub/*.txt"))], 2, 8)
    got = batches_of(recs, "corpus_batch")
    check(batches_of(recs, "corpus_stats")[0]["files"] == g, "globs expand to their matches")
    compare(got, want, "two glob patterns")

    # .jsonl alone: text and chat lines
    jl = os.path.join(root, "sub/e.jsonl")
    want, _ = pack([[ref.doc(d) for d in docs[jl]]], 0, 2, 24, 6)
    recs = serve(tmp, model, "jsonl", [("seq", 24), ("path", jl)], 2, 6, resume_at=3)
    got = batches_of(recs, "corpus_batch")
    compare(got, want, ".jsonl: \"text\" lines and \"messages\" lines in the chat template")
    check(any(g["position"]["line"] > 0 for g in got), "jsonl positions carry the line number")
    res = batches_of(recs, "corpus_resumed")
    check([r["tokens"] for r in res] == [g["tokens"] for g in got[3:]], ".jsonl: resume by position")
    return file_docs, files


def read_shard(path):
    with open(path, "rb") as f:
        b = f.read()
    magic, version, width, n_tok, n_docs, vocab, reserved = struct.unpack_from("<8sIIQQII", b, 0)
    tid = b[40:72]
    ids = np.frombuffer(b, dtype="<u2" if width == 2 else "<u4", count=n_tok, offset=72)
    at = (72 + n_tok * width + 7) // 8 * 8
    offs = np.frombuffer(b, dtype="<u8", count=n_docs + 1, offset=at)
    return dict(magic=magic, version=version, width=width, n_tokens=n_tok, n_docs=n_docs,
                vocab=vocab, reserved=reserved, tid=tid, ids=ids, offsets=offs, size=len(b),
                want_size=at + 8 * (n_docs + 1))


def shards_part(tmp, model, ref, file_docs, root, vocab):
    out = os.path.join(tmp, "shards")
    p = subprocess.run([BIN, "tokenize", "--model", model, "--corpus", root, "--out", out,
                        "--shard-tokens", "1024"], capture_output=True, text=True, timeout=600)
    check(p.returncode == 0 and "wrote" in p.stdout, f"bitlab tokenize --corpus: {p.stdout.strip()}{p.stderr[-500:]}")
    paths = sorted(glob.glob(os.path.join(out, "shard-*.bin")))
    docs = [d for fd in file_docs for d in fd]
    check(len(paths) >= 2, f"--shard-tokens 1024 splits the corpus into {len(paths)} shards")
    check([os.path.basename(x) for x in paths] == [f"shard-{i:05d}.bin" for i in range(len(paths))],
          "shards are named shard-NNNNN.bin from 0")
    check(not [x for x in os.listdir(out) if not x.startswith("shard-")], "no temporary files left")
    hs = [read_shard(x) for x in paths]
    check(all(h["magic"] == b"BLSHARD\0" and h["version"] == 1 and h["width"] == 2 and h["reserved"] == 0
              and h["vocab"] == vocab and h["size"] == h["want_size"] for h in hs),
          "headers: magic, version 1, width 2 for a small vocabulary, vocab size, exact file size")
    check(len({h["tid"] for h in hs}) == 1 and hs[0]["tid"] != bytes(32), "one non-zero tokenizer id")
    sdocs = [h["ids"][h["offsets"][d]:h["offsets"][d + 1]].tolist() for h in hs for d in range(h["n_docs"])]
    check(sdocs == docs, f"the shards hold the {len(docs)} documents in order, each ending with EOS")
    check(all(h["n_tokens"] == int(h["offsets"][-1]) and h["offsets"][0] == 0 for h in hs),
          "document offsets run from 0 to the token count")
    check(all(h["n_tokens"] >= 1024 for h in hs[:-1]), "a shard ends at the first document end past 1024 tokens")

    T, B, n = 40, 3, 10
    want, _ = pack(file_docs, 0, B, T, n)
    recs = serve(tmp, model, "shards", [("seq", T), ("shards", out)], B, n, resume_at=5)
    got = batches_of(recs, "corpus_batch")
    compare(got, want, "shards: the same batches as the text they were made from")
    res = batches_of(recs, "corpus_resumed")
    check([r["tokens"] for r in res] == [g["tokens"] for g in got[5:]], "shards: resume by position")
    st = batches_of(recs, "corpus_stats")[0]
    check(st["text"] == f"bitlab.Corpus ({len(paths)} shards, seq {T})", f"shards __tostring: {st['text']}")
    seed = 77
    shard_docs = [[h["ids"][h["offsets"][d]:h["offsets"][d + 1]].tolist() for d in range(h["n_docs"])] for h in hs]
    want, _ = pack(shard_docs, seed, B, T, n)
    recs = serve(tmp, model, "shards_seeded", [("seq", T), ("shards", out), ("seed", seed)], B, n)
    compare(batches_of(recs, "corpus_batch"), want, f"shards, seed {seed}: shards in the per-epoch permutation")
    return out, paths


def lua_errors(tmp, model, cases):
    """Each case (name, lua code raising an error): the messages, by name."""
    script = os.path.join(tmp, "errors.lua")
    body = ["local m = bitlab.load_model(arg[1])", "local out = {}"]
    for name, code in cases:
        body.append(f"do local ok, e = pcall(function() {code} end) "
                    f"out[#out + 1] = {json.dumps(name)} .. '\\t' .. (ok and 'NO ERROR' or tostring(e)):gsub('\\n', ' ') end")
    body.append("for _, l in ipairs(out) do print(l) end")
    write(script, "\n".join(body) + "\n")
    p = run([script, "--headless", "--", model])
    check(p.returncode == 0, "the error cases run to the end (no crash)")
    return dict(line.split("\t", 1) for line in p.stdout.splitlines() if "\t" in line)


def errors_part(tmp, model, root, shard_dir, shard_paths, other_model):
    bad = os.path.join(tmp, "bad")
    os.makedirs(bad)
    write(os.path.join(bad, "empty/x.txt"), "")
    write(os.path.join(bad, "csv/x.csv"), "a,b\n")
    write(os.path.join(bad, "blank.jsonl"), "\n\n  \n")
    write(os.path.join(bad, "broken.jsonl"), json.dumps({"text": "fine"}) + "\n{not json\n")
    write(os.path.join(bad, "notext.jsonl"), json.dumps({"title": "no text"}) + "\n")
    # corrupt shards, each in a folder of its own
    src = open(shard_paths[0], "rb").read()

    def shard(name, data):
        d = os.path.join(bad, name)
        os.makedirs(d)
        with open(os.path.join(d, "shard-00000.bin"), "wb") as f:
            f.write(data)
        return d
    trunc = shard("trunc", src[:-5])
    magic = shard("magic", b"NOTSHARD" + src[8:])
    version = shard("version", src[:8] + struct.pack("<I", 2) + src[12:])
    offs = bytearray(src)
    h = read_shard(shard_paths[0])
    at = (72 + h["n_tokens"] * 2 + 7) // 8 * 8
    struct.pack_into("<Q", offs, at + 8, h["n_tokens"] + 7)  # document 1 ends past the tokens
    offsets = shard("offsets", bytes(offs))
    ids = bytearray(src)
    struct.pack_into("<H", ids, 72 + 2, 65000)  # an id outside the vocabulary
    badid = shard("badid", bytes(ids))
    other = os.path.join(bad, "other")
    p = subprocess.run([BIN, "tokenize", "--model", other_model, "--corpus", os.path.join(root, "a.md"),
                        "--out", other], capture_output=True, text=True, timeout=600)
    check(p.returncode == 0, "shards of another model's tokenizer written")
    nofiles = os.path.join(bad, "noshards")
    os.makedirs(nofiles)

    def corpus(**kw):
        parts = ["model = m", "seq = 8"] + [f"{k} = {v}" for k, v in kw.items()]
        return "local c = bitlab.corpus{" + ", ".join(parts) + "} c:batch(1)"
    q = json.dumps
    cases = [
        ("missing", corpus(path=q(os.path.join(bad, "nope.txt")))),
        ("nomatch", corpus(path=q(os.path.join(bad, "*.nothing")))),
        ("nofiles", corpus(path=q(os.path.join(bad, "csv")))),
        ("empty", corpus(path=q(os.path.join(bad, "empty")))),
        ("blank", corpus(path=q(os.path.join(bad, "blank.jsonl")))),
        ("broken", "local c = bitlab.corpus{model = m, seq = 8, path = " + q(os.path.join(bad, "broken.jsonl"))
         + "} for i = 1, 4 do c:batch(1) end"),
        ("notext", corpus(path=q(os.path.join(bad, "notext.jsonl")))),
        ("trunc", corpus(shards=q(trunc))),
        ("magic", corpus(shards=q(magic))),
        ("version", corpus(shards=q(version))),
        ("offsets", corpus(shards=q(offsets))),
        ("badid", corpus(shards=q(badid))),
        ("other", corpus(shards=q(other))),
        ("noshards", corpus(shards=q(nofiles))),
        ("seq_type", f"bitlab.corpus{{model = m, seq = 'x', path = {q(root)}}}"),
        ("no_seq", f"bitlab.corpus{{model = m, path = {q(root)}}}"),
        ("paths_type", "bitlab.corpus{model = m, seq = 8, paths = 3}"),
        ("paths_entry", "bitlab.corpus{model = m, seq = 8, paths = {1}}"),
        ("both", f"bitlab.corpus{{model = m, seq = 8, path = {q(root)}, shards = {q(shard_dir)}}}"),
        ("no_model", f"bitlab.corpus{{seq = 8, path = {q(root)}}}"),
        ("no_source", "bitlab.corpus{model = m, seq = 8}"),
        ("batch_arg", f"bitlab.corpus{{model = m, seq = 8, path = {q(root)}}}:batch(0)"),
        ("seek_files", f"bitlab.corpus{{model = m, seq = 8, path = {q(root)}}}:seek{{files = 99, epoch = 0}}"),
        ("seek_seed", f"bitlab.corpus{{model = m, seq = 8, path = {q(root)}}}:seek{{seed = 5}}"),
    ]
    got = lua_errors(tmp, model, cases)
    want = {
        "missing": ["nope.txt", "No such file"], "nomatch": ["no file matches", "*.nothing"],
        "nofiles": ["csv", "no .txt, .md or .jsonl files"], "empty": ["all empty"],
        "blank": ["no documents"], "broken": ["broken.jsonl:2", "malformed JSON"],
        "notext": ["notext.jsonl:1", "\"text\""], "trunc": ["trunc/shard-00000.bin", "truncated"],
        "magic": ["magic/shard-00000.bin", "bad magic"], "version": ["version/shard-00000.bin", "version 2"],
        "offsets": ["offsets/shard-00000.bin", "document offset"],
        "badid": ["badid/shard-00000.bin", "outside the vocabulary"],
        "other": ["other/shard-00000.bin", "re-tokenise"], "noshards": ["noshards", "no shard-*.bin"],
        "seq_type": ["option 'seq'"], "no_seq": ["option 'seq'", "required"],
        "paths_type": ["option 'paths'", "list"], "paths_entry": ["option 'paths'", "entry 1"],
        "both": ["'shards'", "excludes"], "no_model": ["option 'model'"],
        "no_source": ["'path', 'paths' or 'shards'"], "batch_arg": ["bad argument #1 to 'batch'"],
        "seek_files": ["99 files"], "seek_seed": ["seed 5"],
    }
    for name, parts in want.items():
        msg = got.get(name, "(no output)")
        check(all(x in msg for x in parts), f"error {name}: {msg[:200]}")

    p = subprocess.run([BIN, "tokenize", "--model", model, "--corpus", root], capture_output=True,
                       text=True, timeout=60)
    check(p.returncode == 2 and "--out" in p.stderr, f"tokenize --corpus without --out: {p.stderr.strip()}")
    p = subprocess.run([BIN, "tokenize", "--model", model, "--corpus", os.path.join(bad, "empty"),
                        "--out", os.path.join(tmp, "none")], capture_output=True, text=True, timeout=60)
    check(p.returncode == 1 and "empty" in p.stderr, f"tokenize of an empty corpus: {p.stderr.strip()}")


def train_part(tmp, model, root):
    script = os.path.join(tmp, "train.lua")
    write(script, """local m = bitlab.load_model(arg[1])
local c = bitlab.corpus{model = m, path = arg[2], seq = 24, seed = 3}
bitlab.train{model = m, data = c, steps = tonumber(arg[3]), batch = 2, checkpoint = arg[4],
             checkpoint_every = 3, progress_every = 100, lr = 1e-3}
""")
    ck_full, ck = os.path.join(tmp, "full.ckpt"), os.path.join(tmp, "half.ckpt")

    def steps(log):
        with open(log) as f:
            return [r for r in map(json.loads, f) if "event" not in r and "total" in r]
    for args, log in (((model, root, "6", ck_full), "full"), ((model, root, "3", ck), "half")):
        p = subprocess.run([BIN, script, "--headless", "--log", os.path.join(tmp, log + ".jsonl"), "--", *args],
                           capture_output=True, text=True, timeout=600)
        check(p.returncode == 0, f"bitlab.train on a corpus ({log} run)")
        if p.returncode:
            print(p.stdout[-2000:], p.stderr[-2000:])
    p = subprocess.run([BIN, script, "--headless", "--log", os.path.join(tmp, "resumed.jsonl"), "--resume", ck,
                        "--", model, root, "6", ck], capture_output=True, text=True, timeout=600)
    check(p.returncode == 0 and "resumed from" in p.stdout, "the run resumes from its checkpoint")
    full, resumed = steps(os.path.join(tmp, "full.jsonl")), steps(os.path.join(tmp, "resumed.jsonl"))
    keys = ("total", "ce", "kl", "cos", "grad_norm", "tokens")
    check(len(full) == 6 and [r["step"] for r in resumed] == [4, 5, 6]
          and all(a[k] == b[k] for a, b in zip(full[3:], resumed) for k in keys),
          "steps 4..6 after a resume equal the uninterrupted run's, bit for bit")
    check(all(r["tokens"] == 2 * 24 for r in full), "every step trains on full rows (B x T tokens)")
    check(all(isinstance(r.get("corpus"), dict) and r["corpus"]["tokens"] == 48 * (i + 1)
              and r["corpus"]["documents"] >= 1 and r["corpus"]["tokens_per_s"] > 0
              for i, r in enumerate(full)), "step records carry the corpus statistics")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        w = tiny.write_tiny(os.path.join(tmp, "m"), arch="llama", seed=5, fmt="both")
        other = tiny.write_tiny(os.path.join(tmp, "o"), arch="llama", seed=9, fmt="gguf")
        ref = Ref(w.hf_dir)
        rng = np.random.default_rng(2026)
        root = os.path.join(tmp, "tree")
        docs = make_tree(root, rng)
        file_docs, _ = sources_part(tmp, w.gguf_path, ref, docs)
        shard_dir, shard_paths = shards_part(tmp, w.gguf_path, ref, file_docs, root, w.config["vocab_size"])
        errors_part(tmp, w.gguf_path, root, shard_dir, shard_paths, other.gguf_path)
        train_part(tmp, w.gguf_path, root)
    finish()


if __name__ == "__main__":
    main()
