"""What a file's code refers to: calls, type uses, inheritance and imports, each tied to the chunk it sits in.

The language's query file captures them beside its definitions, in the convention of tree-sitter's tags.scm
files: the referring node as `@reference.<kind>` (call, type, inherit, import) and the name referred to as
`@name` (for `obj.method()`, `method`). They come from the same query run that finds the definitions, so
they cost no second pass over the tree.
"""

from __future__ import annotations

import re
from dataclasses import replace

from codesearch.source.syntax import node_text

REFERENCE_KINDS = ("call", "type", "inherit", "import")
MAX_NAME_CHARS = 200  # a name longer than this is no identifier (a grammar's error recovery)
_PLAIN_NAME = re.compile(r"[$@]?[A-Za-z_][A-Za-z0-9_]*")
THROUGH_EXPRESSION = "."  # the qualifier of a name reached through an expression, not a plain name


def collect_references(matches, source: bytes) -> list[tuple[str, str, int, str]]:
    """(name, kind, 0-based row, qualifier) of each reference the query's matches capture, in source order. The
    qualifier is what a member's name is reached through, when that is a plain name (`json` in `json.load()`,
    `self` in `self.load()`, `Config` in `Config::parse()`); see _qualifier."""
    found = {}
    for _pattern, captures in matches:
        if len(captures) != 2 or "name" not in captures:  # a reference's match holds @reference.<kind> and @name
            continue
        first, second = captures
        capture = second if first == "name" else first
        kind = capture[10:] if capture.startswith("reference.") else ""
        if kind not in REFERENCE_KINDS:
            continue
        for node in captures["name"]:
            start = node.start_point
            if (start.row, start.column, kind) not in found and 0 < node.end_byte - node.start_byte <= MAX_NAME_CHARS:
                name = source[node.start_byte:node.end_byte].decode("utf-8", errors="replace")
                found[start.row, start.column, kind] = (name, kind, start.row, _qualifier(node, source))
    return [found[key] for key in sorted(found)]


def _qualifier(node, source: bytes) -> str:
    """What a member's name is reached through: the plain name just before it in the same expression (`obj`
    of `obj.name`), THROUGH_EXPRESSION when that is an expression (`self.app.name`, `f().name`), else ""."""
    before = node.prev_named_sibling
    if before is None:
        return ""
    text = node_text(before, source).strip() if before.end_byte - before.start_byte <= 80 else ""
    return text if _PLAIN_NAME.fullmatch(text) else THROUGH_EXPRESSION


def attach_references(chunks: list, references: list[tuple[str, str, int, str]]) -> list:
    """Each chunk with the references on its lines (`(name, kind, line, qualifier)`, the line 1-based); a reference
    on lines several chunks cover goes to the narrowest (a method's, not its class's)."""
    if not references or not chunks:
        return chunks
    owner = [-1] * (max(chunk.end_line for chunk in chunks) + 1)
    # Widest first, so that each line ends up owned by the narrowest chunk covering it.
    for number in sorted(range(len(chunks)), key=lambda number: chunks[number].start_line - chunks[number].end_line):
        chunk = chunks[number]
        owner[chunk.start_line:chunk.end_line + 1] = [number] * (chunk.end_line - chunk.start_line + 1)
    held: dict[int, list] = {}
    for name, kind, row, qualifier in references:
        number = owner[row + 1] if row + 1 < len(owner) else -1
        if number >= 0:
            held.setdefault(number, []).append((name, kind, row + 1, qualifier))
    return [replace(chunk, references=tuple(held[number])) if number in held else chunk
            for number, chunk in enumerate(chunks)]
