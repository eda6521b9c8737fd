"""Retrieval: what one index's retrievers find for a question, before any fusion (ranking.fuse).

retrieve() asks the dense retriever (FAISS, inner product with the query's vector) and the lexical one
(BM25 over whole units) for their best candidates, each filtered inside the retriever, and returns their
raw scores with what fusion needs: the candidates' rows, the index to read a winner's other parts from,
and the BM25 term statistics that a merge across indexes needs. search() is one index, fused alone.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from codesearch.index.lexical import query_terms
from codesearch.index.database import StoredChunk
from codesearch.query.fuse import DEFAULT_DENSE_WEIGHT, Hit, fuse

if TYPE_CHECKING:
    import numpy as np

    from codesearch.index.store import IndexStore

__all__ = ["MODES", "CANDIDATES", "Filters", "Query", "Candidates", "TermStatistics", "retrieve", "search", "Hit"]

MODES = ("hybrid", "semantic", "lexical")
CANDIDATES = 100


@dataclass(frozen=True)
class Filters:
    languages: tuple[str, ...] = ()
    include_globs: tuple[str, ...] = ()
    exclude_globs: tuple[str, ...] = ()

    @classmethod
    def from_globs(cls, languages=(), globs=()) -> "Filters":
        """Languages, and path globs where "!GLOB" excludes, as users write them."""
        return cls(tuple(languages), tuple(g for g in globs if not g.startswith("!")),
                   tuple(g[1:] for g in globs if g.startswith("!")))

    def __bool__(self) -> bool:
        return bool(self.languages or self.include_globs or self.exclude_globs)

    def allows_path(self, path: str) -> bool:
        if self.include_globs and not any(_glob_match(path, glob) for glob in self.include_globs):
            return False
        return not any(_glob_match(path, glob) for glob in self.exclude_globs)


@dataclass(frozen=True)
class Query:
    """One question as the retrievers take it."""

    text: str
    k: int = 10
    mode: str = "hybrid"
    vector: np.ndarray | None = None  # the query's embedding; None: no dense retrieval
    filters: Filters = Filters()

    @property
    def pool(self) -> int:
        """How many candidates each retriever returns."""
        return max(CANDIDATES, 4 * self.k)


@dataclass(frozen=True)
class TermStatistics:
    """What BM25 scores of several indexes need to be put on one scale: how many documents (units) this
    index holds, and per query term it knows, in how many of them the term occurs."""

    documents: int
    frequencies: dict[str, int]


@dataclass
class Candidates:
    """What one index's retrievers found for one query. dense and lexical are (chunk id, raw score), best
    first, or None when that retriever was not asked; a lexical candidate is a unit, known by its first
    chunk. `index` is where fusion reads the winners' other parts."""

    index: IndexStore
    pool: int
    dense: list[tuple[int, float]] | None
    lexical: list[tuple[int, float]] | None
    terms: TermStatistics | None
    chunks: dict[int, StoredChunk]

    def term_scores(self) -> list[list[float]]:
        """Each lexical candidate's score split by query term (the terms of `terms.frequencies`, in order):
        what a merge across indexes reweighs. Computed only when asked."""
        return self.index.lexical_index().term_scores(list(self.terms.frequencies),
                                                      [chunk_id for chunk_id, _ in self.lexical])


def retrieve(index: IndexStore, query: Query) -> Candidates:
    """The candidates of each retriever the query's mode asks for, filters applied inside each. In hybrid
    mode the dense search runs in another thread meanwhile: FAISS works without Python's lock, so the two
    retrievers share the cores instead of waiting for each other."""
    allowed = _allowed_ids(index, query.filters) if query.filters else None
    nothing = allowed is not None and not len(allowed)  # the filters leave no chunk: no index file is read
    dense = lexical = terms = None
    dense_search = None
    if query.mode in ("hybrid", "semantic") and query.vector is not None:
        dense = []
        if not nothing:
            vectors = index.vector_index()  # opened here: the database belongs to this thread
            if query.mode == "hybrid":
                dense_search = _dense_searches().submit(vectors.search, query.vector, query.pool, allowed)
            else:
                dense = vectors.search(query.vector, query.pool, allowed)
    if query.mode in ("hybrid", "lexical"):
        lexical = []
        if not nothing:
            lexicon, searched = index.lexical_index(), query_terms(query.text)
            lexical = lexicon.search(searched, query.pool, allowed)
            terms = TermStatistics(len(lexicon), lexicon.frequencies(searched))
    if dense_search is not None:
        dense = dense_search.result()
    ids = {chunk_id for ranking in (dense, lexical) if ranking for chunk_id, _ in ranking}
    return Candidates(index, query.pool, dense, lexical, terms, index.chunks_by_id(ids))


def search(index: IndexStore, query: str, k: int, mode: str = "hybrid", query_vector: np.ndarray | None = None,
           dense_weight: float = DEFAULT_DENSE_WEIGHT, filters: Filters = Filters()) -> list[Hit]:
    """The k best chunks of one index, no two overlapping in one file; filters apply before the cut to k."""
    return fuse([retrieve(index, Query(query, k, mode, query_vector, filters))], query, k, dense_weight)


@cache
def _dense_searches():
    """Threads for dense searches, which mostly wait for FAISS (segments._scanners does the scanning)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(4, thread_name_prefix="codesearch-dense")


def _allowed_ids(index: IndexStore, filters: Filters) -> np.ndarray:
    """The chunk ids the filters let through: globs are matched once per file, not once per chunk."""
    path_allowed = filters.allows_path if filters.include_globs or filters.exclude_globs else None
    return index.chunk_ids(path_allowed, filters.languages)


def _glob_match(path: str, glob: str) -> bool:
    if fnmatch.fnmatchcase(path, glob):
        return True
    # A glob without a slash matches a file name or a directory anywhere, as in .gitignore.
    if "/" not in glob:
        parts = path.split("/")
        return any(fnmatch.fnmatchcase(part, glob) for part in parts)
    return path.startswith(glob.rstrip("/") + "/")
