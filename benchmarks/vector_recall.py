"""Recall and latency of the sketched segments' two-pass search against exact search, to choose RESCORED
(issue 18).

A segment of segments.SKETCH_MIN_ROWS rows or more keeps RaBitQ codes of its rows; a search estimates every
row's inner product from them, keeps the best RESCORED times k rows and scores those exactly in fp16. This
writes the rows as one segment with the product's own code (segments.write_segment, every sketch part) and
compares VectorIndex.search with exact search over the same fp16 rows, at several RESCORED, asking for the
pool the product asks for (search.CANDIDATES): recall@10 of the final answer and recall over the whole pool.

  real      real embeddings: the rows of existing indexes' segments (--segments, a glob of .codesearch
            folders) and real question embeddings as queries (--queries, a glob of .npy files:
            ranking_lab.py's question vectors)
  random    N random unit vectors of --dim dimensions, queried by others: no structure at all, the worst case
            for any estimate

    python benchmarks/vector_recall.py --segments '../mined/corpus/*/.codesearch' \\
        --queries '../lab/vectors/*.npy' --random 200000 --dim 1536
"""

from __future__ import annotations

import argparse
import glob
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codesearch.index import segments  # noqa: E402
from codesearch.index.lexical import Postings  # noqa: E402
from codesearch.query.api import CANDIDATES  # noqa: E402


def real_rows(pattern: str) -> np.ndarray:
    import faiss

    rows = []
    for folder in sorted(glob.glob(pattern)):
        for vectors in sorted(Path(folder).glob("segment-*/vectors.faiss")):
            index = faiss.read_index(str(vectors))
            rows.append(index.reconstruct_n(0, index.ntotal))
    width = max((part.shape[1] for part in rows), default=0)
    return np.concatenate([part for part in rows if part.shape[1] == width])


def real_queries(pattern: str, width: int) -> np.ndarray:
    found = [np.load(name) for name in sorted(glob.glob(pattern)) if "classdoc" not in Path(name).name]
    found = [array for array in found if array.ndim == 2 and array.shape[1] == width]
    return np.concatenate(found).astype(np.float32)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def measure(name: str, rows: np.ndarray, queries: np.ndarray, factors: list[int]) -> None:
    segments.SKETCH_MIN_ROWS = 1  # the rows are sketched whatever their number
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        ids = np.arange(len(rows), dtype=np.int64)
        segments.write_segment(Path(folder), 1, rows.shape[1], ids, [rows], Postings.build([]))
        written = time.perf_counter() - started
        segment = segments.Segment.open(Path(folder), 1)
        index = segments.VectorIndex([(segment, [])], rows.shape[1])
        exact = segment.vectors.search(queries, CANDIDATES)[1]
        print(f"{name}: {len(rows):,} rows of {rows.shape[1]} dims in {len(segment.sketch)} sketch parts "
              f"(written in {written:.1f} s), {len(queries)} queries, pool {CANDIDATES}")
        print(f"  {'RESCORED':>8} {'recall@10':>10} {f'recall@{CANDIDATES}':>11} {'median ms':>10} {'p95 ms':>8}")
        for factor in factors:
            segments.RESCORED = factor
            times, at_10, at_pool = [], [], []
            for query, truth in zip(queries, exact):
                began = time.perf_counter()
                found = [chunk_id for chunk_id, _ in index.search(query, CANDIDATES)]
                times.append((time.perf_counter() - began) * 1000)
                at_10.append(len(set(found[:10]) & set(truth[:10].tolist())) / 10)
                at_pool.append(len(set(found) & set(truth.tolist())) / CANDIDATES)
            print(f"  {factor:>8} {np.mean(at_10):>10.4f} {np.mean(at_pool):>11.4f} {statistics.median(times):>10.2f} "
                  f"{sorted(times)[int(0.95 * (len(times) - 1))]:>8.2f}")
        flat_times = []
        for query in queries[:200]:
            began = time.perf_counter()
            segment.vectors.search(query.reshape(1, -1), CANDIDATES)
            flat_times.append((time.perf_counter() - began) * 1000)
        print(f"  {'exact':>8} {1.0:>10.4f} {1.0:>11.4f} {statistics.median(flat_times):>10.2f} "
              f"{sorted(flat_times)[int(0.95 * (len(flat_times) - 1))]:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", help="glob of .codesearch folders whose segments' rows are the real rows")
    parser.add_argument("--queries", help="glob of .npy files of real question vectors")
    parser.add_argument("--random", type=int, default=0, help="rows of random unit vectors (0: none)")
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--factors", default="2,5,10,20")
    arguments = parser.parse_args()
    factors = [int(value) for value in arguments.factors.split(",")]
    if arguments.segments:
        rows = unit(real_rows(arguments.segments))
        measure("real", rows, unit(real_queries(arguments.queries, rows.shape[1])), factors)
    if arguments.random:
        generator = np.random.default_rng(0)
        rows = unit(generator.standard_normal((arguments.random, arguments.dim), dtype=np.float32))
        measure("random", rows, unit(generator.standard_normal((200, arguments.dim), dtype=np.float32)), factors)


if __name__ == "__main__":
    main()
