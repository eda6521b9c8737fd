"""Retrieval: what one index's retrievers find for a question, before any fusion (fuse.fuse).

retrieve() asks the dense retriever (FAISS, inner product with the query's vector) and the lexical one
(BM25 over whole units) for their best candidates, each filtered inside the retriever, and returns their
raw scores with what fusion reads afterwards: the candidates' rows, where the parts of a split function are
found (the index's database, or when asked, the runs recorded here), the BM25 term statistics that a
merge across indexes needs and, when asked, each lexical candidate's score split by term.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from codesearch.index.terms import query_terms
from codesearch.query.api import Candidates, Filters, Query, TermStatistics, UnitRuns

if TYPE_CHECKING:
    import numpy as np

    from codesearch.index.store import IndexStore


def retrieve(index: IndexStore, query: Query, with_term_scores: bool = True, record_units: bool = False) -> Candidates:
    """The candidates of each retriever the query's mode asks for, filters applied inside each. In hybrid
    mode the dense search runs in another thread meanwhile: FAISS works without Python's lock, so the two
    retrievers share the cores instead of waiting for each other. `with_term_scores`: record each lexical
    candidate's score per term, which fusing several indexes needs (one index fused alone does not).
    `record_units`: record the runs of the split functions among the candidates (two lookups), for
    candidates fused in another process; otherwise fusion looks up the few it answers with."""
    allowed = _allowed_ids(index, query.filters) if query.filters else None
    nothing = allowed is not None and not len(allowed)  # the filters leave no chunk: no index file is read
    dense = lexical = terms = term_scores = None
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
            if with_term_scores and lexical:
                term_scores = lexicon.term_scores(list(terms.frequencies), [chunk_id for chunk_id, _ in lexical])
    if dense_search is not None:
        dense = dense_search.result()
    ids = {chunk_id for ranking in (dense, lexical) if ranking for chunk_id, _ in ranking}
    database = index.database
    chunks = database.chunks_by_id(ids)
    units = UnitRuns(database.split_units(chunks.values())) if record_units else database
    unembedded = frozenset()
    if dense is not None and lexical and database.manifest().get("unembedded"):
        unembedded = frozenset(database.unembedded_among(chunk_id for chunk_id, _ in lexical))
    return Candidates(query.pool, dense, lexical, terms, chunks, units, term_scores, unembedded)


@cache
def _dense_searches():
    """Threads for dense searches, which mostly wait for FAISS (segments scans on threads of its own)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(4, thread_name_prefix="codesearch-dense")


def _allowed_ids(index: IndexStore, filters: Filters) -> np.ndarray:
    """The chunk ids the filters let through: globs are matched once per file, not once per chunk."""
    path_allowed = filters.allows_path if filters.include_globs or filters.exclude_globs else None
    return index.database.chunk_ids(path_allowed, filters.languages)
