"""Recall@10 and latency of the IVF segments against exact search, to choose NPROBE (issue 18).

A segment of segments.IVF_MIN_ROWS rows or more is an IVF index (fp16 rows, not residuals, over NLIST
spherical k-means centroids) searched in its NPROBE nearest lists. This measures, for several nprobe, the
share of the exact top 10 (flat inner product over the same fp16 rows) that IVF returns, and the median
time per query, on:

  real      real embeddings: the vectors in the embedding caches of existing index databases (--sqlite,
            a glob; indexes of the layout before segments keep every vector there) as the rows, and real
            question embeddings (.npy files, --queries, a glob: ranking_lab.py's question vectors) as queries
  random    N random unit vectors of --dim dimensions, queried by others: no cluster structure at all,
            the worst case for any coarse quantizer

    python benchmarks/ivf_recall.py --sqlite '../mined/corpus/*/.codesearch/index.sqlite' \
        --queries '../lab/vectors/*.npy' --random 200000 --dim 1536

The number of lists is scaled to the rows (--rows-per-list, default 1,000: NLIST = 1024 at a million rows),
so the share of rows a probe scans is that of the product at a million rows.
"""

from __future__ import annotations

import argparse
import glob
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codesearch.segments import empty_vector_index, train_quantizer  # noqa: E402


def real_rows(pattern: str) -> np.ndarray:
    rows = []
    for name in sorted(glob.glob(pattern)):
        db = sqlite3.connect(f"file:{name}?mode=ro", uri=True)
        try:
            rows.extend(np.frombuffer(blob, dtype=np.float16) for (blob,) in db.execute("SELECT vector FROM embeddings"))
        finally:
            db.close()
    width = max((len(row) for row in rows), default=0)
    return np.stack([row for row in rows if len(row) == width]).astype(np.float32)


def real_queries(pattern: str, width: int) -> np.ndarray:
    found = [np.load(name) for name in sorted(glob.glob(pattern)) if "classdoc" not in Path(name).name]
    found = [array for array in found if array.ndim == 2 and array.shape[1] == width]
    return np.concatenate(found).astype(np.float32)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def measure(name: str, rows: np.ndarray, queries: np.ndarray, rows_per_list: int, probes: list[int]) -> None:
    import faiss

    faiss.omp_set_num_threads(2)
    flat = empty_vector_index(rows.shape[1])
    flat.add(rows)
    nlist = max(8, len(rows) // rows_per_list)
    started = time.perf_counter()
    import codesearch.segments as segments

    segments.NLIST = nlist
    quantizer = train_quantizer(rows[:: max(1, len(rows) // (64 * nlist))])
    trained = time.perf_counter() - started
    ivf = segments._ivf_index(quantizer)
    started = time.perf_counter()
    ivf.add(rows)
    added = time.perf_counter() - started

    def timed_search(index, parameters=None):
        times, found = [], []
        for query in queries:
            began = time.perf_counter()
            _, ids = index.search(query.reshape(1, -1), 10, params=parameters)
            times.append((time.perf_counter() - began) * 1000)
            found.append(ids[0])
        return np.asarray(found), statistics.median(times), sorted(times)[int(0.95 * (len(times) - 1))]

    exact, median, p95 = timed_search(flat)
    print(f"{name}: {len(rows):,} rows of {rows.shape[1]} dims, {len(queries)} queries, {nlist} lists "
          f"(k-means {trained:.1f} s, adding {added:.1f} s)")
    print(f"  {'search':<16} {'recall@10':>10} {'median ms':>10} {'p95 ms':>8} {'rows scanned':>13}")
    print(f"  {'flat (exact)':<16} {1.0:>10.3f} {median:>10.2f} {p95:>8.2f} {100:>12.1f}%")
    for nprobe in probes:
        if nprobe > nlist:
            continue
        found, median, p95 = timed_search(ivf, faiss.SearchParametersIVF(nprobe=nprobe))
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
        print(f"  {f'IVF nprobe {nprobe}':<16} {recall:>10.3f} {median:>10.2f} {p95:>8.2f} "
              f"{100 * nprobe / nlist:>12.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", help="glob of index databases whose embedding caches are the real rows")
    parser.add_argument("--queries", help="glob of .npy files of real question vectors")
    parser.add_argument("--random", type=int, default=0, help="rows of random unit vectors (0: none)")
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--rows-per-list", type=int, default=1000)
    parser.add_argument("--probes", default="4,8,16,32,64,128")
    arguments = parser.parse_args()
    probes = [int(value) for value in arguments.probes.split(",")]
    if arguments.sqlite:
        rows = unit(real_rows(arguments.sqlite))
        queries = unit(real_queries(arguments.queries, rows.shape[1]))
        measure("real", rows, queries, arguments.rows_per_list, probes)
    if arguments.random:
        generator = np.random.default_rng(0)
        rows = unit(generator.standard_normal((arguments.random, arguments.dim), dtype=np.float32))
        queries = unit(generator.standard_normal((200, arguments.dim), dtype=np.float32))
        measure("random", rows, queries, arguments.rows_per_list, probes)


if __name__ == "__main__":
    main()
