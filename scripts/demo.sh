#!/usr/bin/env bash
# demo.sh - the README's first command: installs what is missing, builds,
# fetches the default model and runs bitlab on it.
#
# Until the Lua experiment runtime lands this runs `bitlab generate` on the
# default model; afterwards it runs `bitlab experiments/overfit.lua`.
source "$(dirname "$0")/common.sh"

"$BITLAB_ROOT/scripts/install_deps.sh"
"$BITLAB_ROOT/scripts/build.sh" build
"$BITLAB_ROOT/scripts/fetch_model.sh"
cd "$BITLAB_ROOT"
say "build/bitlab generate --model ${DEFAULT_MODEL#$BITLAB_ROOT/} --chat --prompt ..."
exec build/bitlab generate --model "$DEFAULT_MODEL" --chat \
    --prompt "Can you provide ways to eat combinations of bananas and dragonfruits?" \
    --max-tokens 200
