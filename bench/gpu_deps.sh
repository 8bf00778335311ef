#!/usr/bin/env bash
# gpu_deps.sh - bitlab's build dependencies for the lent GPU machine, which
# has CUDA, CMake and PyTorch but perhaps not the C libraries bitlab links
# (Lua 5.4, cJSON, OpenBLAS, PCRE2, ICU, ncurses) and no network.
#
#   bench/gpu_deps.sh fetch            here (Debian, network): apt-get download
#                                      the .debs into build-gpudeps/ (git-ignored);
#                                      name build-gpudeps in the device call's carry
#   source bench/gpu_deps.sh env [DIR] there: unpack them into /tmp/gpudeps
#                                      (dpkg -x, never into /) and export the
#                                      compiler, pkg-config, CMake and loader paths
#
# Debian bookworm's libraries need glibc ≥ 2.34, so they run on the image's
# newer Ubuntu; run_gpu_bench.sh uses them only when pkg-config lacks a dependency.

GPUDEPS_PKGS=(liblua5.4-0 liblua5.4-dev libcjson1 libcjson-dev
              libopenblas0 libopenblas0-pthread libopenblas-dev libopenblas-pthread-dev
              libgfortran5 libquadmath0
              libpcre2-8-0 libpcre2-dev libicu72 libicu-dev
              libncurses6 libncursesw6 libtinfo6 libncurses-dev
              pkgconf-bin libpkgconf3)

gpudeps_fetch() {
    local root dir
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    dir="$root/build-gpudeps"
    mkdir -p "$dir" || return 1
    (cd "$dir" && apt-get download "${GPUDEPS_PKGS[@]}") || {
        echo "gpu_deps: apt-get download failed (is apt-get update done, the network there?)" >&2
        return 1
    }
    du -sh "$dir"
}

gpudeps_env() {
    local debs="${1:-build-gpudeps}" s=/tmp/gpudeps ma=x86_64-linux-gnu f
    if ! ls "$debs"/*.deb >/dev/null 2>&1; then
        echo "gpu_deps: no .deb files in $debs (run 'bench/gpu_deps.sh fetch' where there is network)" >&2
        return 1
    fi
    mkdir -p "$s"
    for f in "$debs"/*.deb; do dpkg -x "$f" "$s" || return 1; done
    # .pc files name /usr/...: the sysroot prefixes them; keep /usr/include
    # and /usr/lib in the flags (pkgconf would drop them as system paths)
    export PKG_CONFIG_SYSROOT_DIR="$s"
    export PKG_CONFIG_LIBDIR="$s/usr/lib/$ma/pkgconfig:$s/usr/lib/$ma/openblas-pthread/pkgconfig:$s/usr/share/pkgconfig"
    export PKG_CONFIG_SYSTEM_INCLUDE_PATH=/nonexistent PKG_CONFIG_SYSTEM_LIBRARY_PATH=/nonexistent
    export PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1
    export CPATH="$s/usr/include:$s/usr/include/$ma${CPATH:+:$CPATH}"
    export LIBRARY_PATH="$s/usr/lib/$ma:$s/usr/lib/$ma/openblas-pthread:$s/lib/$ma${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export LD_LIBRARY_PATH="$s/usr/lib/$ma:$s/usr/lib/$ma/openblas-pthread:$s/lib/$ma${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export CMAKE_PREFIX_PATH="$s/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    command -v pkg-config >/dev/null 2>&1 || export PKG_CONFIG_EXECUTABLE="$s/usr/bin/pkgconf" \
        PKG_CONFIG="$s/usr/bin/pkgconf"
    echo "gpu_deps: unpacked $(find "$debs" -maxdepth 1 -name "*.deb" | wc -l) packages into $s"
}

case "${1:-}" in
    fetch) gpudeps_fetch ;;
    env) shift; gpudeps_env "$@" ;;
    *) echo "usage: bench/gpu_deps.sh fetch | source bench/gpu_deps.sh env [DEBDIR]" >&2
       (return 0 2>/dev/null) && return 2 || exit 2 ;;
esac
