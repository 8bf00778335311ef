#!/usr/bin/env bash
# test.sh - the README's second command (and CI's): installs what is missing,
# builds with -Werror, runs every test (the CUDA kernels on the emulated
# device among them), the numeric ones again under another BLAS kernel family,
# then rebuilds with AddressSanitizer + UndefinedBehaviorSanitizer (and an
# API-checked Lua) and runs the suite again, and ends with the fuzzers.
source "$(dirname "$0")/common.sh"

"$BITLAB_ROOT/scripts/install_deps.sh"
py=$("$BITLAB_ROOT/scripts/python_env.sh")
"$BITLAB_ROOT/scripts/fetch_model.sh"

jobs=$(nproc)
say "release build (-Werror) and tests"
"$BITLAB_ROOT/scripts/build.sh" build -DBITLAB_WERROR=ON -DBITLAB_PYTHON="$py"
(cd "$BITLAB_ROOT/build" && ctest --output-on-failure -j"$jobs")
say "numeric tests under another BLAS kernel family and one thread"
"$BITLAB_ROOT/scripts/test_blas_matrix.sh" build --quick

say "ASan + UBSan build and tests, with an API-checked, sanitized Lua"
# Lua from Debian's source package with LUA_USE_APICHECK (scripts/lua_apicheck.sh):
# Debian's liblua is uninstrumented, so stack misuse inside it would go unseen.
# No nvcc here: the CUDA module's code runs under ASan on the emulated device
# (tests/cuda_emu, in the release build above), and its kernels compile the same
lua=$("$BITLAB_ROOT/scripts/lua_apicheck.sh")
"$BITLAB_ROOT/scripts/build.sh" build-asan -DCMAKE_BUILD_TYPE=Debug -DBITLAB_WERROR=ON \
    -DBITLAB_SANITIZE=ON -DBITLAB_CUDA=OFF -DBITLAB_LUA_DIR="$lua" -DBITLAB_PYTHON="$py"
(cd "$BITLAB_ROOT/build-asan" && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$jobs" -LE slow)

say "fuzzers (30 s per target)"
"$BITLAB_ROOT/scripts/fuzz.sh" 30
say "all tests passed"
