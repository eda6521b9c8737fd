"""The index database (`index.sqlite`): the manifest (with the list of the current generation's segments),
the files' fingerprints, the chunks with their lexical terms and the segment each was written to, where
merges moved each segment's chunks, the chunks deleted from each segment, and the embedding cache: vectors
no live chunk uses (a live chunk's vector is kept once, in its segment), up to a bound. The only module
that speaks SQL.

SQLite is the index's source of truth and the segments (segments.py) hold what it lists. Its layout evolves by numbered migrations (migrations.py); whether its rows
still mean what this version expects is needs_rebuild's question, asked in one place.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from codesearch.source.chunk import CHUNKER_VERSION, DECLARATION_KINDS, Chunk, units_of
from codesearch.errors import CodesearchError, IndexDamaged
from codesearch.index import graph
from codesearch.index.terms import text_terms
from codesearch.index.migrations import migrate
from codesearch.trust import is_repository_path, open_private

if TYPE_CHECKING:
    import numpy as np

# What the rows mean; 3: chunks.terms holds a part's text terms only, BM25 documents are units; 4: terms
# include the words of known abbreviations (terms.code_terms); 5: vectors and postings in segments.
SCHEMA_VERSION = 5
DATABASE_NAME = "index.sqlite"
_BATCH = 500  # ids or keys per IN (...) list
_CHUNK_COLUMNS = "id, path, start_line, end_line, symbol, kind, language, context, text"
# chunks.segment is the segment a chunk was first written to; merges since are in `moved`.
_PLACED = "chunks LEFT JOIN moved ON moved.source = chunks.segment"
_SEGMENT = "coalesce(moved.target, chunks.segment)"


@dataclass(frozen=True)
class StoredChunk:
    id: int
    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    language: str
    context: str
    text: str


def needs_rebuild(manifest: dict, model_fingerprint: str, cutter: tuple[str, object, str] | None = None) -> str:
    """Why an index must be rebuilt before it is refreshed ("" when it need not): its rows were written
    in another format, cut another way (`cutter`: the manifest's key, today's value and the reason; the
    chunker's unless given), or embedded with other model settings."""
    if not manifest:
        return ""
    if manifest.get("schema_version") != SCHEMA_VERSION:
        return "the index format changed"
    key, version, reason = cutter or ("chunker_version", CHUNKER_VERSION, "the chunker changed")
    if manifest.get(key) != version:
        return reason
    if manifest.get("model_fingerprint") != model_fingerprint:
        return "the model settings changed"
    return ""


def is_damaged(error: BaseException) -> bool:
    """A database error that means the file itself is broken, not a full disk, a lock or a read-only file."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def damaged(directory: Path, detail: object) -> IndexDamaged:
    return IndexDamaged(f"the index in {directory} is damaged ({detail}); run `codesearch index --rebuild`")


class IndexDatabase:
    """One open index database. Reads see every committed transaction; writers hold the index's lock."""

    def __init__(self, directory: Path, db: sqlite3.Connection):
        self.directory, self.db = directory, db

    @classmethod
    def open(cls, directory: Path, create: bool = False) -> "IndexDatabase":
        """The database in `directory` (a folder already checked to be codesearch's own), migrated to the
        current layout. IndexDamaged when SQLite cannot read it."""
        database = directory / DATABASE_NAME
        try:
            if create:
                os.close(open_private(database, os.O_RDWR | os.O_CREAT))  # 0600, and SQLite gives -wal and -shm its mode
            db = sqlite3.connect(database, timeout=30, isolation_level=None)
            if create and os.path.getsize(database) == 0:
                # Free pages go back to the file system when asked (reclaim_space): vectors move from the cache
                # into segments, and the file should not keep their size.
                db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            # Sorts and VACUUM's copy stay in memory: SQLite's default would put chunk text in /var/tmp, and
            # nothing of an index is written outside its folder.
            db.execute("PRAGMA temp_store=MEMORY")
            db.execute("PRAGMA synchronous=NORMAL")
            migrate(db)
            db.execute("SELECT count(*) FROM chunks").fetchone()
        except sqlite3.DatabaseError as error:
            raise IndexDamaged(f"the index in {directory} is unreadable ({error}); "
                               f"run `codesearch index --rebuild`") from None
        except OSError as error:
            raise CodesearchError(f"cannot write the index in {directory}: {error.strerror or error}") from None
        return cls(directory, db)

    @staticmethod
    def healthy(database: Path) -> bool:
        """Whether SQLite's quick check passes (False for a file that is not a database at all)."""
        try:
            db = sqlite3.connect(database, timeout=30, isolation_level=None)
            try:
                return db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            finally:
                db.close()
        except sqlite3.DatabaseError as error:
            if not is_damaged(error):
                raise
            return False

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one committed state (WAL: a read transaction takes no lock from writers)."""
        if self.db.in_transaction:  # already inside one: it is the snapshot
            yield
            return
        self.db.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    # -- reading -------------------------------------------------------------------------

    def manifest(self) -> dict:
        return {key: json.loads(value) for key, value in self.db.execute("SELECT key, value FROM manifest")}

    def file_fingerprints(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT path, fingerprint FROM files"))

    def chunk_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def file_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM files").fetchone()[0]

    def chunks_in_file(self, path: str) -> list[StoredChunk]:
        rows = self.db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE path = ? ORDER BY start_line", (path,))
        return [self.stored_chunk(row) for row in rows]

    def chunks_by_id(self, ids: Iterable[int]) -> dict[int, StoredChunk]:
        ids = list(ids)
        found = {}
        for part in _batches(ids):
            rows = self.db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id IN ({_marks(part)})", part)
            found.update({row[0]: self.stored_chunk(row) for row in rows})
        return found

    def stored_chunk(self, row: Sequence) -> StoredChunk:
        """A chunk read back from the database, whose path must still name a file inside the repository."""
        chunk = StoredChunk(*row)
        if not is_repository_path(chunk.path):
            raise IndexDamaged(f"the index in {self.directory} is damaged: it names a file outside the repository "
                               f"({chunk.path!r}); run `codesearch index --rebuild`")
        return chunk

    def unit_runs(self, chunk: StoredChunk) -> list[list[StoredChunk]]:
        """The chunks sharing this chunk's path, symbol and kind, in runs that each make one unit."""
        rows = self.db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE path = ? AND symbol = ? AND kind = ? "
                               "ORDER BY start_line", (chunk.path, chunk.symbol, chunk.kind))
        return list(units_of(map(self.stored_chunk, rows))) or [[chunk]]

    def split_units(self, chunks: Iterable[StoredChunk]) -> dict[tuple[str, str, str], list[list[StoredChunk]]]:
        """Per (path, symbol, kind) of these chunks that more than one chunk shares (a function split into
        parts, or same-named functions), all of those chunks in runs that each make one unit. Declarations
        form no unit. Two lookups whatever the number of chunks: which keys are shared, then their rows."""
        keys = sorted({(chunk.path, chunk.symbol, chunk.kind) for chunk in chunks
                       if chunk.kind not in DECLARATION_KINDS})
        if not keys:
            return {}
        wanted = ("json_each(?) AS wanted JOIN chunks ON chunks.path = wanted.value ->> 0 "
                  "AND chunks.symbol = wanted.value ->> 1 AND chunks.kind = wanted.value ->> 2")
        shared = self.db.execute(f"SELECT chunks.path, chunks.symbol, chunks.kind FROM {wanted} "
                                 "GROUP BY chunks.path, chunks.symbol, chunks.kind HAVING count(*) > 1",
                                 (json.dumps(keys),)).fetchall()
        if not shared:
            return {}
        columns = ", ".join(f"chunks.{column.strip()}" for column in _CHUNK_COLUMNS.split(","))
        rows = self.db.execute(f"SELECT {columns} FROM {wanted} ORDER BY chunks.path, chunks.symbol, chunks.kind, "
                               "chunks.start_line", (json.dumps(shared),))
        runs: dict[tuple[str, str, str], list[list[StoredChunk]]] = {}
        for run in units_of(map(self.stored_chunk, rows)):
            runs.setdefault((run[0].path, run[0].symbol, run[0].kind), []).append(run)
        return runs

    def chunk_ids(self, path_allowed: Callable[[str], bool] | None = None,
                  languages: Sequence[str] = ()) -> np.ndarray:
        """The ids of the chunks in files whose path is allowed and in one of `languages` (either test
        left out when not given); paths are judged once per file, not once per chunk."""
        import numpy as np

        conditions, parameters = [], []
        if path_allowed is not None:
            paths = [path for (path,) in self.db.execute("SELECT path FROM files") if path_allowed(path)]
            if not paths:
                return np.zeros(0, dtype=np.int64)
            conditions.append("path IN (SELECT value FROM json_each(?))")
            parameters.append(json.dumps(paths))
        if languages:
            conditions.append(f"language IN ({_marks(languages)})")
            parameters.extend(languages)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self.db.execute(f"SELECT id FROM chunks {where}", parameters)
        return np.fromiter((chunk_id for (chunk_id,) in rows), dtype=np.int64)

    def unit_parts(self, segment: int | None = None) -> Iterator[tuple[StoredChunk, str]]:
        """Every chunk (of one segment, when given; its text left out) with its lexical terms, in unit order:
        a unit's parts adjacent."""
        where, parameters = ("WHERE segment = ?", (segment,)) if segment is not None else ("", ())
        rows = self.db.execute("SELECT id, path, start_line, end_line, symbol, kind, language, context, '', terms "
                               f"FROM chunks {where} ORDER BY path, symbol, kind, start_line", parameters)
        for *columns, terms in rows:
            yield StoredChunk(*columns), terms

    def live_locations(self, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        """key -> (segment, chunk id) of a live chunk with that key whose segment holds its vector, for each
        key some such chunk has."""
        found = {}
        for part in _batches(list(keys)):
            # Segment 0 is none: chunks of an index from before segments, whose vectors are all in the cache.
            rows = self.db.execute(f"SELECT embedding_key, {_SEGMENT}, id FROM {_PLACED} WHERE segment > 0 AND "
                                   f"embedding_key IN ({_marks(part)}) AND id NOT IN (SELECT chunk_id FROM unembedded)",
                                   part)
            found.update({key: (segment, chunk_id) for key, segment, chunk_id in rows})
        return found

    def deleted_ids(self) -> dict[int, list[int]]:
        """segment -> the ids of the chunks deleted from it since it was written."""
        found: dict[int, list[int]] = {}
        for segment, chunk_id in self.db.execute("SELECT segment, chunk_id FROM deleted ORDER BY segment, chunk_id"):
            found.setdefault(segment, []).append(chunk_id)
        return found

    def unembedded_ids(self) -> dict[int, list[int]]:
        """segment -> the ids of its live chunks that hold no vector yet."""
        found: dict[int, list[int]] = {}
        for segment, chunk_id in self.db.execute(f"SELECT {_SEGMENT}, id FROM {_PLACED} WHERE id IN "
                                                 f"(SELECT chunk_id FROM unembedded) ORDER BY 1, 2"):
            found.setdefault(segment, []).append(chunk_id)
        return found

    def unembedded_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM unembedded").fetchone()[0]

    def unembedded_among(self, ids: Iterable[int]) -> set[int]:
        found: set[int] = set()
        for part in _batches(list(ids)):
            found.update(chunk_id for (chunk_id,) in self.db.execute(
                f"SELECT chunk_id FROM unembedded WHERE chunk_id IN ({_marks(part)})", part))
        return found

    def files_not_embedded(self) -> list[str]:
        """Files some of whose chunks hold no vector yet."""
        return [path for (path,) in self.db.execute(
            "SELECT DISTINCT path FROM chunks WHERE id IN (SELECT chunk_id FROM unembedded) ORDER BY path")]

    def segment_rows(self) -> dict[int, tuple[int, int]]:
        """segment -> (its live chunks, its deleted chunks)."""
        rows = {segment: (live, 0) for segment, live in
                self.db.execute(f"SELECT {_SEGMENT}, count(*) FROM {_PLACED} GROUP BY 1")}
        for segment, deleted in self.db.execute("SELECT segment, count(*) FROM deleted GROUP BY segment"):
            rows[segment] = (rows.get(segment, (0, 0))[0], deleted)
        return rows

    def files_in_segments(self, segments: Sequence[int]) -> list[str]:
        return [path for (path,) in self.db.execute(
            f"SELECT DISTINCT path FROM {_PLACED} WHERE {_SEGMENT} IN ({_marks(segments)})", list(segments))]

    def reclaim_space(self, share: float = 0.25) -> None:
        """Give free pages back to the file system once they are more than `share` of the file (vectors moved
        out of the cache into a segment leave theirs free). An index from before incremental vacuum is
        rewritten once (VACUUM) to turn it on. The caller holds the index's lock."""
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        if not pages or free / pages <= share:
            return
        if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self.db.execute("VACUUM")
        else:
            self.db.executescript("PRAGMA incremental_vacuum;")  # stepped to the end (execute frees one page)
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- the embedding cache: vectors by content key ---------------------------------------

    def cached_vectors(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        import numpy as np

        found = {}
        for part in _batches(list(keys)):
            rows = self.db.execute(f"SELECT key, vector FROM embeddings WHERE key IN ({_marks(part)})", part)
            found.update({key: np.frombuffer(blob, dtype=np.float16).astype(np.float32) for key, blob in rows})
        return found

    def cache_vectors(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Remember vectors by content key; committed at once so an interrupted run keeps its work."""
        import numpy as np

        with self.transaction():
            self.db.executemany("INSERT OR REPLACE INTO embeddings(key, vector) VALUES (?, ?)",
                                [(key, vector.astype(np.float16).tobytes()) for key, vector in zip(keys, vectors)])

    def prune_embeddings(self, bound: int) -> None:
        """Keep the cache to the `bound` vectors added last."""
        excess = self.db.execute("SELECT count(*) FROM embeddings").fetchone()[0] - bound
        if excess > 0:
            with self.transaction():
                self.db.execute("DELETE FROM embeddings WHERE rowid IN "
                                "(SELECT rowid FROM embeddings ORDER BY rowid LIMIT ?)", (excess,))

    def cache_missing(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Inside the caller's transaction: remember vectors of keys not cached yet."""
        import numpy as np

        self.db.executemany("INSERT OR IGNORE INTO embeddings(key, vector) VALUES (?, ?)",
                            [(key, vector.astype(np.float16).tobytes()) for key, vector in zip(keys, vectors)])

    def uncache(self, keys: Sequence[str]) -> None:
        """Inside the caller's transaction: forget cached vectors (a segment now holds them)."""
        for part in _batches(list(keys)):
            self.db.execute(f"DELETE FROM embeddings WHERE key IN ({_marks(part)})", part)

    def known_keys(self, keys: Sequence[str]) -> set[str]:
        """Those of `keys` cached or held by a live chunk."""
        found = set(self.live_locations(keys))
        for part in _batches([key for key in keys if key not in found]):
            found.update(key for (key,) in self.db.execute(f"SELECT key FROM embeddings WHERE key IN ({_marks(part)})",
                                                           part))
        return found

    def keys_in_use(self, keys: Sequence[str]) -> set[str]:
        found = set()
        for part in _batches(list(keys)):
            found.update(key for (key,) in self.db.execute(
                f"SELECT DISTINCT embedding_key FROM chunks WHERE embedding_key IN ({_marks(part)})", part))
        return found

    # -- writing, inside a transaction of the caller's ---------------------------------------

    def clear(self) -> None:
        """Forget every file, chunk, deletion and manifest entry (the cache stays)."""
        for table in ("chunks", "files", "deleted", "moved", "manifest", "unembedded"):
            self.db.execute(f"DELETE FROM {table}")
        graph.forget_all(self.db)

    def remove_paths(self, paths: list[str]) -> list[tuple[int, int, str]]:
        """Forget these files and their chunks, each marked deleted from its segment; (id, segment, embedding
        key) of the chunks they had whose segment held their vector."""
        removed = []
        for part in _batches(paths):
            rows = self.db.execute(f"SELECT id, {_SEGMENT}, embedding_key FROM {_PLACED} WHERE path IN ({_marks(part)})",
                                   part).fetchall()
            self.db.executemany("INSERT OR IGNORE INTO deleted(segment, chunk_id) VALUES (?, ?)",
                                [(segment, chunk_id) for chunk_id, segment, _ in rows])
            graph.forget(self.db, [chunk_id for chunk_id, _, _ in rows])
            unembedded = self.unembedded_among(chunk_id for chunk_id, _, _ in rows)
            removed.extend(row for row in rows if row[0] not in unembedded)
            self.db.executemany("DELETE FROM unembedded WHERE chunk_id = ?", [(chunk_id,) for chunk_id in unembedded])
            self.db.execute(f"DELETE FROM chunks WHERE path IN ({_marks(part)})", part)
            self.db.execute(f"DELETE FROM files WHERE path IN ({_marks(part)})", part)
        return removed

    def move_segments(self, sources: Sequence[int], target: int) -> None:
        """The live chunks of `sources` now live in `target`, which holds none of their deleted ones. Recorded
        per segment (`moved`), not per chunk: a merge would otherwise rewrite every row it moves, text and all."""
        self.db.execute(f"UPDATE moved SET target = ? WHERE target IN ({_marks(sources)})", [target, *sources])
        self.db.executemany("INSERT OR REPLACE INTO moved(source, target) VALUES (?, ?)",
                            [(source, target) for source in sources])
        # A segment no chunk was first written to (a merge's) needs no entry once nothing points through it.
        self.db.execute("DELETE FROM moved WHERE target = ? AND NOT EXISTS "
                        "(SELECT 1 FROM chunks WHERE chunks.segment = moved.source)", (target,))
        self.db.execute(f"DELETE FROM deleted WHERE segment IN ({_marks(sources)})", list(sources))

    def forget_segments(self, segments: Sequence[int]) -> list[str]:
        """Forget the files whose chunks these (lost) segments held, so that the next refresh indexes them
        again; their paths."""
        paths = self.files_in_segments(segments)
        for part in _batches(paths):
            self.db.execute(f"DELETE FROM chunks WHERE path IN ({_marks(part)})", part)
            self.db.execute(f"DELETE FROM files WHERE path IN ({_marks(part)})", part)
        self.db.execute("DELETE FROM unembedded WHERE chunk_id NOT IN (SELECT id FROM chunks)")
        graph.forget_all(self.db, orphans_only=True)
        self.db.execute(f"DELETE FROM deleted WHERE segment IN ({_marks(segments)})", list(segments))
        self.db.execute(f"DELETE FROM moved WHERE target IN ({_marks(segments)})", list(segments))
        return paths

    def add_file(self, path: str, fingerprint: str, chunk_count: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO files(path, fingerprint, chunks) VALUES (?, ?, ?)",
                        (path, fingerprint, chunk_count))

    def insert_chunk(self, chunk: Chunk, embedding_key: str, segment: int) -> int:
        """Store one chunk with its lexical terms, held by `segment`; its new id."""
        cursor = self.db.execute(
            "INSERT INTO chunks(path, start_line, end_line, symbol, kind, language, context, text, embedding_key, "
            "terms, segment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (chunk.path, chunk.start_line, chunk.end_line, chunk.symbol, chunk.kind, chunk.language, chunk.context,
             chunk.text, embedding_key, chunk.terms or text_terms(chunk.text), segment))
        graph.record(self.db, cursor.lastrowid, chunk.symbol, chunk.kind, chunk.references)
        return cursor.lastrowid

    def mark_unembedded(self, ids: Sequence[int]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO unembedded(chunk_id) VALUES (?)", [(chunk_id,) for chunk_id in ids])

    def set_manifest(self, manifest: dict) -> None:
        for key, value in manifest.items():
            self.db.execute("INSERT OR REPLACE INTO manifest(key, value) VALUES (?, ?)", (key, json.dumps(value)))


def _batches(items: list) -> Iterator[list]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _marks(items: Sequence) -> str:
    return ",".join("?" * len(items))
