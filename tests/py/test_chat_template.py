"""test_chat_template.py - bitlab's native chat template renderers against transformers.

For each published template in tests/py/chat_templates/ (see SOURCES.md) and a
set of conversations, the reference is transformers' own Jinja rendering of
that template text (render_jinja_template, what apply_chat_template calls);
bitlab's side is tests/tools/tpl_tool, which detects the family from the same
text and renders natively. Every string must match exactly. Also checks family
detection, the extracted default system prompts, selection by name, and the
errors for unknown templates, unknown names and non-alternating Llama-2 roles.
"""
import json
import os
import subprocess
import sys
import tempfile

from transformers.utils.chat_template_utils import render_jinja_template

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "chat_templates")


def tool_path():
    if os.environ.get("TPL_TOOL"):
        return os.environ["TPL_TOOL"]
    build = os.environ.get("BITLAB_BUILD_DIR", "build")
    return os.path.join(build, "tpl_tool")


# template file -> (expected kind, expected default system, bos_token, eos_token)
# bos/eos are each model's own special tokens from its tokenizer_config.json.
MODELS = {
    "smollm2": ("chatml", "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
                "<|im_start|>", "<|im_end|>"),
    "qwen2": ("chatml", "You are a helpful assistant.", None, "<|im_end|>"),
    "llama3": ("llama3", None, "<|begin_of_text|>", "<|eot_id|>"),
    "llama2": ("llama2", None, "<s>", "</s>"),
    "zephyr": ("zephyr", None, "<s>", "</s>"),
    "phi3": ("phi3", None, "<s>", "<|endoftext|>"),
}

# content that exercises the renderers' edges: newlines, non-ASCII text, and
# whitespace that Jinja's trim / str.strip remove (including Unicode spaces)
TRICKY = "  Line one\nline two: naïve café, 日本語, emoji 🦙\n\n  "
UNICODE_SPACES = "\u3000\u00a0 padded\u2003text \u00a0\u3000"


def conversations():
    u, a, s = "user", "assistant", "system"

    def m(role, content):
        return {"role": role, "content": content}

    return {
        "single": [m(u, "Hello!")],
        "system_single": [m(s, "You are terse."), m(u, "Hi")],
        "multi3": [m(u, "What is 2+2?"), m(a, "4"), m(u, "And 3+3?")],
        "system_multi5": [m(s, "Be kind.\nAlways."), m(u, "Hi"), m(a, "Hello, how can I help?"),
                          m(u, "Tell me a joke"), m(a, "Why did the llama cross the road?"),
                          m(u, "Why?")],
        "ends_assistant": [m(u, "ping"), m(a, "pong")],
        "tricky": [m(s, TRICKY), m(u, TRICKY), m(a, TRICKY), m(u, UNICODE_SPACES)],
        "tricky_nosys": [m(u, UNICODE_SPACES), m(a, " spaced "), m(u, "\tTab\t")],
        "empty_content": [m(u, ""), m(a, ""), m(u, "x")],
        "other_role": [m(u, "call it"), m("tool", "42"), m(u, "thanks")],
        # Llama-2 raises on these; the others render them
        "not_alternating": [m(u, "a"), m(u, "b")],
        "starts_assistant": [m(a, "I start"), m(u, "ok")],
        "system_not_first": [m(u, "a"), m(a, "b"), m(s, "late system"), m(a, "c")],
    }


def reference(template, messages, gen, bos, eos):
    """(text, None) or (None, error) from transformers' rendering."""
    kwargs = {}
    if bos is not None:
        kwargs["bos_token"] = bos
    if eos is not None:
        kwargs["eos_token"] = eos
    try:
        out, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                       add_generation_prompt=gen, **kwargs)
        return out[0], None
    except Exception as e:  # jinja2 TemplateError from raise_exception
        return None, str(e)


def run_tool(mode, arg, bos, eos, cases):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "cases.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"bos": bos, "eos": eos, "cases": cases}, f, ensure_ascii=False)
        p = subprocess.run([tool_path(), mode, arg, path], capture_output=True)
    stderr = p.stderr.decode(errors="replace")
    # a sanitizer report (CI builds with ASan+UBSan) may exit 1 like a refusal
    if p.returncode not in (0, 1) or "Sanitizer" in stderr or "runtime error" in stderr:
        raise RuntimeError(f"tpl_tool {mode} {arg} exited {p.returncode}: {stderr}")
    return p.returncode, json.loads(p.stdout.decode("utf-8"))


class Checker:
    def __init__(self):
        self.compared = 0
        self.failures = []

    def check(self, cond, what):
        if not cond:
            self.failures.append(what)


def compare_template(ck, label, template_path, template, bos, eos, expect_kind, expect_sys,
                     convs, mode="--file", mode_arg=None):
    cases, refs = [], []
    for cname, msgs in convs.items():
        for gen in (False, True):
            cases.append({"messages": msgs, "add_generation_prompt": gen})
            refs.append((cname, gen) + reference(template, msgs, gen, bos, eos))
    rc, out = run_tool(mode, mode_arg or template_path, bos, eos, cases)
    ck.check(rc == 0, f"{label}: tool refused the template: {out.get('error')}")
    if rc != 0:
        return
    ck.check(out["kind"] == expect_kind, f"{label}: kind {out['kind']!r} != {expect_kind!r}")
    if expect_sys is not False:
        ck.check(out["default_system"] == expect_sys,
                 f"{label}: default system {out['default_system']!r} != {expect_sys!r}")
    for (cname, gen, ref_text, ref_err), got in zip(refs, out["results"]):
        ck.compared += 1
        where = f"{label}/{cname}/gen={gen}"
        if ref_err is not None:
            ck.check("error" in got, f"{where}: transformers raised ({ref_err}) but bitlab "
                                     f"rendered {got.get('text')!r}")
        else:
            ck.check(got.get("text") == ref_text,
                     f"{where}:\n  want {ref_text!r}\n  got  {got.get('text')!r} "
                     f"{got.get('error', '')}")


def main():
    if not os.path.exists(tool_path()):
        print(f"tpl_tool not found at {tool_path()} (set BITLAB_BUILD_DIR or TPL_TOOL)")
        return 1
    ck = Checker()
    convs = conversations()

    # 1. every published template, detected from its own text
    texts = {}
    for name, (kind, default_sys, bos, eos) in MODELS.items():
        path = os.path.join(TEMPLATES, name + ".jinja")
        with open(path, encoding="utf-8") as f:
            texts[name] = f.read()
        compare_template(ck, name, path, texts[name], bos, eos, kind, default_sys, convs)

    with tempfile.TemporaryDirectory() as d:
        # 2. the Qwen2 template as a JSON-escaped source (newlines spelled \n inside
        #    the Jinja literals): same default system, same output
        escaped = texts["qwen2"].replace("\n", "\\n")
        path = os.path.join(d, "qwen2_escaped.jinja")
        with open(path, "w", encoding="utf-8") as f:
            f.write(escaped)
        compare_template(ck, "qwen2_escaped", path, escaped, None, "<|im_end|>", "chatml",
                         "You are a helpful assistant.", convs)

        # 3. a ChatML template without a default system branch
        plain = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                 "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
        path = os.path.join(d, "chatml_plain.jinja")
        with open(path, "w", encoding="utf-8") as f:
            f.write(plain)
        compare_template(ck, "chatml_plain", path, plain, None, None, "chatml", None, convs)

        # 4. selection by name with no tokens given: the family's own tokens
        for name in ("llama3", "llama2", "zephyr", "phi3"):
            kind, _, bos, eos = MODELS[name]
            rc, out = run_tool("--name", name, None, None,
                               [{"messages": convs["multi3"], "add_generation_prompt": True}])
            ref, _ = reference(texts[name], convs["multi3"], True, bos, eos)
            ck.compared += 1
            ck.check(rc == 0 and out["kind"] == kind and out["results"][0].get("text") == ref,
                     f"--name {name}: {out}")
        # by-name chatml has no default system: compare where the conversation has one
        sys_convs = {k: v for k, v in convs.items() if v[0]["role"] == "system"}
        compare_template(ck, "name:chatml", None, texts["qwen2"], None, "<|im_end|>", "chatml",
                         None, sys_convs, mode="--name", mode_arg="chatml")

        # 5. refusals
        def refused(label, mode, arg, *needles):
            rc, out = run_tool(mode, arg, None, None, [])
            msg = out.get("error", "")
            ck.check(rc == 1 and all(n in msg for n in needles),
                     f"{label}: expected an error naming {needles}, got rc={rc} {out}")

        unknown = os.path.join(d, "unknown.jinja")
        with open(unknown, "w", encoding="utf-8") as f:
            f.write("{% for m in messages %}{{ '### ' + m['role'] + ': ' + m['content'] }}"
                    "{% endfor %}")
        refused("unknown template", "--file", unknown, "<|im_start|>", "<|start_header_id|>",
                "[INST]", "<|user|>", "--template")
        llama31 = os.path.join(d, "llama31.jinja")
        with open(llama31, "w", encoding="utf-8") as f:
            f.write("{{- bos_token }}{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
                    "{{- 'Cutting Knowledge Date: December 2023\\n' }}")
        refused("llama-3.1 template", "--file", llama31, "--template llama3")
        refused("unknown name", "--name", "vicuna", "vicuna", "chatml", "llama3", "llama2",
                "zephyr", "phi3")

    for f in ck.failures:
        print("FAIL", f)
    print(f"chat templates: {ck.compared} renderings compared with transformers, "
          f"{len(ck.failures)} failures")
    return 1 if ck.failures else 0


if __name__ == "__main__":
    sys.exit(main())
