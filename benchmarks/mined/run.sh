#!/usr/bin/env bash
# The mined benchmark in one command: fetch the packages of corpus.tsv, build their repositories with
# every function's doc comment removed, mine the queries, then score the BM25-over-functions baseline
# and codesearch's three modes through the CLI (like ../eval_modes.sh), and print per-language tables.
# Usage: benchmarks/mined/run.sh OUTDIR [MODEL] [extra score.py args, e.g. --repos go-cmp,rs-bytes]
#   OUTDIR must lie outside the work tree; PYTHON (default python) must import codesearch and the
#   tree-sitter grammars (the project's venv does); EVALDIR defaults to ../shared/eval beside the repo.
#   To score a commit rather than the work tree: git archive COMMIT codesearch | tar -x -C DIR, PYTHONPATH=DIR.
#   RESUME=1 goes on after an interrupted run: it keeps OUTDIR's repositories, queries and the indexes
#   already built (codesearch index then only finishes what is missing).
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
out=$(realpath -m "$1"); model=${2:-minilm}; shift 2 || shift $#
here=$(cd "$(dirname "$0")" && pwd)
top=$(realpath "$here/../..")
case "$out/" in "$top/"*) echo "OUTDIR must be outside the work tree ($top)" >&2; exit 2;; esac
mkdir -p "$out"
evaldir=$(cd "${EVALDIR:-$top/../shared/eval}" && pwd)
python=${PYTHON:-python}
[[ $python == */* ]] && python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python")  # score.py changes folder
recipes=$here/corpus.tsv
cs="$python -m codesearch"
log() { echo "$(date -u +%FT%TZ) $*" | tee -a "$out/timings.txt" >&2; }
step() { local name=$1 t0=$SECONDS rc=0; shift; "$@" || rc=$?; log "$name: $((SECONDS - t0)) s, exit $rc"
  case $name in fetch|mine) [ $rc = 0 ] || exit $rc;; esac; }   # a scoring error (one repository) goes on

{ echo "code: $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
       "$(git -C "$top" status --porcelain -- codesearch 2>/dev/null | wc -l | tr -d ' ') files changed under codesearch/"
  echo "codesearch imported from: $(cd / && "$python" -c 'import codesearch; print(codesearch.__file__)')"
  echo "model: $model, resume: ${RESUME:-0}"; } >> "$out/timings.txt"
resume=${RESUME:-0}
if [ "$resume" = 1 ] && [ -d "$out/queries" ]; then log "resume: fetch and mine skipped"; else
step fetch "$python" "$evaldir/get_corpus.py" --dest "$out/pristine" --recipes "$recipes"
step mine "$python" "$here/mine.py" --recipes "$recipes" --pristine "$out/pristine" --corpus "$out/corpus" \
  --queries "$out/queries" --stats "$out/mine-stats.json" > "$out/mine.txt"
fi
score() { "$python" "$evaldir/score.py" --corpus "$out/corpus" --recipes "$recipes" \
  --queries "$out/queries/*.jsonl" --split all "$@"; }
keep=(); [ "$resume" = 1 ] && keep=(--no-clean)   # score.py cleans a repository (its indexes too) unless told
[ "$resume" = 1 ] && [ -f "$out/bm25-functions.json" ] ||
  step bm25-functions score --baseline functions "${keep[@]}" --out "$out/bm25-functions.json" "$@" \
    > "$out/bm25-functions.txt"
for mode in hybrid semantic lexical; do
  index=(--index-cmd "$cs index {repo} --model $model")
  index+=("${keep[@]}")
  [ "$mode" = hybrid ] || index=(--no-clean)   # semantic and lexical reuse hybrid's indexes
  step "$mode" score --name "codesearch-$model-$mode" "${index[@]}" \
    --query-cmd "$cs query --json --mode $mode -k {k} --queries-file {queries_file}" \
    --out "$out/$mode.json" --log "$out/$mode.log" "$@" > "$out/$mode.txt"
done
"$python" "$here/tables.py" "$out"/{bm25-functions,hybrid,semantic,lexical}.json --mine "$out/mine-stats.json" \
  | tee "$out/tables.md"
