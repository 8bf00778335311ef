#!/usr/bin/env bash
# run_gpu_bench.sh - everything issue #5 measures on a lent GPU machine, in
# one call of the device tool: build bitlab with CUDA, run the backend parity
# harness (and its --perf table) and compute-sanitizer's memcheck on it,
# then the step benchmark
# for each config: bitlab `bench step --device cuda` beside the PyTorch
# baseline (bench/bench_step_torch.py) eager and under torch.compile, and
# bitlab's teacher forward (`bench forward --device cuda`).
# A failing stage is recorded and the script goes on.
#
#   bash bench/run_gpu_bench.sh [STAGE ...]
#     stages: build check torch-eager torch-compile bitlab table   (default: all, in this order)
#     env:    BENCH_CONFIGS="default 1b"  BENCH_BATCH=8 BENCH_SEQ=512
#             BENCH_WARMUP=3 BENCH_ITERS=20
#             DEADLINE_S=540   no new run starts after this many seconds, so that
#                              the table is written inside the tool's 600 s limit
#             OUT              where results go (the device tool sets it; default
#                              build-gpubench-out/)
#             BENCH_DEVICE=cuda  (cpu: a smoke test of this script without a GPU)
#             BENCH_BUILD_DIR=build-gpu
#
# Writes $OUT/results.jsonl (one record per line: bench/gpu_table.py),
# $OUT/RESULTS.md (the markdown table of this call's records) and
# $OUT/logs.txt (every command's output). Records of several calls merge
# with `python3 bench/gpu_table.py table a.jsonl b.jsonl`.
#
# Device time: a fresh machine has no build and no inductor cache. The
# compile runs dominate (minutes each); where one call would not fit, split:
#   call 1: bash bench/run_gpu_bench.sh build check bitlab torch-eager
#   call 2: bash bench/run_gpu_bench.sh torch-compile
# If the machine lacks bitlab's C libraries, carry build-gpudeps
# (bench/gpu_deps.sh fetch, here) and the build stage unpacks it.
set -u
cd "$(dirname "$0")/.." || exit 1

PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/build-gpubench-out}
CONFIGS=${BENCH_CONFIGS:-default 1b}
BATCH=${BENCH_BATCH:-8}
SEQ=${BENCH_SEQ:-512}
WARMUP=${BENCH_WARMUP:-3}
ITERS=${BENCH_ITERS:-20}
DEADLINE_S=${DEADLINE_S:-540}
DEVICE=${BENCH_DEVICE:-cuda}
BUILD=${BENCH_BUILD_DIR:-build-gpu}
LOGS=/tmp/gpubench-logs
MODELS=/tmp/gpubench-models
export PYTHONUNBUFFERED=1

mkdir -p "$OUT" "$LOGS" "$MODELS"
RES="$OUT/results.jsonl"
: >"$RES"
STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=(build check torch-eager torch-compile bitlab table)

say() { echo "== $(date +%H:%M:%S) [${SECONDS}s] $*"; }

# run NAME LIMIT_S CMD...: runs CMD with its output in $LOGS/NAME.log, no
# longer than LIMIT_S nor past the deadline; sets RC (124: timed out,
# 125: not started, deadline)
run() {
    local name=$1 limit=$2
    shift 2
    local left=$((DEADLINE_S - SECONDS))
    if [ "$left" -lt 30 ]; then
        echo "not started: ${SECONDS}s of ${DEADLINE_S}s used" >"$LOGS/$name.log"
        RC=125
        say "$name: skipped (deadline)"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "$name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    RC=$?
    say "$name: exit $RC"
    tail -n 3 "$LOGS/$name.log"
}

check() { "$PY" bench/gpu_table.py check --name "$1" --rc "$RC" --log "$LOGS/$2.log" >>"$RES"; }
record() { "$PY" bench/gpu_table.py record --impl "$1" --mode "$2" --config "$3" --rc "$RC" --log "$LOGS/$4.log" >>"$RES"; }

stage_build() {
    local deps=(lua5.4 libcjson openblas libpcre2-8 icu-uc)
    if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists "${deps[@]}" 2>/dev/null; then
        if ls build-gpudeps/*.deb >/dev/null 2>&1; then
            # shellcheck source=bench/gpu_deps.sh
            source bench/gpu_deps.sh env build-gpudeps
        else
            say "bitlab's C libraries are missing and build-gpudeps/ was not carried; the build will fail"
        fi
    fi
    run cmake 180 cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBITLAB_CUDA=ON
    check "cmake (BITLAB_CUDA=ON)" cmake
    [ "$RC" -ne 0 ] && return
    run make 420 make -C "$BUILD" -j"$(nproc)"
    check "build (bitlab + tests, CUDA)" make
}

stage_check() {
    local t="$BUILD/test_backend_ops"
    if [ ! -x "$t" ]; then
        echo "$t: not built (no parity harness in this tree, or the build failed)" >"$LOGS/backend_ops.log"
        RC=127
        check "test_backend_ops (CPU vs CUDA parity)" backend_ops
        return
    fi
    run backend_ops 240 "$t"
    "$PY" bench/gpu_table.py check --name "test_backend_ops (CPU vs CUDA parity)" --rc "$RC" \
        --log "$LOGS/backend_ops.log" --keep-tail --lines 30 >>"$RES"
    run backend_ops_perf 120 "$t" --perf
    "$PY" bench/gpu_table.py check --name "test_backend_ops --perf (µs per op)" --rc "$RC" \
        --log "$LOGS/backend_ops_perf.log" --keep-tail --lines 60 >>"$RES"
    if command -v compute-sanitizer >/dev/null 2>&1; then
        run memcheck 300 compute-sanitizer --tool memcheck --error-exitcode 99 "$t"
    else
        echo "compute-sanitizer: not on PATH" >"$LOGS/memcheck.log"
        RC=127
    fi
    check "compute-sanitizer memcheck test_backend_ops" memcheck
}

stage_torch() {     # $1: eager | compile
    local mode=$1 c flag=() limit=180 dtype=bf16
    [ "$mode" = compile ] && flag=(--compile) && limit=420
    [ "$DEVICE" = cpu ] && dtype=fp32
    for c in $CONFIGS; do
        run "torch-$mode-$c" "$limit" "$PY" bench/bench_step_torch.py --device "$DEVICE" --dtype "$dtype" \
            --config "$c" --batch "$BATCH" --seq "$SEQ" --warmup "$WARMUP" --iters "$ITERS" "${flag[@]}"
        record torch "$mode" "$c" "torch-$mode-$c"
    done
}

stage_bitlab() {
    local c exe="$BUILD/bitlab"
    for c in $CONFIGS; do
        if [ ! -x "$exe" ]; then
            echo "$exe: not built" >"$LOGS/bitlab-$c.log"
            RC=127
        else
            # the real default model does not travel (models/ is ignored and
            # over the size limit): random weights of the same shape
            run "model-$c" 240 "$PY" bench/make_bench_model.py --config "$c" "$MODELS/$c"
            if [ "$RC" -eq 0 ]; then
                run "bitlab-fwd-$c" 180 "$exe" bench forward --device "$DEVICE" --model "$MODELS/$c" \
                    --batch "$BATCH" --seq "$SEQ" --iters "$ITERS"
                record bitlab forward "$c" "bitlab-fwd-$c"
                run "bitlab-$c" 300 "$exe" bench step --device "$DEVICE" --model "$MODELS/$c" \
                    --batch "$BATCH" --seq "$SEQ" --warmup "$WARMUP" --iters "$ITERS"
            else
                cp "$LOGS/model-$c.log" "$LOGS/bitlab-$c.log"
            fi
            rm -rf "${MODELS:?}/$c"
        fi
        record bitlab step "$c" "bitlab-$c"
    done
}

stage_table() {
    "$PY" bench/gpu_table.py table "$RES" >"$OUT/RESULTS.md" 2>&1
    for f in "$LOGS"/*.log; do
        [ -e "$f" ] && { echo "===== $(basename "$f")"; cat "$f"; }
    done >"$OUT/logs.txt"
}

"$PY" bench/gpu_table.py meta >>"$RES"
nvidia-smi || true
for s in "${STAGES[@]}"; do
    case "$s" in
        build) stage_build ;;
        check) stage_check ;;
        torch-eager) stage_torch eager ;;
        torch-compile) stage_torch compile ;;
        bitlab) stage_bitlab ;;
        table) ;;
        *) echo "run_gpu_bench: unknown stage '$s' (build check torch-eager torch-compile bitlab table)" >&2
           exit 2 ;;
    esac
done
stage_table
say "done"
cat "$OUT/RESULTS.md"
