"""An MCP server over stdio for coding agents (Claude Code, Cursor, ...): a `search` tool over one
repository's index and an `index_status` tool, built with the official `mcp` Python SDK.

The process is long-lived, so it keeps the model and the open index in memory the way
`codesearch serve` does (the same Service, over the same Engine), and picks up refreshes of the index
on disk. Errors reach the agent worded with the tools' own parameter names (`k`, `lang`, `mode`).
Client configuration:
    {"mcpServers": {"codesearch": {"command": "codesearch", "args": ["mcp", "--repo", "/path/to/repo"]}}}
"""

from __future__ import annotations

import sys
from functools import wraps
from pathlib import Path

from typing_extensions import TypedDict  # pydantic reads typing.TypedDict only from Python 3.12

from codesearch.errors import BadRequest, CodesearchError
from codesearch.query.api import QueryRequest, hit_json
from codesearch.server.service import Service

INSTRUCTIONS = (
    "Semantic code search over the git repository {root}. Call `search` with a question in plain "
    "language or an identifier to get the functions, classes and blocks that answer it, ranked, with "
    "path, line range, symbol and code. Filter with `lang` and `path` globs (!GLOB excludes). "
    "`index_status` says which model built the index and how many files changed since it was refreshed."
)


# A request field, as the tools' parameters name it.
PARAMETERS = {"queries": "query", "languages": "lang", "include": "path", "exclude": "path", "k": "k", "mode": "mode",
              "per_file": "per_file"}


class FoundCode(TypedDict):  # the schema the agent sees of query.api.hit_json(hit, code=True)
    path: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    language: str
    score: float
    code: str


class SearchAnswer(TypedDict):
    query: str
    repository: str
    results: list[FoundCode]
    generation: int
    stale_files: int  # files changed since the index that these results do not reflect (0: current)
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
               mode: str = "hybrid", per_file: int | None = None) -> SearchAnswer:
        """Find the code that answers a question about this repository.

        query: a question in plain language ("where do we retry failed uploads") or an identifier.
        k: how many results (default 10).
        lang: only these languages, e.g. ["python", "go"].
        path: only paths matching these globs, e.g. ["src/**", "*.py"]; "!GLOB" excludes, e.g. ["!tests"].
        mode: "hybrid" (default), "semantic" or "lexical".
        per_file: at most this many results from one file (0: no limit; default: the engine's).
        Returns ranked chunks: path, start_line, end_line, symbol, kind, language, score and code.
        """
        return run_search(repository, query, k, lang or [], path or [], mode, per_file)

    @server.tool()
    @_user_errors_as(tool_error)
    def index_status() -> IndexStatus:
        """Which repository is indexed, with which model, how many files and chunks, when it was last
        refreshed, and how many files changed since (run `codesearch index` to refresh)."""
        info = service.status(repository.opened(), count_stale=True)
        return {key: info[key] for key in ("repository", "model", "dimension", "files", "chunks", "stale_files",
                                           "generation", "updated_at")}

    return server


def run_search(repository: _Repository, query: str, k: int, languages: list[str], globs: list[str],
               mode: str, per_file: int | None = None) -> dict:
    request = QueryRequest.from_options([query], paths=globs, k=k, mode=mode, languages=tuple(languages),
                                        **({} if per_file is None else {"per_file": per_file})).checked()
    answer = repository.service.query(repository.opened(), request)
    return {"query": request.queries[0], "repository": str(answer.repository),
            "results": [hit_json(hit, code=True) for hit in answer.hits[0]], "generation": answer.generation,
            "stale_files": answer.freshness.stale_files, "embedded": round(answer.embedded, 4)}


def run_stdio(path: str | Path) -> None:
    build_server(path).run()
