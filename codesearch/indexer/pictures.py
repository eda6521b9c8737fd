"""A repository's pictures in its index: its images, and its documentation pages rendered as screenshots.

Each kind is a family of its own beside the code in `.codesearch/` (images/, pages/): an IndexStore with its own
model, dimension, segments and manifest, so a vision model's vectors never meet a code model's. A family is
written under the code index's lock, in the same atomic generation steps, and refreshed file by file as the
code is: only files whose fingerprint changed are read again, and a picture whose pixels a model already
embedded is not embedded again. An index has pictures only when asked once (`codesearch index --images`);
from then on every refresh (hooks, queries' refreshes) keeps the families it has, and an index without them
never reads an image or imports vision code.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from codesearch import hardware
from codesearch.errors import CodesearchError
from codesearch.index.database import SCHEMA_VERSION, needs_rebuild
from codesearch.index.store import FAMILY_FOLDERS as FOLDERS
from codesearch.index.store import IndexStore
from codesearch.index.terms import text_terms
from codesearch.source.chunk import Chunk
from codesearch.source.discover import SourceFile, discover_files, in_skipped_folder, read_listed
from codesearch.source.media import media_kind

# What each kind is embedded with unless asked: BAAI's model for it on a GPU; on a CPU, where a 7B or 3B model
# would take minutes a picture, BGE-VL-base (CLIP ViT-B/16, 150M parameters) for both.
DEFAULT_MODELS = {"image": "bge-vl-v1.5", "page": "bge-vl-screenshot"}
CPU_MODEL = "bge-vl-base"
MAX_BYTES = {"image": 32 << 20, "page": 2 << 20}  # a file read at all; the decoders bound what they make of it
PICTURES_PER_STEP = 64  # pictures embedded together, their vectors then committed: what a run holds in memory
# What cuts files into pictures: in each family's manifest, so a new way of rendering re-renders them.
PICTURES_VERSION = "pictures/v1"


@dataclass
class PictureReport:
    kind: str
    model: str = ""
    files: int = 0
    pictures: int = 0
    embedded: int = 0
    removed: int = 0
    skipped: int = 0  # files refused (a bomb, a broken file, a page that would not render), each with a notice

    def as_json(self) -> dict:
        return {"files": self.files, "pictures": self.pictures, "embedded": self.embedded, "removed": self.removed,
                "skipped": self.skipped, "model": self.model}


def default_model(kind: str) -> str:
    return DEFAULT_MODELS[kind] if hardware.default_device() != "cpu" else CPU_MODEL


def refresh_pictures(root: Path, index_directory: Path, kinds, models: dict[str, str | None], progress,
                     embedder_factory: Callable | None = None, rebuild: bool = False, refresh_only: bool = False,
                     trust_remote_code: bool = False, asked: bool = True) -> list[PictureReport]:
    """Bring each family of `kinds` up to date with the working tree. The caller holds the code index's lock.
    A family that cannot be refreshed (its model gone from the cache, say) is an error when the pictures were
    `asked` for, and otherwise a notice: a commit's refresh of the code must not fail for them."""
    reports = []
    for kind in kinds:
        try:
            reports.append(_refresh_family(root, index_directory / FOLDERS[kind], kind, models.get(kind),
                                           progress, embedder_factory, rebuild, refresh_only, trust_remote_code))
        except CodesearchError as error:
            if asked:
                raise
            progress.notice(f"the {FOLDERS[kind]} were not refreshed: {error}")
    return reports


def require_picture_libraries() -> None:
    """One line, not a traceback, when the `images` extra is not installed."""
    import importlib.util

    missing = [name for name in ("PIL", "weasyprint", "pypdfium2", "docutils", "markdown_it")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise CodesearchError(f"indexing pictures needs {', '.join(missing)}: pip install 'codesearch[images]'")


def _refresh_family(root, directory, kind, model, progress, embedder_factory, rebuild, refresh_only,
                    trust_remote_code) -> PictureReport:
    from codesearch.embedding.vision import pin_vision_model, resolve_vision_model

    require_picture_libraries()
    manifest = _recorded_manifest(directory)
    if manifest and model and not rebuild and resolve_vision_model(model).name != manifest.get("model"):
        raise CodesearchError(f"this index's {FOLDERS[kind]} were embedded with {manifest.get('model')!r}; "
                              f"pass --rebuild to embed them with {model!r}")
    # The model is found (or found missing, in one line) before the family's folder is made: a model that
    # cannot be had leaves no family behind for every later refresh to trip on.
    spec = pin_vision_model(resolve_vision_model(model or manifest.get("model") or default_model(kind),
                                                 trust_remote_code=trust_remote_code))
    store = IndexStore.open(directory, create=True)
    try:
        reason = needs_rebuild(manifest, spec.fingerprint,
                               ("pictures_version", PICTURES_VERSION, "the way pictures are made changed"))
        if reason and refresh_only:
            raise CodesearchError(f"the index's {FOLDERS[kind]} must be rebuilt ({reason}); run `codesearch index`")
        if reason and not rebuild:
            progress.notice(f"re-embedding the {FOLDERS[kind]}: {reason}")
        rebuild = rebuild or bool(reason)
        report = PictureReport(kind, spec.name)
        files = discover_files(root, progress.notice, accept=lambda name: _accepts(name, kind), max_bytes=MAX_BYTES[kind])
        known = {} if rebuild else store.database.file_fingerprints()
        current = {source.path for source in files}
        removed = [path for path in known if path not in current]
        to_read = [source for source in files if known.get(source.path) != source.fingerprint]
        if to_read:
            progress.planned_pictures(FOLDERS[kind], len(to_read))
        embedder, entries, waiting = None, {}, []

        def embed_waiting() -> None:
            """Embed the pictures of the files waiting that no model embedded before, and record the files."""
            nonlocal embedder
            keys = [[picture_key(spec.fingerprint, picture.png) for picture in found] for _, found in waiting]
            known_keys = store.database.known_keys(sorted({key for found in keys for key in found}))
            todo = {key: picture.png for (_, found), found_keys in zip(waiting, keys)
                    for key, picture in zip(found_keys, found) if key not in known_keys}
            if todo:
                embedder = embedder or (embedder_factory or _load)(spec)
                _embed(embedder, store, todo)
                report.embedded += len(todo)
            for (source, found), found_keys in zip(waiting, keys):
                report.skipped += found is None
                # A file refused is recorded with no pictures: not read again until it changes.
                entries[source.path] = (source.fingerprint, [picture_chunk(picture) for picture in found or []],
                                        found_keys)
            progress.pictures_done(len(waiting))
            waiting.clear()

        for source, found in _pictures_of(root, to_read, progress):
            waiting.append((source, found))
            if sum(len(pictures or ()) for _, pictures in waiting) >= PICTURES_PER_STEP:
                embed_waiting()
        embed_waiting()
        dimension = embedder.dim if embedder is not None else int(manifest.get("dimension") or 0)
        if entries or removed or rebuild or not manifest:
            store.replace_files(family_manifest(spec, dimension), entries, removed, rebuild=rebuild)
            store.merge_segments()
        report.removed = len(removed)
        report.files = store.database.file_count()
        report.pictures = store.database.chunk_count()
        return report
    finally:
        store.close()


def _recorded_manifest(directory: Path) -> dict:
    """The family's manifest, {} when it has none yet."""
    if not os.path.lexists(directory):
        return {}
    store = IndexStore.open(directory, create=True)  # a folder left without its database is made whole
    try:
        return store.database.manifest()
    finally:
        store.close()


def _accepts(name: str, kind: str) -> bool:
    return media_kind(name) == kind and not in_skipped_folder(name)


def _load(spec):
    from codesearch.embedding.vision import load_vision_embedder

    return load_vision_embedder(spec)


def _pictures_of(root: Path, sources: list[SourceFile], progress) -> Iterator[tuple[SourceFile, list | None]]:
    """Each source with its pictures, or None when it gave none (refused, with its notice), in order. Images are
    decoded and pages rendered by child processes (source.pages), one stream for the whole run: a hostile file
    that hangs or exhausts a decoder is killed there, after a time bound, and the index goes on."""
    from codesearch.source.pages import render_pages

    by_path = {source.path: source for source in sources}
    unread: list[SourceFile] = []

    def documents():
        for source in sources:
            data = read_listed(root, source.path, MAX_BYTES[media_kind(source.path)])
            if data is None:
                progress.notice(f"{source.path}: could not be read; skipped")
                unread.append(source)
            else:
                yield source.path, data

    for path, pictures, notices in render_pages(root, documents(), workers=hardware.usable_cores()):
        for notice in notices:
            progress.notice(notice)
        yield by_path[path], pictures or None
    for source in unread:
        yield source, None


def _embed(embedder, store: IndexStore, todo: dict[str, bytes]) -> None:
    """Embed the pictures not embedded yet, a model batch at a time, each batch's vectors committed at once."""
    from codesearch.source.media import decode_picture

    keys = list(todo)
    step = max(1, getattr(embedder, "batch_size", 8))
    for first in range(0, len(keys), step):
        part = keys[first:first + step]
        vectors = embedder.encode_candidates([decode_picture(todo[key]) for key in part])
        store.database.cache_vectors(part, vectors)


def picture_key(fingerprint: str, png: bytes) -> str:
    """A picture's embedding key: the model's settings and the pixels, nothing of where it was found."""
    return hashlib.sha256(f"{fingerprint}\0".encode() + hashlib.sha256(png).digest()).hexdigest()[:32]


def picture_chunk(picture) -> Chunk:
    """How a picture is kept: a row like a function's, its heading as its name, its words for the lexical side
    (a unit's document adds its name's and path's terms)."""
    context = f"page {picture.number}" if picture.kind == "page" else ""
    return Chunk(picture.path, picture.line, picture.line, picture.title, picture.kind, picture.kind, picture.text,
                 context, terms=text_terms(picture.text))


def family_manifest(spec, dimension: int) -> dict:
    return {"model": spec.name, "model_source": spec.source if not Path(spec.source).is_dir() else spec.name,
            "architecture": spec.architecture, "dimension": dimension, "weights": spec.weights, "dtype": spec.dtype,
            "model_fingerprint": spec.fingerprint, "pictures_version": PICTURES_VERSION,
            "schema_version": SCHEMA_VERSION, "updated_at": time.time()}
