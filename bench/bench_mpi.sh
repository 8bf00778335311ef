#!/usr/bin/env bash
# bench_mpi.sh - data-parallel throughput: bitlab.train's tokens/s (the
# global batch's tokens over rank 0's step time, median after warm-up) on one
# process and under mpirun -np 2 with the same global batch, and the ratio.
# On a machine with fewer than 2 x the threads each rank uses, the ranks
# share cores and the ratio says little; pin OPENBLAS_NUM_THREADS to
# cores / 2 for a fair pair.
#   bench/bench_mpi.sh MODEL [STEPS=12] [BATCH=8] [SEQ=128] [BUILD=build]
set -euo pipefail
model=${1:?usage: bench/bench_mpi.sh MODEL [STEPS] [BATCH] [SEQ] [BUILD]}
steps=${2:-12} batch=${3:-8} seq=${4:-128} build=${5:-build}
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$build/bitlab"
rate() { sed -n 's/^TOKENS_PER_S //p' | tail -1; }
one=$("$bin" "$root/bench/bench_mpi.lua" --headless -- "$model" "$steps" "$batch" "$seq" 2>/dev/null | rate)
two=$(mpirun --allow-run-as-root --oversubscribe -np 2 "$bin" "$root/bench/bench_mpi.lua" --headless \
          -- "$model" "$steps" "$batch" "$seq" 2>/dev/null | rate)
echo "batch $batch x $seq, $steps steps (median after 2)"
echo "1 process:   $one tokens/s"
echo "2 processes: $two tokens/s"
awk -v a="$one" -v b="$two" 'BEGIN { if (a > 0) printf "ratio 2/1:   %.2f\n", b / a }'
