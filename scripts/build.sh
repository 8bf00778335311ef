#!/usr/bin/env bash
# build.sh [BUILD_DIR] [cmake options...] - configures and builds bitlab.
source "$(dirname "$0")/common.sh"

dir="${1:-build}"; shift || true
cmake -S "$BITLAB_ROOT" -B "$BITLAB_ROOT/$dir" "$@" >/dev/null
cmake --build "$BITLAB_ROOT/$dir" -j"$(nproc)"
say "built $dir/bitlab"
