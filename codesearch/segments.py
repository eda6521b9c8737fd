"""The index's files: immutable segments, each the vectors and BM25 postings of the chunks one refresh (or
one merge) wrote, as Lucene and Tantivy keep theirs.

A segment is a folder `segment-N/`, written whole under a temporary name and renamed (trust.replace_atomically),
never changed afterwards:

    vectors.faiss        FAISS index of the chunks' vectors, row i = chunk_ids[i] (fp16 flat, inner product)
    chunk_ids.npy        the chunk ids, ascending
    unit_*.npy, term_*.npy, posting_*.npy   the BM25 documents of its units (lexical.Postings)
    format.json          what the folder holds, to tell a damaged or foreign one apart

The database lists the segments of the current generation and the chunks deleted from each since it was
written (metadata.py); a generation is that list, committed in one transaction, so a run killed at any
moment leaves the old list or the new one. Folders no generation lists (a killed run's, or those a merge
replaced) are deleted afterwards, by exact name only. Everything is memory-mapped: a server with many
repositories keeps in memory only the pages its searches touch.

Segments merge by a tiered policy (plan_merge): a refresh adds a small segment, and when ten segments of
one size class gather, or a segment is mostly deleted, they are rewritten as one, keeping live rows only.
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
from codesearch.trust import open_private, remove_path, replace_atomically

if TYPE_CHECKING:
    import numpy as np

_FORMAT = 1
_FOLDER = re.compile(r"segment-(\d+)")
# Names of the earlier layout (one whole FAISS file and one bm25s folder per generation) and temporaries of
# killed runs: the only other names ever deleted here.
_OWN_LEFTOVER = re.compile(r"(?:segment-\d+|vectors-\d+\.faiss|lexical-\d+|manifest\.json)\.tmp\d+|"
                           r"vectors-\d+\.faiss|lexical-\d+")
MERGE_FACTOR = 10  # segments of one size class that trigger a merge (Lucene's segments per tier)
SIZE_CLASS_FLOOR = 1000  # chunks: every segment below this is in the smallest class
DELETED_SHARE = 0.3  # a segment with more of its rows deleted than this is rewritten
_VECTOR_BATCH = 8192


def folder_of(directory: Path, number: int) -> Path:
    return directory / f"segment-{number}"


class Segment:
    """One segment, opened read-only and memory-mapped."""

    def __init__(self, number: int, chunk_ids: np.ndarray, vectors, postings: Postings):
        self.number = number
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
            header = json.loads(os.fdopen(open_private(folder / "format.json", os.O_RDONLY)).read())
            if header.get("format") != _FORMAT:
                raise ValueError(f"format {header.get('format')!r}")
            chunk_ids = np.load(folder / "chunk_ids.npy", mmap_mode="r", allow_pickle=False)
            # SQLite's reasoning holds here too: the folder is this user's, closed to others, and holds no link.
            vectors = faiss.read_index(str(folder / "vectors.faiss"), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
            postings = Postings.load(folder)
            if not (len(chunk_ids) == vectors.ntotal == header["chunks"] and len(postings) == header["units"]):
                raise ValueError("its files disagree")
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError) as error:
            raise IndexDamaged(f"segment {number} of the index in {directory} is unreadable ({error}); "
                               f"run `codesearch index` to rebuild what it held") from None
        return cls(number, chunk_ids, vectors, postings)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The rows of those of `ids` this segment holds."""
        import numpy as np

        rows = np.searchsorted(self.chunk_ids, ids)
        inside = rows < len(self.chunk_ids)
        rows, ids = rows[inside], np.asarray(ids)[inside]
        return rows[self.chunk_ids[rows] == ids]

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """float32 vectors of chunk ids this segment holds, in the order given."""
        import numpy as np

        rows = np.searchsorted(self.chunk_ids, ids)
        return self.vectors.reconstruct_batch(rows.astype(np.int64)) if len(rows) else \
            np.zeros((0, self.vectors.d), dtype=np.float32)


def write_segment(directory: Path, number: int, dimension: int, chunk_ids: np.ndarray,
                  vector_batches: Iterable[np.ndarray], postings: Postings) -> None:
    """Write segment `number`: chunk_ids ascending, their vectors in that order (float32 batches), and the
    BM25 postings of their units. Touches nothing else: listing it in a generation is the caller's commit."""
    import faiss
    import numpy as np

    index = empty_vector_index(dimension)
    for batch in vector_batches:
        index.add(np.ascontiguousarray(batch, dtype=np.float32))
    if index.ntotal != len(chunk_ids):
        raise ValueError(f"segment {number}: {index.ntotal} vectors for {len(chunk_ids)} chunks")

    def write(temporary: Path) -> None:
        temporary.mkdir(0o700)
        with os.fdopen(open_private(temporary / "vectors.faiss", os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
            writer = faiss.PyCallbackIOWriter(handle.write)
            faiss.write_index(index, writer)
            del writer  # flushes its buffer into the file
        _save_array(temporary / "chunk_ids.npy", np.asarray(chunk_ids, dtype=np.int64))
        postings.save(temporary, _save_array)
        header = {"format": _FORMAT, "chunks": len(chunk_ids), "units": len(postings), "dimension": dimension}
        with os.fdopen(open_private(temporary / "format.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL), "w") as handle:
            handle.write(json.dumps(header))

    replace_atomically(folder_of(directory, number), write)


def empty_vector_index(dimension: int):
    import faiss

    # fp16 storage halves memory and disk against flat fp32, and a memory-bound scan gets faster.
    return faiss.IndexScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)


def merge_segments(directory: Path, number: int, dimension: int, sources: list[tuple[Segment, np.ndarray]]) -> int:
    """Write segment `number` holding the live rows of `sources`, each (segment, its deleted chunk ids);
    the number of chunks it holds."""
    import numpy as np

    kept = [(segment, np.flatnonzero(~np.isin(segment.chunk_ids, deleted))) for segment, deleted in sources]
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
        for segment, deleted in self.parts:
            selector = None
            if allowed is not None:
                rows = segment.rows_of(allowed)
                if len(deleted):
                    rows = rows[~np.isin(rows, deleted)]
                if not len(rows):
                    continue
                selector = faiss.IDSelectorBatch(rows.astype(np.int64))
            elif len(deleted):
                excluded = faiss.IDSelectorBatch(deleted.astype(np.int64))
                selector = faiss.IDSelectorNot(excluded)  # `excluded` stays referenced while it searches
            take = min(k, len(segment) - (0 if selector is None or allowed is not None else len(deleted)))
            if take <= 0:
                continue
            parameters = faiss.SearchParameters(sel=selector) if selector is not None else None
            scores, rows = segment.vectors.search(query, take, params=parameters)
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
    smallest size class (powers of MERGE_FACTOR above SIZE_CLASS_FLOOR, by live rows) that holds
    MERGE_FACTOR segments. Each row is rewritten about log(N / floor) / log(MERGE_FACTOR) times in all."""
    chosen = {size.number for size in sizes if size.rows and size.deleted / size.rows > DELETED_SHARE}
    classes: dict[int, list[int]] = {}
    for size in sizes:
        live = size.rows - size.deleted
        tier = 0 if live < SIZE_CLASS_FLOOR else 1 + int(math.log(live / SIZE_CLASS_FLOOR, MERGE_FACTOR))
        classes.setdefault(tier, []).append(size.number)
    for tier in sorted(classes):
        if len(classes[tier]) >= MERGE_FACTOR:
            chosen.update(classes[tier])
            break
    # A mostly deleted segment alone is rewritten too; a single healthy one never is.
    return sorted(chosen)


def remove_unlisted(directory: Path, listed: Iterable[int]) -> None:
    """Delete segment folders no generation lists, the earlier layout's files, and killed runs' temporaries:
    exact names codesearch makes, never a pattern's other matches."""
    keep = {folder_of(directory, number).name for number in listed}
    for name in os.listdir(directory):
        if name not in keep and (_FOLDER.fullmatch(name) or _OWN_LEFTOVER.fullmatch(name)):
            remove_path(directory / name)


def _save_array(path: Path, array: np.ndarray) -> None:
    import numpy as np

    with os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
        np.save(handle, array, allow_pickle=False)
