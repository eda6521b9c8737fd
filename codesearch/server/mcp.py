"""An MCP server over stdio for coding agents (Claude Code, Cursor, ...): a `search` tool over one
repository's index, code navigation (`definitions`, `references`, `callers`, `callees`) and an `index_status`
tool, built with the official `mcp` Python SDK.

The process is long-lived, so it keeps the model and the open index in memory the way
`codesearch serve` does (the same Service, over the same Engine), and picks up refreshes of the index
on disk. Errors reach the agent worded with the tools' own parameter names (`k`, `lang`, `mode`).
Client configuration:
    {"mcpServers": {"codesearch": {"command": "codesearch", "args": ["mcp", "--repo", "/path/to/repo"]}}}
"""

from __future__ import annotations

import sys
from dataclasses import replace
from functools import wraps
from pathlib import Path

from typing_extensions import NotRequired, TypedDict  # pydantic reads typing.TypedDict only from Python 3.12

from codesearch.errors import BadRequest, CodesearchError
from codesearch.query.api import QueryRequest, hit_json, page
from codesearch.server.service import Service

INSTRUCTIONS = (
    "Semantic code search over the git repository {root}. Call `search` with a question in plain "
    "language or an identifier to get the functions, classes and blocks that answer it, ranked, with "
    "path, line range, symbol and code. Filter with `lang` and `path` globs (!GLOB excludes). "
    "`definitions`, `references`, `callers` and `callees` navigate the code by name (where a function or "
    "class is defined, every place that uses it, who calls it, what it calls); `impact` says what a change "
    "to a file or line can reach, and `repository_map` gives a first look at an unknown repository. Every "
    "tool pages its "
    "answer: at most `max_tokens` of results from `offset`; `next_offset` asks for the rest. "
    "`index_status` says which model built the index and how many files changed since it was refreshed."
)
MAX_TOKENS = 20_000  # an answer's default size: Claude Code refuses tool output past 25,000 tokens


# A request field, as the tools' parameters name it.
PARAMETERS = {"queries": "query", "languages": "lang", "include": "path", "exclude": "path", "k": "k", "mode": "mode",
              "per_file": "per_file", "offset": "offset", "max_tokens": "max_tokens", "depth": "depth",
              "kind": "kind"}


class FoundCode(TypedDict):  # the schema the agent sees of query.api.hit_json(hit, code=True)
    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    language: str
    score: float
    code: str  # a picture's: a page's words, an image's nothing
    heading: NotRequired[str]  # a documentation page's
    page: NotRequired[int]  # which page of its file


class SearchAnswer(TypedDict):
    query: str
    repository: str
    results: list[FoundCode]
    generation: int
    stale_files: int  # files changed since the index that these results do not reflect (0: current)
    next_offset: int | None  # where the next page starts; None when these are the last results asked for
    embedded: float  # the share of the index's chunks with a vector (below 1 while a first index embeds)


class IndexStatus(TypedDict):
    repository: str
    model: str | None
    dimension: int | None
    files: int
    chunks: int
    stale_files: int
    generation: int | None
    updated_at: float | None


def _sdk():
    """The server class and the error type whose message reaches the agent, in mcp 2.x or 1.x."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError:
        from mcp.server.fastmcp import FastMCP as MCPServer
        from mcp.server.fastmcp.exceptions import ToolError
    return MCPServer, ToolError


def _user_errors_as(tool_error):
    """A CodesearchError becomes a tool error whose sentence the agent reads (others would be withheld)."""
    def decorate(function):
        @wraps(function)
        def wrapper(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except BadRequest as error:
                raise tool_error(error.worded(PARAMETERS.get(error.field, error.field))) from None
            except CodesearchError as error:
                raise tool_error(str(error)) from None
        return wrapper
    return decorate


class _Repository:
    """The repository the tools search; opened on first use, so a missing index is a tool error, not a crash."""

    def __init__(self, path: Path, service: Service):
        self.path, self.service, self.root = path, service, None

    def opened(self) -> Path:
        if self.root is None:
            self.root = self.service.open(self.path)
        return self.root


def build_server(path: str | Path, service: Service | None = None):
    service = service or Service(watch=True, notice=lambda message: print(f"codesearch: {message}", file=sys.stderr))
    repository = _Repository(Path(path), service)
    try:
        root = repository.opened()
        service.warm_up(root)  # in the background: the agent's handshake does not wait for the model
    except CodesearchError:
        root = Path(path).absolute()
    server_class, tool_error = _sdk()
    server = server_class("codesearch", instructions=INSTRUCTIONS.format(root=root), log_level="WARNING")

    @server.tool()
    @_user_errors_as(tool_error)
    def search(query: str, k: int = 10, lang: list[str] | None = None, path: list[str] | None = None,
               mode: str = "hybrid", per_file: int | None = None, offset: int = 0,
               max_tokens: int = MAX_TOKENS, kind: str = "code", image: str | None = None) -> SearchAnswer:
        """Find the code that answers a question about this repository.

        query: a question in plain language ("where do we retry failed uploads") or an identifier.
        k: how many results (default 10).
        lang: only these languages, e.g. ["python", "go"].
        path: only paths matching these globs, e.g. ["src/**", "*.py"]; "!GLOB" excludes, e.g. ["!tests"].
        mode: "hybrid" (default), "semantic" or "lexical".
        per_file: at most this many results from one file (0: no limit; default: the engine's).
        offset, max_tokens: the page: the results ranked offset+1 to offset+k, as many as fit max_tokens;
        next_offset asks for the rest.
        kind: "code" (default), "image", "page" (documentation pages) or "all": pictures need an index built
        with `codesearch index --images`. image: the path of an image file to search with (pictures that look
        like it; with `query`, pictures like it changed as the words say); query may then be "".
        Returns ranked chunks: path, start_line, end_line, symbol, kind, language, score and code; a page
        also its heading and page number.
        """
        if kind != "code" or image:
            return run_picture_search(repository, query, k, path or [], offset, max_tokens, kind, image)
        return run_search(repository, query, k, lang or [], path or [], mode, per_file, offset, max_tokens)

    @server.tool()
    @_user_errors_as(tool_error)
    def definitions(name: str, lang: list[str] | None = None, path: list[str] | None = None, offset: int = 0,
                    max_tokens: int = MAX_TOKENS) -> dict:
        """Where a name is defined. name: bare (parse_config) or qualified (Config.parse, a::b::f).
        Returns path, lines, symbol, kind and language of each definition."""
        from codesearch.query.navigate import definition_json

        found = _navigate(repository, lambda graph: graph.definitions(name), lang, path)
        return page([definition_json(chunk) for chunk in found], offset, max_tokens)

    @server.tool()
    @_user_errors_as(tool_error)
    def references(name: str, kind: list[str] | None = None, lang: list[str] | None = None,
                   path: list[str] | None = None, offset: int = 0, max_tokens: int = MAX_TOKENS) -> dict:
        """Every place that refers to a name: calls, type uses, inheritance and imports (kind: any of "call",
        "type", "inherit", "import"), each with the definition it sits in and how sure the resolution is
        ("same file", "same class", "imported", "unique", "ambiguous", "not defined here")."""
        from codesearch.query.navigate import site_json

        found = _navigate(repository, lambda graph: graph.references(name, tuple(kind or ())), lang, path)
        return page([site_json(site) for site in found], offset, max_tokens)

    @server.tool()
    @_user_errors_as(tool_error)
    def callers(name: str, depth: int = 1, lang: list[str] | None = None, path: list[str] | None = None,
                offset: int = 0, max_tokens: int = MAX_TOKENS, all: bool = False) -> dict:
        """Who calls a name: a tree per definition of it, `depth` levels up (1 to 10). A call that could mean
        more than two definitions (`x.get()` on an object of unknown class) is left out unless `all`."""
        from codesearch.query.navigate import node_json

        found = _navigate(repository, lambda graph: graph.callers(name, _depth(depth), all), lang, path)
        return page([node_json(tree) for tree in found], offset, max_tokens)

    @server.tool()
    @_user_errors_as(tool_error)
    def callees(name: str, depth: int = 1, lang: list[str] | None = None, path: list[str] | None = None,
                offset: int = 0, max_tokens: int = MAX_TOKENS, all: bool = False) -> dict:
        """What a name's code calls: a tree per definition of it, `depth` levels down (1 to 10); a call of a
        name this repository does not define is a leaf of kind "external", and a call that could mean more
        than two definitions a leaf that is not followed, unless `all`."""
        from codesearch.query.navigate import node_json

        found = _navigate(repository, lambda graph: graph.callees(name, _depth(depth), all), lang, path)
        return page([node_json(tree) for tree in found], offset, max_tokens)

    @server.tool()
    @_user_errors_as(tool_error)
    def impact(path: str, line: int | None = None, depth: int = 5, offset: int = 0,
               max_tokens: int = MAX_TOKENS, all: bool = False) -> dict:
        """What a change at a place can reach: the definitions in file `path` (at `line` when given), then
        every definition that calls them, transitively up to `depth` calls away, nearest first; through calls
        that could mean more than two definitions only when `all`."""
        from codesearch.query.navigate import impact_json

        found = _navigate(repository, lambda graph: graph.impact(path, line, _depth(depth), all), None, None)
        return page([impact_json(chunk, distance, site) for chunk, distance, site in found], offset, max_tokens)

    @server.tool()
    @_user_errors_as(tool_error)
    def repository_map(max_tokens: int = 1024, focus: list[str] | None = None) -> dict:
        """A map of this repository for a first look: its most central definitions (PageRank over calls, type
        uses and base classes) as declaration lines with path and line, within max_tokens; `focus` (files or
        folders) ranks around them."""
        from codesearch.query.repomap import repository_map as build_map

        if not isinstance(max_tokens, int) or max_tokens < 16:
            raise BadRequest("max_tokens", "{name} must be at least 16")
        entries = _navigate(repository, lambda graph: build_map(graph.database, max_tokens, tuple(focus or ())),
                            None, None)
        return {"results": [{"path": entry.path, "start_line": entry.start_line, "symbol": entry.symbol,
                             "kind": entry.kind, "signature": entry.signature} for entry in entries]}

    @server.tool()
    @_user_errors_as(tool_error)
    def index_status() -> IndexStatus:
        """Which repository is indexed, with which model, how many files and chunks, when it was last
        refreshed, and how many files changed since (run `codesearch index` to refresh)."""
        info = service.status(repository.opened(), count_stale=True)
        return {key: info[key] for key in ("repository", "model", "dimension", "files", "chunks", "stale_files",
                                           "generation", "updated_at")}

    return server


def _depth(depth: int) -> int:
    if not isinstance(depth, int) or not 1 <= depth <= 10:
        raise BadRequest("depth", "{name} must be between 1 and 10")
    return depth


def _navigate(repository: _Repository, ask, languages: list[str] | None, globs: list[str] | None):
    from codesearch.query.api import Filters

    QueryRequest(["-"], languages=tuple(languages or ())).checked()  # unknown languages, worded for the agent
    return repository.service.navigate(repository.opened(), ask, Filters.from_globs(languages or (), globs or ()))


def run_search(repository: _Repository, query: str, k: int, languages: list[str], globs: list[str],
               mode: str, per_file: int | None = None, offset: int = 0, max_tokens: int = MAX_TOKENS) -> dict:
    request = QueryRequest.from_options([query], paths=globs, k=k, mode=mode, languages=tuple(languages),
                                        **({} if per_file is None else {"per_file": per_file})).checked()
    page([], offset, max_tokens)  # the paging fields checked before any work
    answer = repository.service.query(repository.opened(), replace(request, k=request.k + offset))
    return _searched(request.queries[0], answer, offset, max_tokens)


def run_picture_search(repository: _Repository, query: str, k: int, globs: list[str], offset: int, max_tokens: int,
                       kind: str, image: str | None) -> dict:
    """A search of the repository's pictures, by the service that keeps the vision models loaded, fused by rank
    with its code when `kind` is all."""
    texts = [query] if query.strip() or not image else [None]
    request = QueryRequest.from_options([text or "image" for text in texts], paths=globs, k=k).checked()
    page([], offset, max_tokens)
    answer = repository.service.pictures(repository.opened(), replace(request, k=request.k + offset), texts,
                                         Path(image).absolute() if image else None, kind)
    return _searched(query, answer, offset, max_tokens)


def _searched(query: str, answer, offset: int, max_tokens: int) -> dict:
    """The search tool's answer: the first question's hits, paged, with how the index stood."""
    found = page([hit_json(hit, code=True) for hit in answer.hits[0]], offset, max_tokens)
    return {"query": query, "repository": str(answer.repository), "results": found["results"],
            "next_offset": found["next_offset"], "generation": answer.generation,
            "stale_files": answer.freshness.stale_files, "embedded": round(answer.embedded, 4)}


def run_stdio(path: str | Path) -> None:
    build_server(path).run()
