"""Build or refresh a repository's index: discover → chunk → embed → store.

Only files whose fingerprint changed are read and chunked, and only chunks whose embedded
text was never embedded by this model before are sent to it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from codesearch.source import chunk as chunking
from codesearch import settings
from codesearch.source.discover import INDEX_DIR, git_path, repository_root
from codesearch.embedding.torch_model import Embedder
from codesearch.errors import CodesearchError
from codesearch.index.database import damaged, is_damaged, needs_rebuild
from codesearch.embedding.spec import ModelSpec, query_runtime, resolve_model
from codesearch.index.store import IndexStore, index_dir
from codesearch.embedding.load import load_embedder
from codesearch.embedding.weights import pin_model
from codesearch.indexer.read import chunks_of_files, embed_into_cache, embedding_key, files_to_read, index_manifest
from codesearch.indexer.words_first import index_words_first

# A run with this many files to read (a first index, a big checkout) makes them answerable by their words
# first, in bounded memory; below it, one step at the end is sooner than two.
PROGRESSIVE_FILES = 200


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
    to_read, removed = files_to_read(root, store, rebuild, refresh_only, progress.notice)
    budget = chunking.PartBudget.for_window(spec.max_length)
    report.removed = len(removed)
    report.changed_files = len(to_read)
    if len(to_read) >= PROGRESSIVE_FILES:
        dimension = index_words_first(root, store, spec, embedder_factory, to_read, removed, rebuild, budget, progress,
                                      report)
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
        embed_into_cache(embedder, store.database, texts_by_key, progress.embedded)
        dimension = embedder.dim
        del embedder  # not held while the index is written: ONNX Runtime keeps ~450 MiB of batches in its arena
    # New query prompts (they change no document vector) are recorded by a generation step of their own.
    if dimension and (changed or removed or rebuild
                      or manifest.get("prompts", spec.prompt_record()) != spec.prompt_record()):
        store.replace_files(index_manifest(spec, dimension), entries, removed, rebuild=rebuild)
        store.merge_segments()
    return dimension


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
