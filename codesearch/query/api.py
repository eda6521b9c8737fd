"""The words every front end and every part of the query path speak: a request (QueryRequest), one question
as the retrievers take it (Query, Filters), what an index's retrievers found (Candidates), an answer (Hit,
Answer), and the one JSON form of a hit (hit_json).

A request is validated in one place (QueryRequest.checked), with typed errors (errors.BadRequest names the
field); the command line, the socket server and the MCP server each word those errors for their own
users. Importing this module costs nothing heavy: a query answered by a running server loads no index,
model or numpy through it.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

from codesearch.errors import BadRequest
from codesearch.index.database import StoredChunk
from codesearch.indexer.freshness import Freshness

if TYPE_CHECKING:
    import numpy as np

MODES = ("hybrid", "semantic", "lexical")
CANDIDATES = 100  # how many candidates each retriever returns, at least
# How many answers one file may give in a top k, unless asked otherwise (0: no limit). A file that fills the
# answer with its functions crowds out the other files a question may be about.
PER_FILE = 0
CHARS_PER_TOKEN = 4  # JSON of code and paths, as the tokenizers of chat models count it, roughly
MAX_QUERY_CHARS = 10_000  # one query; longer text is not a question, and embedding it would stall the server


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


def _glob_match(path: str, glob: str) -> bool:
    if fnmatch.fnmatchcase(path, glob):
        return True
    # A glob without a slash matches a file name or a directory anywhere, as in .gitignore.
    if "/" not in glob:
        parts = path.split("/")
        return any(fnmatch.fnmatchcase(part, glob) for part in parts)
    return path.startswith(glob.rstrip("/") + "/")


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
    per_file: int = PER_FILE  # answers one file may give at most; 0: no limit

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
        if not isinstance(self.per_file, int) or isinstance(self.per_file, bool) or self.per_file < 0:
            raise BadRequest("per_file", "{name} must be a number of results, or 0 for no limit")
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


class UnitLookup(Protocol):
    """Where fusion reads the parts of a split function: an open index's database (IndexDatabase), or the
    runs recorded beside candidates that are fused in another process (UnitRuns)."""

    def unit_runs(self, chunk: StoredChunk) -> list[list[StoredChunk]]:
        """The chunks sharing this chunk's path, symbol and kind, in runs that each make one unit."""


@dataclass
class UnitRuns:
    """Runs recorded where the index was open (IndexDatabase.split_units): per (path, symbol, kind) that
    several chunks share, their runs; any other chunk is whole, its own run."""

    runs: dict[tuple[str, str, str], list[list[StoredChunk]]]

    def unit_runs(self, chunk: StoredChunk) -> list[list[StoredChunk]]:
        return self.runs.get((chunk.path, chunk.symbol, chunk.kind)) or [[chunk]]


@dataclass
class Candidates:
    """What one index's retrievers found for one query, with what fusion reads afterwards; nothing in it
    is the index itself, so candidates from another process (an organisation's shard on Ray) fuse as
    those found here do.

    dense and lexical are (chunk id, raw score), best first, or None when that retriever was not asked; a
    lexical candidate is a unit, known by its first chunk. `units` gives a winner's other parts.
    `term_scores` is each lexical candidate's BM25 score split by query term (the terms of
    `terms.frequencies`, in order): what a merge across indexes reweighs, retrieved only when asked.
    `unembedded`: the lexical candidates that have no vector yet, whom the dense retriever cannot find."""

    pool: int
    dense: list[tuple[int, float]] | None
    lexical: list[tuple[int, float]] | None
    terms: TermStatistics | None
    chunks: dict[int, StoredChunk]
    units: UnitLookup
    term_scores: list[list[float]] | None = None
    unembedded: frozenset = frozenset()  # candidates with no vector yet (a first index still embedding)


@dataclass
class Hit:
    chunk: StoredChunk
    score: float
    sources: dict = field(default_factory=dict)  # "dense"/"lexical" -> rank
    index_number: int = 0  # which of the fused candidate sets it came from
    repository: str | None = None  # in an organisation's answer, the repository it is from


@dataclass
class Answer:
    repository: Path  # the repository, or the organisation's folder
    generation: int
    hits: list[list[Hit]] = field(default_factory=list)  # one list per query, in the order asked
    roots: dict[str, Path] = field(default_factory=dict)  # an organisation's answer: each repository's root
    freshness: Freshness = field(default_factory=Freshness)  # how the index stood against the working tree
    embedded: float = 1.0  # the share of the index's chunks with a vector (below 1 while a first index embeds)

    def notes(self) -> list[str]:
        """What the user should know about how complete this answer is, a line each."""
        notes = [self.freshness.note()] if self.freshness.note() else []
        if self.embedded < 1.0:
            notes.append(f"{self.embedded:.0%} of the index's chunks have a vector so far; the others are found "
                         f"by their words alone (`codesearch index` finishes them if no run is at it)")
        return notes


def hit_json(hit: Hit, code: bool = False, exact: bool = False) -> dict:
    """The one JSON form of a hit, for every front end: where it is, what it is, its score; its repository
    in an organisation's answer; `code` adds its lines, `exact` what rebuilds the same Hit (hit_from_json)."""
    chunk = hit.chunk
    found = {"path": chunk.path, "start_line": chunk.start_line, "end_line": chunk.end_line,
             "symbol": chunk.symbol, "kind": chunk.kind, "language": chunk.language, "score": round(hit.score, 6)}
    if hit.repository is not None:
        found = {"repository": hit.repository, **found}
    if chunk.kind == "page":  # a documentation page's screenshot: its heading, and which page of the file
        found.update(heading=chunk.symbol, page=int(chunk.context.rpartition(" ")[2] or 0))
    if code or exact:
        found["code"] = chunk.text
    if exact:
        found.update(context=chunk.context, id=chunk.id, sources=hit.sources, exact_score=hit.score)
    return found


def hit_from_json(result: dict) -> Hit:
    """The Hit that hit_json(hit, exact=True) describes."""
    chunk = StoredChunk(result["id"], result["path"], result["start_line"], result["end_line"], result["symbol"],
                        result["kind"], result["language"], result["context"], result["code"])
    return Hit(chunk, result["exact_score"], dict(result.get("sources") or {}), repository=result.get("repository"))


def page(results: list[dict], offset: int, max_tokens: int) -> dict:
    """Whole results from `offset`, best first, as many as fit `max_tokens` (at least one), and where the next
    page starts (None when this one ends the list)."""
    if not isinstance(offset, int) or offset < 0:
        raise BadRequest("offset", "{name} must be 0 or more")
    if not isinstance(max_tokens, int) or max_tokens < 100:
        raise BadRequest("max_tokens", "{name} must be at least 100")
    taken, used = [], 0
    for result in results[offset:]:
        cost = len(json.dumps(result, ensure_ascii=False)) // CHARS_PER_TOKEN + 1
        if taken and used + cost > max_tokens:
            break
        taken.append(result)
        used += cost
    following = offset + len(taken)
    return {"results": taken, "total": len(results), "next_offset": following if following < len(results) else None}
