"""A large run (a first index, a big checkout), in memory bounded by its batches, not by the repository.

Files are cut and written a batch at a time, each chunk without its vector unless one is known, so that every
chunk answers by its words (fuse.py ranks one with no vector by its words alone) once they are all written.
Then the missing vectors are computed, read back from the index a batch at a time in file order, and every
STEP_SECONDS the files whose vectors are all in are written again with them. A run stopped at any point
leaves an index that answers; the next one embeds only what is still missing.

The tree may change while it runs: a checkout still writing when the run looked, an editor saving during a
first index of many minutes. What changed joins the words at once, and at every step after, so the index
lags the tree by seconds, not by the vectors' minutes; its vectors follow in the same run.
"""

from __future__ import annotations

import time
from typing import Callable

from codesearch.index.store import IndexStore
from codesearch.indexer.read import chunks_of_files, embed_into_cache, embedding_key, files_to_read, index_manifest

STEP_SECONDS = 30.0  # how often the vectors computed so far join the index (and the tree is looked at again)
BATCH = 2048  # chunks embedded together, in file order; the model's calls are smaller
FILES_PER_STEP = 500  # files written again with their vectors in one generation step
# Right after the words, the tree is looked at again, one look right after another, while each finds at least
# RESCAN_BUSY changed files (git at work: a checkout of 20,000 files writes for 10 to 20 s here, hundreds of
# files between two looks), for at most RESCAN_SECONDS. A few files, or one rewritten all the time (a log), are
# written and left to the next look. At each step and at the end of a pass, one look: a tree that keeps
# changing (a build writing into it) costs the run one look a step, not a minute.
RESCAN_BUSY = 20
RESCAN_SECONDS = 60.0
PASSES = 3  # rounds of embedding what the tree's later changes brought; the rest is left to the next run


def index_words_first(root, store, spec, embedder_factory, to_read, removed, rebuild, budget, progress,
                      report) -> int:
    """Write `to_read`'s words (and drop `removed`), then embed every chunk still without a vector; the
    vectors' dimension."""
    embedder = embedder_factory(spec)
    manifest = index_manifest(spec, embedder.dim)
    written = _write_words(root, store.directory, spec, manifest, to_read, removed, rebuild, budget, progress)
    written += _words_of_later_changes(root, store, spec, manifest, budget, progress, report)
    progress.notice("questions can be asked already: answers use words alone until the vectors are in")
    started = last_step = time.monotonic()
    done = 0
    for number in range(PASSES):
        missing, texts = store.unembedded_chunks()
        if number == 0:
            report.reused = written - len(missing)
            progress.planned(texts, spec)
        for first in range(0, len(missing), BATCH):
            texts_by_key = dict(store.embedding_rows(missing[first:first + BATCH].tolist()))
            # A text also in an earlier batch was embedded there, and its vector cached.
            for key in store.database.known_keys(list(texts_by_key)):
                del texts_by_key[key]
            done += embed_into_cache(embedder, store.database, texts_by_key, progress.embedded)
            if time.monotonic() - last_step >= STEP_SECONDS:
                rate = done / max(time.monotonic() - started, 1e-6)
                _add_vectors(store, {**manifest, "embedding_rate": rate}, before_merge=embedder.release_memory)
                _words_of_later_changes(root, store, spec, manifest, budget, progress, report, keep_looking=False)
                last_step = time.monotonic()
        if number + 1 == PASSES or not _words_of_later_changes(root, store, spec, manifest, budget, progress, report,
                                                                keep_looking=False):
            break
    report.embedded = done
    del embedder  # not held while the index is written: ONNX Runtime keeps ~450 MiB of batches in its arena
    _add_vectors(store, manifest)
    store.merge_segments()
    return manifest["dimension"]


def _words_of_later_changes(root, store, spec, manifest, budget, progress, report, keep_looking=True) -> int:
    """Write the words of what changed in the tree since the run looked; the chunks written. Files read while
    git still saw them as changed are not read again once it has caught up (discover.with_content_id)."""
    written, began = 0, time.monotonic()
    while True:
        more, gone = files_to_read(root, store, False, True)  # its notices were given once
        if not more and not gone:
            return written
        written += _write_words(root, store.directory, spec, manifest, more, gone, False, budget, progress)
        report.changed_files += len(more)
        report.removed += len(gone)
        if (not keep_looking or len(more) + len(gone) < RESCAN_BUSY
                or time.monotonic() - began >= RESCAN_SECONDS):
            return written


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
            if size >= BATCH * 8:
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
    for first in range(0, len(waiting), FILES_PER_STEP):
        entries = store.stored_files(waiting[first:first + FILES_PER_STEP])
        known = store.database.known_keys(sorted({key for _, _, keys in entries.values() for key in keys}))
        ready = {path: entry for path, entry in entries.items() if all(key in known for key in entry[2])}
        if ready:
            store.replace_files(manifest, ready, [])
    store.merge_segments(before=before_merge)  # each step leaves a segment; words-first ones are deleted file by file
