#!/usr/bin/env bash
# run_gpu_bench.sh - the whole GPU run of issues #5 and #13 in ONE call of
# the device tool, under 8 minutes on a lent H100/H200 (no network there):
#   build     configure + build bitlab, libbitlab_cuda.so and the two parity
#             harnesses for the card's arch only (nvidia-smi compute_cap ->
#             -DCMAKE_CUDA_ARCHITECTURES=90), with -Werror (0 spills, 0 stack)
#   parity    test_backend_ops (every op vs the CPU), test_cuda_step (a whole
#             distillation step vs the CPU), test_backend_ops --perf
#   sanitize  compute-sanitizer memcheck (both harnesses), racecheck and
#             synccheck (test_backend_ops: every kernel) - the image's
#             compute-sanitizer, else the carried wheel in build-gpusan/
#   overfit   bitlab experiments/overfit.lua --device cuda --headless on a
#             tiny random model, when the binary accepts --device for scripts
#             (skipped with a line saying so when it refuses it)
#   bitlab    bitlab bench step --device cuda, without and with
#             --ternary-fast-path, for both shapes (default, 1b) at 8 x 512,
#             on random-weight folders (models/ does not travel)
#   torch-eager / torch-compile
#             bench/bench_step_torch.py (the PyTorch baseline) eager and under
#             torch.compile, both shapes (skipped, saying so, when torch with
#             CUDA is not importable there)
#   forward   bitlab bench forward --device cuda (teacher forward), both shapes
#   (torch.compile's first, cold compilation of both shapes runs in the
#   background during build..overfit, into its own inductor cache; the
#   warm-wait stage waits for it before anything is timed, and torch-compile
#   is timed last, from that cache; its cold compile time is reported too)
# then writes bench/RESULTS.md (device, driver, date, every figure) and
# copies it with the records and the logs to $OUT.
#
# Every stage has its own time budget and every command in it its own
# timeout (capped by the stage's budget and by DEADLINE_S for the whole run),
# so one hang cannot eat the run; a failing command is recorded and the run
# goes on. One summary line per stage and the total time are printed at the
# end. Stages past the deadline are listed as "skipped (deadline)".
#
# THE DEVICE CALL (prepare here first: `bash bench/run_gpu_bench.sh fetch`,
# then check `bash bench/run_gpu_bench.sh --dry-run`):
#
#   run(command="bash bench/run_gpu_bench.sh",
#       carry=["build-gpudeps", "build-gpusan"], timeout_s=540)
#
#   then, here: cp <files_at>/RESULTS.md bench/RESULTS.md
#   (the tree there is a copy: only $OUT comes back; <files_at>/logs.txt has
#   every command's output, <files_at>/results.jsonl the records)
#
# Usage:
#   bash bench/run_gpu_bench.sh [--dry-run] [STAGE ...]
#     STAGE: build parity sanitize overfit warm-wait bitlab torch-eager
#            forward torch-compile (default: all, in this order)
#     --dry-run  print the stages, their commands and time budgets; run nothing
#   bash bench/run_gpu_bench.sh fetch     HERE (network): the sanitizer wheel
#            into build-gpusan/, bitlab's C libraries into build-gpudeps/
#            (bench/gpu_deps.sh fetch), then the packaging check
#   bash bench/run_gpu_bench.sh package   HERE: what the call carries, and
#            whether it fits the tool (<= 8 carried paths, <= 64 MiB in all)
# Environment:
#   DEADLINE_S=470      no command runs past this many seconds after the start
#   BENCH_CUDA_ARCH=90  the arch to build (default: nvidia-smi's compute_cap)
#   BENCH_CONFIGS="default 1b"  BENCH_BATCH=8  BENCH_SEQ=512
#   BENCH_WARMUP=3  BENCH_ITERS=20
#   BENCH_COMPILE_WARM=1  (0: no background compilation)  BENCH_COMPILE_WARM_S=150
#   BENCH_SLOW=1        (N: every budget, limit and the deadline times N)
#   BENCH_DEVICE=cuda   (cpu: a smoke test of the bitlab/torch stages here,
#                       with BENCH_CONFIGS=tiny and a small batch)
#   BENCH_BUILD_DIR=build-gpu   OUT (the device tool sets it; default
#                       build-gpubench-out/)   PYTHON=python3
#   BENCH_RESULTS=bench/RESULTS.md  where the markdown goes (besides $OUT)
set -u
cd "$(dirname "$0")/.." || exit 1

DRY=0
STAGES=()
for a in "$@"; do
    case $a in
    --dry-run|-n) DRY=1 ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run_gpu_bench: unknown option '$a' (--dry-run, --help)" >&2; exit 2 ;;
    *) STAGES+=("$a") ;;
    esac
done
ALL_STAGES=(build parity sanitize overfit warm-wait bitlab torch-eager forward torch-compile)
[ ${#STAGES[@]} -eq 0 ] && STAGES=("${ALL_STAGES[@]}")

PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/build-gpubench-out}
CONFIGS=${BENCH_CONFIGS:-default 1b}
BATCH=${BENCH_BATCH:-8}
SEQ=${BENCH_SEQ:-512}
WARMUP=${BENCH_WARMUP:-3}
ITERS=${BENCH_ITERS:-20}
# BENCH_SLOW=N multiplies every budget, limit and the deadline by N (a
# rehearsal on a slower machine, e.g. the build stage on 2 cores: 3)
SLOW=${BENCH_SLOW:-1}
DEADLINE_S=${DEADLINE_S:-$((470 * SLOW))}
DEVICE=${BENCH_DEVICE:-cuda}
BUILD=${BENCH_BUILD_DIR:-build-gpu}
RESULTS_MD=${BENCH_RESULTS:-bench/RESULTS.md}
CARRY=(build-gpudeps build-gpusan)     # what the device call names in carry
LOGS=/tmp/gpubench-logs
MODELS=/tmp/gpubench-models
export PYTHONUNBUFFERED=1
# the real module beside the executables, never the emulated one (tests/cuda_emu)
unset BITLAB_CUDA_MODULE

# each stage's budget in seconds (the deadline caps them all); the sum of
# the budgets is over the deadline on purpose: the limits are for hangs,
# the expected times (bench/README.md) add up to about 5 minutes
declare -A BUDGET=([build]=150 [parity]=90 [sanitize]=150 [overfit]=40 [warm-wait]=90 [bitlab]=130
                   [torch-eager]=60 [forward]=30 [torch-compile]=120)
# torch.compile's cold compilation (minutes) runs in the background from the
# start, beside the build, parity, sanitize and overfit stages (which time
# nothing), into its own inductor cache; warm-wait then waits for it (and
# ends it if it overruns) so that no timed stage shares the machine, and the
# timed torch-compile stage compiles from that cache. BENCH_COMPILE_WARM=0
# turns it off (torch-compile then compiles cold inside its own budget).
WARM=${BENCH_COMPILE_WARM:-1}
WARM_LIMIT=${BENCH_COMPILE_WARM_S:-150}   # per config
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/gpubench-inductor}
WARM_PID=""

say() { echo "== $(date +%H:%M:%S) [${SECONDS}s] $*"; }

# ---------------------------------------------------------------------------
# stages and commands: stage_begin NAME / run NAME LIMIT CMD... / stage_end

SUMMARY=()
STAGE=""
STAGE_T0=0
STAGE_END=0
STAGE_NOTE=""
STAGE_RUNS=0
STAGE_FAILS=0
STAGE_SKIPS=0

stage_begin() {
    STAGE=$1
    STAGE_T0=$SECONDS
    BUDGET[$1]=$((BUDGET[$1] * SLOW))
    STAGE_END=$((SECONDS + BUDGET[$1]))
    [ "$STAGE_END" -gt "$DEADLINE_S" ] && STAGE_END=$DEADLINE_S
    STAGE_NOTE=""
    STAGE_RUNS=0 STAGE_FAILS=0 STAGE_SKIPS=0
    if [ "$DRY" = 1 ]; then
        echo
        echo "stage $1 (budget ${BUDGET[$1]} s)"
    else
        say "stage $1 (budget ${BUDGET[$1]} s, until ${STAGE_END} s)"
    fi
}

# a note for the stage's summary line (why something was skipped)
stage_note() {
    STAGE_NOTE="${STAGE_NOTE:+$STAGE_NOTE; }$*"
    [ "$DRY" = 1 ] && echo "    note: $*" || say "$STAGE: $*"
}

stage_end() {
    local took=$((SECONDS - STAGE_T0)) res
    if [ "$STAGE_FAILS" -gt 0 ]; then res="FAIL ($STAGE_FAILS of $STAGE_RUNS commands failed)"
    elif [ "$STAGE_RUNS" -eq 0 ]; then res="skipped"
    else res="ok ($STAGE_RUNS commands)"; fi
    [ "$STAGE_SKIPS" -gt 0 ] && res="$res, $STAGE_SKIPS not started (deadline)"
    [ -n "$STAGE_NOTE" ] && res="$res - $STAGE_NOTE"
    SUMMARY+=("$(printf '%-14s %4d s of %3d s  %s' "$STAGE" "$took" "${BUDGET[$STAGE]}" "$res")")
    [ "$DRY" = 1 ] || say "stage $STAGE: $res in ${took} s"
}

# run NAME LIMIT CMD...: CMD with its output in $LOGS/NAME.log, for at most
# LIMIT seconds and never past the stage's budget nor the deadline; sets RC
# (124: timed out, 125: not started, deadline or budget spent)
run() {
    local name=$1 limit=$(($2 * SLOW))
    shift 2
    if [ "$DRY" = 1 ]; then
        printf '    %-22s %4d s  %s\n' "$name" "$limit" "$*"
        RC=0
        return
    fi
    local left=$((STAGE_END - SECONDS))
    if [ "$left" -lt 10 ]; then
        echo "not started: ${SECONDS}s used, stage $STAGE until ${STAGE_END}s, deadline ${DEADLINE_S}s" \
            >"$LOGS/$name.log"
        RC=125
        STAGE_SKIPS=$((STAGE_SKIPS + 1))
        say "$name: not started (stage budget or deadline)"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "$name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    RC=$?
    STAGE_RUNS=$((STAGE_RUNS + 1))
    # 77: the harness found no device (counted as a failure here: this run
    # is on a GPU machine)
    [ "$RC" -ne 0 ] && STAGE_FAILS=$((STAGE_FAILS + 1))
    say "$name: exit $RC$([ "$RC" = 124 ] && echo ' (timed out)')"
    tail -n 3 "$LOGS/$name.log"
}

check() {
    [ "$DRY" = 1 ] && return
    "$PY" bench/gpu_table.py check --name "$1" --rc "$RC" --log "$LOGS/$2.log" "${@:3}" >>"$RES"
}
record() {
    [ "$DRY" = 1 ] && return
    "$PY" bench/gpu_table.py record --impl "$1" --mode "$2" --config "$3" --rc "$RC" \
        --log "$LOGS/$4.log" >>"$RES"
}
# a check that did not run, with the reason as its log
not_run() {  # NAME LOGNAME RC REASON
    [ "$DRY" = 1 ] && return
    echo "$4" >"$LOGS/$2.log"
    RC=$3
    check "$1" "$2"
}

# ---------------------------------------------------------------------------

# the card's compute capability as CMake wants it ("9.0" -> 90), or nothing
cuda_arch() {
    if [ -n "${BENCH_CUDA_ARCH:-}" ]; then echo "$BENCH_CUDA_ARCH"; return; fi
    command -v nvidia-smi >/dev/null 2>&1 || return 0
    nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .\r'
}

stage_build() {
    local deps=(lua5.4 libcjson openblas libpcre2-8 icu-uc) arch archflag=()
    if [ "$DRY" = 0 ] && { ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists "${deps[@]}" 2>/dev/null; }; then
        if ls build-gpudeps/*.deb >/dev/null 2>&1; then
            # shellcheck source=bench/gpu_deps.sh
            source bench/gpu_deps.sh env build-gpudeps
        else
            stage_note "bitlab's C libraries are missing and build-gpudeps/ was not carried: the build will fail"
        fi
    fi
    arch=$(cuda_arch)
    if [ -n "$arch" ]; then
        archflag=(-DCMAKE_CUDA_ARCHITECTURES="$arch")
        stage_note "CUDA arch $arch${BENCH_CUDA_ARCH:+ (BENCH_CUDA_ARCH)}"
    elif [ "$DRY" = 1 ]; then
        stage_note "CUDA arch: nvidia-smi --query-gpu=compute_cap there (9.0 -> -DCMAKE_CUDA_ARCHITECTURES=90)"
        archflag=(-DCMAKE_CUDA_ARCHITECTURES=90)
    else
        stage_note "no compute_cap from nvidia-smi: CMake's default archs (80 + 90)"
    fi
    # the emulated device (tests/cuda_emu) is CI's, not this machine's
    run cmake 60 cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBITLAB_CUDA=ON -DBITLAB_WERROR=ON \
        -DBITLAB_CUDA_EMU=OFF "${archflag[@]}"
    check "cmake (BITLAB_CUDA=ON, -Werror${arch:+, arch $arch})" cmake
    [ "$RC" -ne 0 ] && return
    if [ "$DRY" = 0 ] && [ -n "$arch" ]; then
        # CMakeLists.txt must leave a -DCMAKE_CUDA_ARCHITECTURES alone
        local fl="$BUILD/CMakeFiles/bitlab_cuda_kernels.dir/flags.make"
        if grep -q "compute_$arch" "$fl" 2>/dev/null && [ "$(grep -o 'arch=compute_[0-9]*' "$fl" | sort -u | wc -l)" -gt 1 ]; then
            stage_note "CMakeLists.txt overrode CMAKE_CUDA_ARCHITECTURES=$arch: building every arch it lists (slower)"
        fi
    fi
    run make 140 cmake --build "$BUILD" -j "$(nproc)" --target bitlab test_backend_ops test_cuda_step
    check "build (bitlab, libbitlab_cuda.so, test_backend_ops, test_cuda_step)" make
}

# the harness's exit status 77 means "no CUDA device": on this machine a failure
stage_parity() {
    local t
    for t in test_backend_ops test_cuda_step; do
        if [ "$DRY" = 0 ] && [ ! -x "$BUILD/$t" ]; then
            not_run "$t (CPU vs CUDA parity)" "$t" 127 "$BUILD/$t: not built"
            STAGE_FAILS=$((STAGE_FAILS + 1))
            continue
        fi
        run "$t" 60 "$BUILD/$t"
        check "$t (CPU vs CUDA parity)" "$t" --keep-tail --lines 30
    done
    if [ "$DRY" = 1 ] || [ -x "$BUILD/test_backend_ops" ]; then
        run backend_ops_perf 40 "$BUILD/test_backend_ops" --perf
        check "test_backend_ops --perf (µs per op)" backend_ops_perf --keep-tail --lines 60
    fi
}

# the compute-sanitizer to use: PATH's, else the carried wheel's (unpacked once)
sanitizer() {
    if command -v compute-sanitizer >/dev/null 2>&1; then
        command -v compute-sanitizer
        return
    fi
    local c
    for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
        [ -x "$c" ] && { echo "$c"; return; }
    done
    local whl
    whl=$(ls build-gpusan/nvidia_cuda_sanitizer_api-*.whl 2>/dev/null | head -n 1)
    [ -n "$whl" ] || return 0
    if [ ! -x /tmp/gpusan/nvidia/cu13/bin/compute-sanitizer ]; then
        mkdir -p /tmp/gpusan && "$PY" -m zipfile -e "$whl" /tmp/gpusan >/dev/null 2>&1
        chmod +x /tmp/gpusan/nvidia/cu13/bin/* 2>/dev/null
    fi
    [ -x /tmp/gpusan/nvidia/cu13/bin/compute-sanitizer ] && echo /tmp/gpusan/nvidia/cu13/bin/compute-sanitizer
}

stage_sanitize() {
    local san t tool limit
    if [ "$DRY" = 1 ]; then
        san="compute-sanitizer"
        stage_note "compute-sanitizer: PATH's, else /usr/local/cuda's, else build-gpusan/*.whl unpacked into /tmp/gpusan"
    else
        san=$(sanitizer)
        if [ -z "$san" ]; then
            stage_note "compute-sanitizer: not on PATH and build-gpusan/ not carried"
            for tool in memcheck racecheck synccheck; do
                not_run "compute-sanitizer $tool" "san-$tool" 127 "compute-sanitizer: not on PATH and build-gpusan/ not carried"
            done
            STAGE_FAILS=1
            return
        fi
        stage_note "$("$san" --version 2>/dev/null | sed -n 's/^Version \([^ ]*\).*/compute-sanitizer \1/p')"
    fi
    # memcheck over both harnesses; racecheck (shared-memory hazards) and
    # synccheck (barriers, warp-synchronous calls) over test_backend_ops,
    # which runs every kernel on several shapes (test_cuda_step runs the
    # same kernels on larger ones: too slow under racecheck for the budget)
    for spec in "memcheck test_backend_ops 50" "memcheck test_cuda_step 40" \
                "racecheck test_backend_ops 50" "synccheck test_backend_ops 40"; do
        read -r tool t limit <<<"$spec"
        if [ "$DRY" = 0 ] && [ ! -x "$BUILD/$t" ]; then
            not_run "compute-sanitizer $tool $t" "san-$tool-$t" 127 "$BUILD/$t: not built"
            STAGE_FAILS=$((STAGE_FAILS + 1))
            continue
        fi
        run "san-$tool-$t" "$limit" "$san" --tool "$tool" --error-exitcode 99 --print-limit 50 "$BUILD/$t"
        check "compute-sanitizer $tool $t" "san-$tool-$t"
    done
}

stage_overfit() {
    local exe="$BUILD/bitlab" out
    if [ "$DRY" = 1 ]; then
        run overfit-probe 10 "$exe" experiments/overfit.lua --device cuda --help
        stage_note "skipped with a line when the probe refuses --device (today: 'unknown option --device')"
    else
        [ -x "$exe" ] || { stage_note "$exe: not built"; STAGE_FAILS=1; return; }
        out=$("$exe" experiments/overfit.lua --device cuda --help 2>&1)
        if [ $? -ne 0 ]; then
            # a skip, not a failure: said in the stage's summary line (RESULTS.md)
            stage_note "SKIPPED: this bitlab refuses --device for scripts: $(printf '%s' "$out" | head -n 1)"
            return
        fi
    fi
    run overfit-model 30 "$PY" tests/py/make_tiny_model.py "$MODELS/tiny" --fmt hf
    local mdir="$MODELS/tiny/HF_DIR"   # the folder it prints
    [ "$DRY" = 0 ] && mdir=$(grep -m1 "^$MODELS/tiny/" "$LOGS/overfit-model.log")
    if [ "$RC" -eq 0 ] && [ -n "$mdir" ]; then
        run overfit 60 "$exe" experiments/overfit.lua --device cuda --headless -- "$mdir" 30 16
        check "bitlab experiments/overfit.lua --device cuda --headless (tiny model, 30 steps)" overfit \
            --keep-tail --lines 20
    else
        check "tests/py/make_tiny_model.py (overfit's model)" overfit-model
    fi
}

# torch with CUDA importable here? (for the torch stages and make_bench_model.py)
torch_ok() {
    [ "$DRY" = 1 ] && return 0
    local want="torch.cuda.is_available()"
    [ "$DEVICE" = cpu ] && want="True"
    "$PY" -c "import sys, torch; sys.exit(0 if $want else 1)" >/dev/null 2>&1
}

stage_bitlab() {
    local c exe="$BUILD/bitlab" dir
    if [ "$DRY" = 0 ] && [ ! -x "$exe" ]; then
        stage_note "$exe: not built"
        for c in $CONFIGS; do
            RC=127; echo "$exe: not built" >"$LOGS/bitlab-$c.log"; record bitlab step "$c" "bitlab-$c"
        done
        STAGE_FAILS=1
        return
    fi
    if ! torch_ok; then  # make_bench_model.py draws the weights with torch
        stage_note "SKIPPED: torch is not importable with $PY (make_bench_model.py needs it)"
        return
    fi
    for c in $CONFIGS; do
        dir="$MODELS/$c"
        # the real default model does not travel (models/ is ignored and over
        # the size limit): random weights of the same shape
        run "model-$c" 40 "$PY" bench/make_bench_model.py --config "$c" "$dir"
        if [ "$RC" -ne 0 ]; then
            cp "$LOGS/model-$c.log" "$LOGS/bitlab-$c.log" 2>/dev/null
            record bitlab step "$c" "bitlab-$c"
            continue
        fi
        run "bitlab-$c" 35 "$exe" bench step --device "$DEVICE" --model "$dir" \
            --batch "$BATCH" --seq "$SEQ" --warmup "$WARMUP" --iters "$ITERS"
        record bitlab step "$c" "bitlab-$c"
        run "bitlab-ternary-$c" 35 "$exe" bench step --device "$DEVICE" --model "$dir" --ternary-fast-path \
            --batch "$BATCH" --seq "$SEQ" --warmup "$WARMUP" --iters "$ITERS"
        record bitlab step-ternary "$c" "bitlab-ternary-$c"
        # kept for the forward stage
    done
}

stage_torch() {     # $1: eager | compile
    local mode=$1 c flag=() limit=30 dtype=bf16
    # compiled from the background run's cache: 60 s each; cold: 120
    [ "$mode" = compile ] && flag=(--compile) && limit=$([ "$WARM" = 1 ] && echo 60 || echo 120)
    [ "$DEVICE" = cpu ] && dtype=fp32
    if ! torch_ok; then
        local why
        why=$("$PY" -c 'import torch; print("torch", torch.__version__, "sees no CUDA device")' 2>&1 | tail -n 1)
        # said in the stage's summary line (RESULTS.md), not recorded as a failure
        stage_note "SKIPPED: PyTorch with CUDA is not importable with $PY ($why): no PyTorch $mode figures"
        return
    fi
    for c in $CONFIGS; do
        run "torch-$mode-$c" "$limit" "$PY" bench/bench_step_torch.py --device "$DEVICE" --dtype "$dtype" \
            --config "$c" --batch "$BATCH" --seq "$SEQ" --warmup "$WARMUP" --iters "$ITERS" "${flag[@]}"
        record torch "$mode" "$c" "torch-$mode-$c"
    done
}

stage_forward() {
    local c exe="$BUILD/bitlab"
    for c in $CONFIGS; do
        if [ "$DRY" = 0 ] && { [ ! -x "$exe" ] || [ ! -f "$MODELS/$c/config.json" ]; }; then
            stage_note "$c: no bitlab or no model folder (made by the bitlab stage)"
            continue
        fi
        run "bitlab-fwd-$c" 15 "$exe" bench forward --device "$DEVICE" --model "$MODELS/$c" \
            --batch "$BATCH" --seq "$SEQ" --iters "$ITERS"
        record bitlab forward "$c" "bitlab-fwd-$c"
    done
}

# torch.compile's cold compilation of every config, in the background
warm_start() {
    [ "$WARM" = 1 ] || return 0
    local c
    if [ "$DRY" = 1 ]; then
        echo
        echo "background from the start: torch.compile's cold compilation, one config after the other"
        for c in $CONFIGS; do
            printf '    %-22s %4d s  %s\n' "compile-warm-$c" "$WARM_LIMIT" \
                "$PY bench/bench_step_torch.py --device $DEVICE --dtype bf16 --config $c --batch $BATCH --seq $SEQ --warmup 1 --iters 1 --compile"
        done
        return
    fi
    torch_ok || return 0
    (
        for c in $CONFIGS; do
            timeout --kill-after=10 "$WARM_LIMIT" "$PY" bench/bench_step_torch.py --device "$DEVICE" \
                --dtype "$([ "$DEVICE" = cpu ] && echo fp32 || echo bf16)" --config "$c" --batch "$BATCH" \
                --seq "$SEQ" --warmup 1 --iters 1 --compile >"$LOGS/compile-warm-$c.log" 2>&1
            echo "exit $?" >>"$LOGS/compile-warm-$c.log"
        done
    ) &
    WARM_PID=$!
    say "compile-warm: torch.compile of '$CONFIGS' in the background (pid $WARM_PID, ${WARM_LIMIT} s per config)"
}

stage_warm_wait() {
    if [ "$DRY" = 1 ]; then
        stage_note "waits for the background compilation (ends it at the budget's end): nothing timed shares the GPU"
        return
    fi
    [ -n "$WARM_PID" ] || { stage_note "no background compilation (BENCH_COMPILE_WARM=0 or no torch)"; return; }
    while kill -0 "$WARM_PID" 2>/dev/null && [ "$SECONDS" -lt "$((STAGE_END - 5))" ]; do sleep 2; done
    if kill -0 "$WARM_PID" 2>/dev/null; then
        kill -- "$WARM_PID" 2>/dev/null
        pkill -P "$WARM_PID" 2>/dev/null
        wait "$WARM_PID" 2>/dev/null
        stage_note "background compilation still running at the budget's end: ended (torch-compile compiles cold)"
        STAGE_FAILS=1
    else
        wait "$WARM_PID" 2>/dev/null
        stage_note "background compilation done: $(cd "$LOGS" && for f in compile-warm-*.log; do
            [ -e "$f" ] && f2=${f#compile-warm-} && printf '%s: %s; ' "${f2%.log}" "$(tail -n 1 "$f")"; done)"
    fi
    STAGE_RUNS=1
    WARM_PID=""
}

# ---------------------------------------------------------------------------
# here, not on the GPU machine

# what the device call sends: the tracked and untracked-not-ignored files,
# plus the carried (ignored) paths; the tool's limits: 8 paths, 64 MiB
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
stage_package() {
    local tree carried=0 p s total n=0 ok=1
    tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
    [ -d shared ] && tree=$((tree + $(du -sb shared | cut -f1)))
    printf 'package: working tree (tracked + untracked, not ignored) %8s MiB\n' "$(mib "$tree")"
    for p in "${CARRY[@]}"; do
        n=$((n + 1))
        if [ -e "$p" ]; then
            s=$(du -sb "$p" | cut -f1)
            carried=$((carried + s))
            printf 'package: carry %-16s %8s MiB (%d files)\n' "$p" "$(mib "$s")" \
                "$(find "$p" -type f | wc -l)"
        else
            echo "package: carry $p: MISSING (bash bench/run_gpu_bench.sh fetch)"
            ok=0
        fi
    done
    total=$((tree + carried))
    printf 'package: total %s MiB of 64 MiB, %d carried paths of 8\n' "$(mib "$total")" "$n"
    [ "$total" -le $((64 * 1048576)) ] && [ "$n" -le 8 ] || { echo "package: OVER the device tool's limits"; ok=0; }
    [ "$ok" = 1 ]
}

stage_fetch() {
    mkdir -p build-gpusan
    if ls build-gpusan/nvidia_cuda_sanitizer_api-13.0.*.whl >/dev/null 2>&1; then
        echo "fetch: $(ls build-gpusan/*.whl) already here"
    else
        # 13.0: the toolkit and driver of the lent machines (KINDS.md)
        "$PY" -m pip download --no-deps --only-binary=:all: --platform manylinux_2_25_x86_64 \
            --dest build-gpusan 'nvidia-cuda-sanitizer-api==13.0.*' ||
            { echo "fetch: pip download of nvidia-cuda-sanitizer-api failed" >&2; return 1; }
    fi
    if ls build-gpudeps/*.deb >/dev/null 2>&1; then
        echo "fetch: build-gpudeps/ already holds $(ls build-gpudeps/*.deb | wc -l) packages"
    else
        bash bench/gpu_deps.sh fetch || return 1
    fi
    stage_package
}

case "${STAGES[0]}" in
    fetch) stage_fetch; exit ;;
    package) stage_package; exit ;;
esac
for s in "${STAGES[@]}"; do
    [[ " ${ALL_STAGES[*]} " == *" $s "* ]] ||
        { echo "run_gpu_bench: unknown stage '$s' (${ALL_STAGES[*]}; fetch, package)" >&2; exit 2; }
done

if [ "$DRY" = 1 ]; then
    echo "run_gpu_bench --dry-run: stages ${STAGES[*]}; deadline ${DEADLINE_S} s; configs '$CONFIGS', batch $BATCH x $SEQ,"
    echo "warmup $WARMUP, iters $ITERS; device $DEVICE; build dir $BUILD; records to $OUT (results.jsonl, RESULTS.md, logs.txt)"
    echo "each command: its limit in seconds, capped by its stage's budget and the deadline"
else
    mkdir -p "$OUT" "$LOGS" "$MODELS"
    RES="$OUT/results.jsonl"
    : >"$RES"
    "$PY" bench/gpu_table.py meta >>"$RES"
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi || echo "run_gpu_bench: no nvidia-smi on this machine"
fi
# only when the timed torch-compile stage is asked for
[[ " ${STAGES[*]} " == *" torch-compile "* ]] && warm_start

for s in "${STAGES[@]}"; do
    if [ "$DRY" = 0 ] && [ "$SECONDS" -ge $((DEADLINE_S - 10)) ]; then
        SUMMARY+=("$(printf '%-14s %4d s of %3d s  %s' "$s" 0 "${BUDGET[$s]}" "skipped (deadline)")")
        continue
    fi
    stage_begin "$s"
    case "$s" in
        build) stage_build ;;
        parity) stage_parity ;;
        sanitize) stage_sanitize ;;
        overfit) stage_overfit ;;
        warm-wait) stage_warm_wait ;;
        bitlab) stage_bitlab ;;
        torch-eager) stage_torch eager ;;
        torch-compile) stage_torch compile ;;
        forward) stage_forward ;;
    esac
    stage_end
done

if [ "$DRY" = 1 ]; then
    echo
    echo "then: python3 bench/gpu_table.py table \$OUT/results.jsonl > $RESULTS_MD (+ the stage summary), copied to \$OUT/RESULTS.md"
    sum=0
    for s in "${STAGES[@]}"; do sum=$((sum + BUDGET[$s])); done
    echo "stage budgets add up to ${sum} s; the deadline stops the run at ${DEADLINE_S} s (8 min = 480 s)"
    exit 0
fi

rm -rf "${MODELS:?}"
summary=$(printf '%s\n' "${SUMMARY[@]}"; printf 'total          %4d s (deadline %d s)\n' "$SECONDS" "$DEADLINE_S")
{
    "$PY" bench/gpu_table.py table "$RES" 2>&1
    # the fast path's effect on the whole step (the ternary target is the
    # student forward alone: gpu_table.py's floors line)
    "$PY" - "$RES" "$LOGS" <<'EOF'
import glob, json, os, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for f in sorted(glob.glob(os.path.join(sys.argv[2], "compile-warm-*.log"))):
    c = os.path.basename(f)[len("compile-warm-"):-4]
    js = [l for l in open(f, errors="replace") if l.startswith("{")]
    r = json.loads(js[-1]) if js else {}
    if r.get("compile_s") is not None:
        print(f"torch.compile {c}: cold compilation (background run, empty inductor cache) {r['compile_s']:.0f} s, "
              f"graph breaks {r.get('graph_breaks')}; the torch compile row above compiled from that cache.\n")
    else:
        last = open(f, errors="replace").read().strip().splitlines()[-1:] or ["(empty log)"]
        print(f"torch.compile {c}: the background cold compilation gave no figure ({last[0][:160]}).\n")
for c in dict.fromkeys(r.get("config") for r in rs if r.get("kind") == "bench"):
    b = {r["mode"]: r for r in rs if r.get("kind") == "bench" and r.get("impl") == "bitlab"
         and r.get("config") == c and r.get("ok")}
    if "step" in b and "step-ternary" in b:
        print(f"bitlab {c}: step with --ternary-fast-path {b['step-ternary']['tokens_per_s']:,.0f} tokens/s "
              f"against {b['step']['tokens_per_s']:,.0f} without ({b['step-ternary']['tokens_per_s'] / b['step']['tokens_per_s']:.2f}x)\n")
EOF
    echo "### Stages (bench/run_gpu_bench.sh)"
    echo
    echo '```'
    printf '%s\n' "$summary"
    echo '```'
} >"$OUT/RESULTS.md"
cp "$OUT/RESULTS.md" "$RESULTS_MD" 2>/dev/null
for f in "$LOGS"/*.log; do   # the last 400 lines of each: $OUT's files come back up to 16 MiB
    [ -e "$f" ] && { echo "===== $(basename "$f")"; tail -n 400 "$f"; }
done >"$OUT/logs.txt"

echo
cat "$OUT/RESULTS.md"
echo
echo "run_gpu_bench: stages"
printf '%s\n' "$summary"
