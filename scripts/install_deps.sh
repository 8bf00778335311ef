#!/usr/bin/env bash
# install_deps.sh - installs the Debian packages bitlab builds and tests with,
# only those that are missing (apt-get as root, or through sudo).
source "$(dirname "$0")/common.sh"

PACKAGES=(build-essential cmake pkg-config
          liblua5.4-dev libcjson-dev libncurses-dev libopenblas-dev libpcre2-dev libicu-dev
          python3 python3-venv python3-pip tmux
          openmpi-bin libopenmpi-dev  # mpirun -np N bitlab SCRIPT.lua (src/dist)
          clang libclang-rt-dev)  # the fuzzers (scripts/fuzz.sh): clang + libFuzzer's runtime

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    say "Debian packages: all present"
    exit 0
fi
say "installing Debian packages: ${missing[*]}"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
