"""Show search results: rich text on a terminal, JSON lines or vimgrep lines for programs."""

from __future__ import annotations

import json
from pathlib import Path

from codesearch.errors import CodesearchError
from codesearch.query.fuse import Hit

_LEXERS = {"bash": "bash", "csharp": "csharp", "cpp": "cpp", "tsx": "tsx", "text": "text"}


def hit_json(hit: Hit) -> dict:
    chunk = hit.chunk
    return {"path": chunk.path, "start_line": chunk.start_line, "end_line": chunk.end_line, "symbol": chunk.symbol,
            "kind": chunk.kind, "language": chunk.language, "score": round(hit.score, 6)}


def query_json_line(query: str, hits: list[Hit], with_code: bool = False) -> str:
    results = []
    for hit in hits:
        result = hit_json(hit)
        if with_code:
            result["code"] = hit.chunk.text
        results.append(result)
    return json.dumps({"query": query, "results": results}, ensure_ascii=False)


def vimgrep_lines(hits: list[Hit]) -> list[str]:
    return [f"{hit.chunk.path}:{hit.chunk.start_line}:1: {hit.chunk.symbol}" for hit in hits]


def file_lines(hits: list[Hit]) -> list[str]:
    seen = []
    for hit in hits:
        if hit.chunk.path not in seen:
            seen.append(hit.chunk.path)
    return seen


def print_hits(console, hits: list[Hit], root: Path, context: int = 0, max_lines: int = 30,
               repositories: list[tuple[str, Path]] | None = None) -> None:
    """`repositories`: per hit, the name and root of the repository it is from (an organisation's answer)."""
    from rich.syntax import Syntax
    from rich.text import Text

    for rank, hit in enumerate(hits, 1):
        chunk = hit.chunk
        heading = Text()
        heading.append(f"{rank:>2}. ", style="dim")
        if repositories is not None:
            name, root = repositories[rank - 1]
            heading.append(f"{name}  ", style="bold green")
        heading.append(f"{chunk.path}:{chunk.start_line}-{chunk.end_line}", style="bold magenta")
        heading.append(f"  {chunk.symbol}", style="bold cyan")
        heading.append(f"  {chunk.kind}, {chunk.language}, score {hit.score:.4f}", style="dim")
        console.print(heading)
        first_line, code = _shown_code(chunk, root, context)
        lines = code.split("\n")
        shown = "\n".join(lines[:max_lines])
        console.print(Syntax(shown, _LEXERS.get(chunk.language, chunk.language), line_numbers=True,
                             start_line=first_line, theme="ansi_dark", word_wrap=False,
                             highlight_lines=set(range(chunk.start_line, chunk.end_line + 1)) if context else None))
        if len(lines) > max_lines:
            console.print(Text(f"    … {len(lines) - max_lines} more lines", style="dim"))
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
