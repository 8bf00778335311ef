#!/usr/bin/env bash
# fuzz.sh [SECONDS_EACH] [TARGET...] - builds the libFuzzer harnesses
# (tests/fuzz/, clang, -fsanitize=fuzzer,address,undefined) into build-fuzz/,
# makes their seed corpora of valid files, and runs each target for
# SECONDS_EACH seconds (default 30), one after the other. Prints the
# executions per target; exits non-zero when any target crashed, leaked,
# timed out or ran out of memory, naming the reproducer:
#     build-fuzz/fuzz_TARGET build-fuzz/artifacts/TARGET/crash-...
# Targets: gguf hf tokenizer checkpoint trace control lua_json shard (default all).
# Inputs that found new coverage accumulate in build-fuzz/corpus/TARGET.
# A longer run: scripts/fuzz.sh 3600
source "$(dirname "$0")/common.sh"

secs="${1:-30}"
shift || true
ALL=(gguf hf tokenizer checkpoint trace control lua_json shard)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL[@]}")
declare -A MAX_LEN=([gguf]=100000 [hf]=65536 [tokenizer]=16384 [checkpoint]=80000
                    [trace]=8192 [control]=4096 [lua_json]=4096 [shard]=4096)
for t in "${targets[@]}"; do
    [ -n "${MAX_LEN[$t]:-}" ] || die "unknown fuzz target '$t' (known: ${ALL[*]})"
done
command -v clang >/dev/null || "$BITLAB_ROOT/scripts/install_deps.sh"

dir="$BITLAB_ROOT/build-fuzz"
say "fuzz build (clang, libFuzzer + ASan + UBSan) in build-fuzz/"
cmake -S "$BITLAB_ROOT" -B "$dir" -DCMAKE_C_COMPILER=clang -DBITLAB_FUZZ=ON -DBITLAB_CUDA=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$dir" --target fuzzers -j"$(nproc)" >/dev/null

# seed corpora: valid files, remade every run (the tiny models and bitlab's own
# checkpoints and traces), plus the small committed ones
seeds="$dir/seeds"
rm -rf "$seeds"
mkdir -p "$seeds"/{gguf,hf,tokenizer,checkpoint,trace,control,lua_json,shard}
py=$("$BITLAB_ROOT/scripts/python_env.sh")
"$py" "$BITLAB_ROOT/tests/fuzz/make_corpus.py" "$seeds"
"$dir/fuzz_seeds" "$seeds"
for t in "${ALL[@]}"; do  # committed: hand-written seeds and past findings (regress-*)
    if [ -d "$BITLAB_ROOT/tests/fuzz/corpus/$t" ]; then cp "$BITLAB_ROOT/tests/fuzz/corpus/$t/"* "$seeds/$t/"; fi
done

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=()
for t in "${targets[@]}"; do
    corpus="$dir/corpus/$t" art="$dir/artifacts/$t" log="$dir/logs/$t.log"
    mkdir -p "$corpus" "$art" "$dir/logs"
    rc=0
    "$dir/fuzz_$t" -max_total_time="$secs" -max_len="${MAX_LEN[$t]}" -timeout=25 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" \
        "$corpus" "$seeds/$t" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    if [ "$rc" -eq 0 ]; then
        say "fuzz $t: ${execs:-?} executions in ${secs} s, ${cov:-cov: ?}, corpus $(ls "$corpus" | wc -l) inputs"
    else
        failed+=("$t")
        tail -n 60 "$log" >&2
        repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        say "fuzz $t FAILED (exit $rc) after ${execs:-?} executions; log $log"
        [ -n "$repro" ] && say "reproduce: $dir/fuzz_$t $repro"
    fi
done
[ ${#failed[@]} -eq 0 ] || die "fuzz targets failed: ${failed[*]}"
say "fuzz: ${#targets[@]} targets clean, ${secs} s each"
