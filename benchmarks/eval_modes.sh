#!/usr/bin/env bash
# Scores codesearch on ../shared/eval in all three ranking modes beside the BM25 baseline, in one run.
# Usage: benchmarks/eval_modes.sh CORPUS OUTDIR [MODEL] [extra score.py args, e.g. --repos py-jinja2]
set -euo pipefail
corpus=$(cd "$1" && pwd); out=$(mkdir -p "$2" && cd "$2" && pwd); model=${3:-minilm}; shift 3 || shift $#
here=$(cd "$(dirname "$0")/.." && pwd)
evaldir="$here/../shared/eval"
python=${PYTHON:-python}
[[ $python == */* ]] && python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python")  # the script changes folder
cs="$python -m codesearch"
cd "$evaldir/.."
"$python" eval/score.py --corpus "$corpus" --split dev --baseline functions --out "$out/bm25-functions.json" "$@" \
  | tee "$out/bm25-functions.txt"
for mode in hybrid semantic lexical; do
  index=(--index-cmd "$cs index {repo} --model $model")
  [ "$mode" = hybrid ] || index=(--no-clean)
  "$python" eval/score.py --corpus "$corpus" --split dev --name "codesearch-$model-$mode" "${index[@]}" \
    --query-cmd "$cs query --json --mode $mode -k {k} --queries-file {queries_file}" \
    --out "$out/$mode.json" --log "$out/$mode.log" "$@" | tee "$out/$mode.txt"
done
