#!/usr/bin/env bash
# demo.sh - the README's first command: installs what is missing, builds,
# fetches the default model and runs `bitlab experiments/overfit.lua` on it
# (the dashboard in a terminal, progress lines otherwise). Arguments after
# the script name are passed to bitlab, e.g. `scripts/demo.sh --headless`.
source "$(dirname "$0")/common.sh"

"$BITLAB_ROOT/scripts/install_deps.sh"
"$BITLAB_ROOT/scripts/build.sh" build
"$BITLAB_ROOT/scripts/fetch_model.sh"
cd "$BITLAB_ROOT"
say "build/bitlab experiments/overfit.lua $*"
exec build/bitlab experiments/overfit.lua "$@"
