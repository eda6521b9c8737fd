"""Issue 18's first question: on what should segmented BM25 be built? Measures, at N units, side by side:

  bm25s, whole     what codesearch does today: any refresh rebuilds every unit's precomputed scores
  tantivy          Tantivy's Python binding: segments, deletes and merges built in; a refresh is
                   delete + add + commit
  segments (tf)    term frequencies per immutable segment (a scipy CSC matrix and document lengths),
                   deletions as a mask, BM25 computed at query time from organisation-wide statistics:
                   document frequencies kept exact (a deleted unit's terms are subtracted) and one
                   average length

for: build time and bytes, a one-unit refresh (time, bytes written), warm query latency (median, p95,
10 code-term queries drawn from the documents), and whether the answers after refreshes equal those of
an index built from scratch over the same units (the issue asks for identical answers).

    pip install tantivy bm25s   # not codesearch dependencies (any more); only this benchmark needs them
    python benchmarks/lexical_engines.py [--units 100000] [--refreshes 20] [--queries 200]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from query_latency import fake_function  # noqa: E402  the generator the latency benchmark uses

from codesearch.index.terms import query_terms, text_terms, unit_document  # noqa: E402

K1, B = 1.2, 0.75  # as codesearch's bm25s index


def documents(count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for number in range(count):
        symbol, text = fake_function(rng, number)
        out.append(unit_document(symbol, f"pkg{number % 97}/module{number % 1013}.py", [text_terms(text)]))
    return out


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def written_since(folder: Path, since: float, before: dict[str, int]) -> int:
    """Bytes of files created or changed since `since` (by size and mtime), as a refresh writes them."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file():
            stat = path.stat()
            if stat.st_mtime >= since or before.get(str(path)) != stat.st_size:
                total += stat.st_size
    return total


def sizes(folder: Path) -> dict[str, int]:
    return {str(path): path.stat().st_size for path in folder.rglob("*") if path.is_file()}


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


# -- segments of term frequencies, BM25 at query time --------------------------------------------------


class Segment:
    def __init__(self, ids: list[int], docs: list[list[str]], vocabulary: dict[str, int]):
        import scipy.sparse as sparse

        rows, columns, counts = [], [], []
        for row, doc in enumerate(docs):
            terms, frequency = np.unique([vocabulary.setdefault(term, len(vocabulary)) for term in doc],
                                         return_counts=True)
            rows.extend([row] * len(terms))
            columns.extend(terms.tolist())
            counts.extend(frequency.tolist())
        self.ids = np.asarray(ids, dtype=np.int64)
        self.lengths = np.asarray([len(doc) for doc in docs], dtype=np.float32)
        self.tf = sparse.csc_matrix((np.asarray(counts, dtype=np.float32), (rows, columns)),
                                    shape=(len(docs), max(len(vocabulary), 1)))
        self.deleted = np.zeros(len(docs), dtype=bool)

    def frequencies(self, width: int) -> np.ndarray:
        live = self.tf[~self.deleted] if self.deleted.any() else self.tf
        counts = np.diff(live.indptr) if live.shape[0] else np.zeros(live.shape[1], dtype=np.int64)
        return np.pad(counts, (0, width - len(counts)))

    def save(self, folder: Path) -> None:
        import scipy.sparse as sparse

        folder.mkdir()
        sparse.save_npz(folder / "tf.npz", self.tf, compressed=False)
        np.save(folder / "ids.npy", self.ids)
        np.save(folder / "lengths.npy", self.lengths)


class SegmentedBM25:
    def __init__(self, folder: Path):
        self.folder, self.vocabulary, self.segments, self.where = folder, {}, [], {}

    def add_segment(self, ids: list[int], docs: list[list[str]]) -> None:
        for unit_id in ids:  # a unit written again replaces the old one: mark that one deleted
            if unit_id in self.where:
                segment, row = self.where[unit_id]
                segment.deleted[row] = True
        segment = Segment(ids, docs, self.vocabulary)
        self.segments.append(segment)
        self.where.update({unit_id: (segment, row) for row, unit_id in enumerate(ids)})
        segment.save(self.folder / f"segment-{len(self.segments)}")
        deletions = {f"segment-{n + 1}": np.flatnonzero(s.deleted) for n, s in enumerate(self.segments)}
        np.savez(self.folder / f"deleted-{len(self.segments)}.npz", **deletions)  # the generation's deletion set
        self._statistics()

    def _statistics(self) -> None:
        width = len(self.vocabulary)
        self.df = sum(segment.frequencies(width) for segment in self.segments)
        live = [segment.lengths[~segment.deleted] for segment in self.segments]
        self.documents = sum(len(lengths) for lengths in live)
        self.average = float(np.concatenate(live).mean())

    def search(self, terms: list[str], limit: int) -> list[tuple[int, float]]:
        columns = [self.vocabulary[term] for term in terms if term in self.vocabulary]
        if not columns:
            return []
        df = self.df[columns].astype(np.float64)
        idf = np.log(1 + (self.documents - df + 0.5) / (df + 0.5))
        found_ids, found_scores = [], []
        for segment in self.segments:
            scores = np.zeros(len(segment.ids), dtype=np.float64)
            norms = K1 * (1 - B + B * segment.lengths / self.average)
            for column, weight in zip(columns, idf):
                if column >= segment.tf.shape[1]:
                    continue
                start, end = segment.tf.indptr[column], segment.tf.indptr[column + 1]
                rows, tf = segment.tf.indices[start:end], segment.tf.data[start:end]
                scores[rows] += weight * tf / (tf + norms[rows])
            scores[segment.deleted] = 0
            hit = np.flatnonzero(scores > 0)
            found_ids.append(segment.ids[hit])
            found_scores.append(scores[hit])
        ids, scores = np.concatenate(found_ids), np.concatenate(found_scores)
        best = np.argsort(-scores, kind="stable")[:limit]
        return [(int(ids[i]), float(scores[i])) for i in best]


# -- tantivy ---------------------------------------------------------------------------------------


def tantivy_index(folder: Path):
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("id", stored=True, indexed=True, fast=True)
    builder.add_text_field("terms", stored=False, tokenizer_name="terms", index_option="freq")
    index = tantivy.Index(builder.build(), path=str(folder))
    # The terms are codesearch's, already split and stemmed: tantivy only splits at spaces.
    index.register_tokenizer("terms", tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())
    return index


def tantivy_add(index, ids: list[int], docs: list[list[str]], replace: bool) -> None:
    import tantivy

    writer = index.writer(heap_size=256 << 20, num_threads=1)
    for unit_id, doc in zip(ids, docs):
        if replace:
            writer.delete_documents_by_term("id", int(unit_id))
        document = tantivy.Document()
        document.add_unsigned("id", int(unit_id))
        document.add_text("terms", " ".join(doc))
        writer.add_document(document)
    writer.commit()
    writer.wait_merging_threads()
    index.reload()


def tantivy_search(index, terms: list[str], limit: int) -> list[tuple[int, float]]:
    import tantivy

    if not terms:
        return []
    query = tantivy.Query.boolean_query([(tantivy.Occur.Should, tantivy.Query.term_query(index.schema, "terms", term))
                                         for term in terms])
    searcher = index.searcher()
    return [(searcher.doc(address)["id"][0], score) for score, address in searcher.search(query, limit).hits]


# -- the run ---------------------------------------------------------------------------------------


class WholeBM25s:
    """codesearch's lexical index before segments: bm25s over every unit, scores precomputed at build time."""

    def __init__(self, ids, documents):
        import logging

        import bm25s

        logging.getLogger("bm25s").setLevel(logging.ERROR)
        self.ids = np.asarray(ids, dtype=np.int64)
        self.retriever = bm25s.BM25(k1=K1, b=B)
        self.retriever.index(documents, show_progress=False)

    def save(self, folder: Path) -> None:
        self.retriever.save(str(folder))

    def search(self, terms: list[str], limit: int) -> list[tuple[int, float]]:
        term_ids = self.retriever.get_tokens_ids(terms)
        if not term_ids:
            return []
        scores = self.retriever.get_scores_from_ids(term_ids)
        matching = np.flatnonzero(scores > 0)
        if len(matching) > limit:
            matching = matching[np.argpartition(-scores[matching], limit - 1)[:limit]]
        ranked = matching[np.argsort(-scores[matching], kind="stable")]
        return [(int(self.ids[i]), float(scores[i])) for i in ranked]


def latency(search, queries: list[list[str]]) -> tuple[float, float]:
    times = []
    for terms in queries:
        started = time.perf_counter()
        search(terms, 100)
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times) * 1000, times[int(0.95 * (len(times) - 1))] * 1000


def same_answers(a, b, queries, k=10) -> tuple[float, float]:
    """Shares of queries whose top-k units are the same, in order, and whose top-k scores are the same
    rank by rank (relative 1e-4: units tied in score may swap, as float rounding orders them)."""
    ranked = scored = 0
    for terms in queries:
        x, y = a(terms, k), b(terms, k)
        ranked += [i for i, _ in x] == [i for i, _ in y]
        scored += len(x) == len(y) and np.allclose([s for _, s in x], [s for _, s in y], rtol=1e-4)
    return ranked / len(queries), scored / len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--refreshes", type=int, default=20)
    parser.add_argument("--queries", type=int, default=200)
    arguments = parser.parse_args()

    docs = documents(arguments.units, seed=1)
    edits = documents(arguments.refreshes, seed=2)  # new texts for units 0, 7, 14, ...
    edited = [number * 7 for number in range(arguments.refreshes)]
    rng = random.Random(3)
    queries = [query_terms(" ".join(rng.sample(docs[rng.randrange(len(docs))], 3))) for _ in range(arguments.queries)]
    final = list(docs)
    for unit_id, doc in zip(edited, edits):
        final[unit_id] = doc
    ids = list(range(len(docs)))
    print(f"{arguments.units} units, {sum(map(len, docs)) / len(docs):.0f} terms each on average; "
          f"{arguments.refreshes} one-unit refreshes; {arguments.queries} queries; CPUs: {os.cpu_count()}")

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)

        # bm25s, whole: today's refresh rebuilds it all
        bm25s_index, build = timed(WholeBM25s, ids, docs)
        _, save = timed(bm25s_index.save, scratch / "bm25s")
        size = folder_bytes(scratch / "bm25s")
        rebuilt, rebuild = timed(WholeBM25s, ids, final)
        median, p95 = latency(rebuilt.search, queries)
        print(f"bm25s, whole:   build {build:.1f} s + save {save:.2f} s, {size / 2**20:.1f} MiB; one-unit refresh = "
              f"rebuild {rebuild:.1f} s + save, {size / 2**20:.1f} MiB written; query median {median:.2f} ms, p95 {p95:.2f}")

        # segments of term frequencies
        segmented = SegmentedBM25(scratch / "segments")
        (scratch / "segments").mkdir()
        _, build = timed(segmented.add_segment, ids, docs)
        size = folder_bytes(scratch / "segments")
        refresh_times, refresh_bytes = [], []
        for unit_id, doc in zip(edited, edits):
            since, before = time.time(), sizes(scratch / "segments")
            _, seconds = timed(segmented.add_segment, [unit_id], [doc])
            refresh_times.append(seconds)
            refresh_bytes.append(written_since(scratch / "segments", since, before))
        median, p95 = latency(segmented.search, queries)
        agree = same_answers(segmented.search, rebuilt.search, queries)
        print(f"segments (tf):  build {build:.1f} s, {size / 2**20:.1f} MiB; one-unit refresh median "
              f"{statistics.median(refresh_times) * 1000:.0f} ms, {statistics.median(refresh_bytes) / 1024:.0f} KiB written; "
              f"query median {median:.2f} ms, p95 {p95:.2f} over {len(segmented.segments)} segments; "
              f"same top 10 as a fresh bm25s build: {agree[0]:.0%} (same scores {agree[1]:.0%})")

        # tantivy
        try:
            (scratch / "tantivy").mkdir()
            index = tantivy_index(scratch / "tantivy")
        except ImportError:
            print("tantivy: not installed (pip install tantivy)")
            return
        _, build = timed(tantivy_add, index, ids, docs, False)
        size = folder_bytes(scratch / "tantivy")
        refresh_times, refresh_bytes = [], []
        for unit_id, doc in zip(edited, edits):
            since, before = time.time(), sizes(scratch / "tantivy")
            _, seconds = timed(tantivy_add, index, [unit_id], [doc], True)
            refresh_times.append(seconds)
            refresh_bytes.append(written_since(scratch / "tantivy", since, before))
        search = lambda terms, limit: tantivy_search(index, terms, limit)  # noqa: E731
        median, p95 = latency(search, queries)
        (scratch / "tantivy-fresh").mkdir()
        fresh = tantivy_index(scratch / "tantivy-fresh")
        tantivy_add(fresh, ids, final, False)
        fresh_search = lambda terms, limit: tantivy_search(fresh, terms, limit)  # noqa: E731
        agree = same_answers(search, fresh_search, queries)
        agree_bm25s = same_answers(fresh_search, rebuilt.search, queries)
        print(f"tantivy:        build {build:.1f} s, {size / 2**20:.1f} MiB; one-unit refresh median "
              f"{statistics.median(refresh_times) * 1000:.0f} ms, {statistics.median(refresh_bytes) / 1024:.0f} KiB written; "
              f"query median {median:.2f} ms, p95 {p95:.2f} over {index.searcher().num_segments} segments; "
              f"same top 10 as a fresh tantivy build: {agree[0]:.0%} (same scores {agree[1]:.0%}); "
              f"a fresh tantivy build's top 10 the same as bm25s': {agree_bm25s[0]:.0%}")


if __name__ == "__main__":
    main()
