"""tok_corpus.py - seeded test strings for tokenizer parity (tests/py/test_tokenizer_parity.py).

corpus(seed, n) returns n strings covering what tokenizers get wrong: prose, code with
indentation and tabs, digit runs, whitespace runs, emoji (ZWJ, skin tones), CJK, accented
text in NFC and NFD, RTL and Cyrillic scripts, special tokens whole / adjacent / partial,
the empty string, single characters and edge code points.
"""
import random
import unicodedata

WORDS = ("the quick brown fox jumps over lazy dog model token layer weight can't won't "
         "I'm we've they'll she'd it's HELLO World Tokenizer GPU matrix attention").split()
CODE = [
    "def f(x):\n    return x * 2\n",
    "for i in range(10):\n\tprint(i)\n",
    "int main(void) {\n    printf(\"%d\\n\", 42);\n    return 0;\n}\n",
    "if (a && b) { x += 1; } else { x -= 1; }",
    "class A:\n    def __init__(self):\n        self.x = {'k': [1, 2, 3]}\n",
    "    \t  indented();\n\n\n",
    "#include <stdio.h>\n#define N 128\nstatic int v[N];",
    "x = [i**2 for i in range(100) if i % 3 == 0]  # squares",
]
EMOJI = ["😀", "👍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🤖", "🇯🇵", "👩🏿‍💻", "✨"]
CJK = ["你好，世界", "日本語のテキスト", "한국어 문장", "漢字とかな", "中文分词测试。", "東京タワー"]
ACCENTED = ["café", "naïve", "Ångström", "résumé", "über", "señor", "crème brûlée", "Øresund"]
SCRIPTS = ["مرحبا بالعالم", "שלום עולם", "Привет, мир", "Ελληνικά", "हिन्दी पाठ", "ไทย", "Ümlaut"]
EDGE = ["\u00a0", "\u200b", "\u200d", "\ufeff", "\u2028", "\u3000", "\U0010fffd", "\ue000",
        "\u0301", "\x7f", "\x01", "\r\n", "\u2581", "\u0120", "Ġ", "�", "\U0001d400", "ſ", "K"]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>",
            "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
PARTIAL = ["<|im_sta", "<|im_end", "|>", "<|", "</s", "<s", "<|begin_of", "im_start|>"]


def _digits(r):
    return "".join(r.choice("0123456789") for _ in range(r.randint(1, 25)))


def _ws(r):
    return "".join(r.choice([" ", " ", "\t", "\n", "\r\n", "  ", "\n\n"]) for _ in range(r.randint(1, 8)))


def _prose(r):
    words = [r.choice(WORDS) for _ in range(r.randint(1, 12))]
    s = " ".join(words)
    if r.random() < 0.5:
        s = s[0].upper() + s[1:] + r.choice([".", "!", "?", ",", ";", "..."])
    return s


def _accented(r):
    s = " ".join(r.choice(ACCENTED) for _ in range(r.randint(1, 4)))
    return unicodedata.normalize(r.choice(["NFC", "NFD"]), s)


def _special(r):
    parts = []
    for _ in range(r.randint(1, 5)):
        k = r.random()
        if k < 0.4:
            parts.append(r.choice(SPECIALS))
        elif k < 0.55:
            parts.append(r.choice(PARTIAL))
        elif k < 0.7:
            parts.append(r.choice([" ", "\n", "user\n", "assistant\n", "hi", " hi "]))
        else:
            parts.append(_prose(r))
    return "".join(parts)


def _mixed(r):
    gens = [_prose, _digits, _ws, lambda r: r.choice(EMOJI), lambda r: r.choice(CJK),
            _accented, lambda r: r.choice(SCRIPTS), lambda r: r.choice(EDGE)]
    return "".join(r.choice(gens)(r) for _ in range(r.randint(2, 6)))


GENERATORS = [
    _prose, lambda r: r.choice(CODE), _digits,
    lambda r: _prose(r) + " " + _digits(r) + " " + _prose(r), _ws,
    lambda r: _ws(r) + _prose(r) + _ws(r),
    lambda r: "".join(r.choice(EMOJI) for _ in range(r.randint(1, 4))),
    lambda r: r.choice(CJK) + r.choice(["", " ", "123", "abc"]), _accented,
    lambda r: r.choice(SCRIPTS), _special, _mixed,
    lambda r: r.choice(EDGE) * r.randint(1, 3), lambda r: chr(r.randint(32, 0x2FFF)),
]


def corpus(seed, n):
    """n strings from a fixed seed; the first few are fixed edge cases."""
    r = random.Random(seed)
    fixed = ["", " ", "  ", "\n", "\t", "a", " a", "a ", "1", "12345678901234567890",
             "<|im_start|>user\nhi<|im_end|>", "<s>", "<s><s></s>", "<|im_sta", " <s> ",
             "<|im_start|><|im_end|>", "Hello world", "  leading", "trailing  ", "👨‍👩‍👧‍👦",
             "cafe\u0301", "caf\u00e9", "\u00a0x", "x\u200by"]
    out = list(fixed)
    while len(out) < n:
        out.append(r.choice(GENERATORS)(r))
    return out[:n]
