"""The per-repository index in `.codesearch/`: SQLite for metadata, each chunk's lexical terms and
the embedding cache; a FAISS file for the vectors and a bm25s folder for BM25, per generation.

SQLite is the source of truth and changes in one transaction per refresh. The FAISS file and the
lexical folder of generation N are written (under temporary names, then renamed) before the
transaction that moves the database to generation N commits, so a run that dies at any moment
leaves either the old set or the new set on disk, never a mix; a missing or unreadable file is
rebuilt from what the database keeps.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from codesearch.chunk import Chunk, continues_unit
from codesearch.errors import CodesearchError
from codesearch.lexical import LexicalIndex, text_terms, unit_document

SCHEMA_VERSION = 3  # 3: chunks.terms holds a part's text terms only; BM25 documents are whole units
DATABASE_NAME = "index.sqlite"
MANIFEST_NAME = "manifest.json"
LOCK_NAME = "lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, chunks INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    kind TEXT NOT NULL,
    language TEXT NOT NULL,
    context TEXT NOT NULL,
    text TEXT NOT NULL,
    embedding_key TEXT NOT NULL,
    terms TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks(path);
CREATE INDEX IF NOT EXISTS chunks_by_language ON chunks(language);
CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL);
"""


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


class IndexStore:
    """One repository's index. Open with IndexStore.open(); writers hold `lock()`."""

    def __init__(self, directory: Path, connection: sqlite3.Connection):
        self.directory = directory
        self.db = connection
        self._faiss_index = None
        self._faiss_generation = None
        self._lexical_index = None
        self._lexical_generation = None

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, create: bool = False) -> "IndexStore":
        database = directory / DATABASE_NAME
        if not database.exists() and not create:
            raise CodesearchError(f"no index in {directory.parent}; run `codesearch index` first")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(database, timeout=30, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            _upgrade_schema(connection)
            connection.execute("SELECT count(*) FROM chunks").fetchone()
        except sqlite3.DatabaseError as error:
            raise CodesearchError(
                f"the index in {directory} is unreadable ({error}); run `codesearch index --rebuild`"
            ) from None
        except OSError as error:
            raise CodesearchError(f"cannot write the index in {directory}: {error.strerror or error}") from None
        return cls(directory, connection)

    @classmethod
    def discard_if_damaged(cls, directory: Path) -> bool:
        """Delete a damaged database and the files derived from it, so that a rebuild can start afresh.

        A healthy database is kept: its embedding cache spares the rebuild most of the embedding.
        """
        database = directory / DATABASE_NAME
        if not database.exists():
            return False
        with _writer_lock(directory, timeout=10.0):
            try:
                connection = sqlite3.connect(database, timeout=30, isolation_level=None)
                try:
                    healthy = connection.execute("PRAGMA quick_check").fetchone()[0] == "ok"
                finally:
                    connection.close()
            except sqlite3.DatabaseError as error:
                if not is_damaged(error):
                    raise
                healthy = False
            if healthy:
                return False
            derived = [directory / MANIFEST_NAME, *directory.glob("vectors-*.faiss*")]
            for path in [database, database.with_name(DATABASE_NAME + "-wal"),
                         database.with_name(DATABASE_NAME + "-shm"), *derived]:
                path.unlink(missing_ok=True)
            for folder in directory.glob("lexical-*"):
                shutil.rmtree(folder, ignore_errors=True)
        return True

    def close(self) -> None:
        self.db.close()

    def lock(self, timeout: float = 10.0):
        """An exclusive lock for writers; a second writer waits, then gives up with a clear message."""
        return _writer_lock(self.directory, timeout)

    # -- manifest ------------------------------------------------------------------------

    def manifest(self) -> dict:
        return {key: json.loads(value) for key, value in self.db.execute("SELECT key, value FROM meta")}

    @property
    def generation(self) -> int:
        return int(self.manifest().get("generation", 0))

    # -- reading -------------------------------------------------------------------------

    def file_fingerprints(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT path, fingerprint FROM files"))

    def chunk_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def file_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM files").fetchone()[0]

    def chunks_by_id(self, ids: Iterable[int]) -> dict[int, StoredChunk]:
        ids = list(ids)
        found = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = self.db.execute(
                f"SELECT id, path, start_line, end_line, symbol, kind, language, context, text FROM chunks "
                f"WHERE id IN ({','.join('?' * len(part))})", part)
            found.update({row[0]: StoredChunk(*row) for row in rows})
        return found

    def cached_vectors(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        import numpy as np

        found = {}
        for start in range(0, len(keys), 500):
            part = list(keys[start : start + 500])
            rows = self.db.execute(f"SELECT key, vector FROM embeddings WHERE key IN ({','.join('?' * len(part))})", part)
            found.update({key: np.frombuffer(blob, dtype=np.float16).astype(np.float32) for key, blob in rows})
        return found

    def cache_vectors(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Remember vectors by content key; committed at once so an interrupted run keeps its work."""
        import numpy as np

        with self._transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO embeddings(key, vector) VALUES (?, ?)",
                [(key, vector.astype(np.float16).tobytes()) for key, vector in zip(keys, vectors)])

    def vector_index(self):
        """The FAISS index of the current generation, rebuilt from stored vectors when its file is missing."""
        import faiss

        generation = self.generation
        if self._faiss_index is not None and self._faiss_generation == generation:
            return self._faiss_index
        path = self._faiss_path(generation)
        index = None
        if path.exists():
            try:
                index = faiss.read_index(str(path))
            except RuntimeError:
                index = None
        if index is None or index.ntotal != self.chunk_count():
            index = self._rebuild_vector_index()
        self._faiss_index, self._faiss_generation = index, generation
        return index

    def lexical_index(self) -> LexicalIndex:
        """The BM25 index of the current generation, rebuilt from the stored terms when its folder is
        missing or unreadable."""
        generation = self.generation
        if self._lexical_index is not None and self._lexical_generation == generation:
            return self._lexical_index
        if self.manifest().get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise CodesearchError("this index was written by another version of codesearch; "
                                  "run `codesearch index` to update it")
        index = LexicalIndex.load(self._lexical_path(generation))
        if index is None or index.chunks != self.chunk_count():
            index = self._build_lexical_index()
        self._lexical_index, self._lexical_generation = index, generation
        return index

    # -- writing -------------------------------------------------------------------------

    def replace_files(self, manifest: dict, changed: dict[str, tuple[str, list[Chunk], list[str]]],
                      removed: Iterable[str], rebuild: bool = False) -> None:
        """Swap in the chunks of changed files and drop removed ones, as one generation step.

        changed maps path -> (fingerprint, chunks, embedding keys); every key is already cached.
        """
        import numpy as np

        import faiss

        removed = list(removed)
        old_index = None if rebuild else self._current_index_or_none()
        generation = self.generation + 1
        try:
            self.db.execute("BEGIN IMMEDIATE")
            stale_paths = list(changed) + removed
            if rebuild:
                stale_ids = [row[0] for row in self.db.execute("SELECT id FROM chunks")]
                self.db.execute("DELETE FROM chunks")
                self.db.execute("DELETE FROM files")
                self.db.execute("DELETE FROM meta")
            else:
                stale_ids = self._chunk_ids_for_paths(stale_paths)
                self._delete_paths(stale_paths)
            new_ids, new_keys = [], []
            for path, (fingerprint, chunks, keys) in changed.items():
                self.db.execute("INSERT OR REPLACE INTO files(path, fingerprint, chunks) VALUES (?, ?, ?)",
                                (path, fingerprint, len(chunks)))
                for chunk, key in zip(chunks, keys):
                    new_ids.append(self._insert_chunk(chunk, key))
                    new_keys.append(key)
            for key, value in {**manifest, "generation": generation}.items():
                self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))
            if old_index is None:
                index = self._rebuild_vector_index(dimension=manifest["dimension"])
            else:
                index = old_index
                if stale_ids:
                    index.remove_ids(np.asarray(stale_ids, dtype=np.int64))
                vectors = self.cached_vectors(sorted(set(new_keys)))
                if new_ids:
                    index.add_with_ids(np.stack([vectors[key] for key in new_keys]),
                                       np.asarray(new_ids, dtype=np.int64))
            self._write_faiss(index, generation)
            lexical = self._build_lexical_index()  # reads this transaction's rows
            self._write_lexical(lexical, generation)
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            self._faiss_index = self._lexical_index = None
            raise
        self._faiss_index, self._faiss_generation = index, generation
        self._lexical_index, self._lexical_generation = lexical, generation
        try:
            self._remove_other_generations(generation)
            self._write_manifest_file()
            self._prune_embeddings()
        except (OSError, sqlite3.Error):
            # Housekeeping only: the new generation is committed, and the next refresh tidies up.
            pass

    # -- internals -----------------------------------------------------------------------

    @contextmanager
    def _transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _faiss_path(self, generation: int) -> Path:
        return self.directory / f"vectors-{generation}.faiss"

    def _current_index_or_none(self):
        if not self.manifest().get("dimension"):
            return None
        try:
            return self.vector_index()
        except Exception:
            return None

    def _rebuild_vector_index(self, dimension: int | None = None):
        import numpy as np

        import faiss

        dimension = dimension or int(self.manifest().get("dimension", 0))
        if not dimension:
            raise CodesearchError("the index has no vectors yet; run `codesearch index`")
        # fp16 storage halves memory and disk against flat fp32, and a memory-bound scan gets faster.
        index = faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_fp16,
                                                             faiss.METRIC_INNER_PRODUCT))
        rows = self.db.execute("SELECT chunks.id, embeddings.vector FROM chunks JOIN embeddings "
                               "ON embeddings.key = chunks.embedding_key")
        while batch := rows.fetchmany(4096):
            ids = np.asarray([row[0] for row in batch], dtype=np.int64)
            vectors = np.stack([np.frombuffer(row[1], dtype=np.float16) for row in batch]).astype(np.float32)
            index.add_with_ids(vectors, ids)
        return index

    def _write_faiss(self, index, generation: int) -> None:
        import faiss

        path = self._faiss_path(generation)
        temporary = path.with_name(path.name + f".tmp{os.getpid()}")
        faiss.write_index(index, str(temporary))
        _fsync_file(temporary)
        os.replace(temporary, path)

    def _lexical_path(self, generation: int) -> Path:
        return self.directory / f"lexical-{generation}"

    def _build_lexical_index(self) -> LexicalIndex:
        """One BM25 document per unit: the parts of a split function are gathered again."""
        rows = self.db.execute("SELECT id, path, start_line, end_line, symbol, kind, language, context, '', terms "
                               "FROM chunks ORDER BY path, symbol, kind, start_line")  # terms, not the text
        units: list[tuple[StoredChunk, list[str]]] = []  # first part, each part's terms
        previous = None
        for *columns, terms in rows:
            part = StoredChunk(*columns)
            if previous is not None and continues_unit(previous, part):
                units[-1][1].append(terms)
            else:
                units.append((part, [terms]))
            previous = part
        documents = ((first.id, unit_document(first.symbol, first.path, terms)) for first, terms in units)
        return LexicalIndex.build(documents, chunks=sum(len(terms) for _, terms in units))

    def _write_lexical(self, index: LexicalIndex, generation: int) -> None:
        index.save(self._lexical_path(generation))

    def _remove_other_generations(self, generation: int) -> None:
        keep = {self._faiss_path(generation).name, self._lexical_path(generation).name}
        for path in [*self.directory.glob("vectors-*.faiss*"), *self.directory.glob("lexical-*")]:
            if path.name in keep:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def _write_manifest_file(self) -> None:
        """A human-readable copy of the manifest; the database holds the authoritative one."""
        path = self.directory / MANIFEST_NAME
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(temporary, path)

    def _prune_embeddings(self) -> None:
        """Keep the cache bounded: vectors no chunk uses are dropped once they outnumber the used ones."""
        used = self.chunk_count()
        total = self.db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
        if total > 2 * used + 1000:
            with self._transaction():
                self.db.execute("DELETE FROM embeddings WHERE key NOT IN (SELECT embedding_key FROM chunks)")

    def _chunk_ids_for_paths(self, paths: list[str]) -> list[int]:
        ids = []
        for start in range(0, len(paths), 500):
            part = paths[start : start + 500]
            ids.extend(row[0] for row in self.db.execute(
                f"SELECT id FROM chunks WHERE path IN ({','.join('?' * len(part))})", part))
        return ids

    def _delete_paths(self, paths: list[str]) -> None:
        for start in range(0, len(paths), 500):
            part = paths[start : start + 500]
            marks = ",".join("?" * len(part))
            self.db.execute(f"DELETE FROM chunks WHERE path IN ({marks})", part)
            self.db.execute(f"DELETE FROM files WHERE path IN ({marks})", part)

    def _insert_chunk(self, chunk: Chunk, embedding_key: str) -> int:
        cursor = self.db.execute(
            "INSERT INTO chunks(path, start_line, end_line, symbol, kind, language, context, text, embedding_key, "
            "terms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (chunk.path, chunk.start_line, chunk.end_line, chunk.symbol, chunk.kind, chunk.language, chunk.context,
             chunk.text, embedding_key, text_terms(chunk.text)))
        return cursor.lastrowid


def is_damaged(error: BaseException) -> bool:
    """A database error that means the file itself is broken, not a full disk, a lock or a read-only file."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _writer_lock(directory: Path, timeout: float) -> "_WriterLock":
    from filelock import FileLock

    return _WriterLock(FileLock(str(directory / LOCK_NAME)), timeout)


class _WriterLock:
    def __init__(self, lock, timeout: float):
        self._lock, self._timeout = lock, timeout

    def __enter__(self):
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=self._timeout)
        except Timeout:
            raise CodesearchError("another codesearch run is updating this index; try again when it finishes") from None
        return self

    def __exit__(self, *exc):
        self._lock.release()


def _upgrade_schema(connection: sqlite3.Connection) -> None:
    """Let an index of schema 1 (FTS5, no terms column) open; its schema version then asks for a rebuild."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(chunks)")}
    if "terms" not in columns:
        connection.execute("ALTER TABLE chunks ADD COLUMN terms TEXT NOT NULL DEFAULT ''")
    connection.execute("DROP TABLE IF EXISTS lexical")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
