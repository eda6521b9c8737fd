"""A first index, words first against all at once: when questions can be asked, and what it costs in all.

    python benchmarks/progressive.py REPO [--rounds 2] [--model minilm] [--first-answer-only]

REPO is a git repository; it is copied (without its .codesearch) and indexed from nothing, round after
round, alternating the order: once as `codesearch index` does it (a run with PROGRESSIVE_FILES or more
files to read answers by words first, its vectors joining every words_first.STEP_SECONDS), and once
written in one step at the end (the threshold set past the run's size). Each run embeds every chunk. Prints
the median seconds until the index first answers and until it is complete, for each.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from codesearch.indexer import build
from codesearch.indexer.build import Progress, index_repository


class Answering(Exception):
    """Raised at the words-first step's notice by --first-answer-only."""


class Clock(Progress):
    """Notes when the index first answers: the words-first step's notice, or the end of a one-step run."""

    def __init__(self, stop_there: bool = False):
        self.started, self.answers_at, self.stop_there = time.perf_counter(), None, stop_there

    def notice(self, message: str) -> None:
        if message.startswith("questions can be asked") and self.answers_at is None:
            self.answers_at = time.perf_counter() - self.started
            if self.stop_there:
                raise Answering


def first_answer(source: Path, scratch: Path, model: str) -> tuple[float, int]:
    """Seconds until a first index of a copy of `source` answers, the run stopped there; its chunks."""
    from codesearch.index.store import IndexStore, index_dir

    repo = scratch / f"first-{time.monotonic_ns()}"
    shutil.copytree(source, repo, symlinks=True, ignore=shutil.ignore_patterns(".codesearch"))
    clock = Clock(stop_there=True)
    try:
        index_repository(repo, model=model, progress=clock)
    except Answering:
        pass
    store = IndexStore.open(index_dir(repo))
    chunks = store.database.chunk_count()
    store.close()
    shutil.rmtree(repo)
    return clock.answers_at, chunks


def run(source: Path, scratch: Path, model: str, progressive: bool) -> tuple[float, float, int]:
    repo = scratch / f"repo-{time.monotonic_ns()}"
    shutil.copytree(source, repo, symlinks=True, ignore=shutil.ignore_patterns(".codesearch"))
    threshold = build.PROGRESSIVE_FILES
    build.PROGRESSIVE_FILES = threshold if progressive else 1 << 40
    try:
        clock = Clock()
        report = index_repository(repo, model=model, progress=clock)
        total = time.perf_counter() - clock.started
    finally:
        build.PROGRESSIVE_FILES = threshold
        shutil.rmtree(repo)
    return clock.answers_at if clock.answers_at is not None else total, total, report.chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--first-answer-only", action="store_true",
                        help="only time the first answer (words first), each run stopped there: for large repositories")
    args = parser.parse_args()
    if args.first_answer_only:
        with tempfile.TemporaryDirectory() as scratch:
            runs = [first_answer(args.repo, Path(scratch), args.model) for _ in range(args.rounds)]
        print(f"repository: {args.repo.name}, {runs[0][1]} chunks answerable; first answer after "
              f"{statistics.median(seconds for seconds, _ in runs):.1f} s (median of {args.rounds})")
        return
    results: dict[str, list[tuple[float, float]]] = {"words first": [], "one step": []}
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(args.rounds):
            order = [True, False] if number % 2 == 0 else [False, True]
            for progressive in order:
                answers, total, chunks = run(args.repo, Path(scratch), args.model, progressive)
                results["words first" if progressive else "one step"].append((answers, total))
    print(f"repository: {args.repo.name}, {chunks} chunks, model {args.model}, {args.rounds} rounds (medians)")
    for name, runs in results.items():
        print(f"{name:12}  first answer {statistics.median(a for a, _ in runs):7.1f} s   "
              f"complete {statistics.median(t for _, t in runs):7.1f} s")


if __name__ == "__main__":
    main()
