"""What a tree-sitter query says about a file: its definitions (units and scopes), how they nest, their
names and symbol paths, and the rows they span with the comments and decorators attached above them.

chunk.py cuts chunks from these; nothing here decides sizes or groups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Nodes that wrap a definition without being one: the wrapper's extra lines belong to it.
WRAPPER_TYPES = frozenset({"decorated_definition", "export_statement", "template_declaration"})
# A declaration that holds one spec wraps it (Go's `type X struct{...}`, its doc comment above `type`); one that
# groups several (`type ( A struct{...}; B struct{...} )`) does not: each spec is cut on its own lines.
SINGLE_WRAPPER_TYPES = frozenset({"type_declaration"})
ATTACHED_PREFIX_TYPES = ("comment", "decorator", "annotation", "attribute", "attribute_item", "marker_annotation")
# Parser<'a>, Foo<T>::bar: type arguments are dropped from names.
TYPE_ARGUMENTS = re.compile(r"\s*<[^<>]*>")


@dataclass
class Definition:
    node: object
    category: str  # "unit" or "scope"
    kind: str
    name: str
    start_byte: int = 0
    start_row: int = 0
    parent: "Definition | None" = None
    children: list = field(default_factory=list)


class PatternRoots:
    """Each query pattern's root capture, the one that says what the pattern finds (`unit.function`,
    `scope.class`, `reference.call`), or "" for a pattern with none. A pattern has one, in every match of
    it, so it is looked up once per pattern, not in each of a file's matches."""

    def __init__(self) -> None:
        self._roots: dict[int, str] = {}

    def __call__(self, pattern: int, captures) -> str:
        root = self._roots.get(pattern)
        if root is None:
            root = self._roots[pattern] = next(
                (name for name in captures if name.startswith(("unit.", "scope.", "reference."))), "")
        return root


def collect_definitions(matches, source: bytes, separator: str) -> list[Definition]:
    seen: dict[int, Definition] = {}
    roots = PatternRoots()
    for pattern, captures in matches:
        definition_capture = roots(pattern, captures)
        if not definition_capture.startswith(("unit.", "scope.")):
            continue
        node = captures[definition_capture][0]
        key = (node.start_byte, node.end_byte)
        if key in seen:
            continue
        name = node_text(captures["name"][0], source) if "name" in captures else "<anonymous>"
        if "qualifier" in captures:
            name = f"{node_text(captures['qualifier'][0], source)}{separator}{name}"
        category, kind = definition_capture.split(".", 1)
        seen[key] = Definition(node, category, kind, clean_name(name), node.start_byte, node.start_point.row)
    return sorted(seen.values(), key=lambda d: (d.node.start_byte, -d.node.end_byte))


def node_text(node, source: bytes) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")


def clean_name(name: str) -> str:
    name = " ".join(name.split())
    if "operator" not in name:  # Parser<'a>, Foo<T, U>::bar: the type arguments only add noise
        while TYPE_ARGUMENTS.search(name):
            name = TYPE_ARGUMENTS.sub("", name)
    return name.strip("'\"`") or "<anonymous>"


def link_parents(definitions: list[Definition]) -> None:
    """Nest definitions by span: sorted by start, each one's parent is the innermost open span."""
    open_spans: list[Definition] = []
    for definition in definitions:
        while open_spans and open_spans[-1].node.end_byte < definition.node.end_byte:
            open_spans.pop()
        while open_spans and open_spans[-1].node.end_byte <= definition.node.start_byte:
            open_spans.pop()
        if open_spans:
            definition.parent = open_spans[-1]
            open_spans[-1].children.append(definition)
        open_spans.append(definition)


def inside_unit(definition: Definition) -> bool:
    parent = definition.parent
    while parent is not None:
        if parent.category == "unit":
            return True
        parent = parent.parent
    return False


def symbol_path(definition: Definition | None, separator: str) -> str:
    names = []
    while definition is not None:
        names.append(definition.name)
        definition = definition.parent
    return separator.join(reversed(names))


def first_row(node) -> int:
    """The node's first row, moved up over wrappers and the comments/decorators attached above it."""
    while node.parent is not None and (node.parent.type in WRAPPER_TYPES or (
            node.parent.type in SINGLE_WRAPPER_TYPES and node.parent.named_child_count == 1)):
        node = node.parent
    start_row = node.start_point.row
    sibling = node.prev_sibling
    # A doc comment may stand one blank line above its definition (common in JavaScript and C).
    while sibling is not None and sibling.type.endswith(ATTACHED_PREFIX_TYPES) and sibling.end_point.row >= start_row - 2:
        start_row = sibling.start_point.row
        sibling = sibling.prev_sibling
    return start_row


def last_row(node) -> int:
    end = node.end_point
    # A node that ends at column 0 stops before that line (it swallowed the newline).
    return end.row - 1 if end.column == 0 and end.row > node.start_point.row else end.row
