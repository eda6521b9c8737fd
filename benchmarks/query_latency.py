"""Warm search latency on a large index, excluding the query embedding.

Builds an index of about N chunks (random unit vectors plus a real BM25 index over generated code-like
text, long functions in two parts) with the product's own store, in one segment, then times `search()` in
each mode.

    python benchmarks/query_latency.py [--chunks 100000] [--dim 1536] [--queries 50]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from codesearch.source.chunk import CHUNKER_VERSION, Chunk
from codesearch.index.database import SCHEMA_VERSION
from codesearch.query.api import Filters
from codesearch.query.engine import search
from codesearch.index.store import IndexStore

WORDS = ("parse read write config buffer socket retry upload cache token user session request response "
         "error handle open close flush stream encode decode json yaml path file index query search rank "
         "score vector batch model load save commit branch merge diff hash lock queue worker thread").split()


# Identifiers in real code follow a long-tailed (Zipf-like) distribution: a few words are everywhere,
# most are rare. A vocabulary of common words plus many rare ones keeps the lexical index honest.
VOCABULARY = WORDS + [f"{a}{b.capitalize()}" for a in WORDS for b in WORDS]
CUMULATIVE_WEIGHTS = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(VOCABULARY))))


def fake_function(rng: random.Random, number: int) -> tuple[str, str]:
    def word() -> str:
        return rng.choices(VOCABULARY, cum_weights=CUMULATIVE_WEIGHTS)[0]

    name = f"{word()}_{word()}_{number}"
    body = "\n".join(f"    {word()}_{word()} = {word()}({word()}, {word()})" for _ in range(rng.randint(3, 25)))
    return name, f"def {name}({word()}, {word()}):\n{body}\n    return {word()}"


def build(directory: Path, chunks: int, dim: int, seed: int = 0) -> IndexStore:
    rng = random.Random(seed)
    vectors_rng = np.random.default_rng(seed)
    store = IndexStore.open(directory, create=True)
    changed, per_file = {}, 34  # functions per file: with the long ones in two parts, about 50 chunks
    names: list[str] = []  # every function made so far: what later ones call
    for file_number in range(chunks // 50):
        path = f"pkg{file_number % 97}/module_{file_number}.py"
        file_chunks, keys = [], []
        for i in range(per_file):
            name, text = fake_function(rng, file_number * per_file + i)
            language = "python" if file_number % 4 else "go"
            lines = text.split("\n")
            # Long functions come in two parts, as the chunker cuts them for the model's window.
            halves = [lines] if len(lines) <= 16 else [lines[:len(lines) // 2], lines[len(lines) // 2:]]
            start = i * 30 + 1
            # Each calls up to five functions made before it, popular ones (the first made) more often.
            callees = [names[int(len(names) * rng.random() ** 3)] for _ in range(rng.randint(0, 5))] if names else []
            names.append(name)
            for half in halves:
                calls = tuple((callee, "call", start + 1, "") for callee in callees) if half is halves[0] else ()
                file_chunks.append(Chunk(path, start, start + len(half) - 1, name, "function", language,
                                         "\n".join(half), references=calls))
                keys.append(f"{path}:{start}")
                start += len(half)
        vectors = vectors_rng.normal(size=(len(file_chunks), dim)).astype(np.float32)
        store.database.cache_vectors(keys, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        changed[path] = (f"fp{file_number}", file_chunks, keys)
    store.replace_files({"model": "random", "dimension": dim, "chunker_version": CHUNKER_VERSION,
                         "schema_version": SCHEMA_VERSION}, changed, removed=[])
    return store


def time_queries(store, dim, queries, mode, filters=Filters()) -> list[float]:
    rng = np.random.default_rng(1)
    timings = []
    for query in queries:
        vector = rng.normal(size=dim).astype(np.float32)
        vector /= np.linalg.norm(vector)
        started = time.perf_counter()
        search(store, query, 10, mode, vector, 1.0, filters)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    rng = random.Random(7)
    queries = [" ".join(rng.sample(VOCABULARY, 4)) for _ in range(args.queries)]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        store = build(Path(tmp) / ".codesearch", args.chunks, args.dim)
        print(f"built {store.database.chunk_count()} chunks, dim {args.dim}, in {time.perf_counter() - started:.1f}s")
        store.vector_index()  # load once: the figure is warm latency
        print(f"{'mode':<28} {'median ms':>10} {'p95 ms':>10}")
        cases = [("hybrid", Filters()), ("semantic", Filters()), ("lexical", Filters()),
                 ("hybrid --lang go", Filters(languages=("go",))),
                 ("hybrid --path 'pkg1*'", Filters(include_globs=("pkg1*",)))]
        for label, filters in cases:
            timings = time_queries(store, args.dim, queries, label.split()[0], filters)
            p95 = statistics.quantiles(timings, n=20)[-1]
            print(f"{label:<28} {statistics.median(timings):>10.1f} {p95:>10.1f}")
        store.close()


if __name__ == "__main__":
    main()
