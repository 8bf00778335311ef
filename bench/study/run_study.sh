#!/usr/bin/env bash
# run_study.sh - the recipe study of docs/distill-default-model.md: prepares
# the corpus (prepare_corpus.py, once), runs each recipe of recipe.lua one
# after another for the same budget on the default model, and prints the
# table and draws the chart (report.py).
#
#   bench/study/run_study.sh [-b BUDGET] [-o RUNS] [-x BIN] [RECIPE...]
#     -b  the budget of every run (default 60k tokens; "30m" for wall time)
#     -o  folder of the runs' logs and checkpoints (default study-runs)
#     -x  the bitlab binary (default build/bitlab)
#     RECIPE...  default: every recipe of recipe.lua
# Runs already in RUNS (RECIPE.jsonl with an eval record of the last step)
# are kept, so an interrupted study continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
budget=60k runs=study-runs bin=build/bitlab
while getopts "b:o:x:" f; do
    case $f in b) budget=$OPTARG ;; o) runs=$OPTARG ;; x) bin=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
recipes=("$@")
[ ${#recipes[@]} -gt 0 ] || recipes=(gradual distill dense lambda1 nocos rel lambda_acts teacher)
data=$runs/data
mkdir -p "$runs"
[ -f "$data/SOURCE" ] || python3 bench/study/prepare_corpus.py --out "$data"
for r in "${recipes[@]}"; do
    log=$runs/$r.jsonl
    if [ -f "$runs/$r.done" ]; then echo "== $r: done already ($log)"; continue; fi
    rm -f "$log" "$runs/$r".ckpt*
    echo "== $r ($budget) $(date -u +%H:%M:%S)"
    "$bin" bench/study/recipe.lua --headless --log "$log" -- "$r" "$budget" "$data" "$runs/$r" \
        | tee "$runs/$r.out" | grep -E "^(eval|recipe)"
    touch "$runs/$r.done"
done
# the chart's own environment (matplotlib), apart from the tests' references
venv=${XDG_CACHE_HOME:-$HOME/.cache}/bitlab/study-venv
if [ ! -f "$venv/.complete" ]; then
    rm -rf "$venv" && python3 -m venv "$venv" && "$venv/bin/pip" install -q matplotlib && touch "$venv/.complete"
fi
py=$venv/bin/python
logs=()
for r in "${recipes[@]}"; do logs+=("$runs/$r.jsonl"); done
"$py" bench/study/report.py --png "$runs/study.png" --title "recipe study, $budget per run" "${logs[@]}"
