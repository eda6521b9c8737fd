"""BM25 over code terms, with bm25s: scores are precomputed per (term, unit) when an index generation
is written, so a query only adds up a few sparse rows (about 1 ms at 100,000 chunks, where SQLite
FTS5 scored every chunk matching any query word: 205 ms).

A document is a whole unit (a function, however many parts the model needed), the thing an answer
shows: a question's words often sit in the doc comment of a function's first part and its identifiers
in another, and scoring each part alone missed that. Its terms are its identifiers, whole and split at
camelCase/snake_case, Porter-stemmed; the terms of its symbol count SYMBOL_WEIGHT times, so a unit named
after the query outranks one that only mentions it. SQLite keeps each part's terms, so the index is
rebuilt without re-parsing whenever a generation is written.

Code abbreviates what questions spell out (ctx, cfg, idx, u64, le), so a known abbreviation among an
identifier's parts also brings the words it stands for, from a general programming vocabulary
(abbreviations.tsv) and one rule for sized number types. Questions go through the same function, so
"ctx" in a question finds "context" too.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from codesearch.chunk import units_of
from codesearch.trust import replace_atomically

if TYPE_CHECKING:
    import numpy as np

SYMBOL_WEIGHT = 4
MAX_QUERY_TERMS = 64
_FORMAT = 2  # of the folder this module writes; another value is rebuilt, not read
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from get how i in into is it its me of on or our "
    "should so that the their them then there these this to use used uses using via was we what "
    "when where which while who why will with you your".split()
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
# Sized number types as Rust, Go, C and Zig spell them (u8, i64, f32, uint16, int32_t, float64).
_SIZED_NUMBER = re.compile(r"(u|i|f|uint|int|float)(8|16|32|64|128)(?:_t)?")
_NUMBER_KINDS = {"u": ["unsigned", "integer"], "uint": ["unsigned", "integer"], "i": ["signed", "integer"],
                 "int": ["signed", "integer"], "f": ["float"], "float": ["float"]}


def code_terms(text: str) -> list[str]:
    """Identifiers as whole words plus their camelCase/snake_case parts, lowercased, each followed by the
    words its abbreviations stand for."""
    terms = []
    for identifier in _IDENTIFIER.findall(text):
        named, meant = _identifier_terms(identifier)
        terms.extend(named)
        terms.extend(meant)
    return terms


@lru_cache(maxsize=1 << 16)  # a repository repeats its identifiers many times over
def _identifier_terms(identifier: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the identifier whole and its parts, the words that the abbreviations among them stand for)."""
    pieces = identifier.split("_")
    parts = [part for piece in pieces for part in _CAMEL_PART.findall(piece)]
    named = [identifier.lower()]
    if len(parts) > 1:
        named.extend(part.lower() for part in parts if len(part) > 1)
    alone = len(parts) == 1
    if alone and named[0] in _STOPWORDS:
        return tuple(named), ()  # prose: "be" in a comment is not big-endian
    tokens = sorted({piece.lower() for piece in pieces} | {part.lower() for part in parts})
    return tuple(named), tuple(word for token in tokens for word in expansion(token, alone))


def expansion(token: str, alone: bool = False) -> list[str]:
    """The words an abbreviation stands for (cfg: configuration config; u64: unsigned integer 64), or [].
    `alone`: the token is a whole identifier, where a keyword (def, fn, len) is syntax, not a word."""
    words, keyword = _abbreviations().get(token, ((), False))
    if words:
        return [] if alone and keyword else list(words)
    sized = _SIZED_NUMBER.fullmatch(token)
    return _NUMBER_KINDS[sized.group(1)] + [sized.group(2)] if sized else []


@cache
def _abbreviations() -> dict[str, tuple[tuple[str, ...], bool]]:
    """abbreviation -> (its words, whether it is a keyword), from abbreviations.tsv."""
    table = {}
    for line in (Path(__file__).parent / "abbreviations.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            abbreviation, words, *flags = line.split("\t")
            table[abbreviation] = (tuple(words.split()), "bare" in flags)
    return table


def text_terms(text: str) -> str:
    """A part's stemmed code terms, space-separated: what SQLite keeps per chunk."""
    return " ".join(_stemmer().stemWords(code_terms(text)))


def unit_document(symbol: str, path: str, part_terms: Iterable[str]) -> list[str]:
    """What a unit is indexed under: its name's terms (weighted), its path's, and those of its parts."""
    stem = _stemmer().stemWords
    # The name's own terms are repeated, the words its abbreviations stand for are not: they are further
    # evidence, and repeating them would only lengthen the document.
    named, meant = [], []
    for identifier in _IDENTIFIER.findall(symbol):
        terms, words = _identifier_terms(identifier)
        named += terms
        meant += words
    document = stem(named) * SYMBOL_WEIGHT + stem(meant) + stem(code_terms(path))
    for terms in part_terms:
        document.extend(terms.split())
    return document


def query_terms(query: str) -> list[str]:
    """The query's stemmed code terms, without question words, each once."""
    terms = []
    for term in _stemmer().stemWords([term for term in code_terms(query) if term not in _STOPWORDS]):
        if term and term not in terms:  # Porter stems "s" (from "what's") to nothing
            terms.append(term)
    return terms[:MAX_QUERY_TERMS]


@cache
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("porter")


class LexicalIndex:
    """BM25 scores of one generation's units; each unit is known by the id of its first chunk."""

    def __init__(self, retriever, unit_ids: np.ndarray, chunks: int):
        self.retriever = retriever  # None when there are no units
        self.unit_ids = unit_ids
        self.chunks = chunks  # how many chunks the units hold: a stale folder is told apart by it

    def __len__(self) -> int:
        return len(self.unit_ids)

    @classmethod
    def from_parts(cls, parts: Iterable[tuple[object, str]]) -> "LexicalIndex":
        """One BM25 document per unit, from (chunk, its terms) in unit order (the parts of a split
        function adjacent: metadata.unit_parts); each unit is known by its first chunk's id."""
        units = units_of(parts, chunk_of=lambda part: part[0])
        documents = ((unit[0][0].id, unit_document(unit[0][0].symbol, unit[0][0].path,
                                                   [terms for _, terms in unit])) for unit in units)
        return cls.build(documents, chunks=sum(len(unit) for unit in units))

    @classmethod
    def build(cls, units: Iterable[tuple[int, list[str]]], chunks: int) -> "LexicalIndex":
        """From (first chunk id, unit_document) pairs."""
        import numpy as np

        ids, documents = [], []
        for unit_id, document in units:
            ids.append(unit_id)
            documents.append(document)
        unit_ids = np.asarray(ids, dtype=np.int64)
        if not documents:
            return cls(None, unit_ids, chunks)
        bm25s = _bm25s()
        retriever = bm25s.BM25(k1=1.2, b=0.75)  # Lucene's variant: the idf of a common term stays positive
        retriever.index(documents, show_progress=False)
        return cls(retriever, unit_ids, chunks)

    def search(self, terms: list[str], limit: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(first chunk id, score) of the best `limit` units that contain a term; `allowed` (chunk ids) filters
        first (a unit's parts share path and language, so its first chunk stands for all of them)."""
        import numpy as np

        if self.retriever is None or not terms:
            return []
        term_ids = self.retriever.get_tokens_ids(terms)
        if not term_ids:
            return []
        scores = self.retriever.get_scores_from_ids(term_ids)
        if allowed is not None:
            scores = np.where(np.isin(self.unit_ids, allowed), scores, 0)
        matching = np.flatnonzero(scores > 0)
        if len(matching) > limit:
            matching = matching[np.argpartition(-scores[matching], limit - 1)[:limit]]
        ranked = matching[np.argsort(-scores[matching], kind="stable")]
        return [(int(self.unit_ids[i]), float(scores[i])) for i in ranked]

    def frequencies(self, terms: list[str]) -> dict[str, int]:
        """Per term this index knows, in how many units it occurs (BM25's document frequency)."""
        if self.retriever is None:
            return {}
        vocabulary, starts = self.retriever.vocab_dict, self.retriever.scores["indptr"]
        return {term: int(starts[vocabulary[term] + 1] - starts[vocabulary[term]]) for term in terms
                if term in vocabulary}

    def term_scores(self, terms: list[str], unit_ids: list[int]) -> list[list[float]]:
        """The score of each unit (by its first chunk's id) split by term: one row per unit, one column per term."""
        import numpy as np

        rows = np.zeros((len(unit_ids), len(terms)), dtype=np.float64)
        if self.retriever is None or not unit_ids:
            return rows.tolist()
        order = np.argsort(self.unit_ids, kind="stable")
        positions = order[np.searchsorted(self.unit_ids, np.asarray(unit_ids), sorter=order)]
        scores, vocabulary = self.retriever.scores, self.retriever.vocab_dict
        for column, term in enumerate(terms):
            if term not in vocabulary:
                continue
            start, end = scores["indptr"][vocabulary[term]], scores["indptr"][vocabulary[term] + 1]
            by_document = dict(zip(scores["indices"][start:end].tolist(), scores["data"][start:end].tolist()))
            rows[:, column] = [by_document.get(int(position), 0.0) for position in positions]
        return rows.tolist()

    # -- files: one folder per generation, written whole under a temporary name, then renamed ---------

    def save(self, folder: Path) -> None:
        import numpy as np

        def write(temporary: Path) -> None:
            temporary.mkdir(0o700)
            if self.retriever is not None:
                self.retriever.save(str(temporary))
            np.save(temporary / "unit_ids.npy", self.unit_ids)
            (temporary / "format.json").write_text(json.dumps({"format": _FORMAT, "documents": len(self),
                                                               "chunks": self.chunks}))
            for path in temporary.iterdir():  # written by bm25s and numpy, under the umask
                os.chmod(path, 0o600, follow_symlinks=False)

        replace_atomically(folder, write)

    @classmethod
    def load(cls, folder: Path) -> "LexicalIndex | None":
        """The saved index, or None when it is missing, damaged or of another format."""
        import numpy as np

        try:
            header = json.loads((folder / "format.json").read_text())
            if header.get("format") != _FORMAT:
                return None
            unit_ids = np.load(folder / "unit_ids.npy", allow_pickle=False)
            retriever = _bm25s().BM25.load(str(folder), mmap=False) if len(unit_ids) else None
            chunks = int(header["chunks"])
        except (OSError, ValueError, KeyError, TypeError, EOFError):
            return None
        if header.get("documents") != len(unit_ids) or (retriever is not None and
                                                        retriever.scores["num_docs"] != len(unit_ids)):
            return None
        return cls(retriever, unit_ids, chunks)


def _bm25s():
    import logging

    import bm25s

    logging.getLogger("bm25s").setLevel(logging.ERROR)
    return bm25s
