"""The one printer of answers, as ripgrep's printer is: rich text on a terminal, JSON lines, vimgrep lines
and file lists for programs, for a repository's answer and an organisation's alike. A hit of an
organisation's answer names its repository (Hit.repository): its heading says which, its code is read
under that repository's root (Answer.roots), and vimgrep lines and file lists give its full path."""

from __future__ import annotations

import json
from pathlib import Path

from codesearch.errors import CodesearchError
from codesearch.query.api import Answer, Hit, hit_json, page

FORMATS = ("text", "json", "vimgrep")
_LEXERS = {"bash": "bash", "csharp": "csharp", "cpp": "cpp", "tsx": "tsx", "text": "text"}


def print_answer(queries, answer: Answer, output_format: str, files_only: bool = False, context: int = 0,
                 offset: int = 0, max_tokens: int | None = None) -> None:
    """Each query's hits from `offset`, in the order asked, as the format says, on stdout; in JSON, as many as
    fit `max_tokens` (query.api.page)."""
    console = None
    for query_text, all_hits in zip(queries, answer.hits):
        hits = all_hits[offset:]
        if output_format == "json":
            print(query_json_line(query_text, all_hits, answer, offset, max_tokens), flush=True)
        elif files_only:
            print("\n".join(file_lines(hits, answer)))
        elif output_format == "vimgrep":
            print("\n".join(vimgrep_lines(hits, answer)))
        else:
            if console is None:
                from codesearch.cli.terminal import stdout_console

                console = stdout_console()
            if len(answer.hits) > 1:
                console.rule(query_text)
            print_hits(console, hits, answer, context)


def query_json_line(query: str, hits: list[Hit], answer: Answer, offset: int = 0,
                    max_tokens: int | None = None) -> str:
    """One query's answer as a JSON line, with how the index stood: its generation, how many changed files
    the answer does not reflect (0 when it is current) and the share of its chunks with a vector; paged from
    `offset` to `max_tokens` when asked (`next_offset`: where the rest start, null at the end)."""
    results = [hit_json(hit) for hit in hits]
    paged = page(results, offset, max_tokens) if max_tokens else {"results": results[offset:]}
    found = {"query": query, "results": paged["results"]}
    if max_tokens:
        found["next_offset"] = paged["next_offset"]
    return json.dumps({**found, "generation": answer.generation, "stale_files": answer.freshness.stale_files,
                       "embedded": round(answer.embedded, 4)}, ensure_ascii=False)


def shown_path(hit: Hit, answer: Answer) -> str:
    """The hit's path in its repository; in an organisation's answer, the full path under that repository's root."""
    if hit.repository is None:
        return hit.chunk.path
    return str(answer.roots[hit.repository] / hit.chunk.path)


def vimgrep_lines(hits: list[Hit], answer: Answer) -> list[str]:
    return [f"{shown_path(hit, answer)}:{hit.chunk.start_line}:1: {hit.chunk.symbol}" for hit in hits]


def file_lines(hits: list[Hit], answer: Answer) -> list[str]:
    return list(dict.fromkeys(shown_path(hit, answer) for hit in hits))


def print_hits(console, hits: list[Hit], answer: Answer, context: int = 0, max_lines: int = 30) -> None:
    from rich.syntax import Syntax
    from rich.text import Text

    for rank, hit in enumerate(hits, 1):
        chunk = hit.chunk
        heading = Text()
        heading.append(f"{rank:>2}. ", style="dim")
        if hit.repository is not None:
            heading.append(f"{hit.repository}  ", style="bold green")
        heading.append(f"{chunk.path}:{chunk.start_line}-{chunk.end_line}", style="bold magenta")
        heading.append(f"  {chunk.symbol}", style="bold cyan")
        what = chunk.kind if chunk.kind == chunk.language else f"{chunk.kind}, {chunk.language}"  # a picture's are one
        heading.append(f"  {what}, score {hit.score:.4f}", style="dim")
        console.print(heading)
        if chunk.kind in ("image", "page"):  # a picture: where it is, and a few of a page's words
            words = " ".join(chunk.text.split())
            console.print(Text(f"    {chunk.context + ': ' if chunk.context else ''}{words[:200]}", style="dim"))
            console.print()
            continue
        root = answer.repository if hit.repository is None else answer.roots[hit.repository]
        first_line, code = _shown_code(chunk, root, context)
        lines = code.split("\n")
        # A type's chunk ends with its members' signatures, lines from further down: shown without numbers.
        members = lines[chunk.end_line - first_line + 1 :] if not context else []
        lines = lines[: len(lines) - len(members)]
        shown = "\n".join(lines[:max_lines])
        console.print(Syntax(shown, _LEXERS.get(chunk.language, chunk.language), line_numbers=True,
                             start_line=first_line, theme="ansi_dark", word_wrap=False,
                             highlight_lines=set(range(chunk.start_line, chunk.end_line + 1)) if context else None))
        if len(lines) > max_lines:
            console.print(Text(f"    … {len(lines) - max_lines} more lines", style="dim"))
        if members:
            console.print(Text("    members:\n" + "\n".join(members[:max_lines]), style="dim"))
        console.print()


def _shown_code(chunk, root: Path, context: int) -> tuple[int, str]:
    """The chunk's lines, widened by `context` lines from the file on disk when they still match.

    The file is read only when its real path lies inside the repository: the index names it, and
    a path leading elsewhere (a `..`, a link) means the index is damaged or not this repository's.
    """
    from codesearch.source.discover import file_name
    from codesearch.trust import read_regular_file, resolve_inside

    if context <= 0:
        return chunk.start_line, chunk.text
    real_path = resolve_inside(root, file_name(chunk.path))
    if real_path is None:
        raise CodesearchError(f"the index of {root} is damaged or out of date: {chunk.path!r} leads outside the "
                              f"repository; run `codesearch index --rebuild`")
    try:
        lines = read_regular_file(real_path).decode("utf-8", errors="replace").split("\n")
    except OSError:
        return chunk.start_line, chunk.text
    start = max(1, chunk.start_line - context)
    end = min(len(lines), chunk.end_line + context)
    return start, "\n".join(lines[start - 1 : end])


# -- code navigation (query/navigate.py) ---------------------------------------------------------------------


def print_definitions(chunks, output_format: str) -> None:
    from codesearch.query.navigate import definition_json

    for chunk in chunks:
        if output_format == "json":
            print(json.dumps(definition_json(chunk), ensure_ascii=False))
        elif output_format == "vimgrep":
            print(f"{chunk.path}:{chunk.start_line}:1: {chunk.symbol}")
        else:
            print(f"{chunk.path}:{chunk.start_line}-{chunk.end_line}  {chunk.symbol}  {chunk.kind}, {chunk.language}")


def print_sites(sites, output_format: str) -> None:
    from codesearch.query.navigate import site_json

    for site in sites:
        if output_format == "json":
            print(json.dumps(site_json(site), ensure_ascii=False))
        elif output_format == "vimgrep":
            print(f"{site.chunk.path}:{site.line}:1: {site.kind} {site.name} in {site.chunk.symbol}")
        else:
            print(f"{site.chunk.path}:{site.line}  {site.kind} {site.name}  in {site.chunk.symbol}  [{site.resolved}]")


def print_trees(trees, output_format: str) -> None:
    """Callers or callees: one tree per definition, indented two spaces a level; JSON: one tree per line."""
    from codesearch.query.navigate import node_json

    for tree in trees:
        if output_format == "json":
            print(json.dumps(node_json(tree), ensure_ascii=False))
            continue
        stack = [(tree, 0)]
        while stack:
            node, depth = stack.pop()
            chunk, site = node.chunk, node.site
            where = f"{chunk.path}:{chunk.start_line}" if chunk.path else "(not defined here)"
            via = f"  via {site.chunk.path}:{site.line} [{site.resolved}]" if site is not None else ""
            print(f"{'  ' * depth}{chunk.symbol}  {where}{via}")
            stack.extend((child, depth + 1) for child in reversed(node.children))


def print_impact(reached, output_format: str) -> None:
    """Each definition a change reaches, with its distance in calls and the call that reaches it."""
    from codesearch.query.navigate import impact_json

    for chunk, distance, site in reached:
        if output_format == "json":
            print(json.dumps(impact_json(chunk, distance, site), ensure_ascii=False))
        else:
            via = f"  via {site.chunk.path}:{site.line} [{site.resolved}]" if site is not None else ""
            print(f"{distance}  {chunk.path}:{chunk.start_line}-{chunk.end_line}  {chunk.symbol}{via}")


def print_map(entries, output_format: str) -> None:
    """The repository map: per file, its chosen definitions' declaration lines with their line numbers."""
    if output_format == "json":
        for entry in entries:
            print(json.dumps({"path": entry.path, "start_line": entry.start_line, "symbol": entry.symbol,
                              "kind": entry.kind, "signature": entry.signature, "rank": round(entry.rank, 6)},
                             ensure_ascii=False))
        return
    path = None
    for entry in entries:
        if entry.path != path:
            path = entry.path
            print(f"{path}:")
        print(f"{entry.start_line:>6}│ {entry.signature}")
