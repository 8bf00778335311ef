"""test_tokenizer_errors.py - broken tokenizer.json files must fail cleanly (tok_tool exit 2,
no crash) with a message naming the file and the field at fault."""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_tokenizer_parity import tool  # noqa: E402

GOOD = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
        "added_tokens": [], "normalizer": None, "pre_tokenizer": None, "decoder": None}


def broken(**patch):
    j = json.loads(json.dumps(GOOD))
    for path, value in patch.items():
        node, keys = j, path.split("__")
        for k in keys[:-1]:
            node = node[k]
        if value is KeyError:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return json.dumps(j)


CASES = [  # (file text, substring the error must contain)
    ('{"model": {"type": "BPE", "vocab": {', ""),
    (broken(model=KeyError), "model"),
    (broken(model__vocab=[1, 2]), "model.vocab"),
    (broken(model__merges=["a c"]), "model.merges[0]"),
    (broken(model__merges=["a b c"]), "model.merges[0]"),
    (broken(model__merges=[["a", 1]]), "model.merges[0]"),
    (broken(model__merges="a b"), "model.merges"),
    (broken(model__vocab={"a": -1}), "model.vocab"),
    (broken(model__vocab={"a": "zero"}), "model.vocab"),
    (broken(model__type="WordPiece"), "model.type"),
    (broken(model__byte_fallback="yes"), "model.byte_fallback"),
    (broken(model__unk_token="<unk>"), "model.unk_token"),
    (broken(added_tokens=[{"id": 5}]), "added_tokens[0].content"),
    (broken(added_tokens=[{"id": 0, "content": "zz"}]), "added_tokens[0]"),
    (broken(added_tokens={}), "added_tokens"),
    (broken(normalizer={"type": "Lowercase"}), "normalizer.type"),
    (broken(normalizer={"type": "Sequence", "normalizers": [{"type": "Replace"}]}),
     "normalizer.normalizers[0].pattern"),
    (broken(pre_tokenizer={"type": "Split", "pattern": {"Regex": "("}, "behavior": "Isolated"}),
     "pre_tokenizer.pattern"),
    (broken(pre_tokenizer={"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Weird"}),
     "pre_tokenizer.behavior"),
    (broken(pre_tokenizer={"type": "ByteLevel", "use_regex": 1}), "pre_tokenizer.use_regex"),
    (broken(decoder={"type": "Strip", "content": " ", "start": "x"}), "decoder.start"),
    (broken(post_processor={"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}]}),
     "post_processor.special_tokens"),
    ("[]", "top level"),
    # ids beyond the entry count would size the tables (issue 11: 1e8 took 8 s and 4.2 GB)
    (broken(model__vocab={"a": 0, "b": 1, "ab": 100000000}), 'model.vocab."ab": id 100000000 is out of range'),
    (broken(added_tokens=[{"id": 99999999, "content": "<x>", "special": True}]), "added_tokens[0].id"),
]


def main():
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (text, field) in enumerate(CASES):
            path = os.path.join(tmp, f"broken{i}.json")
            with open(path, "w") as f:
                f.write(text)
            t0 = time.time()
            r = subprocess.run([tool(), "--json", path], capture_output=True, text=True)
            if time.time() - t0 > 5:
                bad += 1
                print(f"case {i}: took {time.time() - t0:.1f} s")
            msg = r.stderr.strip()
            if r.returncode != 2 or path not in msg or field not in msg:
                bad += 1
                print(f"case {i}: rc={r.returncode} message {msg!r} (want {field!r})")
    print(f"{len(CASES)} broken files, {bad} bad errors")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
