#!/usr/bin/env bash
# test.sh - the README's second command (and CI's): installs what is missing,
# builds with -Werror, runs every test, then rebuilds with AddressSanitizer +
# UndefinedBehaviorSanitizer and runs the suite again.
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

say "ASan + UBSan build and tests"
"$BITLAB_ROOT/scripts/build.sh" build-asan -DCMAKE_BUILD_TYPE=Debug -DBITLAB_WERROR=ON \
    -DBITLAB_SANITIZE=ON -DBITLAB_PYTHON="$py"
(cd "$BITLAB_ROOT/build-asan" && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$jobs" -LE slow)

say "fuzzers (30 s per target)"
"$BITLAB_ROOT/scripts/fuzz.sh" 30
say "all tests passed"
