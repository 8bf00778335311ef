#!/usr/bin/env bash
# check_layers.sh - fails when a folder of src/ (or ui/) includes a folder it
# must not: the layers of docs/ARCHITECTURE, bottom to top. Each line below
# names a folder and the folders its files may include besides its own;
# nothing else is allowed (a new folder must be added here to be allowed at
# all). Run by ctest (check_layers) and by hand: scripts/check_layers.sh [ROOT]
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
allowed='
core:
io: core
tokenizer: core io
model: core io tokenizer
ops: core
dist: core
backend: core ops model
nn: core ops backend model
train: core io ops backend model nn
data: core io model tokenizer
eval: core io tokenizer model ops backend nn train data
trace: core io tokenizer model ops backend nn train data
export: core io tokenizer model ops train
plan: core io tokenizer model ops backend nn train
ui: core
script: core io tokenizer model ops backend nn train data eval trace export plan ui dist
cli: core io tokenizer model ops backend nn train data eval trace export plan script dist
'
declare -A ok
while IFS=: read -r dir deps; do
    [ -n "$dir" ] || continue
    ok[$dir]=" $deps "
done <<< "$allowed"
bad=0
cd "$root"
while IFS= read -r f; do
    d=$(dirname "$f"); d=${d#src/}; d=${d%%/*}
    if [ -z "${ok[$d]+x}" ]; then
        echo "check_layers: $f: folder '$d' is not in the layer table (scripts/check_layers.sh)"
        bad=1
        continue
    fi
    while IFS= read -r inc; do
        t=${inc%%/*}
        [ "$t" = "$d" ] && continue
        case "${ok[$d]}" in
            *" $t "*) ;;
            *) echo "check_layers: $f includes \"$inc\": $d/ may include only:${ok[$d]}"; bad=1 ;;
        esac
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([a-z_]*\/[^"]*\)".*/\1/p' "$f")
done < <(find src ui -name '*.[ch]' | sort)
[ $bad -eq 0 ] && echo "check_layers: every include follows the layer table"
exit $bad
