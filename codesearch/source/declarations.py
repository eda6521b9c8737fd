"""What the chunk that declares a type lists besides its own lines: its members' signatures.

A class whose methods are chunks of their own would otherwise be declared by its header and fields alone
(or by nothing, when it has no fields), and a question about the class would find one of its methods.
The header chunk (chunk.py's left-over lines that hold the type's first line) ends with the first lines of
each member's declaration, without bodies, comments or annotations, as far as its budget allows.
"""

from __future__ import annotations

import re

from codesearch.source.syntax import last_row

# Scopes that declare a type: their header chunk also lists their members' signatures, so the one chunk
# that declares the type shows what it holds (a question about a class finds the class, not a method).
TYPE_SCOPE_KINDS = frozenset({"class", "interface", "object", "trait", "protocol", "module", "enum", "struct",
                              "type", "extension"})
MAX_SIGNATURE_ROWS = 3  # a member's declaration may wrap (long parameter lists); its body is left out
# A line that only annotates the member below it: @Override, @discardableResult, #[inline], [Obsolete].
ATTRIBUTE_LINE = re.compile(r"\s*(@[\w.]+(\(.*\))?|#\[.*\]|\[[\w.]+(\(.*\))?\])\s*$")


def member_signatures(lines: list[str], scope, start_row: int, end_row: int) -> list[str]:
    """The declaration lines of a type's members, when this run of its left-over lines holds the type's own
    header (its first line of code): what a class summary lists, without bodies, comments or decorators."""
    if scope is None or scope.kind not in TYPE_SCOPE_KINDS or not start_row <= scope.node.start_point.row <= end_row:
        return []
    signatures = []
    for member in scope.children:
        node = member.node
        first, end = node.start_point.row, last_row(node)
        while first < end and ATTRIBUTE_LINE.match(lines[first]):
            first += 1
        body = node.child_by_field_name("body")
        last = first
        if body is not None and body.start_point.row > first:  # the declaration wraps, up to its body
            body_row = body.start_point.row
            last = body_row if lines[body_row][: body.start_point.column].strip() else body_row - 1
        signatures.extend(lines[row] for row in range(first, min(last, first + MAX_SIGNATURE_ROWS - 1) + 1)
                          if row > end_row and lines[row].strip())
    return signatures


def with_signatures(text: str, signatures: list[str], max_lines: int, max_chars: int) -> str:
    """The header chunk's text followed by as many member signatures as its budget leaves room for."""
    rows, size = text.count("\n") + 1, len(text)
    kept = []
    for signature in signatures:
        rows, size = rows + 1, size + len(signature) + 1
        if rows > max_lines or size > max_chars:
            break
        kept.append(signature)
    return "\n".join([text, *kept])
