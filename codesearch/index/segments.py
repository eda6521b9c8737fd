"""The index's files: immutable segments, each the vectors and BM25 postings of the chunks one refresh (or
one merge) wrote, as Lucene and Tantivy keep theirs.

A segment is a folder `segment-N/`, written whole under a temporary name and renamed (trust.replace_atomically),
never changed afterwards:

    vectors.faiss        the chunks' vectors, row i = chunk_ids[i]: a flat FAISS index, fp16, inner product
    sketch-P.faiss       past SKETCH_MIN_ROWS rows: RaBitQ codes of the rows (one bit a dimension), in parts
                         of SKETCH_PART_ROWS rows, for a first pass
    chunk_ids.npy        the chunk ids, ascending
    unit_*.npy, term_*.npy, posting_*.npy   the BM25 documents of its units (lexical.Postings)
    format.json          what the folder holds, to tell a damaged or foreign one apart

The database lists the segments of the current generation and the chunks deleted from each since it was
written (database.py); a generation is that list, committed in one transaction, so a run killed at any
moment leaves the old list or the new one. Folders no generation lists (a killed run's, or those a merge
replaced) are deleted afterwards, by exact name only. The vectors and postings are memory-mapped: a server
with many repositories keeps in memory only the pages its searches touch.

A flat scan costs time in proportion to the rows (about 35 ms per 100,000 1536-d rows on two cores), so a
segment of SKETCH_MIN_ROWS rows or more is searched in two passes: FAISS's RaBitQ fast scan estimates every
row's inner product from its sign bits (a sixteenth of the fp16 bytes, scanned with SIMD table lookups),
and the best RESCORED times k rows are scored exactly from the fp16 rows. Nothing is trained but the
rows' mean, so no segment depends on another. Its parts are scanned by parallel threads: FAISS scans one
query on one thread.

Segments merge by a tiered policy (plan_merge): a refresh adds a small segment, and when ten segments within
a factor ten of each other in size gather, or a segment is mostly deleted, they are rewritten as one,
keeping live rows only, never past MAX_MERGED_ROWS (Lucene's maxMergedSegmentMB): a merge builds its segment
in memory.
"""

from __future__ import annotations

import json
import math
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from codesearch.errors import IndexDamaged
from codesearch.index.lexical import Postings
from codesearch.trust import open_private, read_regular_file, remove_path, replace_atomically

if TYPE_CHECKING:
    import numpy as np

_FORMAT = 1
_FOLDER = re.compile(r"segment-(\d+)")
# Names of earlier layouts (one whole FAISS file and one bm25s folder per generation; IVF's coarse quantizer)
# and temporaries of killed runs: the only other names ever deleted here.
_OWN_LEFTOVER = re.compile(r"(?:segment-\d+|quantizer-\d+\.faiss|vectors-\d+\.faiss|lexical-\d+|manifest\.json"
                           r"|tree-snapshot)\.tmp\d+|vectors-\d+\.faiss|lexical-\d+|quantizer-\d+\.faiss")
MERGE_FACTOR = 10  # segments within a factor this wide of each other that merge (Lucene's segments per tier)
SIZE_CLASS_FLOOR = 1000  # live chunks: every segment below this counts as this large when merges are planned
DELETED_SHARE = 0.3  # a segment with more of its rows deleted than this is rewritten
MAX_MERGED_ROWS = 250_000  # live rows a merge writes at most (at 1536 dimensions, 0.8 GB of fp16 rows)
PARALLEL_MIN_ROWS = 10_000  # rows from which a flat segment is worth handing to another thread to scan
SKETCH_MIN_ROWS = 50_000  # rows from which a segment keeps a sketch and is searched in two passes
SKETCH_PART_ROWS = 1 << 17  # rows of one sketch part: the unit of the first pass's parallel threads
# Rows a first pass keeps per answer wanted, rescored exactly: at 10, recall@100 against exact search is
# 0.997 and recall@10 0.9995 on real embeddings (benchmarks/vector_recall.py, SEGMENTS.md).
RESCORED = 10
# Rows a selector-restricted scan tests in the time FAISS's distance computer, called from Python, scores one
# (about 5 ns against 3 us here).
SCANNED_PER_SCORED = 500
EXACT_FILTERED_ROWS = 50_000  # a filter leaving at most this many rows of a sketched segment scores them all
_VECTOR_BATCH = 8192


def folder_of(directory: Path, number: int) -> Path:
    return directory / f"segment-{number}"


class Segment:
    """One segment, opened read-only, its vectors and postings memory-mapped."""

    def __init__(self, number: int, chunk_ids: np.ndarray, vectors, postings: Postings, sketch: list | None = None,
                 outdated: bool = False):
        self.number = number
        self.chunk_ids = chunk_ids  # ascending: row i of `vectors` is chunk chunk_ids[i]
        self.vectors = vectors
        self.postings = postings
        self.sketch = sketch or []  # RaBitQ parts, part i holding rows from i * SKETCH_PART_ROWS
        # Written by an earlier version as an IVF index: searched exactly, every list probed, and rewritten by
        # the next merge (plan_merge).
        self.outdated = outdated

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
            outdated = header.get("vectors") == "ivf"
            # SQLite's reasoning holds here too: the folder is this user's, closed to others, and holds no link.
            vectors = faiss.read_index(str(folder / "vectors.faiss"), (faiss.IO_FLAG_MMAP if outdated else
                                                                       faiss.IO_FLAG_MMAP_IFC) | faiss.IO_FLAG_READ_ONLY)
            # FAISS reads a fast-scan index whole (it cannot map one): a sixteenth of the fp16 rows' bytes.
            sketch = [faiss.read_index(str(folder / f"sketch-{part}.faiss"))
                      for part in range(int(header.get("sketch_parts", 0)))]
            postings = Postings.load(folder)
            if not (len(chunk_ids) == vectors.ntotal == header["chunks"] == sum(part.ntotal for part in sketch or [vectors])
                    and len(postings) == header["units"]):
                raise ValueError("its files disagree")
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError) as error:
            raise IndexDamaged(f"segment {number} of the index in {directory} is unreadable ({error}); "
                               f"run `codesearch index` to rebuild what it held") from None
        return cls(number, chunk_ids, vectors, postings, sketch, outdated)

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
                  vector_batches: Iterable[np.ndarray], postings: Postings) -> None:
    """Write segment `number`: chunk_ids ascending, their vectors in that order (float32 batches), and the
    BM25 postings of their units; with a sketch from SKETCH_MIN_ROWS rows. Touches nothing else: listing it
    in a generation is the caller's commit."""
    import numpy as np

    index = empty_vector_index(dimension)
    for batch in vector_batches:
        index.add(np.ascontiguousarray(batch, dtype=np.float32))
    if index.ntotal != len(chunk_ids):
        raise ValueError(f"segment {number}: {index.ntotal} vectors for {len(chunk_ids)} chunks")
    sketch = sketch_of(index) if index.ntotal >= SKETCH_MIN_ROWS else []

    def write(temporary: Path) -> None:
        temporary.mkdir(0o700)
        _write_index(temporary / "vectors.faiss", index)
        for part, part_index in enumerate(sketch):
            _write_index(temporary / f"sketch-{part}.faiss", part_index)
        _save_array(temporary / "chunk_ids.npy", np.asarray(chunk_ids, dtype=np.int64))
        postings.save(temporary, _save_array)
        # A version that knows no sketch reads "sketched" as "flat": the same exact vectors.
        header = {"format": _FORMAT, "chunks": len(chunk_ids), "units": len(postings), "dimension": dimension,
                  "vectors": "sketched" if sketch else "flat", "sketch_parts": len(sketch)}
        with os.fdopen(open_private(temporary / "format.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL), "w") as handle:
            handle.write(json.dumps(header))

    replace_atomically(folder_of(directory, number), write)


def empty_vector_index(dimension: int):
    import faiss

    # fp16 storage halves memory and disk against flat fp32, and a memory-bound scan gets faster.
    return faiss.IndexScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)


def sketch_of(vectors) -> list:
    """RaBitQ fast-scan indexes of a flat index's rows, SKETCH_PART_ROWS rows each. RaBitQ trains nothing but
    the rows' mean, taken from an even sample."""
    import faiss
    import numpy as np

    rows = vectors.ntotal
    sample = vectors.reconstruct_batch(np.unique(np.linspace(0, rows - 1, min(rows, 65_536)).astype(np.int64)))
    parts = []
    for start in range(0, rows, SKETCH_PART_ROWS):
        part = faiss.IndexRaBitQFastScan(vectors.d, faiss.METRIC_INNER_PRODUCT)
        part.train(sample)
        for batch in range(start, min(rows, start + SKETCH_PART_ROWS), _VECTOR_BATCH):
            part.add(vectors.reconstruct_n(batch, min(_VECTOR_BATCH, start + SKETCH_PART_ROWS - batch, rows - batch)))
        parts.append(part)
    return parts


def merge_segments(directory: Path, number: int, dimension: int, sources: list[tuple[Segment, np.ndarray]]) -> int:
    """Write segment `number` holding the live rows of `sources`, each (segment, its deleted chunk ids); the
    number of chunks it holds."""
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
    write_segment(directory, number, dimension, chunk_ids, batches(), postings)
    return len(chunk_ids)


class VectorIndex:
    """Inner-product search over the live rows of several segments, as if they were one index: exact over
    flat segments, two passes (segments.py's docstring) over sketched ones."""

    def __init__(self, parts: list[tuple[Segment, np.ndarray]], dimension: int):
        import numpy as np

        # Each segment with the rows of its deleted chunks, which no search returns.
        self.parts = [(segment, segment.rows_of(np.asarray(deleted, dtype=np.int64))) for segment, deleted in parts]
        self.dimension = dimension
        self.ntotal = sum(len(segment) - len(deleted) for segment, deleted in self.parts)

    def search(self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(chunk id, score) of the best k live chunks, of those in `allowed` when given. Flat segments and
        sketch parts are scanned by parallel threads, each FAISS call on one thread (see _scanners)."""
        import numpy as np

        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        exact, sketched = [], []
        for segment, deleted in self.parts:
            rows = None  # the rows the search may return, when not all live ones
            if allowed is not None:
                rows = segment.rows_of(allowed)
                if len(deleted):
                    rows = rows[~np.isin(rows, deleted)]
                if not len(rows):
                    continue
            # A filter leaving few rows scores them all; otherwise the sketch picks the rows to score.
            if segment.sketch and (rows is None or len(rows) > EXACT_FILTERED_ROWS):
                sketched.append((segment, deleted, rows))
            else:
                exact.append((segment, query, k, deleted, rows))
        # Large flat segments are scanned by other threads; the calling thread scans the small ones (handing
        # one over costs more than scanning it), and runs the sketched segments' two passes.
        large = [arguments for arguments in exact if len(arguments[0]) >= PARALLEL_MIN_ROWS]
        here = [arguments for arguments in exact if len(arguments[0]) < PARALLEL_MIN_ROWS] + large[:1]
        elsewhere = [_scanners().submit(_scored, *arguments) for arguments in large[1:]]
        found: list[tuple[int, float]] = []
        with _one_thread():
            for arguments in here:
                found += _scored(*arguments)
            for segment, deleted, rows in sketched:
                found += _rescored(segment, query[0], k, _first_pass(segment, query[0], k, deleted, rows))
        for future in elsewhere:
            found += future.result()
        found.sort(key=lambda hit: (-hit[1], hit[0]))
        return found[:k]


def _scored(segment: Segment, query: np.ndarray, k: int, deleted: np.ndarray,
            rows: np.ndarray | None) -> list[tuple[int, float]]:
    """(chunk id, exact score) of a segment's best k rows: of `rows` when given, else of its live ones."""
    import faiss
    import numpy as np

    selector = None
    if rows is not None:
        selector = faiss.IDSelectorBatch(rows.astype(np.int64))
    elif len(deleted):
        excluded = faiss.IDSelectorBatch(deleted.astype(np.int64))
        selector = faiss.IDSelectorNot(excluded)  # `excluded` stays referenced while it searches
    take = min(k, len(rows) if rows is not None else len(segment) - len(deleted))
    if take <= 0:
        return []
    if segment.outdated:  # every list probed: exact
        parameters = faiss.SearchParametersIVF(sel=selector, nprobe=segment.vectors.nlist) \
            if selector is not None else faiss.SearchParametersIVF(nprobe=segment.vectors.nlist)
    else:
        parameters = faiss.SearchParameters(sel=selector) if selector is not None else None
    scores, found = segment.vectors.search(query, take, params=parameters)
    return [(int(segment.chunk_ids[row]), float(score)) for row, score in zip(found[0], scores[0]) if row >= 0]


def _rescored(segment: Segment, query: np.ndarray, k: int, rows: np.ndarray) -> list[tuple[int, float]]:
    """(chunk id, exact score) of the best k of a few `rows` (the first pass's). A search restricted to them
    by a selector tests every row of the segment for membership; FAISS's distance computer scores just
    them, but from Python, a row at a time: each way wins on its side of SCANNED_PER_SCORED. Both give
    the scores a flat search gives, to the bit."""
    import faiss
    import numpy as np

    if len(segment) < SCANNED_PER_SCORED * len(rows):
        return _scored(segment, query.reshape(1, -1), k, np.zeros(0, dtype=np.int64), rows)
    computer = segment.vectors.get_distance_computer()
    computer.set_query(faiss.swig_ptr(query))  # `query` stays referenced while it scores
    scores = np.fromiter((computer(row) for row in rows.tolist()), dtype=np.float32, count=len(rows))
    ids = np.asarray(segment.chunk_ids)[rows]
    best = np.lexsort((ids, -scores))[:k]
    return list(zip(ids[best].tolist(), scores[best].astype(float).tolist()))


def _first_pass(segment: Segment, query: np.ndarray, k: int, deleted: np.ndarray,
                rows: np.ndarray | None) -> np.ndarray:
    """The RESCORED · k rows of a sketched segment whose estimated inner products are best, of those not
    deleted (and among `rows` when given), to be scored exactly. Rows a search may not return are dropped
    after the sketch's pass, so it asks for more in proportion, and again for four times as many while too
    few are left."""
    import numpy as np

    searchable = len(rows) if rows is not None else len(segment) - len(deleted)
    wanted = RESCORED * min(k, searchable)
    if wanted <= 0:
        return np.zeros(0, dtype=np.int64)
    asked = math.ceil(wanted * len(segment) / searchable)
    while True:
        candidates = _estimated_best(segment, query, asked)
        keep = np.isin(candidates, rows) if rows is not None else ~np.isin(candidates, deleted)
        candidates = candidates[keep][:wanted]
        if len(candidates) >= wanted or asked >= len(segment):
            return candidates
        asked *= 4


def _estimated_best(segment: Segment, query: np.ndarray, asked: int) -> np.ndarray:
    """The sketch's best `asked` rows of a segment, best first."""
    import numpy as np

    def scan(part: int) -> tuple[np.ndarray, np.ndarray]:
        index = segment.sketch[part]
        estimates, found = index.search(query.reshape(1, -1), min(asked, index.ntotal))
        return estimates[0], found[0] + part * SKETCH_PART_ROWS

    parts = range(len(segment.sketch))
    results = [scan(0)] if len(parts) == 1 else list(_scanners().map(scan, parts))
    estimates = np.concatenate([estimate for estimate, _ in results])
    found = np.concatenate([rows for _, rows in results])
    return found[np.argsort(-estimates, kind="stable")[:asked]]


@cache
def _scanners():
    """Threads that scan segments and sketch parts for searches, one FAISS call each. FAISS parallelises a
    search over its queries, so a single query's scan runs on one thread whatever OpenMP is allowed; and an
    OpenMP team, once started, keeps its threads spinning for a while after each call, taking the cores the
    BM25 search that follows needs. So these threads allow OpenMP one thread, and the parallelism is theirs."""
    import faiss
    from concurrent.futures import ThreadPoolExecutor

    from codesearch.hardware import usable_cores

    # Not OpenMP's count: that is per thread, and may be 1 where this is first called.
    return ThreadPoolExecutor(usable_cores(), thread_name_prefix="codesearch-scan",
                              initializer=faiss.omp_set_num_threads, initargs=(1,))


@contextmanager
def _one_thread():
    """OpenMP allowed one thread in the calling thread meanwhile (see _scanners)."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


@dataclass(frozen=True)
class SegmentSize:
    number: int
    rows: int  # chunks written into it
    deleted: int  # of those, deleted since
    outdated: bool = False  # in a format this version rewrites (Segment.outdated)

    @property
    def live(self) -> int:
        return self.rows - self.deleted


def plan_merge(sizes: list[SegmentSize]) -> list[int]:
    """The segments to merge now, [] for none: any segment whose deleted share passes DELETED_SHARE, and the
    MERGE_FACTOR smallest segments (by live rows) that lie within a factor MERGE_FACTOR of each other (sizes
    below SIZE_CLASS_FLOOR count as the floor), the first such run from the smallest. So no more than
    MERGE_FACTOR - 1 segments stay in any band of sizes a factor MERGE_FACTOR wide, and each row is rewritten
    about log(N / floor) / log(MERGE_FACTOR) times in all. A merge of sizes takes only as many of them as fit
    in MAX_MERGED_ROWS, and leaves out every segment past half of it, so past that size segments accumulate
    instead of growing. An outdated segment is rewritten too."""
    chosen = {size.number for size in sizes
              if size.outdated or (size.rows and size.deleted / size.rows > DELETED_SHARE)}
    ranked = sorted((size for size in sizes if size.live <= MAX_MERGED_ROWS // 2), key=lambda size: (size.live, size.number))
    for start in range(len(ranked) - MERGE_FACTOR + 1):
        window = ranked[start:start + MERGE_FACTOR]
        if window[-1].live <= MERGE_FACTOR * max(window[0].live, SIZE_CLASS_FLOOR):
            # As many of them, smallest first, as fit in one segment of MAX_MERGED_ROWS.
            fitting = [size.number for size, total in zip(window, accumulate(size.live for size in window))
                       if total <= MAX_MERGED_ROWS]
            if len(fitting) >= 2:
                chosen.update(fitting)
                break
    # A mostly deleted or outdated segment alone is rewritten too; a single healthy one never is.
    return sorted(chosen)


def remove_unlisted(directory: Path, listed: Iterable[int]) -> None:
    """Delete segment folders no generation lists, the earlier layouts' files, and killed runs' temporaries:
    exact names codesearch makes, never a pattern's other matches."""
    keep = {folder_of(directory, number).name for number in listed}
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
