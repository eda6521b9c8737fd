"""The per-repository index in `.codesearch/`: the database (database.py) and the segments its current
generation lists (segments.py), opened together; and the steps that move the index to its next generation:
a refresh (one new segment, deletions marked) and a merge.

SQLite is the source of truth and changes in one transaction per step. A step's new segment is written
before the transaction that lists it commits, and folders are deleted only once no committed generation
lists them, so a run that dies at any moment leaves either the old generation or the new one. A segment
found unreadable is forgotten with the files it held, which the next refresh indexes again (repair).

The folder is codesearch's alone (`trust.py`): a real folder of this user, closed to others and
holding no links, checked each time an index is opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from codesearch.source.chunk import Chunk
from codesearch.source.discover import INDEX_DIR, tracked_paths
from codesearch.errors import CodesearchError, IndexBusy, IndexDamaged, IndexMissing
from codesearch.index.lexical import LexicalIndex, Postings
from codesearch.index.database import DATABASE_NAME, SCHEMA_VERSION, IndexDatabase, StoredChunk
from codesearch.index.segments import (Segment, SegmentSize, VectorIndex, merge_segments, plan_merge, remove_unlisted,
                                 write_segment)
from codesearch.trust import (PrivateLock, UntrustedPath, is_repository_path, private_directory, read_regular_file,
                              refuse_links, write_private_file)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["IndexStore", "StoredChunk", "DATABASE_NAME", "SCHEMA_VERSION", "index_dir", "checked_directory"]

LOCK_NAME = "lock"
# Picture families kept beside the code (indexer/pictures.py): kind -> its folder, an index of its own.
FAMILY_FOLDERS = {"image": "images", "page": "pages"}
MANIFEST_NAME = "manifest.json"
MANIFEST_LIMIT_BYTES = 1_000_000
CACHE_FLOOR = 1000  # vectors the cache keeps however small the index; beyond it, a quarter of the live chunks


class IndexStore:
    """One repository's index. Open with IndexStore.open(); writers hold `lock()`."""

    def __init__(self, directory: Path, database: IndexDatabase):
        self.directory = directory
        self.database = database
        self._view = None  # (generation, VectorIndex, LexicalIndex) once loaded
        self._opened: dict[int, Segment] = {}

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
        return cls(directory, IndexDatabase.open(directory, create=create))

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
            if IndexDatabase.healthy(database):
                return False
            for name in (DATABASE_NAME, DATABASE_NAME + "-wal", DATABASE_NAME + "-shm", MANIFEST_NAME):
                (directory / name).unlink(missing_ok=True)
            remove_unlisted(directory, listed=())
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
        self.database.close()

    def lock(self, timeout: float = 10.0):
        """An exclusive lock for writers; a second writer waits, then gives up with a clear message."""
        return _writer_lock(self.directory, timeout)

    # -- reading: the database ---------------------------------------------------------

    @property
    def generation(self) -> int:
        return int(self.database.manifest().get("generation", 0))

    def cached_vectors(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors known for these keys: a live chunk's, read from its segment, or the cache's."""
        found = self.database.cached_vectors(keys)
        found.update(self._segment_vectors(self.database.live_locations([key for key in keys if key not in found])))
        return found

    # -- reading: the current generation's segments ----------------------------------------

    def vector_index(self) -> VectorIndex:
        """Exact search over the vectors of the current generation's live chunks."""
        return self._generation_view()[1]

    def lexical_index(self) -> LexicalIndex:
        """BM25 over the current generation's live units."""
        if self.database.manifest().get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise CodesearchError("this index was written by another version of codesearch; "
                                  "run `codesearch index` to update it")
        return self._generation_view()[2]

    def segment_numbers(self) -> list[int]:
        return [int(number) for number in self.database.manifest().get("segments", [])]

    def _generation_view(self) -> tuple[int, VectorIndex, LexicalIndex]:
        if self._view is not None and self._view[0] == self.generation:
            return self._view
        for attempt in range(3):
            with self.database.snapshot():
                manifest, deleted = self.database.manifest(), self.database.deleted_ids()
                unembedded = self.database.unembedded_ids() if manifest.get("unembedded") else {}
            number = int(manifest.get("generation", 0))
            try:
                listed = [self._segment(int(segment)) for segment in manifest.get("segments", [])]
                break
            except IndexDamaged:
                # A merge committed meanwhile and deleted a folder this generation listed: read the next one.
                if attempt == 2 or self.generation == number:
                    raise
        self._opened = {segment.number: segment for segment in listed}  # the rest may be deleted by now
        self._view = (number,
                      # A chunk with no vector yet is found by words only: to the dense search it is deleted.
                      VectorIndex([(segment, deleted.get(segment.number, []) + unembedded.get(segment.number, []))
                                   for segment in listed], int(manifest.get("dimension") or 0)),
                      LexicalIndex([(segment.postings, deleted.get(segment.number, [])) for segment in listed]))
        return self._view

    def _segment(self, number: int) -> Segment:
        """A segment, opened once: segments never change."""
        if number not in self._opened:
            self._opened[number] = Segment.open(self.directory, number)
        return self._opened[number]

    def _segment_vectors(self, locations: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
        """key -> vector, read from the segments at (segment, chunk id)."""
        import numpy as np

        found, by_segment = {}, {}
        for key, (segment, chunk_id) in locations.items():
            by_segment.setdefault(segment, []).append((chunk_id, key))
        for segment, wanted in by_segment.items():
            vectors = self._segment(segment).vectors_of(np.asarray([chunk_id for chunk_id, _ in wanted], np.int64))
            found.update({key: vector for (_, key), vector in zip(wanted, vectors)})
        return found

    def unembedded_chunks(self) -> tuple[array, int]:
        """The ids of the live chunks written without a vector, in file order (8 bytes each: a first index of a
        million chunks holds them all), and how many distinct texts they hold."""
        ids = array("q", (chunk_id for (chunk_id,) in self.database.db.execute(
            "SELECT id FROM chunks WHERE id IN (SELECT chunk_id FROM unembedded) ORDER BY path, start_line")))
        texts = self.database.db.execute("SELECT count(DISTINCT embedding_key) FROM chunks "
                                         "WHERE id IN (SELECT chunk_id FROM unembedded)").fetchone()[0]
        return ids, texts

    def embedding_rows(self, ids: Sequence[int]) -> list[tuple[str, str]]:
        """(embedding key, the text the model embeds) of these chunks, in the order given; gone ones left out."""
        from codesearch.source.chunk import embedding_text

        rows = {}
        for start in range(0, len(ids), 500):
            part = list(ids[start:start + 500])
            rows.update({row[0]: (row[1], embedding_text(*row[2:])) for row in self.database.db.execute(
                f"SELECT id, embedding_key, path, context, text FROM chunks WHERE id IN ({','.join('?' * len(part))})",
                part)})
        return [rows[chunk_id] for chunk_id in ids if chunk_id in rows]

    def stored_files(self, paths: Sequence[str]) -> dict[str, tuple[str, list[Chunk], list[str]]]:
        """path -> (fingerprint, chunks, embedding keys) as the index holds them, references and terms included:
        what replace_files takes, to write these files again (now that their vectors are known)."""
        db, found = self.database.db, {}
        for path in paths:
            fingerprint = db.execute("SELECT fingerprint FROM files WHERE path = ?", (path,)).fetchone()
            rows = db.execute("SELECT id, path, start_line, end_line, symbol, kind, language, text, context, "
                              "embedding_key, terms FROM chunks WHERE path = ? ORDER BY id", (path,)).fetchall()
            if fingerprint is None or not rows:
                continue
            references: dict[int, list] = {}
            for chunk_id, name, kind, line, qualifier in db.execute(
                    "SELECT chunk_id, name, kind, line, qualifier FROM refs WHERE chunk_id IN "
                    "(SELECT id FROM chunks WHERE path = ?) ORDER BY rowid", (path,)):
                references.setdefault(chunk_id, []).append((name, kind, line, qualifier))
            chunks = [Chunk(*row[1:9], references=tuple(references.get(row[0], ())), terms=row[10]) for row in rows]
            found[path] = (fingerprint[0], chunks, [row[9] for row in rows])
        return found

    # -- writing -------------------------------------------------------------------------

    def replace_files(self, manifest: dict, changed: dict[str, tuple[str, list[Chunk], list[str]]],
                      removed: Iterable[str], rebuild: bool = False, unembedded_ok: bool = False) -> None:
        """Swap in the chunks of changed files and drop removed ones, as one generation step: the new chunks
        go into one new segment, the old ones are marked deleted from theirs (all of them on a rebuild).

        changed maps path -> (fingerprint, chunks, embedding keys); every key's vector is known (cached, or
        held by a live chunk), unless `unembedded_ok`: then a chunk whose vector is not known yet is written
        with none (recorded as unembedded: found by words only, until a later step replaces its file)."""
        import numpy as np

        removed = list(removed)
        database = self.database
        for path in [*changed, *removed]:
            if not is_repository_path(path):
                raise CodesearchError(f"refusing to index {path!r}: not a path inside the repository")
        old = self.database.manifest()
        listed = [] if rebuild else self.segment_numbers()
        number = int(old.get("next_segment", 1))
        new_keys = [key for _, _, keys in changed.values() for key in keys]
        try:
            with database.transaction():
                # Where each new chunk's vector is now: read before the chunks holding it are removed.
                locations = database.live_locations(sorted(set(new_keys)))
                if rebuild:
                    database.clear()
                    gone = []
                else:
                    gone = database.remove_paths(list(changed) + removed)
                ids = []
                for path, (fingerprint, chunks, keys) in changed.items():
                    database.add_file(path, fingerprint, len(chunks))
                    ids.extend(database.insert_chunk(chunk, key, number) for chunk, key in zip(chunks, keys))
                if ids:
                    database.mark_unembedded(self._write_segment(number, manifest["dimension"], ids, new_keys,
                                                                 locations, unembedded_ok))
                    listed.append(number)
                # A removed chunk's vector no live chunk uses any more goes to the cache (a branch switch
                # back finds it there); a vector now held by the new segment leaves it.
                orphaned = {key: (segment, chunk_id) for chunk_id, segment, key in gone}
                for key in database.keys_in_use(list(orphaned)):
                    del orphaned[key]
                orphans = list(orphaned.items())
                for start in range(0, len(orphans), 4096):
                    vectors = self._segment_vectors(dict(orphans[start:start + 4096]))
                    database.cache_missing(list(vectors), np.stack(list(vectors.values())) if vectors else [])
                database.uncache(sorted(set(new_keys)))
                # The live chunks are counted (for an answer's share embedded) only while some lack a vector:
                # a count of every row would cost a refresh of a large index more than the rest of it.
                unembedded = database.unembedded_count()
                database.set_manifest({**manifest, "generation": int(old.get("generation", 0)) + 1, "segments": listed,
                                       "next_segment": number + 1, "unembedded": unembedded,
                                       **({"chunks": database.chunk_count()} if unembedded else {})})
        finally:
            self._view = None
        self._tidy()

    def merge_segments(self, before: Callable[[], object] | None = None) -> list[int]:
        """Merge segments as the tiered policy asks (segments.plan_merge), each merge a generation step of its
        own; the segments merged. `before()` is called once, before a first merge (a caller may give back
        memory it holds meanwhile: a merge builds its segment in memory). The caller holds the lock."""
        merged = []
        while True:
            rows = self.database.segment_rows()
            sizes = [SegmentSize(number, sum(rows.get(number, (0, 0))), rows.get(number, (0, 0))[1],
                                 self._segment(number).outdated) for number in self.segment_numbers()]
            chosen = plan_merge(sizes)  # each merge leaves fewer segments, or none mostly deleted: this ends
            if not chosen:
                return merged
            if before is not None and not merged:
                before()
            self._merge(chosen)
            merged.extend(chosen)

    def _merge(self, chosen: list[int]) -> None:
        manifest, deleted = self.database.manifest(), self.database.deleted_ids()
        number = int(manifest.get("next_segment", 1))
        sources = [(self._segment(segment), deleted.get(segment, [])) for segment in chosen]
        held = merge_segments(self.directory, number, int(manifest["dimension"]), sources)
        listed = [segment for segment in self.segment_numbers() if segment not in chosen]
        try:
            with self.database.transaction():
                self.database.move_segments(chosen, number)
                self.database.set_manifest({"generation": self.generation + 1, "next_segment": number + 1,
                                            "segments": listed + ([number] if held else [])})
        finally:
            self._view = None
        self._tidy()

    def repair(self) -> list[str]:
        """Forget what unreadable segments held, so that the refresh under way indexes those files again; their
        paths. The caller holds the lock."""
        lost = []
        for number in self.segment_numbers():
            try:
                self._segment(number)
            except IndexDamaged:
                lost.append(number)
        if not lost:
            return []
        with self.database.transaction():
            paths = self.database.forget_segments(lost)
            self.database.set_manifest({"generation": self.generation + 1,
                                        "segments": [n for n in self.segment_numbers() if n not in lost]})
        self._view = None
        return paths

    # -- internals -----------------------------------------------------------------------

    def _write_segment(self, number: int, dimension: int, ids: list[int], keys: list[str],
                       locations: dict[str, tuple[int, int]], unembedded_ok: bool = False) -> list[int]:
        """Segment `number` of the chunks just inserted (ids ascending, keys alike), inside the transaction;
        the ids of those written without a vector (only when `unembedded_ok`)."""
        import numpy as np

        unembedded: list[int] = []

        def vectors(start: int) -> np.ndarray:
            part = keys[start:start + 4096]
            known = self.database.cached_vectors(part)
            known.update(self._segment_vectors({key: locations[key] for key in part
                                                if key not in known and key in locations}))
            missing = [offset for offset, key in enumerate(part) if key not in known]
            if missing and not unembedded_ok:
                raise CodesearchError(f"{len(missing)} chunks have no vector yet; run `codesearch index` again")
            unembedded.extend(ids[start + offset] for offset in missing)
            none = np.zeros(dimension, dtype=np.float32)
            return np.stack([known.get(key, none) for key in part])

        postings = Postings.from_parts(self.database.unit_parts(number))
        write_segment(self.directory, number, dimension, np.asarray(ids, dtype=np.int64),
                      (vectors(start) for start in range(0, len(keys), 4096)), postings)
        return unembedded

    def _tidy(self) -> None:
        """Housekeeping after a commit: folders no generation lists go, the cache is bounded, the manifest
        copy is rewritten. A failure here loses nothing; the next refresh tidies up."""
        try:
            listed = self.segment_numbers()
            # A merged-away segment is let go: its mapped pages would count in this process's memory, and its
            # deleted files hold their disk space, until the store closed (a first index merges many).
            self._opened = {number: segment for number, segment in self._opened.items() if number in listed}
            remove_unlisted(self.directory, listed)
            # Not while chunks wait for their vectors: a first index caches them until their files are written
            # again, a step at a time, and a fast model computes more between two steps than the bound.
            if not self.database.unembedded_count():
                self.database.prune_embeddings(max(CACHE_FLOOR, self.database.chunk_count() // 4))
            self.database.reclaim_space()
            self._write_manifest_file()
        except (OSError, sqlite3.Error):
            pass

    def _write_manifest_file(self) -> None:
        """A human-readable copy of the manifest; the database holds the authoritative one."""
        text = json.dumps(self.database.manifest(), indent=2, sort_keys=True) + "\n"
        write_private_file(self.directory / MANIFEST_NAME, text.encode("utf-8"))


def families_present(directory: Path) -> list[str]:
    """The picture kinds the index in `directory` keeps a family for."""
    return [kind for kind, folder in FAMILY_FOLDERS.items() if os.path.lexists(directory / folder)]


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
            raise IndexBusy("another codesearch run is updating this index; try again when it finishes")
        return self

    def __exit__(self, *exc):
        self._lock.release()
