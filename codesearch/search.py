"""Rank a repository's chunks for a question: dense vectors, BM25 over code terms, or both fused."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from codesearch.chunk import DECLARATION_KINDS, continues_unit
from codesearch.lexical import query_terms
from codesearch.store import IndexStore, StoredChunk

if TYPE_CHECKING:
    import numpy as np

MODES = ("hybrid", "semantic", "lexical")
CANDIDATES = 100
PRIOR_DECLARATION = 0.8  # declarations (imports, fields, types) rank below the functions that act
NAME_MATCH_BONUS = 0.5  # added to the fused score (at most 1) of a definition the query names


@dataclass(frozen=True)
class Filters:
    languages: tuple[str, ...] = ()
    include_globs: tuple[str, ...] = ()
    exclude_globs: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.languages or self.include_globs or self.exclude_globs)

    def allows_path(self, path: str) -> bool:
        if self.include_globs and not any(_glob_match(path, glob) for glob in self.include_globs):
            return False
        return not any(_glob_match(path, glob) for glob in self.exclude_globs)


@dataclass
class Hit:
    chunk: StoredChunk
    score: float
    sources: dict = field(default_factory=dict)  # "dense"/"lexical" -> rank


def search(store: IndexStore, query: str, k: int, mode: str = "hybrid", query_vector: np.ndarray | None = None,
           dense_weight: float = 0.5, filters: Filters = Filters()) -> list[Hit]:
    """The k best chunks, no two overlapping in one file; filters apply before the cut to k."""
    allowed = _allowed_ids(store, filters) if filters else None
    if allowed is not None and not len(allowed):
        return []
    pool = max(CANDIDATES, 4 * k)
    rankings: dict[str, list[tuple[int, float]]] = {}
    if mode in ("hybrid", "semantic") and query_vector is not None:
        rankings["dense"] = dense_ranking(store, query_vector, pool, allowed)
    if mode in ("hybrid", "lexical"):
        rankings["lexical"] = lexical_ranking(store, query, pool, allowed)
    candidates = store.chunks_by_id({chunk_id for ranking in rankings.values() for chunk_id, _ in ranking})
    weights = {"dense": dense_weight, "lexical": 1.0 - dense_weight} if len(rankings) == 2 else dict.fromkeys(rankings, 1.0)
    names = names_in(query)
    scored = []
    for members, evidence in _by_unit(normalised_scores(rankings), candidates, store):
        # Parts of one function pool their evidence: each retriever's best part counts (BM25 scores whole
        # units already, and speaks through the first part).
        score = sum(weights[source] * value for source, (value, _) in evidence.items())
        best = max(members, key=lambda chunk: sum(weights[source] * value for source, (value, _)
                                                   in members[chunk].items()))
        if names.defined_by(best):
            score += NAME_MATCH_BONUS
        sources = {source: rank for source, (_, rank) in evidence.items()}
        scored.append((score * prior(best), best.id, best, sources))
    scored.sort(key=lambda item: (-item[0], item[1]))
    hits: list[Hit] = []
    for score, _, chunk, sources in scored:
        whole = whole_unit(store, chunk)
        if not _overlaps(whole, hits):
            hits.append(Hit(whole, float(score), sources))
            if len(hits) >= k:
                break
    return hits


def whole_unit(store: IndexStore, chunk: StoredChunk) -> StoredChunk:
    """A function split into parts for the model is answered whole: its best part stands for it.
    Declarations (imports, fields, types) are no unit: each part answers alone."""
    if chunk.kind in DECLARATION_KINDS:
        return chunk
    run = next((run for run in _unit_runs(store, chunk) if any(part.id == chunk.id for part in run)), [chunk])
    if len(run) <= 1:
        return chunk
    return replace(chunk, start_line=run[0].start_line, end_line=run[-1].end_line,
                   text="\n".join(part.text for part in run))


def _unit_runs(store: IndexStore, chunk: StoredChunk) -> list[list[StoredChunk]]:
    """The chunks sharing this chunk's path, symbol and kind, in runs that each make one unit."""
    rows = store.db.execute(
        "SELECT id, path, start_line, end_line, symbol, kind, language, context, text FROM chunks "
        "WHERE path = ? AND symbol = ? AND kind = ? ORDER BY start_line", (chunk.path, chunk.symbol, chunk.kind))
    runs: list[list[StoredChunk]] = []
    for part in map(store.stored_chunk, rows):
        if runs and continues_unit(runs[-1][-1], part):
            runs[-1].append(part)
        else:
            runs.append([part])
    return runs or [[chunk]]


_TEST_PATH = re.compile(r"(^|/)(tests?|spec|specs|__tests__|testing)/|(^|/)test_[^/]*$|_test\.[^/]+$|"
                        r"\.(test|spec)\.[^/]+$|Tests?\.[^/]+$")
PRIOR_TEST = 0.8  # tests rank below the code they test
PRIOR_NOT_CODE = 0.5  # prose and data windows (README, docs, JSON) rank below code


def prior(chunk: StoredChunk) -> float:
    """How much a chunk's kind of file counts, before any query: code first, then tests, then prose/data."""
    weight = 1.0
    if chunk.kind == "window" and chunk.language == "text":
        weight *= PRIOR_NOT_CODE
    if _TEST_PATH.search(chunk.path):
        weight *= PRIOR_TEST
    if chunk.kind in DECLARATION_KINDS:
        weight *= PRIOR_DECLARATION
    return weight


_IDENTIFIER_LIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:(?:::|\.|#|->)[A-Za-z_][A-Za-z0-9_]*)*")
_QUALIFIER = re.compile(r"::|\.|#|->|\s")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class QueryNames:
    """The definitions a query names, lowercased: code-looking words (parseConfig, snake_case, the `bar`
    of Foo::bar), and a container and member written apart (`KeyValueStore subscript`, as people write
    Foo.bar in prose) where one of the two looks like code."""

    names: frozenset[str] = frozenset()
    qualified: frozenset[tuple[str, str]] = frozenset()

    def defined_by(self, chunk: StoredChunk) -> bool:
        path = [part.lower() for part in _QUALIFIER.split(chunk.symbol) if part]
        if not path:
            return False
        return path[-1] in self.names or (len(path) >= 2 and (path[-2], path[-1]) in self.qualified)


def names_in(query: str) -> QueryNames:
    names = set()
    for token in _IDENTIFIER_LIKE.findall(query):
        last = _QUALIFIER.split(token)[-1]
        if _looks_like_code(token) and len(last) >= 3:
            names.add(last.lower())
    words = query.split()
    qualified = {(container.lower(), member.lower()) for container, member in zip(words, words[1:])
                 if _WORD.fullmatch(container) and _WORD.fullmatch(member)
                 and (_looks_like_code(container) or _looks_like_code(member))}
    return QueryNames(frozenset(names), frozenset(qualified))


def _looks_like_code(token: str) -> bool:
    return "_" in token or re.search(r"[a-z][A-Z]", token) is not None or _QUALIFIER.search(token) is not None


def dense_ranking(store: IndexStore, query_vector: np.ndarray, limit: int, allowed: np.ndarray | None):
    import faiss
    import numpy as np

    index = store.vector_index()
    if index.ntotal == 0:
        return []
    parameters = None
    if allowed is not None:
        parameters = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
    scores, ids = index.search(query_vector.reshape(1, -1).astype(np.float32), min(limit, index.ntotal),
                               params=parameters)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def lexical_ranking(store: IndexStore, query: str, limit: int, allowed: np.ndarray | None):
    return store.lexical_index().search(query_terms(query), limit, allowed)


def normalised_scores(rankings: dict[str, list[tuple[int, float]]]) -> dict[int, dict[str, tuple[float, int]]]:
    """Per chunk, each retriever's min-max normalised score (0..1) and rank.

    The fused score is a convex combination of these. Unlike reciprocal rank fusion it keeps how far
    ahead a retriever's best hit is, so a confident lexical match is not dragged down by a weak dense
    ranking (and the reverse); Bruch, Gai and Ingber's comparison of fusion functions (ACM TOIS 2023)
    found the same.
    """
    normalised: dict[int, dict[str, tuple[float, int]]] = {}
    for source, ranking in rankings.items():
        if not ranking:
            continue
        best, worst = ranking[0][1], min(score for _, score in ranking)
        spread = best - worst
        for rank, (chunk_id, score) in enumerate(ranking, 1):
            value = (score - worst) / spread if spread > 0 else 1.0
            normalised.setdefault(chunk_id, {})[source] = (value, rank)
    return normalised


def _by_unit(normalised, candidates: dict[int, StoredChunk], store: IndexStore) -> list[tuple[dict, dict]]:
    """Candidates grouped by the unit they belong to (adjacent parts of a split function): each group's
    members with their own evidence, and the group's best value per retriever."""
    namesakes: dict[tuple, list[StoredChunk]] = {}
    for chunk in (candidates[chunk_id] for chunk_id in normalised if chunk_id in candidates):
        if chunk.kind not in DECLARATION_KINDS:
            namesakes.setdefault((chunk.path, chunk.symbol, chunk.kind), []).append(chunk)
    # Only names with several candidates need their runs looked up; any other chunk is its own unit.
    unit_of = {part.id: run[0].id for group in namesakes.values() if len(group) > 1
               for run in _unit_runs(store, group[0]) for part in run}
    units: dict[int, tuple[dict, dict]] = {}
    for chunk_id, evidence in normalised.items():
        chunk = candidates.get(chunk_id)
        if chunk is None:
            continue
        members, pooled = units.setdefault(unit_of.get(chunk_id, chunk_id), ({}, {}))
        members[chunk] = evidence
        for source, (value, rank) in evidence.items():
            if source not in pooled or value > pooled[source][0]:
                pooled[source] = (value, rank)
    return list(units.values())


def _allowed_ids(store: IndexStore, filters: Filters) -> np.ndarray:
    """The chunk ids the filters let through: globs are matched once per file, not once per chunk."""
    import numpy as np

    conditions, parameters = [], []
    if filters.include_globs or filters.exclude_globs:
        paths = [path for (path,) in store.db.execute("SELECT path FROM files") if filters.allows_path(path)]
        if not paths:
            return np.zeros(0, dtype=np.int64)
        conditions.append("path IN (SELECT value FROM json_each(?))")
        parameters.append(json.dumps(paths))
    if filters.languages:
        conditions.append(f"language IN ({', '.join('?' * len(filters.languages))})")
        parameters.extend(filters.languages)
    rows = store.db.execute(f"SELECT id FROM chunks WHERE {' AND '.join(conditions)}", parameters)
    return np.fromiter((chunk_id for (chunk_id,) in rows), dtype=np.int64)


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
