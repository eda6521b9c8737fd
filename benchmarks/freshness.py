"""What keeping answers current costs, on a copy of an indexed repository (the original is not touched).

Prints medians over --runs:
  check, nothing changed    the working-tree check every in-process query (and an unwatched server) makes
  query, check included     a warm in-process question (Engine.query) with and without that check
  one file edited           the check plus the refresh of one edited file, the model already loaded
  save to refreshed         a watching server (Service(watch=True)): from a file written to its refresh
                            committed, with nobody asking

Usage: python benchmarks/freshness.py INDEXED_REPO [--runs 15] [--query "..."] [--mode hybrid]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from codesearch.embedding.load import LoadedModels
from codesearch.indexer.freshness import bring_up_to_date, changed_files
from codesearch.query.api import QueryRequest
from codesearch.query.engine import QUERY_THREADS, Engine
from codesearch.server.service import Service


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.1f} ms"


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def edit(path: Path, original: str, number: int) -> None:
    path.write_text(original + f"\n\ndef freshness_probe_{number}(value):\n    return value * {number}\n",
                    encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", type=Path)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--query", default="parse the configuration file")
    parser.add_argument("--mode", default="hybrid")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        repo = Path(scratch) / args.repo.name
        shutil.copytree(args.repo, repo, symlinks=True)
        probe = repo / "freshness_probe.py"
        probe.write_text("def freshness_probe(value):\n    return value\n", encoding="utf-8")
        original = probe.read_text(encoding="utf-8")
        models = LoadedModels(threads=QUERY_THREADS)
        engine = Engine.open(repo, embedder_for=models)
        request = QueryRequest([args.query], k=10, mode=args.mode)
        try:
            bring_up_to_date(engine.root, engine.store, embedder_factory=models)  # the probe file, the model loaded
            engine.query(request)
            files = engine.store.database.file_count()
            check = [timed(lambda: changed_files(engine.root, engine.store.database)) for _ in range(args.runs)]
            plain, checked = [], []
            for _ in range(args.runs):  # interleaved, so a busy moment costs both alike
                plain.append(timed(lambda: engine.query(request)))
                checked.append(timed(lambda: (bring_up_to_date(engine.root, engine.store, embedder_factory=models),
                                              engine.query(request))))
            edited = []
            for number in range(args.runs):
                edit(probe, original, number)
                edited.append(timed(lambda: bring_up_to_date(engine.root, engine.store, embedder_factory=models)))
        finally:
            engine.close()
        service = Service(watch=True)
        root = service.open(repo)
        latencies = []
        try:
            service.query(root, request)
            for number in range(args.runs):
                generation = service.status(root)["generation"]
                time.sleep(0.3)  # the watch's previous batch handed over
                started = time.perf_counter()
                edit(probe, original, 1000 + number)
                while service.status(root)["generation"] == generation and time.perf_counter() - started < 30:
                    time.sleep(0.005)
                latencies.append(time.perf_counter() - started)
        finally:
            service.stop_watching()
    print(f"repository: {args.repo.name}, {files} files; {args.runs} runs each; mode {args.mode}")
    print(f"check, nothing changed      {median_ms(check)}")
    print(f"query without the check     {median_ms(plain)}")
    print(f"query, check included       {median_ms(checked)}")
    print(f"one file edited: check+refresh {median_ms(edited)}")
    print(f"save to refreshed (server)  {median_ms(latencies)}")


if __name__ == "__main__":
    main()
