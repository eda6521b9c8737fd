"""How text becomes BM25 terms: code terms, a unit's document and a query's terms.

Terms are identifiers, whole and split at camelCase/snake_case, Porter-stemmed; the terms of a unit's symbol
count SYMBOL_WEIGHT times, so a unit named after the query outranks one that only mentions it.

Code abbreviates what questions spell out (ctx, cfg, idx, u64, le), so a known abbreviation among an
identifier's parts also brings the words it stands for, from a general programming vocabulary
(abbreviations.tsv) and one rule for sized number types. Questions go through the same function, so
"ctx" in a question finds "context" too.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from pathlib import Path
from typing import Iterable

SYMBOL_WEIGHT = 4
MAX_QUERY_TERMS = 64
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
        named, meant = identifier_terms(identifier)
        terms.extend(named)
        terms.extend(meant)
    return terms


@lru_cache(maxsize=1 << 16)  # a repository repeats its identifiers many times over
def identifier_terms(identifier: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
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


def chunk_with_terms(path: str, source: bytes, budget=None) -> list:
    """chunk_file's chunks, each with its lexical terms: what the chunking processes run for the indexer, so
    that the terms, which cost as much as the cutting, are computed there, on every core."""
    from dataclasses import replace

    from codesearch.source.chunk import chunk_file

    return [replace(chunk, terms=text_terms(chunk.text)) for chunk in chunk_file(path, source, budget=budget)]


def unit_document(symbol: str, path: str, part_terms: Iterable[str]) -> list[str]:
    """What a unit is indexed under: its name's terms (weighted), its path's, and those of its parts."""
    stem = _stemmer().stemWords
    # The name's own terms are repeated, the words its abbreviations stand for are not: they are further
    # evidence, and repeating them would only lengthen the document.
    named, meant = [], []
    for identifier in _IDENTIFIER.findall(symbol):
        terms, words = identifier_terms(identifier)
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
