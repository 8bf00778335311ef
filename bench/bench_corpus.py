"""bench_corpus.py - the streaming corpus (bitlab.corpus) against the padded
in-memory dataset (bitlab.dataset), four figures:

  (a) padding: the fraction of batch positions that are padding, packed rows
      of the corpus against one example per row of the dataset, on the same
      paragraphs of a prose file (target < 2 % for the corpus);
  (b) step time: a short bitlab.train run on the same text from the corpus
      (tokenised in its background thread while the steps run) and from the
      dataset, median seconds per step of each, and the time the corpus's
      batches waited on its reader (target: no stall);
  (c) memory: peak RSS of a short bitlab.train run on a generated ~1 GB
      corpus (written under --tmp, deleted after) against one on a 1 MB
      corpus (target: within 5 %);
  (d) loader overhead, the issue's way: step time with the streaming loader
      against step time on an in-memory batch, in one process on one trainer,
      the two kinds of step interleaved, in alternating order (so drifts in
      machine load hit both alike): a stream step takes its batch from the corpus (its reader
      tokenising in the background) and trains on it, a memory step trains
      on a batch of the same corpus read into memory before the first step
      (the same rows, read by a twin corpus that is then closed; the trainer
      has no teacher cache, so both compute their teacher); the reader's busy
      time is printed too;
      medians of each kind after a warm-up pair (target: within 2 %).

  python3 bench/bench_corpus.py [--bin build/bitlab]
      [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--data experiments/data/heldout.txt]
      [--steps 6] [--batch 4] [--seq 128] [--gb 1.0] [--loader-steps 8] [--tmp /tmp]

Without the default model, (b) and (d) use a tiny random model (tests/py/make_tiny_model.py);
(c) always does, so that the corpus's own memory is not lost in the model's.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "py"))
import make_tiny_model as tiny  # noqa: E402

TRAIN = """local m = bitlab.load_model(arg[1])
local data
if arg[2] == "corpus" then
  data = bitlab.corpus{model = m, path = arg[3], seq = tonumber(arg[6])}
else
  data = bitlab.dataset{model = m, file = arg[3]}
end
bitlab.train{model = m, data = data, steps = tonumber(arg[4]), batch = tonumber(arg[5]),
             seq = tonumber(arg[6]), progress_every = 1000, adapter = {rank = 16, alpha = 32}}
if arg[2] == "corpus" then
  local s = data:stats()
  print(string.format("CORPUS %d %.6f %.1f", s.documents, s.stall_seconds, s.tokens_per_s))
end
"""

LOADER = """local m = bitlab.load_model(arg[1])
local path, n, B, T = arg[2], tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5])
-- the in-memory batches: the very rows the stream will serve, read by a
-- twin corpus beforehand, which is then closed (its reader gone)
local held = {}
do
  local twin <close> = bitlab.corpus{model = m, path = path, seq = T}
  for i = 1, n + 1 do held[i] = twin:batch(B) end
end
local stream = bitlab.corpus{model = m, path = path, seq = T}
local st = bitlab.student{model = m, lambda = 1, act_bits = 8}
st:add_adapter{rank = 16, alpha = 32, seed = 1}
-- no teacher cache: the memory step after a stream step on the same rows
-- computes its teacher too
local tr = bitlab.trainer{student = st, batch = B, seq = T, ce = 1, kl = 1, cos = 1, lr = 1e-4,
                          teacher_cache = false}
local function timed(f)
  local t0 = bitlab.clock()
  f()
  return bitlab.clock() - t0
end
local ts, tm = {}, {}
for i = 1, n + 1 do
  local s_, m_
  local function s() s_ = timed(function() tr:step(stream:batch(B)) end) end
  local function mem() m_ = timed(function() tr:step(held[i]) end) end
  -- the order alternates, so that what the first step of a pair pays
  -- (or the second saves) falls on both kinds alike
  if i % 2 == 1 then s() mem() else mem() s() end
  if i > 1 then ts[#ts + 1], tm[#tm + 1] = s_, m_ end
end
local function median(x)
  table.sort(x)
  local k = #x // 2
  return #x % 2 == 1 and x[k + 1] or (x[k] + x[k + 1]) / 2
end
local s = stream:stats()
print(string.format("LOADER %.6f %.6f %.6f %d %.6f", median(ts), median(tm), s.stall_seconds, n,
                    s.tokens_per_s > 0 and s.tokens_read / s.tokens_per_s or 0))
"""

PAD = """local m = bitlab.load_model(arg[1])
local T, B, n = tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5])
local ds = bitlab.dataset{model = m, file = arg[2], seq = T}
local c = bitlab.corpus{model = m, path = arg[2], seq = T}
for i = 1, n do ds:batch(B, T) c:batch(B) end
print(string.format("PAD %.6f %.6f %d", ds:stats().padding_fraction, c:stats().padding_fraction, ds:size()))
"""


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"bench_corpus: {' '.join(cmd[:3])} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p.stdout


def run_rss(cmd):
    """Runs cmd and returns (stdout, peak RSS MiB) from wait4's rusage of that child alone."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if p.returncode:
        sys.exit(f"bench_corpus: {' '.join(cmd[:3])} failed:\n{out[-2000:]}\n{err[-2000:]}")
    return out, ru.ru_maxrss / 1024.0


def paragraphs(path):
    with open(path) as f:
        return [p.strip().replace("\n", " ") for p in f.read().split("\n\n") if p.strip()]


def write_jsonl(path, texts):
    with open(path, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")


def step_times(log):
    """(step seconds, tokens trained on) of each step record."""
    with open(log) as f:
        recs = [json.loads(x) for x in f]
    return [(r["step_seconds"], r["tokens"]) for r in recs if "event" not in r and "step_seconds" in r]


def make_big(folder, texts, total_bytes):
    """~total_bytes of .txt files of 64 MiB, paragraphs of the prose shuffled per file."""
    import random
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(1)
    written, k = 0, 0
    while written < total_bytes:
        with open(os.path.join(folder, f"part-{k:04d}.txt"), "w") as f:
            n = 0
            while n < 64 << 20 and written + n < total_bytes:
                block = "\n\n".join(rng.sample(texts, len(texts))) + "\n\n"
                f.write(block)
                n += len(block.encode())
        written += n
        k += 1
    return written


def fig_padding(a, model, small, prose, texts, scripts, tmp):
    # (a) padding
    out = run([a.bin, scripts["pad"], "--headless", "--", model, prose, str(a.seq), str(a.batch), "20"])
    ds_pad, c_pad, n = out.split("PAD ")[1].split()[:3]
    print(f"(a) padding, {n} paragraphs of {a.data}, {20 * a.batch} rows of {a.seq} tokens "
          f"({os.path.basename(model)} tokenizer):")
    print(f"    dataset (one example per row, right-padded): {100 * float(ds_pad):.2f} %")
    print(f"    corpus (packed rows):                        {100 * float(c_pad):.2f} %")


def fig_step_time(a, model, small, prose, texts, scripts, tmp):
    # (b) step time
    rows = []
    for kind in ("dataset", "corpus"):
        log = os.path.join(tmp, kind + ".jsonl")
        out, rss = run_rss([a.bin, scripts["train"], "--headless", "--log", log, "--", model, kind, prose,
                            str(a.steps), str(a.batch), str(a.seq)])
        st = step_times(log)[1:]  # the first step pays the warm-up
        secs = [s for s, _ in st]
        tok_s = sum(n for _, n in st) / sum(secs)
        extra = out.split("CORPUS ")[1].split() if kind == "corpus" else None
        rows.append((kind, statistics.median(secs), min(secs), tok_s, rss, extra))
    print(f"(b) bitlab.train, {a.steps} steps of {a.batch} x {a.seq} on {os.path.basename(model)} "
          "(median / min step seconds after the first; tokens trained on per second):")
    for kind, med, mn, tok_s, rss, extra in rows:
        line = f"    {kind:8s} {med:.3f} / {mn:.3f} s/step, {tok_s:.1f} tok/s, peak RSS {rss:.0f} MiB"
        if extra:
            line += (f"; the reader: {int(extra[0])} documents served, batches waited "
                     f"{1e3 * float(extra[1]):.2f} ms in all, {float(extra[2]):.0f} tok/s tokenising")
        print(line)
    print(f"    corpus / dataset: step time {rows[1][1] / rows[0][1]:.3f}x, tokens/s "
          f"{rows[1][3] / rows[0][3]:.3f}x (the dataset's padded rows hold fewer tokens to train on)")


def fig_memory(a, model, small, prose, texts, scripts, tmp):
    # (c) memory on 1 GB against 1 MB (the tiny model: the corpus's own memory shows)
    mb = os.path.join(tmp, "mb")
    gb = os.path.join(tmp, "gb")
    n_mb = make_big(mb, texts, 1 << 20)
    n_gb = make_big(gb, texts, int(a.gb * (1 << 30)))
    res = []
    for name, folder, size in (("1 MB", mb, n_mb), (f"{a.gb:g} GB", gb, n_gb)):
        log = os.path.join(tmp, "rss.jsonl")
        out, rss = run_rss([a.bin, scripts["train"], "--headless", "--log", log, "--", small, "corpus",
                            folder, "20", str(a.batch), str(a.seq)])
        res.append((name, size, rss))
    print(f"(c) peak RSS of 20 steps of {a.batch} x {a.seq} on a tiny model, streaming corpus:")
    for name, size, rss in res:
        print(f"    {name:6s} ({size / (1 << 20):8.1f} MiB of .txt): {rss:.1f} MiB")
    print(f"    ratio: {res[1][2] / res[0][2]:.3f}")


def fig_loader(a, model, small, prose, texts, scripts, tmp):
    # (d) loader overhead: streaming against in-memory batches, interleaved
    out = run([a.bin, scripts["loader"], "--headless", "--", model, prose, str(a.loader_steps),
               str(a.batch), str(a.seq)])
    med_s, med_m, stall, n, busy = out.split("LOADER ")[1].split()[:5]
    med_s, med_m, n = float(med_s), float(med_m), int(n)
    print(f"(d) loader overhead, {n} pairs of {a.batch} x {a.seq} steps on {os.path.basename(model)}, "
          "stream and in-memory interleaved on the same rows (median seconds per step after a warm-up pair):")
    print(f"    streaming corpus {med_s:.3f} s, in-memory batch {med_m:.3f} s: "
          f"{100 * (med_s / med_m - 1):+.2f} % (the reader kept batches waiting {1e3 * float(stall):.2f} ms in all; "
          f"it was busy tokenising {float(busy):.3f} s in all, {1e3 * float(busy) / (n + 1):.1f} ms per stream step)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/bitlab")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--data", default="experiments/data/heldout.txt")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--loader-steps", type=int, default=8, help="step pairs of (d)")
    ap.add_argument("--only", default="abcd", help="the figures to measure, e.g. d")
    ap.add_argument("--tmp", default="/tmp")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bitlab_bench_corpus_", dir=a.tmp)
    try:
        small = tiny.write_tiny(os.path.join(tmp, "tiny"), arch="llama", seed=1, fmt="gguf").gguf_path
        model = a.model if os.path.exists(a.model) else small
        texts = paragraphs(a.data)
        prose = os.path.join(tmp, "prose.jsonl")
        write_jsonl(prose, texts)
        scripts = {}
        for name, body in (("train", TRAIN), ("pad", PAD), ("loader", LOADER)):
            scripts[name] = os.path.join(tmp, name + ".lua")
            with open(scripts[name], "w") as f:
                f.write(body)

        figures = {"a": fig_padding, "b": fig_step_time, "d": fig_loader, "c": fig_memory}
        for k in "abdc":  # the memory figure last: it writes the big corpus
            if k in a.only:
                figures[k](a, model, small, prose, texts, scripts, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
