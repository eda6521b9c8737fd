#!/usr/bin/env bash
# The three sets of mine_sets.py (bare-symbol questions, file headers, type docs) on top of a finished run.sh:
# mine them, then score the BM25-over-functions baseline and codesearch's three modes through the CLI, and
# print per-language, per-style and per-kind tables into OUTDIR/{symbols,files,typedocs}-tables.md.
# Usage: benchmarks/mined/run_sets.sh OUTDIR [MODEL] [extra score.py args, e.g. --repos go-cmp]
#   OUTDIR is run.sh's (it needs OUTDIR/pristine and OUTDIR/corpus); PYTHON and EVALDIR as in run.sh.
#   The symbol set asks about OUTDIR/corpus and reuses run.sh's indexes (--no-clean: codesearch index only
#   finishes what is missing); the file set indexes its own variant repositories, OUTDIR/files-corpus.
#   RESUME=1 keeps the mined sets and skips every run whose summary JSON is already there.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
out=$(realpath -m "$1"); model=${2:-minilm}; shift 2 || shift $#
here=$(cd "$(dirname "$0")" && pwd)
top=$(realpath "$here/../..")
evaldir=$(cd "${EVALDIR:-$top/../shared/eval}" && pwd)
python=${PYTHON:-python}
[[ $python == */* ]] && python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python")  # score.py changes folder
recipes=$here/corpus.tsv
cs="$python -m codesearch"
resume=${RESUME:-0}
log() { echo "$(date -u +%FT%TZ) $*" | tee -a "$out/timings.txt" >&2; }
step() { local name=$1 t0=$SECONDS rc=0; shift; "$@" || rc=$?; log "$name: $((SECONDS - t0)) s, exit $rc"
  [ "$name" != mine-sets ] || [ $rc = 0 ] || exit $rc; }   # a scoring error (one repository) goes on
[ -d "$out/corpus" ] && [ -d "$out/pristine" ] || { echo "run benchmarks/mined/run.sh $1 first" >&2; exit 2; }

echo "sets: code $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown), model $model," \
     "resume $resume" >> "$out/timings.txt"
if [ "$resume" = 1 ] && [ -d "$out/symbols" ] && [ -d "$out/qualified" ] && [ -d "$out/files" ] && [ -d "$out/typedocs" ]; then log "resume: mine-sets skipped"; else
  step mine-sets "$python" "$here/mine_sets.py" --recipes "$recipes" --pristine "$out/pristine" \
    --corpus "$out/corpus" --out "$out" --sets symbols,qualified,files,typedocs > "$out/mine-sets.txt"
fi

# score SET CORPUS RUN [score.py args]: one run, skipped on resume when its summary exists.
score() { local set=$1 corpus=$2 run=$3; shift 3
  [ "$resume" = 1 ] && [ -f "$out/$set-$run.json" ] && return 0
  step "$set-$run" "$python" "$evaldir/score.py" --corpus "$corpus" --recipes "$recipes" \
    --queries "$out/$set/*.jsonl" --split all --out "$out/$set-$run.json" "$@" > "$out/$set-$run.txt"; }
query() { echo "$cs query --json --mode $1 -k {k} --queries-file {queries_file}"; }
index="$cs index {repo} --model $model"

# Symbols: codesearch first, so that its incremental index never sees the baseline's .baseline/ folder.
score symbols "$out/corpus" hybrid --name "codesearch-$model-hybrid" --no-clean --index-cmd "$index" \
  --query-cmd "$(query hybrid)" --log "$out/symbols-hybrid.log" "$@"
for mode in semantic lexical; do
  score symbols "$out/corpus" "$mode" --name "codesearch-$model-$mode" --query-cmd "$(query $mode)" \
    --log "$out/symbols-$mode.log" "$@"
done
score symbols "$out/corpus" bm25-functions --baseline functions --no-clean "$@"
# Qualified names (Container::method): the same corpus and indexes as the symbols.
for mode in hybrid semantic lexical; do
  score qualified "$out/corpus" "$mode" --name "codesearch-$model-$mode" --no-clean --query-cmd "$(query $mode)" \
    --log "$out/qualified-$mode.log" "$@"
done
score qualified "$out/corpus" bm25-functions --baseline functions --no-clean "$@"

# Files and type docs: fresh corpora, cleaned and indexed like run.sh does it.
for set in files typedocs; do
  score $set "$out/$set-corpus" bm25-functions --baseline functions "$@"
  score $set "$out/$set-corpus" hybrid --name "codesearch-$model-hybrid" --index-cmd "$index" \
    --query-cmd "$(query hybrid)" --log "$out/$set-hybrid.log" "$@"
  for mode in semantic lexical; do
    score $set "$out/$set-corpus" "$mode" --name "codesearch-$model-$mode" --query-cmd "$(query $mode)" \
      --log "$out/$set-$mode.log" "$@"
  done
done

for set in symbols qualified files typedocs; do
  echo "## $set"
  "$python" "$here/tables.py" "$out/$set"-{bm25-functions,hybrid,semantic,lexical}.json \
    --queries "$out/$set/*.jsonl" | tee "$out/$set-tables.md"
  echo
done
