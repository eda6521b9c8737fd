"""Rank a repository's chunks for a question: dense vectors, BM25 over code terms, or both fused."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np

from codesearch.store import IndexStore, StoredChunk, code_terms

MODES = ("hybrid", "semantic", "lexical")
RRF_K = 60
CANDIDATES = 100
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from get how i in into is it its me of on or our "
    "should so that the their them then there these this to use used uses using via was we what "
    "when where which while who why will with you your".split()
)


@dataclass(frozen=True)
class Filters:
    languages: tuple[str, ...] = ()
    include_globs: tuple[str, ...] = ()
    exclude_globs: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.languages or self.include_globs or self.exclude_globs)

    def allows(self, chunk_path: str, language: str) -> bool:
        if self.languages and language not in self.languages:
            return False
        if self.include_globs and not any(_glob_match(chunk_path, glob) for glob in self.include_globs):
            return False
        return not any(_glob_match(chunk_path, glob) for glob in self.exclude_globs)


@dataclass
class Hit:
    chunk: StoredChunk
    score: float
    sources: dict = field(default_factory=dict)  # "dense"/"lexical" -> rank


def search(store: IndexStore, query: str, k: int, mode: str = "hybrid", query_vector: np.ndarray | None = None,
           dense_weight: float = 1.0, filters: Filters = Filters()) -> list[Hit]:
    allowed = _allowed_ids(store, filters) if filters else None
    if allowed is not None and not allowed:
        return []
    pool = max(CANDIDATES, 4 * k)
    rankings: dict[str, list[tuple[int, float]]] = {}
    if mode in ("hybrid", "semantic") and query_vector is not None:
        rankings["dense"] = dense_ranking(store, query_vector, pool, allowed)
    if mode in ("hybrid", "lexical"):
        rankings["lexical"] = lexical_ranking(store, query, pool, allowed)
    weights = {"dense": dense_weight, "lexical": 1.0}
    if len(rankings) == 1:
        (source, ranking), = rankings.items()
        fused = {chunk_id: (score, {source: rank}) for rank, (chunk_id, score) in enumerate(ranking, 1)}
    else:
        fused = _reciprocal_rank_fusion(rankings, weights)
    ordered = sorted(fused.items(), key=lambda item: -item[1][0])
    chunks = store.chunks_by_id([chunk_id for chunk_id, _ in ordered[: pool]])
    hits = []
    for chunk_id, (score, sources) in ordered:
        chunk = chunks.get(chunk_id)
        if chunk is None or _overlaps(chunk, hits):
            continue
        hits.append(Hit(chunk, float(score), sources))
        if len(hits) >= k:
            break
    return hits


def dense_ranking(store: IndexStore, query_vector: np.ndarray, limit: int, allowed: set[int] | None):
    import faiss

    index = store.vector_index()
    if index.ntotal == 0:
        return []
    parameters = None
    if allowed is not None:
        parameters = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.fromiter(allowed, dtype=np.int64)))
    scores, ids = index.search(query_vector.reshape(1, -1).astype(np.float32), min(limit, index.ntotal),
                               params=parameters)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def lexical_ranking(store: IndexStore, query: str, limit: int, allowed: set[int] | None):
    expression = match_expression(query)
    if allowed is None:
        return store.lexical_search(expression, limit)
    # Filters apply before the cut to `limit`: fetch deeper, keep the allowed ones.
    ranking = store.lexical_search(expression, max(limit * 20, 2000))
    return [(chunk_id, score) for chunk_id, score in ranking if chunk_id in allowed][:limit]


def match_expression(query: str) -> str:
    """An FTS5 OR-query over the query's code terms (whole identifiers and their parts)."""
    terms = []
    for term in code_terms(query):
        if term not in _STOPWORDS and term not in terms:
            terms.append(term)
    return " OR ".join(f'"{term}"' for term in terms)


def _reciprocal_rank_fusion(rankings, weights):
    fused: dict[int, tuple[float, dict]] = {}
    for source, ranking in rankings.items():
        for rank, (chunk_id, _score) in enumerate(ranking, 1):
            score, sources = fused.get(chunk_id, (0.0, {}))
            fused[chunk_id] = (score + weights[source] / (RRF_K + rank), {**sources, source: rank})
    return fused


def _allowed_ids(store: IndexStore, filters: Filters) -> set[int]:
    rows = store.db.execute("SELECT id, path, language FROM chunks")
    return {chunk_id for chunk_id, path, language in rows if filters.allows(path, language)}


def _glob_match(path: str, glob: str) -> bool:
    if fnmatch.fnmatchcase(path, glob):
        return True
    # A glob without a slash matches a file name or a directory anywhere, as in .gitignore.
    if "/" not in glob:
        parts = path.split("/")
        return any(fnmatch.fnmatchcase(part, glob) for part in parts)
    return path.startswith(glob.rstrip("/") + "/")


def _overlaps(chunk: StoredChunk, hits: list[Hit]) -> bool:
    return any(hit.chunk.path == chunk.path and hit.chunk.start_line <= chunk.end_line
               and chunk.start_line <= hit.chunk.end_line for hit in hits)
