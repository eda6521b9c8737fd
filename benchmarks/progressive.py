"""A first index, words first against all at once: when questions can be asked, and what it costs in all.

    python benchmarks/progressive.py REPO [--rounds 2] [--model minilm]

REPO is a git repository; it is copied (without its .codesearch) and indexed from nothing, round after
round, alternating the order: once as `codesearch index` does it (a run with PROGRESSIVE_CHUNKS or more
chunks to embed answers by words first, its vectors joining every PROGRESSIVE_STEP_SECONDS), and once
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


class Clock(Progress):
    """Notes when the index first answers: the words-first step's notice, or the end of a one-step run."""

    def __init__(self):
        self.started, self.answers_at = time.perf_counter(), None

    def notice(self, message: str) -> None:
        if message.startswith("questions can be asked") and self.answers_at is None:
            self.answers_at = time.perf_counter() - self.started


def run(source: Path, scratch: Path, model: str, progressive: bool) -> tuple[float, float, int]:
    repo = scratch / f"repo-{time.monotonic_ns()}"
    shutil.copytree(source, repo, symlinks=True, ignore=shutil.ignore_patterns(".codesearch"))
    threshold = build.PROGRESSIVE_CHUNKS
    build.PROGRESSIVE_CHUNKS = threshold if progressive else 1 << 40
    try:
        clock = Clock()
        report = index_repository(repo, model=model, progress=clock)
        total = time.perf_counter() - clock.started
    finally:
        build.PROGRESSIVE_CHUNKS = threshold
        shutil.rmtree(repo)
    return clock.answers_at if clock.answers_at is not None else total, total, report.chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="minilm")
    args = parser.parse_args()
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
