"""make_corpus.py - writes the seed corpora of the file-format fuzz targets
made with tests/py/make_tiny_model.py: tiny models as GGUF (F32, F16, Q8_0
block linears; llama, qwen2, phi3) and as Hugging Face folders packed into
the hf target's input (u32 LE length, config.json, u32 LE length,
model.safetensors, then tokenizer.json), and their tokenizers packed into
the tokenizer target's input (tokenizer.json, tokenizer_config.json, a text).

    python3 make_corpus.py OUT     # writes OUT/gguf, OUT/hf, OUT/tokenizer, OUT/shard

and token shards (src/data/shard.h's layout, written here with struct) of a
few documents, 2- and 4-byte ids, for the shard target.

The checkpoint and trace seeds come from bitlab itself (fuzz_seeds.c); the
control and lua_json seeds are committed under tests/fuzz/corpus/."""
import os
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "py"))
import make_tiny_model as tiny  # noqa: E402

# rows of Q8_0 are 32 wide; else dim 8. Small enough for libFuzzer's mutations to matter (a few KB each)
VARIANTS = [
    dict(arch="llama", tied=True, gguf_qtype="F32", st_dtype="F32"),
    dict(arch="llama", tied=False, gguf_qtype="Q8_0", st_dtype="BF16", dim=32, hidden=32),
    dict(arch="qwen2", tied=True, gguf_qtype="F16", st_dtype="F16"),
    dict(arch="phi3", tied=True, gguf_qtype="F32", st_dtype="F32"),
]
TEXTS = [b"Hello, world! 123", "caf\u00e9 \u4e16\u754c <|im_start|>user\n  hi<|im_end|>".encode(),
         b"\xff\xfe broken utf-8 \xc3"]


def pack(*parts):
    out = b""
    for p in parts[:-1]:
        out += struct.pack("<I", len(p)) + p
    return out + parts[-1]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def shard(docs, width, vocab):
    """A token shard of these documents (lists of ids)."""
    ids = [t for d in docs for t in d]
    offs = [0]
    for d in docs:
        offs.append(offs[-1] + len(d))
    b = struct.pack("<8sIIQQII", b"BLSHARD\0", 1, width, len(ids), len(docs), vocab, 0) + bytes(range(32))
    b += struct.pack(f"<{len(ids)}{'H' if width == 2 else 'I'}", *ids)
    b += bytes(-len(b) % 8)
    return b + struct.pack(f"<{len(offs)}Q", *offs)


def main():
    out = sys.argv[1]
    for t in ("gguf", "hf", "tokenizer", "shard"):
        os.makedirs(os.path.join(out, t), exist_ok=True)
    for name, docs, width, vocab in (("two", [[1, 5, 9, 2], [3, 2]], 2, 320),
                                     ("wide", [[70000, 2], [5, 6, 7, 2], [9, 2]], 4, 100000),
                                     ("odd", [[4, 2, 1]], 2, 264)):
        with open(os.path.join(out, "shard", name + ".bin"), "wb") as f:
            f.write(shard(docs, width, vocab))
    with tempfile.TemporaryDirectory() as tmp:
        for i, v in enumerate(VARIANTS):
            d = os.path.join(tmp, str(i))
            # vocab 264: the 256 bytes, the 3 specials and a few merges
            shape = dict(dim=8, hidden=16) | v
            m = tiny.write_tiny(d, seed=i, n_layers=1, n_heads=2, n_kv_heads=1, vocab=264, **shape)
            name = f"{v['arch']}-{i}"
            with open(os.path.join(out, "gguf", name + ".gguf"), "wb") as f:
                f.write(read(m.gguf_path))
            hf = lambda n: read(os.path.join(m.hf_dir, n))  # noqa: E731
            with open(os.path.join(out, "hf", name + ".bin"), "wb") as f:
                f.write(pack(hf("config.json"), hf("model.safetensors"), hf("tokenizer.json")))
            text = TEXTS[i % len(TEXTS)]
            with open(os.path.join(out, "tokenizer", name + ".bin"), "wb") as f:
                f.write(pack(hf("tokenizer.json"), hf("tokenizer_config.json"), text))
            if i == 0:  # without tokenizer_config.json
                with open(os.path.join(out, "tokenizer", name + "-bare.bin"), "wb") as f:
                    f.write(pack(hf("tokenizer.json"), b"", TEXTS[1]))


if __name__ == "__main__":
    main()
