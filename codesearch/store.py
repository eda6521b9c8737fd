"""The per-repository index in `.codesearch/`: SQLite for metadata, each chunk's lexical terms and
the embedding cache; a FAISS file for the vectors and a bm25s folder for BM25, per generation.

SQLite is the source of truth and changes in one transaction per refresh. The FAISS file and the
lexical folder of generation N are written (under temporary names, then renamed) before the
transaction that moves the database to generation N commits, so a run that dies at any moment
leaves either the old set or the new set on disk, never a mix; a missing or unreadable file is
rebuilt from what the database keeps.

The folder is codesearch's alone (`trust.py`): a real folder of this user, closed to others and
holding no links, checked each time an index is opened. Every file in it is opened without
following a link, and only names this module writes are ever deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from codesearch.chunk import Chunk, continues_unit
from codesearch.errors import CodesearchError
from codesearch.lexical import LexicalIndex, text_terms, unit_document
from codesearch.trust import (PrivateLock, is_repository_path, open_private, private_directory, read_regular_file,
                              refuse_links, write_private_file)

SCHEMA_VERSION = 3  # 3: chunks.terms holds a part's text terms only; BM25 documents are whole units
DATABASE_NAME = "index.sqlite"
MANIFEST_NAME = "manifest.json"
LOCK_NAME = "lock"
MANIFEST_LIMIT_BYTES = 1_000_000
# The only names this module deletes: generations it wrote, and its temporary files of killed runs.
_OWN_GENERATION = re.compile(r"(?:vectors-(\d+)\.faiss|lexical-(\d+))(?:\.tmp\d+)?")
_OWN_TEMPORARY = re.compile(re.escape(MANIFEST_NAME) + r"\.tmp\d+")

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
        """Open (or create) the index in `directory`, once it is known to be codesearch's own.

        SQLite opens its files by name and follows links; that is safe here because the check just
        made lstat-ed the database, its -wal and -shm, and found no link in a folder that only this
        user can write into: no other user can put one there before SQLite opens them.
        """
        database = directory / DATABASE_NAME
        if not create and not os.path.lexists(directory):
            raise CodesearchError(f"no index in {directory.parent}; run `codesearch index` first")
        checked_directory(directory, create=create)
        if not create and not os.path.lexists(database):
            raise CodesearchError(f"no index in {directory.parent}; run `codesearch index` first")
        try:
            if create:
                os.close(open_private(database, os.O_RDWR | os.O_CREAT))  # 0600, and SQLite gives -wal and -shm its mode
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
        if not os.path.lexists(directory):
            return False
        checked_directory(directory)
        if not os.path.lexists(database):
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
            for name in (DATABASE_NAME, DATABASE_NAME + "-wal", DATABASE_NAME + "-shm", MANIFEST_NAME):
                (directory / name).unlink(missing_ok=True)
            _remove_own_files(directory, keep=set())
        return True

    @classmethod
    def recorded_model(cls, directory: Path) -> str | None:
        """The model named in `manifest.json`, the copy that outlives a damaged database; None when it
        names none. Only a name comes from it, and resolve_model still judges that name."""
        try:
            checked_directory(directory)
            manifest = json.loads(read_regular_file(directory / MANIFEST_NAME, MANIFEST_LIMIT_BYTES))
        except (OSError, ValueError, CodesearchError):
            return None
        model = manifest.get("model") if isinstance(manifest, dict) else None
        return model if isinstance(model, str) and 0 < len(model) <= 4096 and model.isprintable() else None

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
            found.update({row[0]: self.stored_chunk(row) for row in rows})
        return found

    def stored_chunk(self, row: Sequence) -> StoredChunk:
        """A chunk read back from the database, whose path must still name a file inside the repository."""
        chunk = StoredChunk(*row)
        if not is_repository_path(chunk.path):
            raise CodesearchError(f"the index in {self.directory} is damaged: it names a file outside the repository "
                                  f"({chunk.path!r}); run `codesearch index --rebuild`")
        return chunk

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
        index = None
        try:
            with os.fdopen(open_private(self._faiss_path(generation), os.O_RDONLY), "rb") as handle:
                reader = faiss.PyCallbackIOReader(handle.read)
                index = faiss.read_index(reader)
                del reader  # before the file closes
        except (OSError, RuntimeError):
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
            for path in [*changed, *removed]:
                if not is_repository_path(path):
                    raise CodesearchError(f"refusing to index {path!r}: not a path inside the repository")
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
        temporary.unlink(missing_ok=True)  # a leftover of a killed run that had this process id
        with os.fdopen(open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
            writer = faiss.PyCallbackIOWriter(handle.write)
            faiss.write_index(index, writer)
            del writer  # flushes its buffer into the file
            handle.flush()
            os.fsync(handle.fileno())
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
        _remove_own_files(self.directory, keep={self._faiss_path(generation).name, self._lexical_path(generation).name})

    def _write_manifest_file(self) -> None:
        """A human-readable copy of the manifest; the database holds the authoritative one."""
        text = json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n"
        write_private_file(self.directory / MANIFEST_NAME, text.encode("utf-8"))

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


def checked_directory(directory: Path, create: bool = False) -> Path:
    """`directory` once it is codesearch's own: a real folder of this user, closed to others (created 0700
    when `create`), with no link anywhere in it."""
    private_directory(directory, create=create)
    refuse_links(directory)
    return directory


def _remove_own_files(directory: Path, keep: set[str]) -> None:
    """Delete the generations and temporary files codesearch wrote in `directory`, but those in `keep`:
    exact names it makes, never a pattern's other matches."""
    for name in os.listdir(directory):
        if name in keep or not (_OWN_GENERATION.fullmatch(name) or _OWN_TEMPORARY.fullmatch(name)):
            continue
        path = directory / name
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                shutil.rmtree(path, ignore_errors=True)  # never follows a link inside
            else:
                path.unlink()
        except FileNotFoundError:
            pass


def _writer_lock(directory: Path, timeout: float) -> "_WriterLock":
    return _WriterLock(PrivateLock(directory / LOCK_NAME), timeout)


class _WriterLock:
    def __init__(self, lock: PrivateLock, timeout: float):
        self._lock, self._timeout = lock, timeout

    def __enter__(self):
        if not self._lock.acquire(self._timeout):
            raise CodesearchError("another codesearch run is updating this index; try again when it finishes")
        return self

    def __exit__(self, *exc):
        self._lock.release()


def _upgrade_schema(connection: sqlite3.Connection) -> None:
    """Let an index of schema 1 (FTS5, no terms column) open; its schema version then asks for a rebuild."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(chunks)")}
    if "terms" not in columns:
        connection.execute("ALTER TABLE chunks ADD COLUMN terms TEXT NOT NULL DEFAULT ''")
    connection.execute("DROP TABLE IF EXISTS lexical")

