"""Build or refresh a repository's index: discover → chunk → embed → store.

Only files whose fingerprint changed are read and chunked, and only chunks whose embedded
text was never embedded by this model before are sent to it.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import sqlite3
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from codesearch.source import chunk as chunking
from codesearch.source.chunk_process import chunk_files
from codesearch import hardware, settings
from codesearch.source.discover import (INDEX_DIR, SourceFile, discover_files, git_path, looks_binary, read_listed,
                                       repository_root, unreadable)
from codesearch.embedding.torch_model import Embedder
from codesearch.errors import CodesearchError
from codesearch.index.database import SCHEMA_VERSION, damaged, is_damaged, needs_rebuild
from codesearch.embedding.spec import ModelSpec, query_runtime, resolve_model
from codesearch.index.store import IndexStore, index_dir
from codesearch.embedding.load import load_embedder
from codesearch.embedding.weights import pin_model

MINIFIED_MEAN_LINE = 300
MINIFIED_LONGEST_LINE = 5000
# A run with this many files to read (a first index, a big checkout) makes them answerable by their words
# first, in bounded memory; below it, one step at the end is sooner than two.
PROGRESSIVE_FILES = 200
PROGRESSIVE_STEP_SECONDS = 30.0  # how often the vectors computed so far join the index
PROGRESSIVE_BATCH = 2048  # chunks embedded together, in file order; the model's calls are smaller
PROGRESSIVE_FILES_PER_STEP = 500  # files written again with their vectors in one generation step


@dataclass
class IndexReport:
    files: int = 0
    chunks: int = 0
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    changed_files: int = 0
    seconds: float = 0.0
    model: str = ""
    rebuilt_because: str = ""
    pictures: list = field(default_factory=list)  # a pictures.PictureReport per family refreshed

    def as_json(self) -> dict:
        found = {"files": self.files, "chunks": self.chunks, "embedded": self.embedded, "reused": self.reused,
                 "removed": self.removed, "seconds": round(self.seconds, 3), "model": self.model}
        return {**found, **{report.kind + "s": report.as_json() for report in self.pictures}}


class Progress:
    """Hooks the CLI fills in to show what indexing is doing; the library itself never prints."""

    def planned(self, to_embed: int, spec: ModelSpec) -> None: ...

    def embedded(self, count: int) -> None: ...

    def notice(self, message: str) -> None: ...

    def planned_pictures(self, family: str, files: int) -> None: ...

    def pictures_done(self, files: int) -> None: ...


def index_repository(path: str | Path, model: str | None = None, rebuild: bool = False,
                     progress: Progress | None = None, embedder_factory: Callable[[ModelSpec], Embedder] | None = None,
                     lock_timeout: float = 10.0, refresh_only: bool = False, pictures: PictureOptions | None = None,
                     **model_options) -> IndexReport:
    """Build the repository's index, or bring it up to date with the working tree. `refresh_only`: never
    rebuild (an index another chunker or format wrote raises instead), as a query's refresh must not, and
    leave the pictures (a code answer waits for no vision model); a writer already at work raises IndexBusy
    after `lock_timeout` seconds. `pictures`: add or drop the images and pages (indexer/pictures.py); an
    index keeps those it has otherwise."""
    pictures = pictures or PictureOptions()
    progress = progress or Progress()
    embedder_factory = embedder_factory or load_embedder
    started = time.perf_counter()
    root = repository_root(path)
    directory = index_dir(root)
    if rebuild:
        # Read before the damaged index goes: without --model, the rebuild keeps the model it was built with.
        recorded = IndexStore.recorded_model(directory) if model is None else None
        if IndexStore.discard_if_damaged(directory):
            model = model or recorded
            progress.notice("the old index was damaged; building a new one from scratch"
                            + (f" with the model it was built with, {model}" if recorded else ""))
    if not os.path.lexists(directory):
        _exclude_from_git(root)
    store = IndexStore.open(directory, create=True)
    try:
        with store.lock(lock_timeout):
            report = _index_locked(root, store, model, rebuild, progress, embedder_factory, started, model_options,
                                   refresh_only)
            if not refresh_only:
                report.pictures = _refresh_pictures(root, store, pictures, rebuild, progress,
                                                    model_options.get("trust_remote_code", False))
                report.seconds = time.perf_counter() - started
            return report
    except (OSError, sqlite3.Error) as error:
        if is_damaged(error):
            raise damaged(store.directory, error) from None
        # Nothing half-written is visible: the previous generation stays the current one.
        reason = getattr(error, "strerror", None) or str(error)
        raise CodesearchError(f"could not write the index in {store.directory}: {reason}; "
                              f"the previous index is intact") from None
    finally:
        store.close()


@dataclass(frozen=True)
class PictureOptions:
    """What `index` is asked of pictures: add them (True), drop them (False) or keep what the index has (None),
    and with which models (None: the family's own, else pictures.default_model)."""

    wanted: bool | None = None
    image_model: str | None = None
    page_model: str | None = None
    embedder_factory: Callable | None = None  # a test's stand-in for the vision models


def _refresh_pictures(root: Path, store: IndexStore, options: PictureOptions, rebuild: bool, progress,
                      trust_remote_code: bool) -> list:
    """The picture families brought up to date; an index that keeps none and is asked for none imports
    nothing of them (a model, Pillow and the renderer load only when a file is read)."""
    from codesearch.index.store import FAMILY_FOLDERS, families_present
    from codesearch.trust import remove_path

    present = families_present(store.directory)
    if options.wanted is False:
        for kind in present:
            remove_path(store.directory / FAMILY_FOLDERS[kind])
        return []
    kinds = list(FAMILY_FOLDERS) if options.wanted else present
    if not kinds:
        return []
    from codesearch.indexer.pictures import refresh_pictures

    return refresh_pictures(root, store.directory, kinds, {"image": options.image_model, "page": options.page_model},
                            progress, options.embedder_factory, rebuild, trust_remote_code=trust_remote_code,
                            asked=bool(options.wanted))


def _prepare_query_runtime(spec: ModelSpec, progress: Progress) -> None:
    """Export the model for the runtime its queries will use (spec.query_runtime), if that is not the
    one that embedded the documents, now that torch is loaded anyway: once per machine and model, not in
    the first query's time."""
    runtime = query_runtime(spec, spec.runtime)
    if runtime == spec.runtime:
        return
    from codesearch.embedding.onnx_model import exported_model

    try:
        exported_model(replace(spec, runtime=runtime))
    except CodesearchError as error:
        progress.notice(f"queries will prepare their runtime themselves: {error}")


def _index_locked(root, store, model, rebuild, progress, embedder_factory, started, model_options,
                  refresh_only=False) -> IndexReport:
    manifest = store.database.manifest()
    if manifest and model and not rebuild and manifest.get("model") != resolve_model(model, **model_options).name:
        raise CodesearchError(
            f"this index was built with model {manifest.get('model')!r}; "
            f"pass --rebuild to re-index with {model!r}")
    # Pinned: the weights' identity and this machine's dtype are part of every embedding key.
    # An index keeps the runtime and dtype it was built with unless asked (it would be rebuilt otherwise).
    built_with = (manifest.get("runtime") or "torch") if manifest and not rebuild else None
    if built_with and not (model_options.get("runtime") or settings.runtime()):
        model_options = {**model_options, "runtime": built_with}
    spec = resolve_model(model or manifest.get("model"), **model_options)
    spec = pin_model(spec, manifest.get("dtype") if built_with == spec.runtime else None)
    reason = needs_rebuild(manifest, spec.fingerprint)
    if reason and refresh_only:
        raise CodesearchError(f"the index must be rebuilt ({reason}); run `codesearch index`")
    if reason and not rebuild:
        progress.notice(f"rebuilding the index: {reason}")
        rebuild = True
    report = IndexReport(model=spec.name, rebuilt_because=reason)

    if not rebuild and (lost := store.repair()):
        progress.notice(f"{len(lost)} files were in a damaged part of the index; indexing them again")
    files = discover_files(root, notice=progress.notice)
    known = {} if rebuild else store.database.file_fingerprints()
    current = {source.path: source for source in files}
    removed = [path for path in known if path not in current]
    # Files a run stopped before embedding them whole are read again: their missing vectors are embedded now
    # (by `index`; a query's refresh takes only what changed, and leaves the rest to it).
    unfinished = set() if rebuild or refresh_only else set(store.database.files_not_embedded())
    to_read = [source for source in files if known.get(source.path) != source.fingerprint or source.path in unfinished]
    # A file git could not look at (its folder is unreadable) seems deleted; one it could, changed.
    if cannot_read := unreadable(root, [source.path for source in to_read] + removed):
        progress.notice(f"could not read {len(cannot_read)} file(s) (permission denied), "
                        f"{'left out' if rebuild else 'kept as the index holds them'}: {min(cannot_read)}")
        to_read = [source for source in to_read if source.path not in cannot_read]
        removed = [path for path in removed if path not in cannot_read]

    budget = chunking.PartBudget.for_window(spec.max_length)
    report.removed = len(removed)
    report.changed_files = len(to_read)
    if len(to_read) >= PROGRESSIVE_FILES:
        dimension = _words_first(root, store, spec, to_read, removed, rebuild, budget, embedder_factory, progress, report)
    else:
        dimension = _all_at_once(root, store, spec, to_read, removed, rebuild, budget, embedder_factory, progress,
                                 report, manifest)
    if report.embedded and embedder_factory is load_embedder:  # torch is loaded: not a test's stand-in
        _prepare_query_runtime(spec, progress)
    if not dimension:
        raise CodesearchError(f"nothing to index in {root}: no source files found")
    report.files = store.database.file_count()
    report.chunks = store.database.chunk_count()
    report.seconds = time.perf_counter() - started
    return report


def _all_at_once(root, store, spec, to_read, removed, rebuild, budget, embedder_factory, progress, report,
                 manifest) -> int:
    """A small run: every changed file cut, its new chunks embedded, then all written in one step; the dimension."""
    changed = {source.path: (source.fingerprint, chunks)
               for source, chunks in chunks_of_files(root, to_read, budget, progress.notice)}
    entries = {path: (fingerprint, chunks, [embedding_key(spec, chunk) for chunk in chunks])
               for path, (fingerprint, chunks) in changed.items()}
    all_keys = sorted({key for _, _, keys in entries.values() for key in keys})
    cached = store.database.known_keys(all_keys) if all_keys else set()
    texts_by_key = {}
    for _, chunks, keys in entries.values():
        for chunk, key in zip(chunks, keys):
            if key not in cached:
                texts_by_key.setdefault(key, chunk.embedding_text)
    report.embedded = len(texts_by_key)
    report.reused = sum(1 for _, _, keys in entries.values() for key in keys if key not in texts_by_key)
    dimension = store.database.manifest().get("dimension") or 0
    if texts_by_key or (not dimension and changed):
        embedder = embedder_factory(spec)
        progress.planned(len(texts_by_key), spec)
        keys, texts = list(texts_by_key), list(texts_by_key.values())
        # Each call's vectors are committed at once: an interrupted run keeps what it embedded.
        for positions, vectors in embedder.encode_documents_by_slice(texts, progress=progress.embedded):
            store.database.cache_vectors([keys[position] for position in positions], vectors)
        dimension = embedder.dim
        del embedder  # not held while the index is written: ONNX Runtime keeps ~450 MiB of batches in its arena
    # New query prompts (they change no document vector) are recorded by a generation step of their own.
    if dimension and (changed or removed or rebuild
                      or manifest.get("prompts", spec.prompt_record()) != spec.prompt_record()):
        store.replace_files(index_manifest(spec, dimension), entries, removed, rebuild=rebuild)
        store.merge_segments()
    return dimension


def _words_first(root, store, spec, to_read, removed, rebuild, budget, embedder_factory, progress, report) -> int:
    """A large run (a first index, a big checkout), in memory bounded by its batches, not by the repository:
    files are cut and written a batch at a time, each chunk without its vector unless one is known, so that
    every chunk answers by its words (fuse.py ranks one with no vector by its words alone) once they are all
    written. Then the missing vectors are computed, read back from the index a batch at a time in file order,
    and every PROGRESSIVE_STEP_SECONDS the files whose vectors are all in are written again with them. A run
    stopped at any point leaves an index that answers; the next one embeds only what is still missing."""
    embedder = embedder_factory(spec)
    manifest = index_manifest(spec, embedder.dim)
    chunk_count = _write_words(root, store.directory, spec, manifest, to_read, removed, rebuild, budget, progress)
    missing, report.embedded = store.unembedded_chunks()
    report.reused = chunk_count - len(missing)
    progress.notice("questions can be asked already: answers use words alone until the vectors are in")
    progress.planned(report.embedded, spec)
    started = last_step = time.monotonic()
    done = 0
    for first in range(0, len(missing), PROGRESSIVE_BATCH):
        texts_by_key = dict(store.embedding_rows(missing[first:first + PROGRESSIVE_BATCH].tolist()))
        # A text also in an earlier batch was embedded there, and its vector cached.
        for key in store.database.known_keys(list(texts_by_key)):
            del texts_by_key[key]
        keys, texts = list(texts_by_key), list(texts_by_key.values())
        # Each call's vectors are committed at once: an interrupted run keeps what it embedded.
        for positions, vectors in embedder.encode_documents_by_slice(texts, progress=progress.embedded):
            store.database.cache_vectors([keys[position] for position in positions], vectors)
        done += len(keys)
        if time.monotonic() - last_step >= PROGRESSIVE_STEP_SECONDS:
            rate = done / max(time.monotonic() - started, 1e-6)
            _add_vectors(store, {**manifest, "embedding_rate": rate}, before_merge=embedder.release_memory)
            last_step = time.monotonic()
    del embedder
    _add_vectors(store, manifest)
    store.merge_segments()
    return manifest["dimension"]


def _write_words(root, directory, spec, manifest, to_read, removed, rebuild, budget, progress) -> int:
    """Cut the files and write them a batch at a time, without the vectors not known yet; the chunks written.
    A thread of its own writes each batch (through a connection of its own: SQLite's belong to their thread)
    while the chunking processes cut the next, so the two overlap; at most one batch waits for it."""
    import queue
    import threading

    batches: queue.Queue = queue.Queue(maxsize=1)
    failed: list[BaseException] = []

    def write() -> None:
        writer = IndexStore.open(directory)
        try:
            first = True
            while (entries := batches.get()) is not None:
                if not failed:
                    writer.replace_files(manifest, entries, removed if first else [], rebuild=rebuild and first,
                                         unembedded_ok=True)
                    first = False
        except BaseException as error:  # noqa: BLE001 - handed to the cutting thread, which raises it
            failed.append(error)
            while batches.get() is not None:  # let the cutting thread finish putting
                pass
        finally:
            writer.close()

    thread = threading.Thread(target=write, name="codesearch-words-first", daemon=True)
    thread.start()
    chunk_count, entries, size = 0, {}, 0
    try:
        for source, chunks in chunks_of_files(root, to_read, budget, progress.notice):
            entries[source.path] = (source.fingerprint, chunks, [embedding_key(spec, chunk) for chunk in chunks])
            size += len(chunks)
            if size >= PROGRESSIVE_BATCH * 8:
                batches.put(entries)
                chunk_count, entries, size = chunk_count + size, {}, 0
            if failed:
                break
        if entries or not chunk_count:
            batches.put(entries)
            chunk_count += size
    finally:
        batches.put(None)
        thread.join()
    if failed:
        raise failed[0]
    return chunk_count


def _add_vectors(store: IndexStore, manifest: dict, before_merge: Callable[[], object] | None = None) -> None:
    """Write again, now with their vectors, the files whose chunks were written without and all have one by
    now (one generation step, a batch of files at a time); the others wait for the next step. The model
    gives back its memory (`before_merge`) while segments are merged: the two peaks would add."""
    waiting = store.database.files_not_embedded()
    for first in range(0, len(waiting), PROGRESSIVE_FILES_PER_STEP):
        entries = store.stored_files(waiting[first:first + PROGRESSIVE_FILES_PER_STEP])
        known = store.database.known_keys(sorted({key for _, _, keys in entries.values() for key in keys}))
        ready = {path: entry for path, entry in entries.items() if all(key in known for key in entry[2])}
        if ready:
            store.replace_files(manifest, ready, [])
    store.merge_segments(before=before_merge)  # each step leaves a segment; words-first ones are deleted file by file


def chunks_of_files(root: Path, sources: list[SourceFile], budget: chunking.PartBudget,
                    notice: Callable[[str], None] | None = None) -> Iterator[tuple[SourceFile, list[chunking.Chunk]]]:
    """Each source with its chunks. The parsers run in child processes, one per usable core (chunk_process.
    chunk_files): a file of an untrusted repository that crashes or hangs a grammar is cut into line windows,
    with a notice."""
    return zip(sources, chunk_files(((source.path, source_bytes(root, source)) for source in sources), budget, notice,
                                    workers=hardware.usable_cores(), function="codesearch.index.terms:chunk_with_terms"))


def source_bytes(root: Path, source: SourceFile) -> bytes | None:
    """The file's text as UTF-8 bytes, or None when it is gone, unreadable, binary or minified."""
    data = read_listed(root, source.path)
    data = None if data is None else _as_utf8(data)  # gone or unreadable since discovery: indexed as absent
    if data is None or looks_binary(data) or _looks_minified(data):
        return None
    return data


def _as_utf8(data: bytes) -> bytes | None:
    """UTF-16/32 files (recognised by their byte-order mark) re-encoded as UTF-8; others as they are."""
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(encoding).encode("utf-8")
            except UnicodeDecodeError:
                return None
    return data.removeprefix(codecs.BOM_UTF8)


def _looks_minified(data: bytes) -> bool:
    """Bundled or minified code: very long lines that no one reads or searches by meaning."""
    lines = data.count(b"\n") + 1
    return len(data) / lines > MINIFIED_MEAN_LINE and max(map(len, data.split(b"\n"))) > MINIFIED_LONGEST_LINE


def embedding_key(spec: ModelSpec, chunk: chunking.Chunk) -> str:
    return hashlib.sha256(f"{spec.fingerprint}\0{chunk.embedding_text}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


def index_manifest(spec: ModelSpec, dimension: int) -> dict:
    return {
        "model": spec.name, "model_source": spec.source if not Path(spec.source).is_dir() else spec.name,
        "backend": spec.backend, "runtime": spec.runtime, "pooling": spec.pooling, "dimension": dimension,
        "query_instruction": spec.query_instruction, "max_length": spec.max_length,
        "prompts": spec.prompt_record(), "weights": spec.weights, "dtype": spec.dtype,
        "model_fingerprint": spec.fingerprint, "chunker_version": chunking.CHUNKER_VERSION,
        "schema_version": SCHEMA_VERSION, "updated_at": time.time(),
    }


def _exclude_from_git(root: Path) -> None:
    """Keep .codesearch/ out of `git status` without touching the user's .gitignore."""
    try:
        exclude = git_path(root, "info/exclude")
        existing = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
        if f"/{INDEX_DIR}/" not in existing.split("\n"):
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with open(exclude, "a", encoding="utf-8") as handle:
                handle.write(("" if existing.endswith("\n") or not existing else "\n") + f"/{INDEX_DIR}/\n")
    except (OSError, CodesearchError):
        pass  # not fatal: the index still works, it only shows up in `git status`
