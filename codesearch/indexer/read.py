"""What a run reads, and what it records of how it read: the files that changed since the index, each file's
chunks, the key under which a chunk's vector is cached (the model's fingerprint and the exact text it embeds),
and the manifest of the model and chunker an index is built with."""

from __future__ import annotations

import codecs
import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from codesearch import hardware
from codesearch.embedding.spec import ModelSpec
from codesearch.index.database import SCHEMA_VERSION
from codesearch.source import chunk as chunking
from codesearch.source.chunk_process import chunk_files
from codesearch.source.discover import (SourceFile, discover_files, looks_binary, read_listed, same_content, unreadable,
                                       with_content_id)

MINIFIED_MEAN_LINE = 300
MINIFIED_LONGEST_LINE = 5000


def files_to_read(root, store, rebuild, refresh_only, notice=None) -> tuple[list[SourceFile], list[str]]:
    """The files to read (changed or new, or left unembedded by a run that stopped) and the paths removed."""
    files = discover_files(root, notice=notice)
    known = {} if rebuild else store.database.file_fingerprints()
    current = {source.path: source for source in files}
    removed = [path for path in known if path not in current]
    # Files a run stopped before embedding them whole are read again: their missing vectors are embedded now
    # (by `index`; a query's refresh takes only what changed, and leaves the rest to it).
    unfinished = set() if rebuild or refresh_only else set(store.database.files_not_embedded())
    to_read = [source for source in files
               if not same_content(known.get(source.path), source.fingerprint) or source.path in unfinished]
    # A file git could not look at (its folder is unreadable) seems deleted; one it could, changed.
    if cannot_read := unreadable(root, [source.path for source in to_read] + removed):
        if notice:
            notice(f"could not read {len(cannot_read)} file(s) (permission denied), "
                   f"{'left out' if rebuild else 'kept as the index holds them'}: {min(cannot_read)}")
        to_read = [source for source in to_read if source.path not in cannot_read]
        removed = [path for path in removed if path not in cannot_read]
    return to_read, removed


def chunks_of_files(root: Path, sources: list[SourceFile], budget: chunking.PartBudget,
                    notice: Callable[[str], None] | None = None) -> Iterator[tuple[SourceFile, list[chunking.Chunk]]]:
    """Each source, its fingerprint as read (with_content_id), with its chunks. The parsers run in child
    processes, one per usable core (chunk_process.chunk_files): a file of an untrusted repository that crashes
    or hangs a grammar is cut into line windows, with a notice."""
    read_as: dict[str, str] = {}

    def contents() -> Iterator[tuple[str, bytes | None]]:
        for source in sources:
            data = read_listed(root, source.path)
            read_as[source.path] = with_content_id(source.fingerprint, data)
            yield source.path, _usable_text(data)

    chunked = chunk_files(contents(), budget, notice, workers=hardware.usable_cores(),
                          function="codesearch.index.terms:chunk_with_terms")
    for source, chunks in zip(sources, chunked):
        yield replace(source, fingerprint=read_as.pop(source.path, source.fingerprint)), chunks


def source_bytes(root: Path, source: SourceFile) -> bytes | None:
    """The file's text as UTF-8 bytes, or None when it is gone, unreadable, binary or minified."""
    return _usable_text(read_listed(root, source.path))


def _usable_text(data: bytes | None) -> bytes | None:
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


def embed_into_cache(embedder, database, texts_by_key: dict[str, str], progress: Callable[[int], None]) -> int:
    """Embed each text and cache its vector under its key; how many. Each call's vectors are committed at once:
    an interrupted run keeps what it embedded."""
    keys, texts = list(texts_by_key), list(texts_by_key.values())
    for positions, vectors in embedder.encode_documents_by_slice(texts, progress=progress):
        database.cache_vectors([keys[position] for position in positions], vectors)
    return len(keys)


def index_manifest(spec: ModelSpec, dimension: int) -> dict:
    return {
        "model": spec.name, "model_source": spec.source if not Path(spec.source).is_dir() else spec.name,
        "backend": spec.backend, "runtime": spec.runtime, "pooling": spec.pooling, "dimension": dimension,
        "query_instruction": spec.query_instruction, "max_length": spec.max_length,
        "prompts": spec.prompt_record(), "weights": spec.weights, "dtype": spec.dtype,
        "model_fingerprint": spec.fingerprint, "chunker_version": chunking.CHUNKER_VERSION,
        "schema_version": SCHEMA_VERSION, "updated_at": time.time(),
    }
