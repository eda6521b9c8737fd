"""Fusion: from what the retrievers found (retrieve.retrieve) to the k answers a user sees.

fuse() takes the candidates of one index or of several, and
  1. merges each retriever's rankings across indexes (dense scores compare as they are; BM25 scores are
     put on one scale with the term statistics each index reported), keeping the best `pool` of each;
  2. normalises each ranking's scores to 0..1 (min-max) and adds them with the model's weights: a convex
     combination, which keeps how far ahead a retriever's best hit is (reciprocal rank fusion throws
     that away; Bruch, Gai and Ingber, ACM TOIS 2023);
  3. pools the parts of one split function (each retriever's best part counts) and answers it whole;
  4. lifts a definition the query names and a file whose name or folder's name a sentence's words give, and
     applies the priors (tests, stubs, declarations, prose below code);
  5. lifts each file's best answer by how much of the whole pool's evidence its file holds;
  6. cuts to k, no two answers overlapping in one file, at most `per_file` from one file.
One index is the special case of fusing one: its answers are exactly what it would answer alone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import cache, lru_cache

from codesearch.index.database import StoredChunk
from codesearch.index.terms import query_terms
from codesearch.query.api import CANDIDATES, PER_FILE, Candidates, Hit
from codesearch.source.chunk import DECLARATION_KINDS

# The dense ranking's share (0..1) when fused with the lexical one; the rest goes to BM25. bge-code-v1, a
# state-of-the-art code retriever (CoIR, arXiv 2505.12697), leads; a general sentence model such as
# minilm trails BM25 alone on the dev set, so it gets an equal share only, as does any other model.
DENSE_WEIGHTS = {"bge-code-v1": 0.7}
DEFAULT_DENSE_WEIGHT = 0.5
NAME_MATCH_BONUS = 0.5  # added to the fused score (at most 1) of a definition a sentence names
# A query that is nothing but a name (`Session`, `Rack::Builder`) asks where it is defined: its definitions
# rank before everything else (a fused score is at most 1), best fused first.
BARE_NAME_BONUS = 1.0
TYPE_FIRST = 1.0  # a declared type (class, struct, ...) before a function of its name (a constructor): always
# ...and among those, one spelled as the query spells it (`Monad`: trait Monad before object monad). Less than
# TYPE_FIRST: people type names in lower case, and the kind is the stronger evidence.
EXACT_CASE = 0.5
# TYPE_FIRST is not for a block that adds to a type defined elsewhere (Rust's `impl Trait for Keys`, Swift's
# `extension Keys`): it opens with the name too, and a question of the name alone asks where the type is defined.
ADDS_TO_A_TYPE = frozenset({"impl", "extension"})
# A sentence's words in a file's name or its folder's (`pool.py`, `middleware/`) are evidence that the file is
# about them: the share of the query's terms found there, times this, is added (a fused score is at most 1).
PATH_WORDS = 0.3
# ...and more where no vector speaks (lexical mode, a chunk not embedded yet): the model reads each chunk's path
# in its header, BM25 counts its words once among the body's, so the path words stand in for both. The same
# where each file gives one answer (`--files-only`, `--per-file 1`): the answer stands for its file, whose name
# is then evidence about the answer itself.
PATH_WORDS_STRONG = 1.0
# A file holding many good candidates is a stronger answer than one lucky function: each file's best answer
# gains this share of the best score, scaled by its file's summed scores over the largest file's sum.
FILE_COHERENCE = 0.1
# ...and when each file gives one answer (`--files-only`, `--per-file 1`), that answer stands for its file, whose
# whole evidence is then the question: the lift is three times as strong.
FILE_COHERENCE_ONE_PER_FILE = 0.3
DECLARATION_SEARCH_LINES = 40  # how far past decorators and comments a chunk's declaration line is looked for
PRIOR_DECLARATION = 0.8  # declarations (imports, fields, types) rank below the functions that act
PRIOR_TEST = 0.8  # tests rank below the code they test
PRIOR_NOT_CODE = 0.5  # prose and data windows (README, docs, JSON) rank below code
PRIOR_STUB = 0.5  # type stubs (.pyi, .d.ts) repeat a definition made elsewhere: the implementation first, as prose
_STUB_PATH = re.compile(r"\.pyi$|\.d\.[mc]?ts$")
_TEST_PATH = re.compile(r"(^|/)(tests?|spec|specs|__tests__|testing)/|(^|/)test_[^/]*$|_test\.[^/]+$|"
                        r"\.(test|spec)\.[^/]+$|Tests?\.[^/]+$")


def dense_weight(model: str | None) -> float:
    """The dense ranking's share for an index built with `model` (the name its manifest records)."""
    return DENSE_WEIGHTS.get(model or "", DEFAULT_DENSE_WEIGHT)


def fuse(sets: list[Candidates], query: str, k: int, weight: float = DEFAULT_DENSE_WEIGHT,
         per_file: int = PER_FILE) -> list[Hit]:
    """The k best answers over the candidates of one or more indexes (retrieve.retrieve), as the docstring
    of this module tells; `weight` is the dense ranking's share (dense_weight); `per_file`: at most this
    many answers from one file (0: no limit)."""
    rankings = _merged_rankings(sets)
    rows = {(number, chunk_id): chunk for number, found in enumerate(sets) for chunk_id, chunk in found.chunks.items()}
    weights = {"dense": weight, "lexical": 1.0 - weight} if len(rankings) == 2 else dict.fromkeys(rankings, 1.0)
    names = names_in(query)
    path_share = _path_words(query, names)
    scored = []
    for members, evidence in _by_unit(normalised_scores(rankings), rows, sets):
        # Parts of one function pool their evidence: each retriever's best part counts (BM25 scores whole
        # units already, and speaks through the first part).
        score = sum(weights[source] * value for source, (value, _) in evidence.items())
        path_words = PATH_WORDS if "dense" in weights and per_file != 1 else PATH_WORDS_STRONG
        if "dense" in weights and "dense" not in evidence and "lexical" in evidence and any(
                chunk.id in sets[number].unembedded for number, chunk in members):
            score = evidence["lexical"][0]  # no vector yet (a first index still embedding): its words speak for both
            path_words = PATH_WORDS_STRONG
        (number, best) = max(members, key=lambda member: sum(weights[source] * value for source, (value, _)
                                                             in members[member].items()))
        bonus = names.bonus(best)
        score += bonus + path_words * path_share(best.path)
        sources = {source: rank for source, (_, rank) in evidence.items()}
        scored.append((score * prior(best, bonus >= BARE_NAME_BONUS), (best.id, number), number, best, sources))
    scored = _file_coherence(scored, FILE_COHERENCE_ONE_PER_FILE if per_file == 1 else FILE_COHERENCE)
    scored.sort(key=lambda item: (-item[0], item[1]))
    hits: list[tuple[int, Hit]] = []
    per_path: dict[tuple[int, str], int] = {}
    for score, _, number, chunk, sources in scored:
        if per_file and per_path.get((number, chunk.path), 0) >= per_file:
            continue
        whole = whole_unit(sets[number], chunk)
        if not any(other == number and _overlap(hit.chunk, whole) for other, hit in hits):
            hits.append((number, Hit(whole, float(score), sources, number)))
            per_path[(number, chunk.path)] = per_path.get((number, chunk.path), 0) + 1
            if len(hits) >= k:
                break
    return [hit for _, hit in hits]


def _path_words(query: str, names: QueryNames):
    """path -> the share of a sentence's terms that its file's name and its folder's name hold (stemmed as
    BM25 stems them). A bare name asks for its definition, wherever it lives: 0 for every path."""
    terms = set(query_terms(query))
    if not terms or names.bare:
        return lambda path: 0.0

    @cache
    def share(path: str) -> float:
        return len(terms & path_name_terms(path)) / len(terms)
    return share


@lru_cache(maxsize=1 << 14)
def path_name_terms(path: str) -> frozenset[str]:
    """The stemmed terms of a file's name without its extensions, and of its folder's name."""
    *folders, name = path.split("/")
    words = name.split(".")[0] + (" " + folders[-1] if folders else "")
    return frozenset(query_terms(words))


def _file_coherence(scored: list[tuple], share: float) -> list[tuple]:
    """Each file's best answer lifted by `share` x the best score x its file's summed scores over the
    largest sum. Only candidates within the scale's depth (CANDIDATES) of a ranking count, so a deeper pool (a
    larger k) adds no weight."""
    if not scored:
        return scored
    sums: dict[tuple[int, str], float] = {}
    best: dict[tuple[int, str], int] = {}
    for position, (score, _, number, chunk, sources) in enumerate(scored):
        if min(sources.values(), default=CANDIDATES + 1) > CANDIDATES:
            continue
        file = (number, chunk.path)
        sums[file] = sums.get(file, 0.0) + score
        if file not in best or score > scored[best[file]][0]:
            best[file] = position
    largest, top = max(sums.values(), default=0.0), max(item[0] for item in scored)
    if largest <= 0 or top <= 0:
        return scored
    lifted = list(scored)
    for file, position in best.items():
        score, *rest = scored[position]
        lifted[position] = (score + share * top * sums[file] / largest, *rest)
    return lifted


def whole_unit(found: Candidates, chunk: StoredChunk) -> StoredChunk:
    """A function split into parts for the model is answered whole: its best part stands for it.
    Declarations (imports, fields, types) are no unit: each part answers alone."""
    if chunk.kind in DECLARATION_KINDS:
        return chunk
    run = next((run for run in found.units.unit_runs(chunk) if any(part.id == chunk.id for part in run)), [chunk])
    if len(run) <= 1:
        return chunk
    return replace(chunk, start_line=run[0].start_line, end_line=run[-1].end_line,
                   text="\n".join(part.text for part in run))


def prior(chunk: StoredChunk, asked_for: bool = False) -> float:
    """How much a chunk's kind of file counts, before any query: code first, then tests, then prose/data.
    A declaration that a query of its name alone asks for (`Environment`) is no side note."""
    weight = 1.0
    if chunk.kind == "window" and chunk.language == "text":
        weight *= PRIOR_NOT_CODE
    if _TEST_PATH.search(chunk.path):
        weight *= PRIOR_TEST
    if _STUB_PATH.search(chunk.path):
        weight *= PRIOR_STUB
    if chunk.kind in DECLARATION_KINDS and not asked_for:
        weight *= PRIOR_DECLARATION
    return weight


def normalised_scores(rankings: dict[str, list[tuple[object, float]]]) -> dict[object, dict[str, tuple[float, int]]]:
    """Per candidate, each retriever's min-max normalised score (0..1) and rank.

    The fused score is a convex combination of these. Unlike reciprocal rank fusion it keeps how far
    ahead a retriever's best hit is, so a confident lexical match is not dragged down by a weak dense
    ranking (and the reverse); Bruch, Gai and Ingber's comparison of fusion functions (ACM TOIS 2023)
    found the same.

    The scale is set by the first CANDIDATES of each ranking, whatever its length, so a deeper pool (a
    larger k) adds answers below without moving those above; a candidate past that depth scores 0.
    """
    normalised: dict[object, dict[str, tuple[float, int]]] = {}
    for source, ranking in rankings.items():
        if not ranking:
            continue
        best, worst = ranking[0][1], min(score for _, score in ranking[:CANDIDATES])
        spread = best - worst
        for rank, (key, score) in enumerate(ranking, 1):
            value = max(0.0, (score - worst) / spread) if spread > 0 else 1.0
            normalised.setdefault(key, {})[source] = (value, rank)
    return normalised


def _merged_rankings(sets: list[Candidates]) -> dict[str, list[tuple[tuple[int, int], float]]]:
    """Each retriever's ranking over all indexes, candidates known as (index number, chunk id), dense
    before lexical. One index's rankings are taken as they are."""
    sources = [source for source in ("dense", "lexical") if any(getattr(found, source) is not None for found in sets)]
    merged = {}
    for source in sources:
        if len(sets) == 1:
            merged[source] = [((0, chunk_id), score) for chunk_id, score in getattr(sets[0], source)]
            continue
        pool = max(found.pool for found in sets)
        scores = (_global_bm25(sets) if source == "lexical" else
                  [[score for _, score in found.dense or []] for found in sets])
        ranking = [((number, chunk_id), score) for number, found in enumerate(sets)
                   for (chunk_id, _), score in zip(getattr(found, source) or [], scores[number])]
        merged[source] = sorted(ranking, key=lambda item: -item[1])[:pool]
    return merged


def _global_bm25(sets: list[Candidates]) -> list[list[float]]:
    """Each index's BM25 scores as if every index were one: each term's share of a score is reweighted
    from the idf the index computed alone (from its own document counts) to the idf over all of them."""
    documents = sum(found.terms.documents for found in sets if found.terms)
    frequency: dict[str, int] = {}
    for found in sets:
        for term, count in (found.terms.frequencies.items() if found.terms else ()):
            frequency[term] = frequency.get(term, 0) + count
    rescaled = []
    for found in sets:
        if not found.lexical:
            rescaled.append([])
            continue
        terms = list(found.terms.frequencies)
        ratios = [_idf(documents, frequency[term]) / _idf(found.terms.documents, found.terms.frequencies[term])
                  for term in terms]
        shares = found.term_scores  # rows: candidates; columns: terms
        rescaled.append([float(sum(share * ratio for share, ratio in zip(row, ratios))) for row in shares])
    return rescaled


def _idf(documents: int, frequency: int) -> float:
    """BM25's idf as bm25s computes it (Lucene's variant, never negative)."""
    return math.log(1 + (documents - frequency + 0.5) / (frequency + 0.5))


def _by_unit(normalised, rows: dict, sets: list[Candidates]) -> list[tuple[dict, dict]]:
    """Candidates grouped by the unit they belong to (adjacent parts of a split function): each group's
    members, (index number, chunk), with their own evidence, and the group's best value per retriever."""
    namesakes: dict[tuple, list[tuple[int, StoredChunk]]] = {}
    for key in normalised:
        chunk = rows.get(key)
        if chunk is not None and chunk.kind not in DECLARATION_KINDS:
            namesakes.setdefault((key[0], chunk.path, chunk.symbol, chunk.kind), []).append((key[0], chunk))
    # Only names with several candidates need their runs looked up; any other chunk is its own unit.
    unit_of = {(number, part.id): (number, run[0].id) for group in namesakes.values() if len(group) > 1
               for number, first in group[:1] for run in sets[number].units.unit_runs(first) for part in run}
    units: dict[tuple, tuple[dict, dict]] = {}
    for key, evidence in normalised.items():
        chunk = rows.get(key)
        if chunk is None:
            continue
        members, pooled = units.setdefault(unit_of.get(key, key), ({}, {}))
        members[(key[0], chunk)] = evidence
        for source, (value, rank) in evidence.items():
            if source not in pooled or value > pooled[source][0]:
                pooled[source] = (value, rank)
    return list(units.values())


def _overlap(a: StoredChunk, b: StoredChunk) -> bool:
    return a.path == b.path and a.start_line <= b.end_line and b.start_line <= a.end_line


_IDENTIFIER_LIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:(?:::|\.|#|->|\\)[A-Za-z_][A-Za-z0-9_]*)*")
_QUALIFIER = re.compile(r"::|\.|#|->|\\|\s")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Lines before a declaration: blank, decorators and annotations, attributes, comments and doc comments.
NOT_A_DECLARATION = re.compile(r"\s*(@|#\[|#!|#\s|#$|//|/\*|\*|--|\[|<!--|$)")
# Annotations and attributes may open the declaration's own line (`@typeclass trait Monad[F[_]]`, `#[inline]
# pub fn`, `[Serializable] public class`, `@Component({...}) export class`): the declaration is what follows
# them, when a word follows (a decorator's arguments that go on past the line, `(...`, do not).
_ANNOTATION_START = re.compile(r"\s*(@|#\[|\[)")
_LEADING_ANNOTATIONS = re.compile(r"\s*(?:(?:@[\w.]+(?![\w.])(?:\([^()]*\))?|#\[[^\]]*\]|\[[^\]]*\])\s*)+(?=\w)")


@dataclass(frozen=True)
class QueryNames:
    """The definitions a query names, lowercased: code-looking words (parseConfig, snake_case, the `bar`
    of Foo::bar), and a container and member written apart (`KeyValueStore subscript`, as people write
    Foo.bar in prose) where one of the two looks like code. `bare`: the query is one name and nothing else
    (`Session`, `HTTPAdapter.send`), whatever its shape."""

    names: frozenset[str] = frozenset()
    qualified: frozenset[tuple[str, str]] = frozenset()
    bare: bool = False
    spelled: str = ""  # a bare name's last part as the query spells it

    def bonus(self, chunk: StoredChunk) -> float:
        """What defining a name of the query adds to a chunk's fused score: BARE_NAME_BONUS where the query
        is the chunk's name alone (qualified as the query qualifies it), NAME_MATCH_BONUS where a sentence
        names it or only the last part of a qualified name matches, else 0."""
        best = 0.0
        for member in chunk.symbol.split(", "):  # a group of one-liners defines each of its members
            path = [part.lower() for part in _QUALIFIER.split(member) if part]
            if not path:
                continue
            qualified = len(path) >= 2 and (path[-2], path[-1]) in self.qualified
            if not qualified and path[-1] not in self.names:
                continue
            if self.bare and (qualified or not self.qualified) and _declares(chunk, path[-1]):
                spelled = [part for part in _QUALIFIER.split(member) if part][-1] == self.spelled
                return (BARE_NAME_BONUS + (TYPE_FIRST if _defines_type(chunk) else 0.0)
                        + (EXACT_CASE if spelled else 0.0))
            best = NAME_MATCH_BONUS
        return best


def _defines_type(chunk: StoredChunk) -> bool:
    """A declared type's own definition, not a block that adds to it (`impl`, `extension`)."""
    return chunk.kind in DECLARATION_KINDS and chunk.kind not in ADDS_TO_A_TYPE


def _declares(chunk: StoredChunk, name: str) -> bool:
    """Whether the chunk holds its definition's declaration (`class Environment:`, `func (s *Server) Shutdown()`):
    its declaration line names it. A later part of a long class or function that was cut into several does not.
    A group of one-liners (`Option_p, void_t, hash_t`) declares each member on a line of its own."""
    named = re.compile(rf"\b{re.escape(name)}\b", re.IGNORECASE)
    if ", " in chunk.symbol:
        return any(not NOT_A_DECLARATION.match(line) and named.search(line) for line in chunk.text.split("\n"))
    line = declaration_line(chunk.text, DECLARATION_SEARCH_LINES)
    return line is not None and named.search(line) is not None


def declaration_line(text: str, lines: int = -1) -> str | None:
    """A definition's declaration: its first line of code past decorators, annotations, attributes and comments
    (those that open the line itself too, and those whose arguments go on over more lines), within its first
    `lines` lines (-1: all); None if there is none."""
    unclosed = 0  # brackets an annotation's arguments left open: its lines go on
    for line in text.split("\n", lines)[:lines] if lines >= 0 else text.split("\n"):
        if unclosed > 0:
            unclosed += _brackets_opened(line)
            continue
        annotations = _LEADING_ANNOTATIONS.match(line)
        declaration = line[annotations.end():] if annotations else line
        if not NOT_A_DECLARATION.match(declaration):
            return declaration
        if _ANNOTATION_START.match(declaration):
            unclosed = _brackets_opened(declaration)
    return None


def _brackets_opened(line: str) -> int:
    return sum(line.count(bracket) for bracket in "([{") - sum(line.count(bracket) for bracket in ")]}")


def names_in(query: str) -> QueryNames:
    query = query.strip()
    if _IDENTIFIER_LIKE.fullmatch(query) and len(_QUALIFIER.split(query)[-1]) >= 3:
        spelled = [part for part in _QUALIFIER.split(query) if part]
        path = [part.lower() for part in spelled]
        return QueryNames(frozenset(path[-1:]), frozenset([tuple(path[-2:])] if len(path) >= 2 else []), True,
                          spelled[-1])
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
