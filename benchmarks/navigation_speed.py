"""How fast `defs`, `refs` and `callers --depth 2` answer, warm, on query_latency.py's generated index (about
50 chunks a file, each function calling up to five made before it, popular ones more often).

    python benchmarks/navigation_speed.py [--chunks 100000] [--names 50]
    python benchmarks/navigation_speed.py --map INDEXED_REPO [--runs 5]

Builds the index with the product's store (vectors of 16 dimensions: navigation reads none), opens a
CodeGraph as the commands do, and prints the median and p95 milliseconds of each over --names names drawn
from the defined ones (the same names for each command).

--map times `codesearch map --max-tokens 2000` on a repository already indexed (its words are enough: the
graph is written with them), cold: a fresh process each run, no server, as a first command runs; prints
each run's wall time and the median, and the map's size.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from query_latency import build  # noqa: E402

from codesearch.query.navigate import CodeGraph  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--names", type=int, default=50)
    parser.add_argument("--map", type=Path, metavar="INDEXED_REPO")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.map:
        time_map(args.map, args.runs)
        return
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        store = build(Path(scratch) / ".codesearch", args.chunks, 16)
        built = time.perf_counter() - started
        rows = store.database.db.execute("SELECT count(*) FROM refs").fetchone()[0]
        names = [name for (name,) in store.database.db.execute("SELECT name FROM definitions")]
        chosen = random.Random(3).sample(names, args.names)
        graph = CodeGraph(store.database)
        graph.definitions(chosen[0])  # warm: the database's pages read once
        print(f"{store.database.chunk_count()} chunks, {rows} references, built in {built:.0f} s; "
              f"{args.names} names")
        for label, ask in (("defs", graph.definitions), ("refs", graph.references),
                           ("callers --depth 2", lambda name: graph.callers(name, 2))):
            timings = []
            for name in chosen:
                begun = time.perf_counter()
                ask(name)
                timings.append((time.perf_counter() - begun) * 1000)
            print(f"{label:<18} median {statistics.median(timings):7.2f} ms   "
                  f"p95 {statistics.quantiles(timings, n=20)[-1]:7.2f} ms")
        store.close()


def time_map(repo: Path, runs: int) -> None:
    env = {**os.environ, "CODESEARCH_NO_SERVER": "1", "CODESEARCH_NO_AUTOSTART": "1"}
    command = [sys.executable, "-m", "codesearch", "map", "--repo", str(repo), "--max-tokens", "2000"]
    timings, output = [], ""
    for _ in range(runs):
        begun = time.perf_counter()
        output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        timings.append(time.perf_counter() - begun)
    print(f"map --max-tokens 2000 on {repo.name}: " + ", ".join(f"{t:.2f}" for t in timings)
          + f" s; median {statistics.median(timings):.2f} s; {len(output.splitlines())} lines, "
          f"{len(output)} characters")


if __name__ == "__main__":
    main()
