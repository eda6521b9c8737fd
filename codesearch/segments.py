"""The index's files: immutable segments, each the vectors and BM25 postings of the chunks one refresh (or
one merge) wrote, as Lucene and Tantivy keep theirs.

A segment is a folder `segment-N/`, written whole under a temporary name and renamed (trust.replace_atomically),
never changed afterwards:

    vectors.faiss        FAISS index of the chunks' vectors, row i = chunk_ids[i] (fp16, inner product): flat,
                         or past IVF_MIN_ROWS an IVF index over the repository's one coarse quantizer
    chunk_ids.npy        the chunk ids, ascending
    unit_*.npy, term_*.npy, posting_*.npy   the BM25 documents of its units (lexical.Postings)
    format.json          what the folder holds, to tell a damaged or foreign one apart

The database lists the segments of the current generation and the chunks deleted from each since it was
written (metadata.py); a generation is that list, committed in one transaction, so a run killed at any
moment leaves the old list or the new one. Folders no generation lists (a killed run's, or those a merge
replaced) are deleted afterwards, by exact name only. Everything is memory-mapped: a server with many
repositories keeps in memory only the pages its searches touch.

A flat scan costs time in proportion to the rows (about 35 ms per 100,000 1536-d rows on two cores), so a
segment of IVF_MIN_ROWS rows or more is an IVF index instead: its rows are filed under the nearest of
NLIST centroids, and a search scans the NPROBE lists nearest the query. The centroids (`quantizer-N.faiss`)
are trained once, by k-means on a sample of the first segment that large, and every later IVF segment is
filed under the same ones.

Segments merge by a tiered policy (plan_merge): a refresh adds a small segment, and when ten segments within
a factor ten of each other in size gather, or a segment is mostly deleted, they are rewritten as one,
keeping live rows only.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from codesearch.errors import IndexDamaged
from codesearch.lexical import Postings
from codesearch.trust import open_private, read_regular_file, remove_path, replace_atomically

if TYPE_CHECKING:
    import numpy as np

_FORMAT = 1
_FOLDER = re.compile(r"segment-(\d+)")
# Names of the earlier layout (one whole FAISS file and one bm25s folder per generation) and temporaries of
# killed runs: the only other names ever deleted here.
_OWN_LEFTOVER = re.compile(r"(?:segment-\d+|quantizer-\d+\.faiss|vectors-\d+\.faiss|lexical-\d+|manifest\.json)"
                           r"\.tmp\d+|vectors-\d+\.faiss|lexical-\d+|quantizer-\d+\.faiss")
MERGE_FACTOR = 10  # segments within a factor this wide of each other that merge (Lucene's segments per tier)
SIZE_CLASS_FLOOR = 1000  # live chunks: every segment below this counts as this large when merges are planned
SINGLE_THREAD_ROWS = 20_000  # a smaller segment is scanned on one thread: starting OpenMP's cost more than it saves
DELETED_SHARE = 0.3  # a segment with more of its rows deleted than this is rewritten
IVF_MIN_ROWS = 50_000  # rows from which a segment is an IVF index rather than flat
NLIST = 1024  # centroids of the coarse quantizer: lists of 50-1,000 rows from 50,000 rows to a million
# Lists a search scans per IVF segment: 3/8 of them. Questions lie far from the code they find, so a probe
# must scan that much for recall@10 >= 0.98 against exact search on real embeddings (0.987 at 31 %, 0.994 at
# 42 %: benchmarks/ivf_recall.py, SEGMENTS.md); that makes IVF about 2.5x faster than a flat scan, not more.
NPROBE = 384
TRAINING_ROWS = 64 * NLIST  # k-means sample
EXACT_FILTERED_ROWS = 50_000  # a filter leaving at most this many rows of an IVF segment scores them all
_VECTOR_BATCH = 8192


def folder_of(directory: Path, number: int) -> Path:
    return directory / f"segment-{number}"


class Segment:
    """One segment, opened read-only and memory-mapped."""

    def __init__(self, number: int, chunk_ids: np.ndarray, vectors, postings: Postings, ivf: bool = False):
        self.number = number
        self.ivf = ivf
        self.chunk_ids = chunk_ids  # ascending: row i of `vectors` is chunk chunk_ids[i]
        self.vectors = vectors
        self.postings = postings

    def __len__(self) -> int:
        return len(self.chunk_ids)

    @classmethod
    def open(cls, directory: Path, number: int) -> "Segment":
        """IndexDamaged when the folder is missing, unreadable or not what its header says."""
        import faiss
        import numpy as np

        folder = folder_of(directory, number)
        try:
            header = json.loads(read_regular_file(folder / "format.json", 4096))
            if header.get("format") != _FORMAT:
                raise ValueError(f"format {header.get('format')!r}")
            chunk_ids = np.load(folder / "chunk_ids.npy", mmap_mode="r", allow_pickle=False).view(np.ndarray)
            ivf = header.get("vectors") == "ivf"
            # SQLite's reasoning holds here too: the folder is this user's, closed to others, and holds no link.
            vectors = faiss.read_index(str(folder / "vectors.faiss"),
                                       (faiss.IO_FLAG_MMAP if ivf else faiss.IO_FLAG_MMAP_IFC) | faiss.IO_FLAG_READ_ONLY)
            if ivf:
                vectors.parallel_mode = 1  # one query's lists are shared among the threads (0 shares queries)
            postings = Postings.load(folder)
            if not (len(chunk_ids) == vectors.ntotal == header["chunks"] and len(postings) == header["units"]):
                raise ValueError("its files disagree")
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError) as error:
            raise IndexDamaged(f"segment {number} of the index in {directory} is unreadable ({error}); "
                               f"run `codesearch index` to rebuild what it held") from None
        return cls(number, chunk_ids, vectors, postings, ivf)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The rows of those of `ids` this segment holds."""
        import numpy as np

        rows = np.searchsorted(self.chunk_ids, ids)
        inside = rows < len(self.chunk_ids)
        rows, ids = rows[inside], np.asarray(ids)[inside]
        return rows[self.chunk_ids[rows] == ids]

    def live_rows(self, deleted) -> np.ndarray:
        """The rows of the chunks not in `deleted` (chunk ids)."""
        import numpy as np

        return np.flatnonzero(~np.isin(self.chunk_ids, np.asarray(deleted, dtype=np.int64)))

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """float32 vectors of chunk ids this segment holds, in the order given."""
        import numpy as np

        rows = np.searchsorted(self.chunk_ids, ids)
        return self.vectors.reconstruct_batch(rows.astype(np.int64)) if len(rows) else \
            np.zeros((0, self.vectors.d), dtype=np.float32)


def write_segment(directory: Path, number: int, dimension: int, chunk_ids: np.ndarray,
                  vector_batches: Iterable[np.ndarray], postings: Postings, quantizer=None) -> None:
    """Write segment `number`: chunk_ids ascending, their vectors in that order (float32 batches), and the
    BM25 postings of their units; an IVF index over `quantizer` when one is given, flat otherwise. Touches
    nothing else: listing it in a generation is the caller's commit."""
    import faiss
    import numpy as np

    index = empty_vector_index(dimension) if quantizer is None else _ivf_index(quantizer)
    for batch in vector_batches:
        index.add(np.ascontiguousarray(batch, dtype=np.float32))
    if index.ntotal != len(chunk_ids):
        raise ValueError(f"segment {number}: {index.ntotal} vectors for {len(chunk_ids)} chunks")
    if quantizer is not None:
        index.make_direct_map()  # a row's vector read back by its number (vectors_of)

    def write(temporary: Path) -> None:
        temporary.mkdir(0o700)
        _write_index(temporary / "vectors.faiss", index)
        _save_array(temporary / "chunk_ids.npy", np.asarray(chunk_ids, dtype=np.int64))
        postings.save(temporary, _save_array)
        header = {"format": _FORMAT, "chunks": len(chunk_ids), "units": len(postings), "dimension": dimension,
                  "vectors": "flat" if quantizer is None else "ivf"}
        with os.fdopen(open_private(temporary / "format.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL), "w") as handle:
            handle.write(json.dumps(header))

    replace_atomically(folder_of(directory, number), write)


def empty_vector_index(dimension: int):
    import faiss

    # fp16 storage halves memory and disk against flat fp32, and a memory-bound scan gets faster.
    return faiss.IndexScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)


def _ivf_index(quantizer):
    import faiss
    import numpy as np

    index = faiss.IndexIVFScalarQuantizer(faiss.clone_index(quantizer), quantizer.d, quantizer.ntotal,
                                          faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    index.by_residual = False  # rows kept as they are in fp16, as a flat segment keeps them: the same scores
    index.train(np.zeros((1, quantizer.d), dtype=np.float32))  # the centroids are trained; fp16 needs nothing
    return index


def train_quantizer(sample: np.ndarray):
    """NLIST centroids by spherical k-means over a sample of (unit) vectors, in a flat inner-product index."""
    import faiss
    import numpy as np

    sample = np.ascontiguousarray(sample, dtype=np.float32)
    kmeans = faiss.Kmeans(sample.shape[1], min(NLIST, len(sample)), niter=10, spherical=True, seed=1)
    kmeans.train(sample)
    quantizer = faiss.IndexFlatIP(sample.shape[1])
    quantizer.add(kmeans.centroids)
    return quantizer


def quantizer_name(number: int) -> str:
    return f"quantizer-{number}.faiss"


def write_quantizer(directory: Path, number: int, quantizer) -> None:
    replace_atomically(directory / quantizer_name(number), lambda temporary: _write_index(temporary, quantizer))


def read_quantizer(directory: Path, number: int):
    import faiss

    try:
        with os.fdopen(open_private(directory / quantizer_name(number), os.O_RDONLY), "rb") as handle:
            reader = faiss.PyCallbackIOReader(handle.read)
            quantizer = faiss.read_index(reader)
            del reader
            return quantizer
    except (OSError, RuntimeError) as error:
        raise IndexDamaged(f"the coarse quantizer of the index in {directory} is unreadable ({error}); "
                           f"run `codesearch index --rebuild`") from None


def merge_segments(directory: Path, number: int, dimension: int, sources: list[tuple[Segment, np.ndarray]],
                   quantizer=None) -> int:
    """Write segment `number` holding the live rows of `sources`, each (segment, its deleted chunk ids), over
    `quantizer` when given; the number of chunks it holds."""
    import numpy as np

    kept = [(segment, segment.live_rows(deleted)) for segment, deleted in sources]
    chunk_ids = np.concatenate([np.asarray(segment.chunk_ids)[rows] for segment, rows in kept] or [np.zeros(0, np.int64)])
    order = np.argsort(chunk_ids, kind="stable")
    chunk_ids = chunk_ids[order]

    def batches() -> Iterator[np.ndarray]:
        # Rows are gathered source by source, then put in id order, a batch at a time.
        located = np.concatenate([np.stack([np.full(len(rows), s), rows], axis=1) for s, (_, rows) in enumerate(kept)]
                                 or [np.zeros((0, 2), np.int64)])[order]
        for start in range(0, len(located), _VECTOR_BATCH):
            part = located[start:start + _VECTOR_BATCH]
            out = np.empty((len(part), dimension), dtype=np.float32)
            for s, (segment, _) in enumerate(kept):
                mine = np.flatnonzero(part[:, 0] == s)
                if len(mine):
                    out[mine] = segment.vectors.reconstruct_batch(part[mine, 1].astype(np.int64))
            yield out

    postings = Postings.merge([(segment.postings, deleted) for segment, deleted in sources])
    write_segment(directory, number, dimension, chunk_ids, batches(), postings, quantizer)
    return len(chunk_ids)


def live_sample(sources: list[tuple[Segment, np.ndarray]], size: int) -> np.ndarray:
    """Up to `size` live vectors drawn evenly from `sources` (a k-means sample)."""
    import numpy as np

    rows = [(segment, segment.live_rows(deleted)) for segment, deleted in sources]
    total = sum(len(live) for _, live in rows)
    step = max(1, total // size)
    picked = [segment.vectors.reconstruct_batch(live[::step].astype(np.int64)) for segment, live in rows if len(live)]
    return np.concatenate(picked) if picked else np.zeros((0, 1), dtype=np.float32)


class VectorIndex:
    """Exact inner-product search over the live rows of several segments, as if they were one index."""

    def __init__(self, parts: list[tuple[Segment, np.ndarray]], dimension: int):
        import numpy as np

        # Each segment with the rows of its deleted chunks, which no search returns.
        self.parts = [(segment, segment.rows_of(np.asarray(deleted, dtype=np.int64))) for segment, deleted in parts]
        self.dimension = dimension
        self.ntotal = sum(len(segment) - len(deleted) for segment, deleted in self.parts)

    def search(self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(chunk id, score) of the best k live chunks, of those in `allowed` when given."""
        import faiss
        import numpy as np

        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        found: list[tuple[int, float]] = []
        threads = faiss.omp_get_max_threads()
        for segment, deleted in self.parts:
            selector = None
            if allowed is not None:
                rows = segment.rows_of(allowed)
                if len(deleted):
                    rows = rows[~np.isin(rows, deleted)]
                if not len(rows):
                    continue
                if segment.ivf and len(rows) <= EXACT_FILTERED_ROWS:
                    # The lists a probe scans may hold few of a filter's rows: those are scored one by one.
                    scores = segment.vectors.reconstruct_batch(rows.astype(np.int64)) @ query[0]
                    best = np.argsort(-scores, kind="stable")[:k]
                    found.extend((int(segment.chunk_ids[rows[i]]), float(scores[i])) for i in best)
                    continue
                selector = faiss.IDSelectorBatch(rows.astype(np.int64))
            elif len(deleted):
                excluded = faiss.IDSelectorBatch(deleted.astype(np.int64))
                selector = faiss.IDSelectorNot(excluded)  # `excluded` stays referenced while it searches
            take = min(k, len(rows) if allowed is not None else len(segment) - len(deleted))
            if take <= 0:
                continue
            if segment.ivf:
                parameters = faiss.SearchParametersIVF(sel=selector, nprobe=NPROBE) if selector is not None else \
                    faiss.SearchParametersIVF(nprobe=NPROBE)
            else:
                parameters = faiss.SearchParameters(sel=selector) if selector is not None else None
            faiss.omp_set_num_threads(1 if len(segment) < SINGLE_THREAD_ROWS else threads)
            try:
                scores, rows = segment.vectors.search(query, take, params=parameters)
            finally:
                faiss.omp_set_num_threads(threads)
            found.extend((int(segment.chunk_ids[row]), float(score)) for row, score in zip(rows[0], scores[0]) if row >= 0)
        found.sort(key=lambda hit: (-hit[1], hit[0]))
        return found[:k]


@dataclass(frozen=True)
class SegmentSize:
    number: int
    rows: int  # chunks written into it
    deleted: int  # of those, deleted since


def plan_merge(sizes: list[SegmentSize]) -> list[int]:
    """The segments to merge now, [] for none: any segment whose deleted share passes DELETED_SHARE, and the
    MERGE_FACTOR smallest segments (by live rows) that lie within a factor MERGE_FACTOR of each other (sizes
    below SIZE_CLASS_FLOOR count as the floor), the first such run from the smallest. So no more than
    MERGE_FACTOR - 1 segments stay in any band of sizes a factor MERGE_FACTOR wide, and each row is rewritten
    about log(N / floor) / log(MERGE_FACTOR) times in all."""
    chosen = {size.number for size in sizes if size.rows and size.deleted / size.rows > DELETED_SHARE}
    ranked = sorted(sizes, key=lambda size: (size.rows - size.deleted, size.number))
    for start in range(len(ranked) - MERGE_FACTOR + 1):
        window = ranked[start:start + MERGE_FACTOR]
        smallest = max(window[0].rows - window[0].deleted, SIZE_CLASS_FLOOR)
        if window[-1].rows - window[-1].deleted <= MERGE_FACTOR * smallest:
            chosen.update(size.number for size in window)
            break
    # A mostly deleted segment alone is rewritten too; a single healthy one never is.
    return sorted(chosen)


def remove_unlisted(directory: Path, listed: Iterable[int], quantizer: int | None = None) -> None:
    """Delete segment folders no generation lists, quantizers it does not name, the earlier layout's files,
    and killed runs' temporaries: exact names codesearch makes, never a pattern's other matches."""
    keep = {folder_of(directory, number).name for number in listed}
    if quantizer is not None:
        keep.add(quantizer_name(quantizer))
    for name in os.listdir(directory):
        if name not in keep and (_FOLDER.fullmatch(name) or _OWN_LEFTOVER.fullmatch(name)):
            remove_path(directory / name)


def _write_index(path: Path, index) -> None:
    """A FAISS index into a new private file, opened without following links."""
    import faiss

    with os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
        writer = faiss.PyCallbackIOWriter(handle.write)
        faiss.write_index(index, writer)
        del writer  # flushes its buffer into the file


def _save_array(path: Path, array: np.ndarray) -> None:
    import numpy as np

    with os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
        np.save(handle, array, allow_pickle=False)
