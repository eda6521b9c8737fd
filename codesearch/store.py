"""The per-repository index in `.codesearch/`: the database (metadata.py) and the files of its current
generation (generations.py), opened together; and the step that moves the index to its next generation.

SQLite is the source of truth and changes in one transaction per refresh. The FAISS file and the
lexical folder of generation N are written before the transaction that moves the database to
generation N commits, so a run that dies at any moment leaves either the old set or the new set on
disk, never a mix; a missing or unreadable file is rebuilt from what the database keeps.

The folder is codesearch's alone (`trust.py`): a real folder of this user, closed to others and
holding no links, checked each time an index is opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from codesearch import generations
from codesearch.chunk import Chunk
from codesearch.discover import INDEX_DIR, tracked_paths
from codesearch.errors import CodesearchError, IndexMissing
from codesearch.generations import MANIFEST_NAME
from codesearch.lexical import LexicalIndex
from codesearch.metadata import DATABASE_NAME, SCHEMA_VERSION, Metadata, StoredChunk
from codesearch.trust import (PrivateLock, UntrustedPath, is_repository_path, private_directory, read_regular_file,
                              refuse_links, write_private_file)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["IndexStore", "StoredChunk", "DATABASE_NAME", "SCHEMA_VERSION", "index_dir", "checked_directory"]

LOCK_NAME = "lock"
MANIFEST_LIMIT_BYTES = 1_000_000


class IndexStore:
    """One repository's index. Open with IndexStore.open(); writers hold `lock()`."""

    def __init__(self, directory: Path, metadata: Metadata):
        self.directory = directory
        self.metadata = metadata
        self._vectors = self._lexical = None  # each (generation number, index) once loaded

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, create: bool = False) -> "IndexStore":
        """Open (or create) the index in `directory`, once it is known to be codesearch's own.

        SQLite opens its files by name and follows links; that is safe here because the check just
        made lstat-ed the database, its -wal and -shm, and found no link in a folder that only this
        user can write into: no other user can put one there before SQLite opens them.
        """
        missing = IndexMissing(f"{directory.parent} is not indexed; run `codesearch index` first")
        if not create and not os.path.lexists(directory):
            raise missing
        checked_directory(directory, create=create)
        if not create and not os.path.lexists(directory / DATABASE_NAME):
            raise missing
        return cls(directory, Metadata.open(directory, create=create))

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
            if Metadata.healthy(database):
                return False
            for name in (DATABASE_NAME, DATABASE_NAME + "-wal", DATABASE_NAME + "-shm", MANIFEST_NAME):
                (directory / name).unlink(missing_ok=True)
            generations.remove_own_files(directory, keep=set())
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
        self.metadata.close()

    def lock(self, timeout: float = 10.0):
        """An exclusive lock for writers; a second writer waits, then gives up with a clear message."""
        return _writer_lock(self.directory, timeout)

    # -- reading: the database ---------------------------------------------------------

    def manifest(self) -> dict:
        return self.metadata.manifest()

    @property
    def generation(self) -> int:
        return int(self.manifest().get("generation", 0))

    def file_fingerprints(self) -> dict[str, str]:
        return self.metadata.file_fingerprints()

    def chunk_count(self) -> int:
        return self.metadata.chunk_count()

    def file_count(self) -> int:
        return self.metadata.file_count()

    def chunks_by_id(self, ids: Iterable[int]) -> dict[int, StoredChunk]:
        return self.metadata.chunks_by_id(ids)

    def unit_runs(self, chunk: StoredChunk) -> list[list[StoredChunk]]:
        return self.metadata.unit_runs(chunk)

    def chunk_ids(self, path_allowed: Callable[[str], bool] | None = None, languages: Sequence[str] = ()) -> np.ndarray:
        return self.metadata.chunk_ids(path_allowed, languages)

    def cached_vectors(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        return self.metadata.cached_vectors(keys)

    def cache_vectors(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        self.metadata.cache_vectors(keys, vectors)

    # -- reading: the current generation's files -----------------------------------------

    def vector_index(self):
        """The FAISS index of the current generation, rebuilt from stored vectors when its file is missing."""
        number = self.generation
        if self._vectors is not None and self._vectors[0] == number:
            return self._vectors[1]
        index = generations.read_vectors(self.directory, number)
        if index is None or index.ntotal != self.chunk_count():
            index = self._vectors_from_database()
        self._vectors = (number, index)
        return index

    def lexical_index(self) -> LexicalIndex:
        """The BM25 index of the current generation, rebuilt from the stored terms when its folder is
        missing or unreadable."""
        number = self.generation
        if self._lexical is not None and self._lexical[0] == number:
            return self._lexical[1]
        if self.manifest().get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise CodesearchError("this index was written by another version of codesearch; "
                                  "run `codesearch index` to update it")
        index = generations.read_lexical(self.directory, number)
        if index is None or index.chunks != self.chunk_count():
            index = LexicalIndex.from_parts(self.metadata.unit_parts())
        self._lexical = (number, index)
        return index

    # -- writing -------------------------------------------------------------------------

    def replace_files(self, manifest: dict, changed: dict[str, tuple[str, list[Chunk], list[str]]],
                      removed: Iterable[str], rebuild: bool = False) -> None:
        """Swap in the chunks of changed files and drop removed ones, as one generation step.

        changed maps path -> (fingerprint, chunks, embedding keys); every key is already cached.
        """
        import numpy as np

        removed = list(removed)
        metadata = self.metadata
        old_index = None if rebuild else self._current_index_or_none()
        number = self.generation + 1
        try:
            with metadata.transaction():
                stale_ids = metadata.clear() if rebuild else metadata.remove_paths(list(changed) + removed)
                for path in [*changed, *removed]:
                    if not is_repository_path(path):
                        raise CodesearchError(f"refusing to index {path!r}: not a path inside the repository")
                new_ids, new_keys = [], []
                for path, (fingerprint, chunks, keys) in changed.items():
                    metadata.add_file(path, fingerprint, len(chunks))
                    for chunk, key in zip(chunks, keys):
                        new_ids.append(metadata.insert_chunk(chunk, key))
                        new_keys.append(key)
                metadata.set_manifest({**manifest, "generation": number})
                if old_index is None:
                    index = self._vectors_from_database(dimension=manifest["dimension"])
                else:
                    index = old_index
                    if stale_ids:
                        index.remove_ids(np.asarray(stale_ids, dtype=np.int64))
                    vectors = metadata.cached_vectors(sorted(set(new_keys)))
                    if new_ids:
                        index.add_with_ids(np.stack([vectors[key] for key in new_keys]),
                                           np.asarray(new_ids, dtype=np.int64))
                generation = generations.write_generation(self.directory, number, index, metadata.unit_parts())
        except BaseException:
            self._vectors = self._lexical = None
            raise
        self._vectors, self._lexical = (number, generation.vectors), (number, generation.lexical)
        try:
            generations.remove_other_generations(self.directory, number)
            self._write_manifest_file()
            metadata.prune_embeddings()
        except (OSError, sqlite3.Error):
            # Housekeeping only: the new generation is committed, and the next refresh tidies up.
            pass

    # -- internals -----------------------------------------------------------------------

    def _current_index_or_none(self):
        if not self.manifest().get("dimension"):
            return None
        try:
            return self.vector_index()
        except Exception:
            return None

    def _vectors_from_database(self, dimension: int | None = None):
        dimension = dimension or int(self.manifest().get("dimension", 0))
        if not dimension:
            raise CodesearchError("the index has no vectors yet; run `codesearch index`")
        return generations.vector_index(dimension, self.metadata.chunk_vectors())

    def _write_manifest_file(self) -> None:
        """A human-readable copy of the manifest; the database holds the authoritative one."""
        text = json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n"
        write_private_file(self.directory / MANIFEST_NAME, text.encode("utf-8"))


def index_dir(root: Path) -> Path:
    """root/.codesearch, refused when git tracks anything there: a cloned repository could commit an
    index whose paths lead elsewhere, or a link in the folder's place or in it. (IndexStore.open checks
    the rest: a private folder of this user, holding no links.) One git call, on the query path too."""
    tracked = tracked_paths(root, INDEX_DIR)
    if tracked:
        raise UntrustedPath(f"{root / INDEX_DIR} is part of the repository (git tracks {tracked[0]}); codesearch "
                            f"keeps only its own index there: remove it from git (`git rm -r --cached {INDEX_DIR}`) "
                            f"and delete it")
    return root / INDEX_DIR


def checked_directory(directory: Path, create: bool = False) -> Path:
    """`directory` once it is codesearch's own: a real folder of this user, closed to others (created 0700
    when `create`), with no link anywhere in it."""
    private_directory(directory, create=create)
    refuse_links(directory)
    return directory


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
