"""What the segment store (issue 18) costs: build, warm queries, a one-file refresh, a merge, memory.

Runs one code version in one process, so before/after is two runs of this same script, the old code put
first on the path (the benchmark only uses API both versions have; `merge_segments` is new):

    python benchmarks/segments.py [--chunks 100000] [--dim 1536] [--queries 50] [--refreshes 5]
    python benchmarks/segments.py --queries-of DIR --queries 20     # a kept index again, as it is now
    git worktree add ../old-code 466ccdc     # the store before segments
    PYTHONPATH=../old-code python benchmarks/segments.py

The data is query_latency.py's: random unit vectors plus generated code-like text, about 50 chunks a file,
built with the product's own `IndexStore`. It prints:

  1. build: seconds, bytes of the .codesearch folder (and per chunk), peak RSS (getrusage) after it;
  2. warm query latency, median and p95 over --queries queries, hybrid / lexical / semantic, on the index
     reopened (so the figures include no state left by the build);
  3. a one-file edit refresh: every function of one file gets new text and new embedding keys (about 50
     chunks), the vectors cached first (embedding excluded), then `replace_files` alone is timed, with the
     bytes this process wrote meanwhile from /proc/self/io (`write_bytes`: what reached the block layer or
     the page cache as dirty pages; `wchar`: every byte passed to write()); median over --refreshes
     different files. With the segment store, more refreshes follow up to --many-refreshes segments and the
     queries are timed again (no merge in between: the worst case before a merge runs);
  4. (segment store only) a merge: a second index built as 10 refreshes of chunks/10 each (10 segments),
     then `merge_segments()` timed, with its bytes written, and the segments left;
  5. RSS of a fresh process (this script again) before and after it opens, loads and queries the index:
     memory per chunk (RssAnon is the process's own memory; RssFile counts pages of files it maps, the
     memory-mapped vectors among them, which the kernel may drop and read again).

The last line is the figures as JSON (`RESULT {...}`), for tables.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from query_latency import VOCABULARY, build, fake_function, time_queries  # noqa: E402

from codesearch.source.chunk import Chunk  # noqa: E402
from codesearch.index.store import IndexStore  # noqa: E402

FUNCTIONS_PER_FILE = 34  # as query_latency.build: with long functions in two parts, about 50 chunks a file


def io_counters() -> dict[str, int]:
    with open("/proc/self/io") as handle:
        return {name: int(value) for name, value in (line.split(":") for line in handle)}


def memory() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile of this process, in bytes."""
    found = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                found[name] = int(value.split()[0]) * 1024
    return found


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def disk_bytes(directory: Path) -> int:
    return sum((Path(folder) / name).stat().st_size for folder, _, names in os.walk(directory) for name in names)


def file_change(store: IndexStore, file_number: int, dim: int, tag: str, rng: random.Random,
                vectors_rng: np.random.Generator) -> dict:
    """One file as query_latency.build makes it, with fresh text and fresh keys; vectors cached."""
    path = f"pkg{file_number % 97}/module_{file_number}.py"
    chunks, keys = [], []
    for i in range(FUNCTIONS_PER_FILE):
        name, text = fake_function(rng, file_number * FUNCTIONS_PER_FILE + i)
        lines = text.split("\n")
        halves = [lines] if len(lines) <= 16 else [lines[:len(lines) // 2], lines[len(lines) // 2:]]
        start = i * 30 + 1
        for half in halves:
            chunks.append(Chunk(path, start, start + len(half) - 1, name, "function",
                                "python" if file_number % 4 else "go", "\n".join(half)))
            keys.append(f"{path}:{start}:{tag}")
            start += len(half)
    vectors = vectors_rng.normal(size=(len(chunks), dim)).astype(np.float32)
    store.database.cache_vectors(keys, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return {path: (f"fp{file_number}-{tag}", chunks, keys)}


def timed_refresh(store: IndexStore, manifest: dict, changed: dict) -> tuple[float, int, int]:
    before = io_counters()
    started = time.perf_counter()
    store.replace_files(manifest, changed, removed=[])
    seconds = time.perf_counter() - started
    after = io_counters()
    return seconds, after["write_bytes"] - before["write_bytes"], after["wchar"] - before["wchar"]


def query_figures(store: IndexStore, dim: int, queries: list[str]) -> dict[str, list[float]]:
    figures = {}
    for mode in ("hybrid", "lexical", "semantic"):
        # Warm: the index of this generation loaded, and the pages these queries touch read once (the vectors
        # are the same in every mode, so a mode timed first would otherwise pay the others' page faults).
        time_queries(store, dim, queries, mode)
        timings = time_queries(store, dim, queries, mode)
        figures[mode] = [statistics.median(timings), statistics.quantiles(timings, n=20)[-1]]
    return figures


def dense_recall(store: IndexStore, dim: int, count: int = 20, k: int = 10, pool: int = 100) -> float | None:
    """Recall@k of the dense retriever (asked for `pool`, as search.Query asks) against exact search over
    every live row, for random query vectors: the worst case for a sketch, random rows having no structure."""
    if not hasattr(store, "_segment"):
        return None
    rng = np.random.default_rng(5)
    index, shares = store.vector_index(), []
    for _ in range(count):
        vector = rng.normal(size=dim).astype(np.float32)
        vector /= np.linalg.norm(vector)
        found = [chunk_id for chunk_id, _ in index.search(vector, pool)[:k]]
        exact = []
        for segment, deleted in index.parts:
            scores, rows = segment.vectors.search(vector.reshape(1, -1), min(len(segment), k + len(deleted)))
            gone = set(deleted.tolist())
            exact.extend((float(s), int(segment.chunk_ids[r])) for s, r in zip(scores[0], rows[0])
                         if r >= 0 and r not in gone)
        shares.append(len(set(found) & {chunk_id for _, chunk_id in sorted(exact, reverse=True)[:k]}) / k)
    return float(np.mean(shares))


def print_queries(label: str, figures: dict[str, list[float]]) -> None:
    print(f"{label}: " + "; ".join(f"{mode} median {median:.1f} ms p95 {p95:.1f} ms"
                                   for mode, (median, p95) in figures.items()), flush=True)


def mib(count: float) -> str:
    return f"{count / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--refreshes", type=int, default=5, help="timed one-file refreshes (the median)")
    parser.add_argument("--many-refreshes", type=int, default=20, help="segments' worth of refreshes before "
                                                                       "the second query timing (segment store)")
    parser.add_argument("--no-merge", action="store_true", help="skip step 4")
    parser.add_argument("--merge-only", action="store_true", help="step 4 alone")
    parser.add_argument("--tmp", default=None, help="folder for the indexes (default: the system's)")
    parser.add_argument("--keep", default=None, help="build the main index in this (new) folder and keep it")
    parser.add_argument("--queries-of", default=None, help="only time warm queries (step 2) on the index a "
                                                           "--keep run left in this folder, as it is now")
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)  # step 5's child process
    args = parser.parse_args()
    if args.queries_of:
        import codesearch

        store = IndexStore.open(Path(args.queries_of) / ".codesearch")
        rng = random.Random(7)
        print(f"codesearch from {Path(codesearch.__file__).parent}; {len(store.segment_numbers())} segments, "
              f"{store.database.chunk_count()} chunks", flush=True)
        print_queries("warm queries", query_figures(store, args.dim,
                                                    [" ".join(rng.sample(VOCABULARY, 4)) for _ in range(args.queries)]))
        return
    if args.memory_of:
        before = memory()
        store = IndexStore.open(Path(args.memory_of))
        store.vector_index()
        store.lexical_index()
        rng = random.Random(7)
        query_figures(store, args.dim, [" ".join(rng.sample(VOCABULARY, 4)) for _ in range(args.queries)])
        print(json.dumps({"before": before, "after": memory(), "peak": peak_rss()}))
        return
    import codesearch

    result = {"code": str(Path(codesearch.__file__).parent.parent.name), "chunks_asked": args.chunks,
              "dim": args.dim}
    segmented = hasattr(IndexStore, "merge_segments")
    print(f"codesearch from {Path(codesearch.__file__).parent}; segment store: {segmented}", flush=True)
    rng = random.Random(7)
    queries = [" ".join(rng.sample(VOCABULARY, 4)) for _ in range(args.queries)]
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        if not args.merge_only:
            folder = Path(args.keep) if args.keep else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            main_steps(args, result, folder / ".codesearch", queries, segmented)
    merge_step(args, result, queries, segmented)
    result["peak_rss_end"] = peak_rss()
    print("RESULT " + json.dumps(result), flush=True)


def main_steps(args, result: dict, directory: Path, queries: list[str], segmented: bool) -> None:
    # 1. build
    started = time.perf_counter()
    store = build(directory, args.chunks, args.dim)
    result["build_s"] = time.perf_counter() - started
    count = result["chunks"] = store.database.chunk_count()
    result["disk_bytes"] = disk_bytes(directory)
    result["peak_rss_build"] = peak_rss()
    manifest = {key: value for key, value in store.database.manifest().items() if key in ("model", "dimension")}
    store.close()
    print(f"built {count} chunks dim {args.dim} in {result['build_s']:.1f}s; on disk "
          f"{mib(result['disk_bytes'])} ({result['disk_bytes'] / count:.0f} B/chunk); "
          f"peak RSS {mib(result['peak_rss_build'])}", flush=True)
    del store
    gc.collect()

    # 2. reopened, loaded, queried
    store = IndexStore.open(directory)
    started = time.perf_counter()
    store.vector_index()
    store.lexical_index()
    result["load_s"] = time.perf_counter() - started
    result["queries"] = query_figures(store, args.dim, queries)
    print(f"reopened and loaded in {result['load_s']:.2f}s", flush=True)
    print_queries("warm queries", result["queries"])
    result["dense_recall_at_10"] = dense_recall(store, args.dim)
    print(f"dense recall@10 against exact search (random vectors): {result['dense_recall_at_10']}", flush=True)

    # 5. memory, in a fresh process (this one's heap still holds the build's freed memory)
    child = subprocess.run([sys.executable, __file__, "--memory-of", str(directory), "--dim", str(args.dim),
                            "--queries", str(args.queries)], capture_output=True, text=True, check=True)
    result["memory"] = json.loads(child.stdout.strip().splitlines()[-1])
    grown = {name: result["memory"]["after"][name] - result["memory"]["before"][name]
             for name in result["memory"]["before"]}
    print(f"fresh process: RSS {mib(result['memory']['before']['VmRSS'])} after imports, "
          f"{mib(result['memory']['after']['VmRSS'])} after load and queries (grew {mib(grown['VmRSS'])}: "
          f"anon {mib(grown['RssAnon'])}, file-backed {mib(grown['RssFile'])}; {grown['VmRSS'] / count:.0f} "
          f"B/chunk, anon {grown['RssAnon'] / count:.0f} B/chunk)",
          flush=True)

    # 3. one-file refreshes
    edit_rng, vectors_rng = random.Random(11), np.random.default_rng(11)
    files = count // 50
    refreshes = []
    for number in range(args.refreshes):
        changed = file_change(store, (number * 7919) % files, args.dim, f"edit{number}", edit_rng, vectors_rng)
        refreshes.append(timed_refresh(store, manifest, changed))
        print(f"refresh {number + 1}: {refreshes[-1][0]:.3f}s, write_bytes {mib(refreshes[-1][1])}, "
              f"wchar {mib(refreshes[-1][2])}", flush=True)
    result["refresh_s"] = statistics.median(r[0] for r in refreshes)
    result["refresh_write_bytes"] = statistics.median(r[1] for r in refreshes)
    result["refresh_wchar"] = statistics.median(r[2] for r in refreshes)
    print(f"one-file refresh (median of {len(refreshes)}): {result['refresh_s']:.3f}s, write_bytes "
          f"{mib(result['refresh_write_bytes'])}, wchar {mib(result['refresh_wchar'])}", flush=True)
    if segmented:
        for number in range(args.refreshes, args.many_refreshes):
            changed = file_change(store, (number * 7919) % files, args.dim, f"edit{number}", edit_rng,
                                  vectors_rng)
            store.replace_files(manifest, changed, removed=[])
        result["segments_after_refreshes"] = len(store.segment_numbers())
    result["refreshes_done"] = max(args.refreshes, args.many_refreshes if segmented else 0)
    result["queries_after_refreshes"] = query_figures(store, args.dim, queries)
    print_queries(f"after {result['refreshes_done']} refreshes"
                  + (f" ({result['segments_after_refreshes']} segments)" if segmented else ""),
                  result["queries_after_refreshes"])
    result["disk_bytes_after_refreshes"] = disk_bytes(directory)
    store.close()
    del store
    gc.collect()

def merge_step(args, result: dict, queries: list[str], segmented: bool) -> None:
    """4. merge (segment store only)"""
    if segmented and not args.no_merge:
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            directory = Path(tmp) / ".codesearch"
            store = IndexStore.open(directory, create=True)
            build_rng, vectors_rng = random.Random(3), np.random.default_rng(3)
            # Each part a little under chunks/10, so that all ten fall in one size class of the merge policy
            # (ten parts of about 10,030 chunks straddle the 10,000 boundary and are never merged).
            files, parts = args.chunks // 50, 10
            per_part = int(files / parts * 0.98)
            for part in range(parts):
                changed = {}
                for file_number in range(part * per_part, (part + 1) * per_part):
                    changed.update(file_change(store, file_number, args.dim, "m", build_rng, vectors_rng))
                store.replace_files({"model": "random", "dimension": args.dim}, changed, removed=[])
            before_segments = len(store.segment_numbers())
            result["queries_before_merge"] = query_figures(store, args.dim, queries)
            print_queries(f"before the merge ({before_segments} segments)", result["queries_before_merge"])
            before, started = io_counters(), time.perf_counter()
            merged = store.merge_segments()
            result["merge_s"] = time.perf_counter() - started
            after = io_counters()
            result["merge_write_bytes"] = after["write_bytes"] - before["write_bytes"]
            result["merge_wchar"] = after["wchar"] - before["wchar"]
            result["merge_segments"] = [before_segments, len(merged), len(store.segment_numbers())]
            result["merge_chunks"] = store.database.chunk_count()
            print(f"merge of {len(merged)} of {before_segments} segments ({result['merge_chunks']} chunks): "
                  f"{result['merge_s']:.1f}s, write_bytes {mib(result['merge_write_bytes'])}, wchar "
                  f"{mib(result['merge_wchar'])}; segments after: {len(store.segment_numbers())}", flush=True)
            result["queries_after_merge"] = query_figures(store, args.dim, queries)
            print_queries("after the merge", result["queries_after_merge"])
            store.close()


if __name__ == "__main__":
    main()
