"""Replays the CLI's ranking in-process over indexes already built, to measure ranking ideas in seconds.

A benchmark run through the CLI (eval_modes.sh, mined/run.sh) embeds every repository again and loads the
model per repository; a ranking idea changes neither the chunks nor their vectors. This script opens each
repository's index as `codesearch query` does (Engine.open, the index's own model and query prompts),
embeds each question once (kept in --vectors, keyed by the question and the model), and ranks with the
product's retrieve + fuse, then with each variant named in VARIANTS; it scores with the eval's own
score_query. The baseline reproduces the CLI's figures; a variant kept is then scored through the CLI.

    python benchmarks/ranking_lab.py --corpus ../evalcorpus --queries '../shared/eval/queries/*.jsonl' \
        --recipes '../shared/eval/corpus/*.tsv' --split dev --vectors /tmp/lab-vectors baseline
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from codesearch.query.engine import Engine, query_spec  # noqa: E402
from codesearch.query.fuse import dense_weight, fuse  # noqa: E402
from codesearch.query.api import Query  # noqa: E402
from codesearch.query.retrieve import retrieve  # noqa: E402

VARIANTS: dict[str, contextlib.AbstractContextManager] = {}  # name -> a context manager factory


def variant(function):
    VARIANTS[function.__name__.replace("_", "-")] = contextlib.contextmanager(function)
    return function


class Settings:
    """What a variant may change besides patching the product's functions."""

    weight_for = None  # (query text, the index's weight) -> the dense share for this query
    ranker = None  # (store, text, vector, k, mode, weight) -> hits, in place of retrieve + fuse
    per_file = None  # at most this many answers per file (None: the product's default)
    repositories: dict = {}  # name -> Repository, for variants that rebuild an index
    vectors: Path = Path(".")  # --vectors


def _ranker(function):
    """A variant that ranks with `function` instead of retrieve + fuse."""
    def apply():
        Settings.ranker = function
        try:
            yield
        finally:
            Settings.ranker = None
    VARIANTS[function.__name__.replace("_", "-")] = contextlib.contextmanager(apply)
    return function


@contextlib.contextmanager
def ranking_with(ranker):
    """Rank with `ranker` (store, text, vector, k, mode, weight) -> hits, in place of retrieve + fuse, meanwhile."""
    Settings.ranker = ranker
    try:
        yield
    finally:
        Settings.ranker = None


def _first_pass(store, text, vector, k, mode, weight):
    per_file = {} if Settings.per_file is None else {"per_file": Settings.per_file}
    return fuse([retrieve(store, Query(text, k, mode, vector), with_term_scores=False)], text, k, weight, **per_file)


def _unit_terms(store):
    """unit id -> its BM25 document's term counts (cached per store)."""
    cached = getattr(store, "_lab_unit_terms", None)
    if cached is None:
        from collections import Counter

        from codesearch.source.chunk import units_of
        from codesearch.index.terms import unit_document

        units = units_of(store.database.unit_parts(), chunk_of=lambda part: part[0])
        cached = {unit[0][0].id: Counter(unit_document(unit[0][0].symbol, unit[0][0].path, [t for _, t in unit]))
                  for unit in units}
        store._lab_unit_terms = cached
    return cached


def _rm3(feedback_terms=10, weight_new=0.3, feedback=3):
    def lexical_prf(store, text, vector, k, mode, weight):
        if mode == "semantic":
            return _first_pass(store, text, vector, k, mode, weight)
        from codesearch.index.terms import query_terms

        first = _first_pass(store, text, vector, feedback, mode, weight)
        lexicon = store.lexical_index()
        documents = _unit_terms(store)
        original = query_terms(text)
        frequencies = lexicon.frequencies(list({t for hit in first for t in documents.get(hit.chunk.id, {})}))
        n = len(lexicon)
        import math
        pooled = defaultdict(float)
        for hit in first:
            counts = documents.get(hit.chunk.id)
            if not counts:
                continue
            total = sum(counts.values())
            for term, count in counts.items():
                df = frequencies.get(term, n)
                pooled[term] += count / total * math.log(1 + (n - df + 0.5) / (df + 0.5))
        expansion = [t for t, _ in sorted(pooled.items(), key=lambda item: -item[1]) if t not in original][:feedback_terms]
        real_search = lexicon.search

        def search(terms, limit, allowed=None):
            scores = {}
            for chunk_id, score in real_search(terms, max(limit, 200), allowed):
                scores[chunk_id] = score
            if expansion:
                for chunk_id, score in real_search(expansion, max(limit, 200), allowed):
                    scores[chunk_id] = scores.get(chunk_id, 0.0) + weight_new * score
            ranked = sorted(scores.items(), key=lambda item: -item[1])[:limit]
            return ranked
        lexicon.search = search
        try:
            return _first_pass(store, text, vector, k, mode, weight)
        finally:
            del lexicon.search
    return lexical_prf


for _terms, _weight in ((10, 0.3), (10, 0.1), (20, 0.2)):
    _function = _rm3(_terms, _weight)
    _function.__name__ = f"rm3_{_terms}_{_weight}"
    _ranker(_function)


def _normalisation(kind):
    def apply():
        import codesearch.query.fuse as ranking

        real = ranking.normalised_scores

        def normalised(rankings):
            if kind == "rrf":
                return {key: {source: (1.0 / (60 + rank), rank) for source, (value, rank) in evidence.items()}
                        for key, evidence in real(rankings).items()}
            out = {}
            for source, ranking_ in rankings.items():
                if not ranking_:
                    continue
                scores = np.asarray([score for _, score in ranking_])
                mean, spread = scores.mean(), scores.std() or 1.0
                for rank, (key, score) in enumerate(ranking_, 1):
                    out.setdefault(key, {})[source] = ((score - mean) / spread, rank)
            return out
        ranking.normalised_scores = normalised
        try:
            yield
        finally:
            ranking.normalised_scores = real
    return apply


def _relexed(store):
    """The store's BM25 index rebuilt from its chunks' texts with the terms module as patched now."""
    from codesearch.index.lexical import LexicalIndex, Postings
    from codesearch.index.terms import text_terms
    from codesearch.index.database import StoredChunk

    rows = store.database.db.execute("SELECT id, path, start_line, end_line, symbol, kind, language, context, '', "
                                     "text FROM chunks ORDER BY path, symbol, kind, start_line").fetchall()
    return LexicalIndex([(Postings.from_parts((StoredChunk(*columns), text_terms(text)) for *columns, text in rows),
                          [])])


@contextlib.contextmanager
def stores_replaced(method, make):
    """Each repository's store answers `method` ("lexical_index" or "vector_index") with the index
    make(repository, name) builds, and its own afterwards."""
    try:
        for name, repository in Settings.repositories.items():
            setattr(repository.engine.store, method, lambda made=make(repository, name): made)
        yield
    finally:
        for repository in Settings.repositories.values():
            repository.engine.store.__dict__.pop(method, None)


@contextlib.contextmanager
def lexicon_patched(**replacements):
    """Patches codesearch.index.terms's names, rebuilds every repository's BM25 index with them, and restores."""
    import codesearch.index.terms as terms

    saved = {name: getattr(terms, name) for name in replacements}
    for name, value in replacements.items():
        setattr(terms, name, value)
    terms.identifier_terms.cache_clear()  # it holds terms made with the names as they were
    try:
        with stores_replaced("lexical_index", lambda repository, name: _relexed(repository.engine.store)):
            yield
    finally:
        for name, value in saved.items():
            setattr(terms, name, value)
        terms.identifier_terms.cache_clear()


@contextlib.contextmanager
def no_abbreviations():
    """Before the abbreviation vocabulary: no identifier part brings the words it stands for."""
    with lexicon_patched(expansion=lambda token, alone=False: []):
        yield


@contextlib.contextmanager
def relexed():
    """The control for the lexical variants: rebuilt from the texts, nothing changed."""
    with lexicon_patched():
        yield


VARIANTS.update({"no-abbreviations": no_abbreviations, "relexed": relexed})
VARIANTS["rrf"] = contextlib.contextmanager(_normalisation("rrf"))
VARIANTS["zscore"] = contextlib.contextmanager(_normalisation("zscore"))


@variant
def baseline():
    yield


def _weights(rule):
    def apply():
        Settings.weight_for = rule
        try:
            yield
        finally:
            Settings.weight_for = None
    return apply


for _share in (0.3, 0.4, 0.6, 0.7):
    VARIANTS[f"weight-{_share}"] = contextlib.contextmanager(_weights(lambda text, weight, share=_share: share))


def _by_style(identifier: float, prose: float):
    from codesearch.query.fuse import names_in

    def rule(text, weight):
        names = names_in(text)
        return identifier if names.names or names.qualified else prose
    return rule


for _identifier, _prose in ((0.3, 0.5), (0.4, 0.5), (0.5, 0.4), (0.3, 0.6)):
    VARIANTS[f"style-{_identifier}-{_prose}"] = contextlib.contextmanager(_weights(_by_style(_identifier, _prose)))


def _joined_words(longest: int):
    """Adjacent query words joined as one identifier would join them (`retry failed uploads` also asks for
    retry_failed_uploads and retryfaileduploads, 2 to `longest` words): words side by side in one name."""
    def apply():
        from codesearch.index import terms as terms_module
        from codesearch.query import retrieve as retrieve_module

        original = terms_module.query_terms

        def joined(query: str) -> list[str]:
            found = original(query)
            words = [word.lower() for word in re.findall(r"[A-Za-z][A-Za-z0-9]*", query)
                     if word.lower() not in terms_module._STOPWORDS]
            extra = []
            for size in range(2, longest + 1):
                for start in range(len(words) - size + 1):
                    run = words[start:start + size]
                    extra += ["_".join(run), "".join(run)]
            stemmed = terms_module._stemmer().stemWords(extra)
            return found + [term for term in dict.fromkeys(stemmed) if term not in found]

        retrieve_module.query_terms = joined
        try:
            yield
        finally:
            retrieve_module.query_terms = original
    return apply


for _longest in (2, 3, 4):
    VARIANTS[f"joined-words-{_longest}"] = contextlib.contextmanager(_joined_words(_longest))


def _per_file(limit: int):
    def apply():
        Settings.per_file = limit
        try:
            yield
        finally:
            Settings.per_file = None
    return apply


for _limit in (0, 1, 2, 3, 4, 5):
    VARIANTS[f"per-file-{_limit}"] = contextlib.contextmanager(_per_file(_limit))


def _fusion_constant(name: str, value):
    """A variant that sets one of fuse.py's constants (read at each call) for its run."""
    def apply():
        from codesearch.query import fuse as fusion

        before = getattr(fusion, name)
        setattr(fusion, name, value)
        try:
            yield
        finally:
            setattr(fusion, name, before)
    return apply


for _lift in (0.0, 0.05, 0.2, 0.5, 1.0):
    VARIANTS[f"type-first-{_lift}"] = contextlib.contextmanager(_fusion_constant("TYPE_FIRST", _lift))
for _value in (0.0, 0.2, 0.5, 0.7, 1.0, 1.5, 2.0):
    VARIANTS[f"path-words-{_value}"] = contextlib.contextmanager(_fusion_constant("PATH_WORDS", _value))
for _value in (0.3, 0.5, 0.7, 1.0, 1.5, 2.0):  # where no vector speaks (lexical mode, a chunk not embedded yet)
    VARIANTS[f"path-words-strong-{_value}"] = contextlib.contextmanager(
        _fusion_constant("PATH_WORDS_STRONG", _value))
for _value in (0.0, 0.05, 0.15, 0.2, 0.3, 0.5):
    VARIANTS[f"file-coherence-{_value}"] = contextlib.contextmanager(_fusion_constant("FILE_COHERENCE", _value))
    VARIANTS[f"one-per-file-coherence-{_value}"] = contextlib.contextmanager(
        _fusion_constant("FILE_COHERENCE_ONE_PER_FILE", _value))
VARIANTS["one-per-file-coherence-0.1"] = contextlib.contextmanager(_fusion_constant("FILE_COHERENCE_ONE_PER_FILE", 0.1))
def _bare_names_too():
    """Path words for a bare name too (`HTTPAdapter` in adapters.py): they reorder definitions among themselves."""
    from codesearch.query import fuse as fusion
    from codesearch.query.fuse import QueryNames

    original = fusion._path_words

    def path_words(query, names):
        return original(query, QueryNames(names.names, names.qualified, False))
    fusion._path_words = path_words
    try:
        yield
    finally:
        fusion._path_words = original


VARIANTS["path-words-bare-too"] = contextlib.contextmanager(_bare_names_too)
_EXAMPLES = __import__("re").compile(r"(^|/)(tests?|spec|specs|__tests__|testing|examples?|samples?|demos?|benchmarks?)/|"
                                     r"(^|/)test_[^/]*$|_test\.[^/]+$|\.(test|spec)\.[^/]+$|Tests?\.[^/]+$")
VARIANTS["examples-as-tests"] = contextlib.contextmanager(_fusion_constant("_TEST_PATH", _EXAMPLES))
for _factor in (1.0, 0.6, 0.5, 0.3):
    VARIANTS[f"tests-{_factor}"] = contextlib.contextmanager(_fusion_constant("PRIOR_TEST", _factor))
for _factor in (1.0, 0.9, 0.7):
    VARIANTS[f"declarations-{_factor}"] = contextlib.contextmanager(_fusion_constant("PRIOR_DECLARATION", _factor))
for _factor in (1.0, 0.8, 0.6, 0.5):
    VARIANTS[f"stubs-{_factor}"] = contextlib.contextmanager(_fusion_constant("PRIOR_STUB", _factor))


def _called(weight: float):
    """A definition that many calls name ranks higher: its prior times 1 + weight x min(1, log10(1 + calls) / 2)
    (99 calls give the whole weight), counting the code graph's call sites of its name (unresolved)."""
    def apply():
        import math

        from codesearch.index.graph import defined_names
        from codesearch.query import fuse as fusion

        original, counts_of = fusion.prior, {}

        def ranker(store, text, vector, k, mode, dense_share):
            if id(store) not in counts_of:
                counts_of[id(store)] = {name.lower(): count for name, count in store.database.db.execute(
                    "SELECT name, count(*) FROM refs WHERE kind = 'call' GROUP BY name")}
            Settings.calls = counts_of[id(store)]
            return _first_pass(store, text, vector, k, mode, dense_share)

        def prior(chunk, asked_for=False):
            calls = max((Settings.calls.get(name.lower(), 0) for name in defined_names(chunk.symbol, chunk.kind)),
                        default=0)
            return original(chunk, asked_for) * (1 + weight * min(1.0, math.log10(1 + calls) / 2))

        fusion.prior, Settings.ranker = prior, ranker
        try:
            yield
        finally:
            fusion.prior, Settings.ranker = original, None
    return apply


for _weight in (0.05, 0.1, 0.2):
    VARIANTS[f"called-{_weight}"] = contextlib.contextmanager(_called(_weight))


def _file_evidence(share: float):
    """A file with several good answers is a stronger answer: each answer's fused score plus `share` times the
    best score of another answer from its file, among the first pass's answers (fused for the whole pool)."""
    def apply():
        from codesearch.query.api import CANDIDATES

        def ranker(store, text, vector, k, mode, dense_share):
            hits = _first_pass(store, text, vector, max(k, CANDIDATES), mode, dense_share)
            best: dict[str, list[float]] = {}
            for hit in hits:
                best.setdefault(hit.chunk.path, []).append(hit.score)
            for scores in best.values():
                scores.sort(reverse=True)

            def lifted(hit):
                scores = best[hit.chunk.path]
                other = scores[1] if scores[0] == hit.score and len(scores) > 1 else scores[0]
                return hit.score + share * (other if len(scores) > 1 else 0.0)
            return sorted(hits, key=lifted, reverse=True)[:k]

        return ranking_with(ranker)
    return apply


for _share in (0.1, 0.2, 0.4):
    VARIANTS[f"file-evidence-{_share}"] = _file_evidence(_share)


def _reranked(adjust):
    """A variant that reorders the first pass's answers (fused for the whole pool): adjust(hits, text) returns
    (hit, new score) pairs."""
    def apply():
        from codesearch.query.api import CANDIDATES

        def ranker(store, text, vector, k, mode, dense_share):
            hits = _first_pass(store, text, vector, max(k, CANDIDATES), mode, dense_share)
            return [hit for hit, _ in sorted(adjust(hits, text), key=lambda pair: -pair[1])][:k]

        return ranking_with(ranker)
    return apply


def _saturation(threshold: int, decay: float):
    """Greedy: a file's answers past `threshold` already taken score x decay per extra one."""
    def adjust(hits, text):
        taken: dict = {}
        out = []
        for hit in sorted(hits, key=lambda h: -h.score):
            n = taken.get(hit.chunk.path, 0)
            out.append((hit, hit.score * decay ** max(0, n - threshold + 1)))
            taken[hit.chunk.path] = n + 1
        return out
    return adjust


def _file_documents(store):
    """path -> its units' BM25 terms summed (a file as one document), with each term's file frequency; cached."""
    cached = getattr(store, "_lab_file_documents", None)
    if cached is None:
        from collections import Counter

        rows = dict(store.database.db.execute("SELECT id, path FROM chunks"))
        files: dict = {}
        for unit_id, counts in _unit_terms(store).items():
            files.setdefault(rows.get(unit_id), Counter()).update(counts)
        frequency = Counter(term for counts in files.values() for term in counts)
        lengths = {path: sum(counts.values()) for path, counts in files.items()}
        cached = store._lab_file_documents = (files, frequency, lengths, sum(lengths.values()) / max(1, len(lengths)))
    return cached


def _lift_files(hits, file_score: dict, weight: float, best_only: bool, k: int) -> list:
    """The k best hits once weight x each file's score, min-max normalised over the files, is added to the
    file's best hit (or to all its hits)."""
    top, low = max(file_score.values(), default=0), min(file_score.values(), default=0)
    best = {}
    for hit in hits:
        if hit.chunk.path not in best or hit.score > best[hit.chunk.path].score:
            best[hit.chunk.path] = hit
    lifted = [(hit, hit.score + (weight * (file_score[hit.chunk.path] - low) / (top - low) if top > low and
                                 (not best_only or best[hit.chunk.path] is hit) else 0.0)) for hit in hits]
    return [hit for hit, _ in sorted(lifted, key=lambda pair: -pair[1])][:k]


def _file_bm25(weight: float, best_only: bool = True):
    """BM25 over whole files (each file's units' terms as one document), min-max normalised over the pool's
    files: + weight x it, to each file's best answer (or to all its answers)."""
    def apply():
        import math

        from codesearch.index.terms import query_terms
        from codesearch.query.api import CANDIDATES

        def ranker(store, text, vector, k, mode, dense_share):
            hits = _first_pass(store, text, vector, max(k, CANDIDATES), mode, dense_share)
            files, frequency, lengths, average = _file_documents(store)
            n, terms = len(files), query_terms(text)
            score = {}
            for path in {hit.chunk.path for hit in hits}:
                counts, total = files.get(path, {}), 0.0
                for term in terms:
                    tf = counts.get(term, 0)
                    if tf:
                        idf = math.log(1 + (n - frequency[term] + 0.5) / (frequency[term] + 0.5))
                        total += idf * tf / (tf + 1.2 * (0.25 + 0.75 * lengths[path] / average))
                score[path] = total
            return _lift_files(hits, score, weight, best_only, k)

        return ranking_with(ranker)
    return apply


for _w in (0.1, 0.2, 0.3):
    VARIANTS[f"file-bm25-{_w}"] = _file_bm25(_w)


def _file_chunk_ids(store) -> dict:
    """path -> its chunks' ids (cached per store)."""
    cached = getattr(store, "_lab_file_chunk_ids", None)
    if cached is None:
        cached = {}
        for chunk_id, path in store.database.db.execute("SELECT id, path FROM chunks"):
            cached.setdefault(path, []).append(chunk_id)
        store._lab_file_chunk_ids = cached
    return cached


def _file_centroid(weight: float, best_only: bool = True):
    """A file's topic as the mean of its chunks' vectors: the question's similarity to it (the mean of its
    chunks' dense scores), min-max normalised over the pool's files, + weight x it to each file's best answer
    (or to all its answers). Hybrid only: lexical mode has no question vector to compare."""
    def apply():
        import numpy as np

        from codesearch.query.api import CANDIDATES

        def ranker(store, text, vector, k, mode, dense_share):
            hits = _first_pass(store, text, vector, max(k, CANDIDATES), mode, dense_share)
            if mode == "lexical" or vector is None:
                return hits[:k]
            ids_of = _file_chunk_ids(store)
            paths = {hit.chunk.path for hit in hits}
            allowed = np.array(sorted(i for path in paths for i in ids_of.get(path, ())), dtype=np.int64)
            scored = dict(store.vector_index().search(vector, len(allowed), allowed))
            mean = {}
            for path in paths:
                values = [scored[i] for i in ids_of.get(path, ()) if i in scored]
                mean[path] = float(np.mean(values)) if values else 0.0
            return _lift_files(hits, mean, weight, best_only, k)

        return ranking_with(ranker)
    return apply


for _w in (0.05, 0.1, 0.2, 0.3):
    VARIANTS[f"file-centroid-{_w}"] = _file_centroid(_w)
    VARIANTS[f"file-centroid-all-{_w}"] = _file_centroid(_w, best_only=False)


for _t, _d in ((1, 0.5), (1, 0.7), (1, 0.8), (1, 0.85), (1, 0.9), (1, 0.95), (2, 0.9), (2, 0.5), (2, 0.7), (2, 0.8), (3, 0.5), (3, 0.7)):
    VARIANTS[f"saturate-{_t}-{_d}"] = _reranked(_saturation(_t, _d))


class _VectorsInMemory:
    """Exact inner-product search over vectors held in memory, in place of an index's own: the lab's dense sides
    computed anew. With a second matrix, a chunk's score is combine(its first row's score, its second's)."""

    def __init__(self, ids, vectors, second=None, combine=None):
        self.ids, self.vectors, self.second, self.combine = np.asarray(ids), vectors, second, combine

    def search(self, vector, k, allowed=None):
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        scores = self.vectors @ vector
        if self.second is not None:
            scores = self.combine(scores, self.second @ vector)
        if allowed is not None:
            scores = np.where(np.isin(self.ids, allowed), scores, -np.inf)
        top = np.argsort(-scores)[:k]
        return [(int(self.ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i])]


def _document_vectors(label: list, texts: list[str], embedder) -> np.ndarray:
    """embedder's vectors of texts, kept in --vectors under a digest of label and texts."""
    digest = hashlib.sha256(json.dumps([*label, texts]).encode()).hexdigest()[:16]
    cache = Settings.vectors / f"chunks-{digest}.npy"
    if cache.exists():
        return np.load(cache)
    vectors = np.asarray(embedder.encode_documents(texts), dtype=np.float32)
    np.save(cache, vectors)
    return vectors


def _first_pass_over(index, store, text, vector, k, mode, weight):
    """_first_pass with `index` answering for the store's vector index."""
    original = store.vector_index
    store.vector_index = lambda: index
    try:
        return _first_pass(store, text, vector, k, mode, weight)
    finally:
        store.vector_index = original


def _reembedded(name: str, transform, question=None):
    """The dense side re-embedded with `transform` applied to every chunk's embedding text and to the question
    (vectors kept in --vectors): what a change to what the model reads does, before any index is rebuilt."""
    def apply():
        from codesearch.embedding.load import load_embedder
        from codesearch.query.engine import query_spec
        from codesearch.source.chunk import embedding_text

        matrices, questions = {}, {}

        def matrix(store):
            key = id(store)
            if key not in matrices:
                manifest = store.database.manifest()
                spec = query_spec(manifest)
                embedder = Repository.embedders.setdefault(spec.name, load_embedder(spec))
                rows = store.database.db.execute(
                    "SELECT id, path, context, text FROM chunks ORDER BY id").fetchall()
                texts = [transform(embedding_text(path, context, text)) for _, path, context, text in rows]
                matrices[key] = (_VectorsInMemory([row[0] for row in rows],
                                                  _document_vectors([name, spec.name], texts, embedder)), embedder)
            return matrices[key]

        def ranker(store, text, vector, k, mode, weight):
            index, embedder = matrix(store)
            if text not in questions:
                questions[text] = np.asarray(embedder.encode_queries([(question or transform)(text)]),
                                             dtype=np.float32)[0]
            return _first_pass_over(index, store, text, questions[text], k, mode, weight)
        with ranking_with(ranker):
            yield
    VARIANTS[name] = contextlib.contextmanager(apply)


def _words_of_identifiers(text: str) -> str:
    """Identifiers written as the words they are made of (`parseIPv4Addr` -> `parse IPv4 Addr`)."""
    from codesearch.index.terms import _CAMEL_PART

    def words(match):
        pieces = [part for piece in match.group(0).split("_") for part in _CAMEL_PART.findall(piece)]
        return " ".join(pieces) if pieces else match.group(0)
    return re.sub(r"[A-Za-z_][A-Za-z0-9_]*", words, text)


_WORD_BOUNDARY = re.compile(r"_+|(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[0-9])(?=[A-Z][a-z])")


def _identifier_words_gently(text: str) -> str:
    """Identifiers cut only at underscores and where a lowercase letter or a digit meets a capital, digits kept
    with their word (`parse_ipv4_addr` -> `parse ipv4 addr`, `HTTPServerConfig` -> `HTTP Server Config`)."""
    return re.sub(r"[A-Za-z_][A-Za-z0-9_]*", lambda match: _WORD_BOUNDARY.sub(" ", match.group(0)).strip() or
                  match.group(0), text)


_reembedded("reembedded", lambda text: text)
_reembedded("identifier-words-documents", _identifier_words_gently, question=lambda text: text)
_reembedded("identifier-words-gently", _identifier_words_gently)
_reembedded("identifier-words", _words_of_identifiers)


def _two_views(name: str, view, combine):
    """A second vector per chunk, of `view` (path, context, text, kind, whether it is a unit's first part) -> text,
    beside the index's own: the dense score is combine(body score, view score). The views' vectors are kept in
    --vectors (RETRIEVAL.md, "a second vector for a definition's head")."""
    def apply():
        from codesearch.embedding.load import load_embedder
        from codesearch.query.engine import query_spec
        from codesearch.source.chunk import units_of

        matrices = {}

        def matrix(store):
            key = id(store)
            if key not in matrices:
                spec = query_spec(store.database.manifest())
                embedder = Repository.embedders.setdefault(spec.name, load_embedder(spec))
                ids, body = [], []
                for segment, deleted in store.vector_index().parts:  # the index's own vectors, as it searches them
                    live = np.setdiff1d(np.arange(len(segment)), deleted)
                    ids.append(np.asarray(segment.chunk_ids)[live])
                    body.append(segment.vectors.reconstruct_batch(live.astype(np.int64)))
                ids, body = np.concatenate(ids), np.concatenate(body)
                chunks = store.database.chunks_by_id(int(chunk) for chunk in ids)
                firsts = {unit[0].id for unit in units_of(sorted(chunks.values(), key=lambda chunk: (
                    chunk.path, chunk.symbol, chunk.kind, chunk.start_line)))}  # a split unit's later parts left out
                views = [view(chunks[int(chunk)].path, chunks[int(chunk)].context, chunks[int(chunk)].text,
                              chunks[int(chunk)].kind, int(chunk) in firsts) for chunk in ids]
                matrices[key] = _VectorsInMemory(ids, body, _document_vectors([name, spec.name], views, embedder),
                                                 combine)
            return matrices[key]

        def ranker(store, text, vector, k, mode, weight):
            return _first_pass_over(matrix(store), store, text, vector, k, mode, weight)
        with ranking_with(ranker):
            yield
    return contextlib.contextmanager(apply)


def _head(lines_after: int, definitions_only: bool = False, longer_by: int = 0):
    """A definition's head: its doc comment, decorators and declaration line, and `lines_after` lines more (where
    Python's docstring is), with the chunk's header: what the function promises, without how."""
    from codesearch.query.fuse import declaration_line
    from codesearch.source.chunk import embedding_text

    def view(path, context, text, kind="function", first=True):
        if definitions_only and (not first or kind in ("module", "window", "media", "table")):
            return embedding_text(path, context, text)  # the body again: the same vector, max() changes nothing
        lines = text.split("\n")
        line = declaration_line(text, 40)
        at = lines.index(line) if line in lines else next(
            (i for i, whole in enumerate(lines) if line and whole.endswith(line)), 0)
        if len(lines) - (at + 1 + lines_after) < longer_by:
            return embedding_text(path, context, text)  # the body is hardly more than its head: one view is enough
        return embedding_text(path, context, "\n".join(lines[:at + 1 + lines_after]))
    return view


VARIANTS["head-defs-max"] = _two_views("head-defs", _head(0, True), np.maximum)
VARIANTS["head-defs-long-max"] = _two_views("head-defs-long", _head(0, True, 10), np.maximum)
for _after in (0, 3):
    for _how, _combine in (("max", np.maximum), ("mean", lambda a, b: (a + b) / 2),
                           ("quarter", lambda a, b: 0.75 * a + 0.25 * b)):
        VARIANTS[f"head-{_after}-{_how}"] = _two_views(f"head-{_after}", _head(_after), _combine)


def _static_dense(name: str, weighting: str = "none", table_file: str = "static-table.npy"):
    """The dense side from a static table (one vector per word piece, `static_table.py` writes it into --vectors):
    a text's vector is the mean of its pieces' rows (`idf`: weighted by each piece's inverse document frequency
    over the repository's chunks), for chunks and questions alike; nothing runs a transformer."""
    def apply():
        from tokenizers import Tokenizer

        from codesearch.embedding.spec import _minilm_directory
        from codesearch.source.chunk import embedding_text

        table = np.load(Settings.vectors / table_file)
        tokenizer = Tokenizer.from_file(str(_minilm_directory() / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        matrices = {}

        def encode(texts, weights):
            pieces = [encoding.ids[1:-1] for encoding in tokenizer.encode_batch(texts)]
            vectors = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
            for row, ids in enumerate(pieces):
                if ids:
                    ids = np.asarray(ids)
                    vectors[row] = (table[ids] * weights[ids][:, None]).sum(0)
            return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)

        def matrix(store):
            if id(store) not in matrices:
                rows = store.database.db.execute("SELECT id, path, context, text FROM chunks ORDER BY id").fetchall()
                texts = [embedding_text(path, context, text) for _, path, context, text in rows]
                weights = np.ones(table.shape[0], dtype=np.float32)
                if weighting == "idf":
                    frequency = np.zeros(table.shape[0])
                    for encoding in tokenizer.encode_batch(texts):
                        frequency[np.unique(encoding.ids)] += 1
                    weights = np.log((1 + len(texts)) / (1 + frequency)).astype(np.float32)
                matrices[id(store)] = (_VectorsInMemory([row[0] for row in rows], encode(texts, weights)), weights)
            return matrices[id(store)]

        def ranker(store, text, vector, k, mode, weight):
            index, weights = matrix(store)
            return _first_pass_over(index, store, text, encode([text], weights)[0], k, mode, weight)
        with ranking_with(ranker):
            yield
    VARIANTS[name] = contextlib.contextmanager(apply)


for _weighting in ("none", "idf"):
    _static_dense(f"static-{_weighting}", _weighting)
    _static_dense(f"static-trained-{_weighting}", _weighting, "static-trained.npy")


@variant
def impls_as_definitions():
    """Before 2026-12-06: `impl Keys` and `extension Keys` counted as Keys's definition, as its `struct` does."""
    from codesearch.query import fuse as fusion
    from codesearch.source.chunk import DECLARATION_KINDS

    original = fusion._defines_type
    fusion._defines_type = lambda chunk: chunk.kind in DECLARATION_KINDS
    try:
        yield
    finally:
        fusion._defines_type = original


def read_queries(patterns: str, split: str, recipes: dict) -> dict[str, list[dict]]:
    by_repo = defaultdict(list)
    for name in sorted(glob.glob(patterns)):
        for line in Path(name).read_text().splitlines():
            if line.strip():
                query = json.loads(line)
                if split == "all" or recipes.get(query["repo"], {}).get("split") == split:
                    by_repo[query["repo"]].append(query)
    return by_repo


def read_recipes(patterns: str) -> dict[str, dict]:
    recipes = {}
    for name in sorted(glob.glob(patterns)):
        for line in Path(name).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                fields = line.split("\t")
                recipes[fields[0]] = {"language": fields[4], "split": fields[5] if len(fields) > 5 else "all"}
    return recipes


class Repository:
    """One indexed repository with its questions' vectors, ready to rank again and again."""

    embedders: dict = {}

    def __init__(self, path: Path, queries: list[dict], vectors_dir: Path):
        self.engine = Engine.open(path)
        self.queries = queries
        manifest = self.engine.store.database.manifest()
        self.weight = dense_weight(manifest.get("model"))
        spec = query_spec(manifest)
        texts = [query["query"] for query in queries]
        key = hashlib.sha256(json.dumps([spec.name, spec.query_format, spec.query_instruction,
                                         texts]).encode()).hexdigest()[:16]
        cache = vectors_dir / f"{path.name}-{key}.npy"
        if cache.exists():
            self.vectors = np.load(cache)
        else:
            if spec.name not in self.embedders:
                from codesearch.embedding.load import load_embedder

                self.embedders[spec.name] = load_embedder(spec)
            self.vectors = np.asarray(self.embedders[spec.name].encode_queries(texts), dtype=np.float32)
            vectors_dir.mkdir(parents=True, exist_ok=True)
            np.save(cache, self.vectors)

    def rank(self, mode: str, k: int = 10) -> list[list[dict]]:
        store = self.engine.store
        results = []
        for query, vector in zip(self.queries, self.vectors):
            weight = Settings.weight_for(query["query"], self.weight) if Settings.weight_for else self.weight
            hits = (Settings.ranker or _first_pass)(store, query["query"], vector, k, mode, weight)
            results.append([{"path": hit.chunk.path, "start": hit.chunk.start_line, "end": hit.chunk.end_line}
                            for hit in hits])
        return results


def _name_precision(weight: float):
    """A name says what its function does: the share of its name's words (or the words their abbreviations
    stand for) that the question says, times `weight`, is added to a sentence's candidates. A sibling whose
    name has a word the question does not say (`get_u16_le` for a question about `get_u16`) ranks lower."""
    import re as regex

    from codesearch.index import terms as lexicon
    from codesearch.query import fuse as fusion

    def parts_of(symbol: str) -> list[list[str]]:
        last = regex.split(r"::|\.|#|->|\\|\s", symbol.split(", ")[0])[-1]
        pieces = [part.lower() for piece in last.split("_") for part in lexicon._CAMEL_PART.findall(piece)]
        pieces = [piece for piece in pieces if len(piece) > 1] or [last.lower()]
        return [[piece, *lexicon.expansion(piece)] for piece in pieces]

    def apply():
        original = fusion.names_in

        def names_in(query):
            names = original(query)
            if names.bare:
                return names
            asked = set(lexicon.query_terms(query))
            stem = lexicon._stemmer().stemWords

            class Precise(type(names)):
                def bonus(self, chunk):
                    parts = parts_of(chunk.symbol)
                    said = sum(1 for words in parts if asked & set(stem(words)))
                    return super().bonus(chunk) + weight * said / len(parts)
            return Precise(names.names, names.qualified, names.bare, names.spelled)
        fusion.names_in = names_in
        try:
            yield
        finally:
            fusion.names_in = original
    return contextlib.contextmanager(apply)


for _w in (0.05, 0.1, 0.2):
    VARIANTS[f"name-precision-{_w}"] = _name_precision(_w)


def _bm25_parameters(k1: float, b: float):
    """BM25's k1 (how soon a term's repeats stop counting) and b (how much a long unit is discounted)."""
    def apply():
        import numpy as np

        from codesearch.index.lexical import LexicalIndex

        original = LexicalIndex._norm

        def norm(self, part):
            postings, _ = self.parts[part]
            return k1 * (1 - b + b * np.asarray(postings.unit_lengths, dtype=np.float64) / self.average_length)
        LexicalIndex._norm = norm
        try:
            yield
        finally:
            LexicalIndex._norm = original
    return contextlib.contextmanager(apply)


for _k1, _b in ((1.2, 0.0), (1.2, 0.1), (1.2, 0.2), (1.2, 0.3), (1.2, 0.4), (1.2, 0.5), (1.2, 0.6), (1.2, 0.9), (0.9, 0.75), (1.5, 0.75),
                 (2.0, 0.75), (1.2, 0.75), (0.9, 0.3), (1.5, 0.3)):
    VARIANTS[f"bm25-{_k1}-{_b}"] = _bm25_parameters(_k1, _b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--queries", required=True, help="glob of the questions' .jsonl files")
    parser.add_argument("--recipes", required=True, help="glob of the corpus recipes (.tsv): language and split")
    parser.add_argument("--split", default="all")
    parser.add_argument("--vectors", required=True, help="folder that keeps the questions' vectors between runs")
    parser.add_argument("--modes", default="hybrid,lexical")
    parser.add_argument("--repos", default="", help="comma-separated names; default: all with questions")
    parser.add_argument("--out", help="write per-query nDCG@10 of every variant and mode here (JSON)")
    parser.add_argument("variants", nargs="+", help=f"of: {', '.join(VARIANTS)}; A+B applies both")
    args = parser.parse_args()

    sys.path.insert(0, str(HERE.parent.parent / "shared" / "eval"))
    from score import score_query  # the eval's own scoring

    recipes = read_recipes(args.recipes)
    by_repo = read_queries(args.queries, args.split, recipes)
    wanted = set(filter(None, args.repos.split(",")))
    repositories = {name: Repository(Path(args.corpus) / name, queries, Path(args.vectors))
                    for name, queries in sorted(by_repo.items()) if not wanted or name in wanted}
    Settings.repositories, Settings.vectors = repositories, Path(args.vectors)
    table, per_query = {}, {}
    for name in args.variants:
        for mode in args.modes.split(","):
            groups, files_shown = defaultdict(list), []
            with contextlib.ExitStack() as applied:
                for part in name.split("+"):  # variants joined by "+" apply together
                    applied.enter_context(VARIANTS[part]())
                for repo, repository in repositories.items():
                    for query, results in zip(repository.queries, repository.rank(mode)):
                        value = score_query(results, query["answers"], 10)["metrics"]["nDCG@10"]
                        per_query[f"{name}/{mode}/{query['id']}"] = value
                        files_shown.append(len({result["path"] for result in results[:10]}))
                        kind = [f"kind:{query['kind']}"] if "kind" in query else []
                        for group in ("all", recipes[repo]["language"], f"style:{query.get('style', '?')}", *kind):
                            groups[group].append(value)
            table[f"{name}/{mode}"] = {group: float(np.mean(values)) for group, values in groups.items()}
            table[f"{name}/{mode}"]["~files in a top 10"] = float(np.mean(files_shown))
    groups = list(next(iter(table.values())))
    groups = ["all"] + sorted(g for g in groups if g != "all" and ":" not in g and g[0] != "~") + \
        sorted(g for g in groups if ":" in g) + ["~files in a top 10"]
    columns = list(table)
    print("| nDCG@10 | " + " | ".join(columns) + " |")
    print("| --- " * (len(columns) + 1) + "|")
    for group in groups:
        print(f"| {group} | " + " | ".join(f"{table[column].get(group, float('nan')):.3f}" for column in columns) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps({"table": table, "queries": per_query}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
