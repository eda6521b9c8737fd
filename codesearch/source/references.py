"""What a file's code refers to: calls, type uses, inheritance and imports, each tied to the chunk it sits in.

The language's query file captures them beside its definitions, in the convention of tree-sitter's tags.scm
files: the referring node as `@reference.<kind>` (call, type, inherit, import) and the name referred to as
`@name` (for `obj.method()`, `method`). They come from the same query run that finds the definitions, so
they cost no second pass over the tree.
"""

from __future__ import annotations

import re
from dataclasses import replace

from codesearch.source.syntax import PatternRoots, node_text

REFERENCE_KINDS = ("call", "type", "inherit", "import")
# Functions whose call imports a module (`const x = require("./y")` in JavaScript): a match with @callee is an
# import only when the callee is one of these, which a query without strings cannot say itself.
IMPORT_CALLS = frozenset({"require"})
MAX_NAME_CHARS = 200  # a name longer than this is no identifier (a grammar's error recovery)
# A plain name, or a chain of them (`os.path`, `self.serializer`): what a member is reached through.
_PLAIN_CHAIN = re.compile(r"[$@]?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_SUPER_CALL = re.compile(r"super\s*\(.*\)", re.DOTALL)  # Python's super() and super(Class, self)
THROUGH_EXPRESSION = "."  # the qualifier of a name reached through an expression, not a plain name
_CONSTRUCTIONS = frozenset({"call", "call_expression", "new_expression"})  # Python's, JavaScript's calls and `new`


def collect_references(matches, source: bytes) -> list[tuple[str, str, int, str]]:
    """(name, kind, 0-based row, qualifier) of each reference the query's matches capture, in source order. The
    qualifier is what a member's name is reached through, when that is a plain name or a chain of them (`json`
    in `json.load()`, `self` in `self.load()`, `Config` in `Config::parse()`; see _qualifier); for an import
    with a @module capture, the module it comes from (`werkzeug.exceptions` of `from werkzeug.exceptions
    import abort`)."""
    found = {}
    roots = PatternRoots()
    for pattern, captures in matches:
        root = roots(pattern, captures)
        kind = root[10:] if root.startswith("reference.") else ""
        # A reference's match holds @reference.<kind> and @name, and an import's may hold @module and @callee.
        module = captures.get("module", ())
        if kind not in REFERENCE_KINDS or "name" not in captures or len(module) > 1:
            continue
        if any(node_text(callee, source) not in IMPORT_CALLS for callee in captures.get("callee", ())):
            continue
        for node in captures["name"]:
            start, end = node.start_byte, node.end_byte
            if (start, kind) not in found and 0 < end - start <= MAX_NAME_CHARS:
                name = source[start:end].decode("utf-8", errors="replace")
                qualifier = _module(module[0], source) if module else _qualifier(node, source)
                found[start, kind] = (name, kind, node.start_point.row, qualifier)
    return [found[key] for key in sorted(found)]


def _module(node, source: bytes) -> str:
    """Where an import's name comes from, as written (`werkzeug.exceptions`, `.helpers`, `./y` unquoted)."""
    text = node_text(node, source).strip() if node.end_byte - node.start_byte <= MAX_NAME_CHARS else ""
    return "".join(text.split()).strip("\"'`")


def _qualifier(node, source: bytes) -> str:
    """What a member's name is reached through, as written just before it in the same expression: a plain name
    or a dotted chain of them (`obj` of `obj.name`, `os.path` of `os.path.join`), "super" for `super().name`,
    THROUGH_EXPRESSION for any other expression (`f().name`, `a[0].name`), else "". The chain is kept whole
    because its first name says whose it is (an imported module's, the object's own) and its last which
    module or class holds the member."""
    before = node.prev_named_sibling
    if before is None:
        return ""
    text = _short_text(before, source)
    if _SUPER_CALL.fullmatch(text):
        return "super"
    if before.type in _CONSTRUCTIONS:  # `Foo(x).name`, `new ns.Foo().name`: through what a call of Foo made
        named = _short_text(before.child_by_field_name("function") or before.child_by_field_name("constructor"),
                            source)
        return f"{named}()" if _PLAIN_CHAIN.fullmatch(named) else THROUGH_EXPRESSION
    return text if _PLAIN_CHAIN.fullmatch(text) else THROUGH_EXPRESSION


def _short_text(node, source: bytes) -> str:
    """A node's text, stripped, when short enough to be a name or a chain of names; else ""."""
    return node_text(node, source).strip() if node is not None and node.end_byte - node.start_byte <= 80 else ""


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
