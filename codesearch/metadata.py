"""The index database (`index.sqlite`): the manifest, the files' fingerprints, the chunks with their
lexical terms, and the embedding cache. The only module that speaks SQL.

SQLite is the index's source of truth; the generation files (generations.py) are derived from it and
rebuilt from it when lost. Its layout evolves by numbered migrations (migrations.py); whether its rows
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

from codesearch.chunk import CHUNKER_VERSION, Chunk, units_of
from codesearch.errors import CodesearchError, IndexDamaged
from codesearch.lexical import text_terms
from codesearch.migrations import migrate
from codesearch.trust import is_repository_path, open_private

if TYPE_CHECKING:
    import numpy as np

# What the rows mean; 3: chunks.terms holds a part's text terms only, BM25 documents are units; 4: terms
# include the words of known abbreviations (lexical.code_terms).
SCHEMA_VERSION = 4
DATABASE_NAME = "index.sqlite"
_BATCH = 500  # ids or keys per IN (...) list
_CHUNK_COLUMNS = "id, path, start_line, end_line, symbol, kind, language, context, text"


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


def needs_rebuild(manifest: dict, model_fingerprint: str) -> str:
    """Why an index must be rebuilt before it is refreshed ("" when it need not): its rows were written
    in another format, cut by another chunker, or embedded with other model settings."""
    if not manifest:
        return ""
    if manifest.get("schema_version") != SCHEMA_VERSION:
        return "the index format changed"
    if manifest.get("chunker_version") != CHUNKER_VERSION:
        return "the chunker changed"
    if manifest.get("model_fingerprint") != model_fingerprint:
        return "the model settings changed"
    return ""


def is_damaged(error: BaseException) -> bool:
    """A database error that means the file itself is broken, not a full disk, a lock or a read-only file."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def damaged(directory: Path, detail: object) -> IndexDamaged:
    return IndexDamaged(f"the index in {directory} is damaged ({detail}); run `codesearch index --rebuild`")


class Metadata:
    """One open index database. Reads see every committed transaction; writers hold the index's lock."""

    def __init__(self, directory: Path, db: sqlite3.Connection):
        self.directory, self.db = directory, db

    @classmethod
    def open(cls, directory: Path, create: bool = False) -> "Metadata":
        """The database in `directory` (a folder already checked to be codesearch's own), migrated to the
        current layout. IndexDamaged when SQLite cannot read it."""
        database = directory / DATABASE_NAME
        try:
            if create:
                os.close(open_private(database, os.O_RDWR | os.O_CREAT))  # 0600, and SQLite gives -wal and -shm its mode
            db = sqlite3.connect(database, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
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

    # -- reading -------------------------------------------------------------------------

    def manifest(self) -> dict:
        return {key: json.loads(value) for key, value in self.db.execute("SELECT key, value FROM manifest")}

    def file_fingerprints(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT path, fingerprint FROM files"))

    def chunk_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def file_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM files").fetchone()[0]

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
        return units_of(map(self.stored_chunk, rows)) or [[chunk]]

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

    def unit_parts(self) -> Iterator[tuple[StoredChunk, str]]:
        """Every chunk (its text left out) with its lexical terms, in unit order: a unit's parts adjacent."""
        rows = self.db.execute("SELECT id, path, start_line, end_line, symbol, kind, language, context, '', terms "
                               "FROM chunks ORDER BY path, symbol, kind, start_line")
        for *columns, terms in rows:
            yield StoredChunk(*columns), terms

    def chunk_vectors(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float32 vectors) of every chunk, from the embedding cache, in batches."""
        import numpy as np

        rows = self.db.execute("SELECT chunks.id, embeddings.vector FROM chunks JOIN embeddings "
                               "ON embeddings.key = chunks.embedding_key")
        while batch := rows.fetchmany(4096):
            ids = np.asarray([row[0] for row in batch], dtype=np.int64)
            yield ids, np.stack([np.frombuffer(row[1], dtype=np.float16) for row in batch]).astype(np.float32)

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

    def prune_embeddings(self) -> None:
        """Keep the cache bounded: vectors no chunk uses are dropped once they outnumber the used ones."""
        used = self.chunk_count()
        total = self.db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
        if total > 2 * used + 1000:
            with self.transaction():
                self.db.execute("DELETE FROM embeddings WHERE key NOT IN (SELECT embedding_key FROM chunks)")

    # -- writing, inside a transaction of the caller's ---------------------------------------

    def clear(self) -> list[int]:
        """Forget every file, chunk and manifest entry (the cache stays); the ids the chunks had."""
        ids = [row[0] for row in self.db.execute("SELECT id FROM chunks")]
        for table in ("chunks", "files", "manifest"):
            self.db.execute(f"DELETE FROM {table}")
        return ids

    def remove_paths(self, paths: list[str]) -> list[int]:
        """Forget these files and their chunks; the ids the chunks had."""
        ids = []
        for part in _batches(paths):
            ids.extend(row[0] for row in self.db.execute(f"SELECT id FROM chunks WHERE path IN ({_marks(part)})", part))
            self.db.execute(f"DELETE FROM chunks WHERE path IN ({_marks(part)})", part)
            self.db.execute(f"DELETE FROM files WHERE path IN ({_marks(part)})", part)
        return ids

    def add_file(self, path: str, fingerprint: str, chunk_count: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO files(path, fingerprint, chunks) VALUES (?, ?, ?)",
                        (path, fingerprint, chunk_count))

    def insert_chunk(self, chunk: Chunk, embedding_key: str) -> int:
        """Store one chunk with its lexical terms; its new id."""
        cursor = self.db.execute(
            "INSERT INTO chunks(path, start_line, end_line, symbol, kind, language, context, text, embedding_key, "
            "terms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (chunk.path, chunk.start_line, chunk.end_line, chunk.symbol, chunk.kind, chunk.language, chunk.context,
             chunk.text, embedding_key, text_terms(chunk.text)))
        return cursor.lastrowid

    def set_manifest(self, manifest: dict) -> None:
        for key, value in manifest.items():
            self.db.execute("INSERT OR REPLACE INTO manifest(key, value) VALUES (?, ?)", (key, json.dumps(value)))


def _batches(items: list) -> Iterator[list]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _marks(items: Sequence) -> str:
    return ",".join("?" * len(items))
