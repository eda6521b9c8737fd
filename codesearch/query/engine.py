"""The query engine: one path from a request to its answer, for every front end and for an organisation.

An Engine holds open indexes (a repository's one, or an organisation's shards) and answers `query`:
the request checked (api.QueryRequest.checked), the queries embedded with the model the indexes were
built with, then per question retrieval from every index (retrieve.retrieve) and one fusion over all
their candidates (fuse.fuse). A repository's Engine also answers `status`. The socket server keeps
Engines open between requests (server/service.py); the command line opens one per run.

Importing this module costs nothing beyond the query's vocabulary and fusion: the index and the model are
imported when an Engine opens or answers, so a query answered by a running server never loads them.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from codesearch.errors import CodesearchError, IndexMissing
from codesearch.query.api import Answer, Filters, Hit, Query, QueryRequest
from codesearch.query.fuse import DEFAULT_DENSE_WEIGHT

QUERY_THREADS = 1

if TYPE_CHECKING:
    import numpy as np

    from codesearch.embedding.torch_model import Embedder
    from codesearch.embedding.spec import ModelSpec
    from codesearch.index.store import IndexStore


class Engine:
    """Open indexes answering queries as one; a repository's Engine holds one and also answers status.
    Not thread-safe: SQLite connections belong to the thread that opened them (the server runs every
    Engine on one worker thread).

    `names`: per index, the name its hits carry as Hit.repository (an organisation's shards), or None."""

    def __init__(self, root: Path, stores: Sequence[IndexStore],
                 embedder_for: Callable[[ModelSpec], Embedder] | None = None, names: Sequence[str] | None = None):
        self.root, self.stores = root, list(stores)
        self.names = names
        self._embedder_for = embedder_for

    @property
    def store(self) -> IndexStore:
        """A repository's index (its only one)."""
        return self.stores[0]

    @classmethod
    def open(cls, path: str | os.PathLike, embedder_for: Callable[[ModelSpec], Embedder] | None = None) -> "Engine":
        """The index of the repository containing `path`. IndexMissing when it has none; `embedder_for`
        loads (or hands out an already loaded) model for a spec, load_embedder unless given."""
        from codesearch.index.store import IndexStore, index_dir
        from codesearch.source.discover import repository_root

        root = repository_root(path)
        return cls(root, [IndexStore.open(index_dir(root))], embedder_for)

    def close(self) -> None:
        for store in self.stores:
            store.close()

    def status(self, count_stale: bool = True) -> dict:
        """What is indexed, with which model, and (count_stale) how many files changed since. "indexed" is
        false for an index whose first build never finished."""
        with damage_named(self.store):
            manifest = self.store.database.manifest()
            info = {"repository": str(self.root), "indexed": bool(manifest), "model": manifest.get("model"),
                    "dimension": manifest.get("dimension"), "files": self.store.database.file_count(),
                    "chunks": self.store.database.chunk_count()}
            if count_stale:
                from codesearch.indexer.freshness import changed_files

                info["stale_files"] = len(changed_files(self.root, self.store.database))
            unembedded = self.store.database.unembedded_count()
            info["unembedded"] = unembedded
            rate = manifest.get("embedding_rate")
            info["embedding_eta_seconds"] = round(unembedded / rate) if unembedded and rate else None
            from codesearch.query.pictures import picture_status

            info["pictures"] = picture_status(self.store.directory)
        return {**info, "generation": manifest.get("generation"), "updated_at": manifest.get("updated_at"),
                "prompts": manifest.get("prompts"), "dtype": manifest.get("dtype")}

    def query(self, request: QueryRequest, retrieve_all: Callable[[Query], list] | None = None) -> Answer:
        """The k best answers to each of the request's queries over every index, with their own model.
        `retrieve_all(query)`: every index's candidates in order, when another process retrieves them (an
        organisation's shards held by Ray actors); by default they are retrieved here."""
        retrieve_all = retrieve_all or self._retrieve_here
        from codesearch.query.fuse import dense_weight, fuse

        request = request.checked()
        with damage_named(self.store):
            generation = self.store.generation
            manifest = self.store.database.manifest()
        if not manifest:
            raise IndexMissing(f"the index in {self.root} is empty; run `codesearch index`")
        spec = query_spec(manifest, request.model, request.instruction, request.trust_remote_code)
        vectors: list[np.ndarray | None] = [None] * len(request.queries)
        if request.mode != "lexical":
            vectors = list(self._embedder(spec).encode_queries(request.queries))
        weight = dense_weight(manifest.get("model"))
        hits = [self._named(fuse(retrieve_all(Query(text, request.k, request.mode, vector, request.filters)),
                                 text, request.k, weight, request.per_file))
                for text, vector in zip(request.queries, vectors)]
        chunks, unembedded = manifest.get("chunks") or 0, manifest.get("unembedded") or 0
        return Answer(self.root, generation, hits, embedded=1.0 - unembedded / chunks if chunks else 1.0)

    def _retrieve_here(self, query: Query) -> list:
        from codesearch.query.retrieve import retrieve

        found = []
        for store in self.stores:
            with damage_named(store):
                # BM25 scores split by term only where several indexes' scores are put on one scale.
                found.append(retrieve(store, query, with_term_scores=len(self.stores) > 1))
        return found

    def _named(self, hits: list[Hit]) -> list[Hit]:
        if self.names is not None:
            for hit in hits:
                hit.repository = self.names[hit.index_number]
        return hits

    def _embedder(self, spec: ModelSpec) -> Embedder:
        if self._embedder_for is None:
            from codesearch.embedding.load import load_embedder

            # One thread: a query is a few tokens, and on a busy machine a second thread only waits for a core.
            self._embedder_for = lambda spec: load_embedder(spec).use_threads(QUERY_THREADS)
        return self._embedder_for(spec)


def search(index: IndexStore, query: str, k: int, mode: str = "hybrid", query_vector: np.ndarray | None = None,
           dense_weight: float = DEFAULT_DENSE_WEIGHT, filters: Filters = Filters()) -> list[Hit]:
    """The k best chunks of one index, no two overlapping in one file; filters apply before the cut to k."""
    from codesearch.query.fuse import fuse
    from codesearch.query.retrieve import retrieve

    return fuse([retrieve(index, Query(query, k, mode, query_vector, filters), with_term_scores=False)], query, k,
                dense_weight)


def query_spec(manifest: dict, requested: str | None = None, instruction: str | None = None,
               trust_remote_code: bool = False) -> ModelSpec:
    """The model an index answers queries with: its own, with the query template and instructions it
    recorded (or `instruction`); asking for another model is an error."""
    from codesearch.embedding.spec import query_runtime, resolve_model

    # The runtime the index was built with, or one that computes the same vectors and starts sooner.
    spec = resolve_model(manifest["model"], instruction=instruction, max_length=manifest.get("max_length"),
                         trust_remote_code=trust_remote_code, runtime=manifest.get("runtime") or "torch")
    spec = replace(spec, runtime=query_runtime(spec, spec.runtime))
    if requested and resolve_model(requested).name != spec.name:
        raise CodesearchError(f"this index was built with model {manifest['model']!r}, not {requested!r}; "
                              f"query without --model, or re-index with `codesearch index --rebuild --model {requested}`")
    if instruction is None:  # the query template and instructions the index recorded (older indexes: today's)
        spec = spec.with_prompts(manifest.get("prompts"))
    return spec


@contextmanager
def damage_named(store: IndexStore) -> Iterator[None]:
    """A database error that means a broken file becomes IndexDamaged, naming the index and the cure."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        from codesearch.index.database import damaged, is_damaged

        if is_damaged(error):
            raise damaged(store.directory, error) from None
        raise
