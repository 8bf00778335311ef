#!/usr/bin/env bash
# python_env.sh - makes (once) a virtual environment with the test references
# (numpy, gguf, tokenizers, transformers, torch) and prints its python. The
# environment lives in the user cache, keyed by the requirements' hash, so
# fresh clones reuse it.
source "$(dirname "$0")/common.sh"

req="$BITLAB_ROOT/tests/requirements.txt"
key=$(sha256sum "$req" | cut -c1-12)
venv="$BITLAB_CACHE/venv-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
    say "creating the test Python environment in $venv (numpy, gguf, tokenizers, transformers, torch)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    "$venv/bin/python" -m pip install -q -r "$req" >&2
    touch "$venv/.complete"
fi
echo "$venv/bin/python"
