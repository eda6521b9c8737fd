"""Warm in-process query time on one indexed repository: the median milliseconds a question takes per mode,
the model loaded and the index open (a request of all the questions, timed whole, divided by their number).

    python benchmarks/warm_queries.py REPO QUESTIONS.jsonl [--runs 7] [--source DIR]

QUESTIONS is an eval query file (one JSON object with "query" per line). --source DIR runs the codesearch
package found in DIR instead of the installed one (`git archive COMMIT codesearch | tar -x -C DIR`), so two
versions can be timed in turn on the same index, in one session, as a ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo")
    parser.add_argument("questions")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--source", help="a folder holding the codesearch package to time instead")
    args = parser.parse_args()
    if args.source:
        # An editable install answers `import codesearch` before sys.path is asked.
        sys.meta_path[:] = [finder for finder in sys.meta_path if "editable" not in repr(finder).lower()]
        sys.path.insert(0, str(Path(args.source).resolve()))
    import codesearch

    try:
        from codesearch.query.api import QueryRequest
        from codesearch.query.engine import Engine
    except ImportError:  # a version before the package layout of 2026-12-05
        from codesearch.engine import Engine, QueryRequest

    questions = [json.loads(line)["query"] for line in Path(args.questions).read_text().splitlines() if line.strip()]
    engine = Engine.open(args.repo)
    result = {"code": str(Path(codesearch.__file__).parent), "questions": len(questions)}
    try:
        for mode in ("lexical", "hybrid"):
            engine.query(QueryRequest(questions, mode=mode))  # loads the model and pages the index in
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                engine.query(QueryRequest(questions, mode=mode))
                times.append((time.perf_counter() - started) / len(questions))
            result[f"{mode}_ms"] = round(1000 * statistics.median(times), 2)
    finally:
        engine.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
