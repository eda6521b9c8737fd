"""The query engine: one path from a request to its answer, for every front end.

A QueryRequest is validated in one place (QueryRequest.checked), with typed errors (errors.BadRequest
names the field); the command line, the socket server and the MCP server each word those errors for
their own users. An Engine holds one repository's open index and answers `status` and `query`:
retrieval (search.retrieve) and fusion (ranking.fuse) per question, with the model the index was built
with. The socket server keeps Engines open between requests (service.py); the command line opens one
per run.

Importing this module costs nothing beyond search's filters: the index, the model and the ranking are
imported when an Engine opens or answers, so a query answered by a running server never loads them.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from codesearch.errors import BadRequest, CodesearchError, IndexMissing
from codesearch.limits import MAX_QUERY_CHARS
from codesearch.query.retrieve import MODES, Filters

QUERY_THREADS = 1

if TYPE_CHECKING:
    from codesearch.embedding.torch_model import Embedder
    from codesearch.embedding.spec import ModelSpec
    from codesearch.query.fuse import Hit
    from codesearch.index.store import IndexStore


@dataclass(frozen=True)
class QueryRequest:
    """What a front end asks: one or more questions and how to answer them. Build one from what the
    user gave, then `checked()` says what is wrong with it, once, for every front end."""

    queries: Sequence[str]
    k: int = 10
    mode: str = "hybrid"
    languages: tuple[str, ...] = ()
    include: tuple[str, ...] = ()  # path globs a result must match (one of them)
    exclude: tuple[str, ...] = ()  # path globs no result may match
    model: str | None = None  # must name the index's own model, if given
    instruction: str | None = None  # replaces the model's query instructions ("" for none)
    trust_remote_code: bool = False

    @classmethod
    def from_options(cls, queries: Sequence[str], paths: Sequence[str] = (), **options) -> "QueryRequest":
        """A request with path globs as users write them: "!GLOB" excludes."""
        filters = Filters.from_globs((), paths)
        return cls(list(queries), include=filters.include_globs, exclude=filters.exclude_globs, **options)

    @property
    def filters(self) -> Filters:
        return Filters(tuple(self.languages), tuple(self.include), tuple(self.exclude))

    def checked(self) -> "QueryRequest":
        """This request with its queries trimmed; BadRequest(field) for the first thing out of bounds."""
        from codesearch.source.languages import language_names

        if self.mode not in MODES:
            raise BadRequest("mode", f"unknown {{name}} {self.mode!r:.40}; use one of: {', '.join(MODES)}")
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k <= 0:
            raise BadRequest("k", "{name} must be a positive number of results")
        unknown = [name for name in self.languages if name not in language_names() and name != "text"]
        if unknown:
            raise BadRequest("languages", f"unknown {{name}} {unknown[0]!r:.40}; known: "
                                          f"{', '.join(language_names())}, text")
        queries = [query.strip() for query in self.queries] if not isinstance(self.queries, str) else []
        if not queries or not all(queries):
            raise BadRequest("queries", "give a query: a question in plain language or an identifier")
        longest = max(len(query) for query in queries)
        if longest > MAX_QUERY_CHARS:
            raise BadRequest("queries", f"a query is {longest} characters long; at most {MAX_QUERY_CHARS} are accepted")
        return replace(self, queries=queries)


@dataclass
class Answer:
    repository: Path
    generation: int
    hits: list[list[Hit]] = field(default_factory=list)  # one list per query, in the order asked


class Engine:
    """One repository's open index, answering status and queries. Not thread-safe: SQLite connections
    belong to the thread that opened them (the server runs every Engine on one worker thread)."""

    def __init__(self, root: Path, store: IndexStore, embedder_for: Callable[[ModelSpec], Embedder] | None = None):
        self.root, self.store = root, store
        self._embedder_for = embedder_for

    @classmethod
    def open(cls, path: str | os.PathLike, embedder_for: Callable[[ModelSpec], Embedder] | None = None) -> "Engine":
        """The index of the repository containing `path`. IndexMissing when it has none; `embedder_for`
        loads (or hands out an already loaded) model for a spec, load_embedder unless given."""
        from codesearch.source.discover import repository_root
        from codesearch.index.store import IndexStore, index_dir

        root = repository_root(path)
        return cls(root, IndexStore.open(index_dir(root)), embedder_for)

    def close(self) -> None:
        self.store.close()

    def status(self, count_stale: bool = True) -> dict:
        """What is indexed, with which model, and (count_stale) how many files changed since. "indexed" is
        false for an index whose first build never finished."""
        with _damage_named(self.store):
            manifest = self.store.manifest()
            info = {"repository": str(self.root), "indexed": bool(manifest), "model": manifest.get("model"),
                    "dimension": manifest.get("dimension"), "files": self.store.file_count(),
                    "chunks": self.store.chunk_count()}
            if count_stale:
                from codesearch.source.discover import discover_files

                known = self.store.file_fingerprints()
                current = {source.path: source.fingerprint for source in discover_files(self.root)}
                info["stale_files"] = (sum(1 for path, fingerprint in current.items() if known.get(path) != fingerprint)
                                       + sum(1 for path in known if path not in current))
        return {**info, "generation": manifest.get("generation"), "updated_at": manifest.get("updated_at"),
                "prompts": manifest.get("prompts"), "dtype": manifest.get("dtype")}

    def query(self, request: QueryRequest) -> Answer:
        """The k best answers to each of the request's queries, with the index's own model."""
        from codesearch.query.fuse import dense_weight, fuse
        from codesearch.query.retrieve import Query, retrieve

        request = request.checked()
        store = self.store
        with _damage_named(store):
            generation = store.generation
            manifest = store.manifest()
            if not manifest:
                raise IndexMissing(f"the index in {self.root} is empty; run `codesearch index`")
            spec = query_spec(manifest, request.model, request.instruction, request.trust_remote_code)
            vectors = [None] * len(request.queries)
            if request.mode != "lexical":
                vectors = list(self._embedder(spec).encode_queries(request.queries))
            weight, filters = dense_weight(manifest.get("model")), request.filters
            hits = [fuse([retrieve(store, Query(text, request.k, request.mode, vector, filters))], text, request.k,
                         weight) for text, vector in zip(request.queries, vectors)]
        return Answer(self.root, generation, hits)

    def _embedder(self, spec: ModelSpec) -> Embedder:
        if self._embedder_for is None:
            from codesearch.embedding.weights import load_embedder

            # One thread: a query is a few tokens, and on a busy machine a second thread only waits for a core.
            self._embedder_for = lambda spec: load_embedder(spec).use_threads(QUERY_THREADS)
        return self._embedder_for(spec)


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
def _damage_named(store: IndexStore) -> Iterator[None]:
    """A database error that means a broken file becomes IndexDamaged, naming the index and the cure."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        from codesearch.index.database import damaged, is_damaged

        if is_damaged(error):
            raise damaged(store.directory, error) from None
        raise
