"""The one printer of answers, as ripgrep's printer is: rich text on a terminal, JSON lines, vimgrep lines
and file lists for programs, for a repository's answer and an organisation's alike. A hit of an
organisation's answer names its repository (Hit.repository): its heading says which, its code is read
under that repository's root (Answer.roots), and vimgrep lines and file lists give its full path."""

from __future__ import annotations

import json
from pathlib import Path

from codesearch.errors import CodesearchError
from codesearch.query.api import Answer, Hit, hit_json

FORMATS = ("text", "json", "vimgrep")
_LEXERS = {"bash": "bash", "csharp": "csharp", "cpp": "cpp", "tsx": "tsx", "text": "text"}


def print_answer(queries, answer: Answer, output_format: str, files_only: bool = False, context: int = 0) -> None:
    """Each query's hits, in the order asked, as the format says, on stdout."""
    console = None
    for query_text, hits in zip(queries, answer.hits):
        if output_format == "json":
            print(query_json_line(query_text, hits, answer), flush=True)
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


def query_json_line(query: str, hits: list[Hit], answer: Answer) -> str:
    """One query's answer as a JSON line, with how the index stood: its generation, how many changed files
    the answer does not reflect (0 when it is current) and the share of its chunks with a vector."""
    return json.dumps({"query": query, "results": [hit_json(hit) for hit in hits], "generation": answer.generation,
                       "stale_files": answer.freshness.stale_files, "embedded": round(answer.embedded, 4)},
                      ensure_ascii=False)


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
        heading.append(f"  {chunk.kind}, {chunk.language}, score {hit.score:.4f}", style="dim")
        console.print(heading)
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
