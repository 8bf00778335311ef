#!/usr/bin/env bash
# test_blas_matrix.sh [BUILD_DIR] [--quick] - runs the test suite of an existing
# build once per OpenBLAS kernel family (OPENBLAS_CORETYPE Haswell, SkylakeX,
# Zen) and BLAS thread count (1, 2) that this CPU can execute.
#
# Every comparison in the suite must hold whatever kernel OpenBLAS picks: the
# kernels sum in different orders, so float32 results differ in their last
# bits from one machine to the next. This script is how that is checked on
# one machine. --quick (what test.sh runs in CI) runs only the tests that
# compare floating-point results with a reference, under the settings the
# machine's default does not already cover; without it, the whole suite
# under every setting (about 6 x the release suite's time).
source "$(dirname "$0")/common.sh"

dir="build"
quick=0
for a in "$@"; do
    case "$a" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) dir="$a" ;;
    esac
done
[ -x "$BITLAB_ROOT/$dir/bitlab" ] || die "no build in $dir/ (run scripts/build.sh $dir first)"

# which kernel families this CPU can run (a family it cannot dies of SIGILL)
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { for f in "$@"; do [[ " $flags " == *" $f "* ]] || return 1; done; }
cores=()
has avx2 fma && cores+=(Haswell Zen)
has avx512f avx512bw avx512vl avx512dq && cores+=(SkylakeX)
skipped=()
for c in Haswell SkylakeX Zen; do
    [[ " ${cores[*]} " == *" $c "* ]] || skipped+=("$c")
done
[ ${#skipped[@]} -eq 0 ] || say "this CPU cannot run OpenBLAS's ${skipped[*]} kernels: not tested here"
[ ${#cores[@]} -gt 0 ] || { say "no AVX2: only the generic kernels, nothing to compare"; exit 0; }

# the tests whose comparisons depend on float32 summation order
numeric='test_device_step|test_model_grad|test_grad_check|test_train_converges|test_student_generate|py_test_(eval|distill_step_parity|train_ops_ref|forward_parity|export_gguf|export_packed|trace|model_load)'
settings=()
for c in "${cores[@]}"; do
    for t in 1 2; do settings+=("$c:$t"); done
done
if [ $quick -eq 1 ]; then
    # the default run already used OpenBLAS's own choice with every core: here
    # another family than that one, with one thread
    own=$(python3 -c 'import ctypes; l = ctypes.CDLL("libopenblas.so.0"); l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())' 2>/dev/null || true)
    other=${cores[0]}
    for c in "${cores[@]}"; do [ "${c,,}" != "${own,,}" ] && { other=$c; break; }; done
    settings=("$other:1")
fi

failed=()
for s in "${settings[@]}"; do
    c=${s%:*}; t=${s#*:}
    say "OPENBLAS_CORETYPE=$c, $t BLAS thread(s)"
    sel=()
    [ $quick -eq 1 ] && sel=(-R "$numeric")
    if ! (cd "$BITLAB_ROOT/$dir" && OPENBLAS_CORETYPE=$c OPENBLAS_NUM_THREADS=$t \
            ctest --output-on-failure -j"$(nproc)" "${sel[@]}"); then
        failed+=("$s")
    fi
done
[ ${#failed[@]} -eq 0 ] || die "tests failed under: ${failed[*]} (core:threads)"
say "the suite passed under ${settings[*]} (core:threads)"
