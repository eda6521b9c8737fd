"""`codesearch defs | refs | callers | callees | impact | map`: code navigation over the index's code graph
(query/navigate.py, query/repomap.py), for people and agents. Each brings the index up to date with the working tree first, as
a query does, and exits 0 when it found something, 1 when not, 2 on an error. --offset and --max-tokens page an
answer as `codesearch query` and the MCP tools do (query.api.page), so that an agent's context holds a part."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, List, Optional

import typer

from codesearch.cli.terminal import EXIT_FOUND, EXIT_NOT_FOUND, stderr_console
from codesearch.errors import BadRequest, CodesearchError

NameArgument = typer.Argument(..., help="A name, bare (parse_config) or qualified (Config.parse, a::b::f).")
RepoOption = typer.Option(Path("."), "--repo", help="The repository to search.")
LangOption = typer.Option([], "--lang", help="Only these languages (repeatable).")
PathOption = typer.Option([], "--path", help="Only paths matching GLOB; !GLOB excludes (repeatable).")
FormatOption = typer.Option("text", "--format", help="text, json or vimgrep.")
JsonOption = typer.Option(False, "--json", help="One JSON object per line.")
DepthOption = typer.Option(1, "--depth", help="Levels of the tree (1: direct only).")
OffsetOption = typer.Option(0, "--offset", help="Skip the first N results (a next page).")
MaxTokensOption = typer.Option(None, "--max-tokens", help="With --json: one object {results, total, next_offset}, "
                               "whole results from --offset, as many as fit about N tokens.")
AllOption = typer.Option(False, "--all", help="Also calls that could mean any of several definitions "
                         "(`x.get()` with `get` a method of many classes), left out otherwise.")
MAX_DEPTH = 10
REFERENCE_KINDS = ("call", "type", "inherit", "import")


def defs(name: str = NameArgument, repo: Path = RepoOption, lang: List[str] = LangOption,
         path_globs: List[str] = PathOption, as_json: bool = JsonOption, output_format: str = FormatOption,
         offset: int = OffsetOption, max_tokens: Optional[int] = MaxTokensOption):
    """Where a name is defined: path, lines, symbol, kind."""
    _answer(repo, lang, path_globs, _format(as_json, output_format, offset, max_tokens),
            lambda graph: graph.definitions(name), "print_definitions", offset, max_tokens)


def refs(name: str = NameArgument, kind: List[str] = typer.Option([], "--kind", help="Only call, type, inherit "
                                                                                    "or import (repeatable)."),
         repo: Path = RepoOption, lang: List[str] = LangOption, path_globs: List[str] = PathOption,
         as_json: bool = JsonOption, output_format: str = FormatOption, offset: int = OffsetOption,
         max_tokens: Optional[int] = MaxTokensOption):
    """Every place that refers to a name, with the definition it sits in and how sure its resolution is."""
    unknown = [given for given in kind if given not in REFERENCE_KINDS]
    if unknown:
        raise CodesearchError(f"unknown --kind {unknown[0]!r:.40}; use {', '.join(REFERENCE_KINDS)}")
    _answer(repo, lang, path_globs, _format(as_json, output_format, offset, max_tokens),
            lambda graph: graph.references(name, tuple(kind)), "print_sites", offset, max_tokens)


def callers(name: str = NameArgument, depth: int = DepthOption, everything: bool = AllOption,
            repo: Path = RepoOption, lang: List[str] = LangOption, path_globs: List[str] = PathOption,
            as_json: bool = JsonOption, offset: int = OffsetOption, max_tokens: Optional[int] = MaxTokensOption):
    """Who calls a name, as a tree per definition of it (--depth levels up)."""
    _answer(repo, lang, path_globs, _format(as_json, "text", offset, max_tokens),
            lambda graph: graph.callers(name, _checked(depth), everything), "print_trees", offset, max_tokens)


def callees(name: str = NameArgument, depth: int = DepthOption, everything: bool = AllOption,
            repo: Path = RepoOption, lang: List[str] = LangOption, path_globs: List[str] = PathOption,
            as_json: bool = JsonOption, offset: int = OffsetOption, max_tokens: Optional[int] = MaxTokensOption):
    """What a name's code calls, as a tree per definition of it (--depth levels down; the candidates of an
    ambiguous call are leaves, unless --all)."""
    _answer(repo, lang, path_globs, _format(as_json, "text", offset, max_tokens),
            lambda graph: graph.callees(name, _checked(depth), everything), "print_trees", offset, max_tokens)


def impact(place: str = typer.Argument(..., help="PATH or PATH:LINE, repository-relative."),
           depth: int = typer.Option(5, "--depth", help="Calls away at most."), everything: bool = AllOption,
           repo: Path = RepoOption, lang: List[str] = LangOption, path_globs: List[str] = PathOption,
           as_json: bool = JsonOption, offset: int = OffsetOption, max_tokens: Optional[int] = MaxTokensOption):
    """What a change there can reach: the definitions at that place, then everything that calls them,
    transitively, nearest first."""
    path, _, line = place.rpartition(":") if place.rpartition(":")[2].isdigit() else (place, "", "")
    _answer(repo, lang, path_globs, _format(as_json, "text", offset, max_tokens),
            lambda graph: graph.impact(path.removeprefix("./"), int(line) if line else None, _checked(depth),
                                       everything), "print_impact", offset, max_tokens)


def map_command(max_tokens: int = typer.Option(1024, "--max-tokens", help="The map's size, in tokens."),
                focus: List[str] = typer.Option([], "--focus", help="Rank around these files or folders "
                                                                      "(repeatable)."),
                repo: Path = RepoOption, as_json: bool = JsonOption):
    """The repository's most central definitions, as declaration lines grouped by file (PageRank over calls,
    type uses and bases), under a token budget."""
    from codesearch.query.repomap import repository_map

    if max_tokens < 16:
        raise CodesearchError("--max-tokens must be at least 16")
    _answer(repo, [], [], _format(as_json, "text"),
            lambda graph: repository_map(graph.database, max_tokens, tuple(f.removeprefix("./") for f in focus)),
            "print_map")


def _checked(depth: int) -> int:
    if not 1 <= depth <= MAX_DEPTH:
        raise CodesearchError(f"--depth must be between 1 and {MAX_DEPTH}")
    return depth


def _format(as_json: bool, output_format: str, offset: int = 0, max_tokens: int | None = None) -> str:
    """The output format, with the paging options checked before any work."""
    from codesearch.query.api import page

    output_format = "json" if as_json else output_format
    if output_format not in ("text", "json", "vimgrep"):
        raise CodesearchError(f"unknown --format {output_format!r:.40}; use text, json or vimgrep")
    if max_tokens is not None and output_format != "json":
        raise CodesearchError("--max-tokens needs --json (a page of results and where the next one starts)")
    try:
        page([], offset, 100 if max_tokens is None else max_tokens)
    except BadRequest as error:
        raise CodesearchError(error.worded({"offset": "--offset", "max_tokens": "--max-tokens"}[error.field])) from None
    return output_format


def _answer(repo: Path, languages: list[str], path_globs: list[str], output_format: str,
            ask: Callable, printer: str, offset: int = 0, max_tokens: int | None = None) -> None:
    """Asks the code graph, then prints from `offset` on: with `max_tokens`, one JSON page as query.api.page
    makes it (the MCP tools' answer); otherwise the printer's lines."""
    from codesearch.cli import present
    from codesearch.embedding.load import LoadedModels
    from codesearch.indexer.freshness import bring_up_to_date
    from codesearch.query.api import Filters, QueryRequest
    from codesearch.query.engine import QUERY_THREADS, Engine, damage_named
    from codesearch.query.navigate import CodeGraph

    try:  # the languages are checked as a query checks them
        QueryRequest(["-"], languages=tuple(languages)).checked()
    except BadRequest as error:
        raise CodesearchError(error.worded("--lang")) from None
    models = LoadedModels(threads=QUERY_THREADS)
    engine = Engine.open(repo, embedder_for=models)
    try:
        freshness = bring_up_to_date(engine.root, engine.store, embedder_factory=models)
        with damage_named(engine.store):
            found = ask(CodeGraph(engine.store.database, Filters.from_globs(languages, path_globs)))
    finally:
        engine.close()
    shown = found[offset:]
    if max_tokens is not None:
        from codesearch.query.api import page

        print(json.dumps(page([_as_json(printer, item) for item in found], offset, max_tokens), ensure_ascii=False))
    else:
        getattr(present, printer)(shown, output_format)
    if freshness.note():
        stderr_console().print(f"codesearch: {freshness.note()}", soft_wrap=True)
    any_found = any(tree.children for tree in shown) if printer == "print_trees" else bool(shown)
    raise typer.Exit(EXIT_FOUND if any_found else EXIT_NOT_FOUND)


def _as_json(printer: str, item) -> dict:
    """One result as its command's JSON line holds it."""
    from codesearch.query import navigate

    if printer == "print_impact":
        return navigate.impact_json(*item)
    convert = {"print_definitions": navigate.definition_json, "print_sites": navigate.site_json,
               "print_trees": navigate.node_json}[printer]
    return convert(item)


def register(app: typer.Typer) -> None:
    for command in (defs, refs, callers, callees, impact):
        app.command(command.__name__)(command)
    app.command("map")(map_command)
