"""Cut a source file into chunks that follow its structure.

Functions and methods (the language's query file marks them @unit.*) become one chunk
each, with the comments and decorators directly above them. Code outside any unit
(imports, constants, class fields) is gathered into module or class chunks. Units
larger than the budget are split at child-node boundaries (the cAST recipe). Files
without a grammar, or whose grammar finds nothing, become overlapping line windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codesearch.languages import LanguageSpec, load_language, spec_for_path

CHUNKER_VERSION = 1
MAX_CHUNK_CHARS = 2400
MAX_CHUNK_LINES = 80
WINDOW_LINES = 40
WINDOW_OVERLAP = 10
# Nodes that wrap a definition without being one: the wrapper's extra lines belong to it.
WRAPPER_TYPES = frozenset({"decorated_definition", "export_statement", "template_declaration"})
ATTACHED_PREFIX_TYPES = ("comment", "decorator", "annotation", "attribute", "marker_annotation")


@dataclass(frozen=True)
class Chunk:
    path: str
    start_line: int  # 1-based
    end_line: int  # inclusive
    symbol: str
    kind: str
    language: str
    text: str  # the real lines, as shown to the user
    context: str = ""  # enclosing scope, e.g. the class of a method

    @property
    def embedding_text(self) -> str:
        """What the model sees: a short header that makes a method findable by its class and file."""
        header = self.path if not self.context else f"{self.path} :: {self.context}"
        return f"{header}\n{self.text}"


@dataclass
class _Definition:
    node: object
    category: str  # "unit" or "scope"
    kind: str
    name: str
    start_byte: int = 0
    start_row: int = 0
    parent: "_Definition | None" = None
    children: list = field(default_factory=list)


def chunk_file(path: str, source: bytes, language: str | None = None) -> list[Chunk]:
    """Chunks of one file; never raises on any input."""
    text = source.decode("utf-8", errors="replace")
    spec = spec_for_path(path) if language is None else _spec_named(language)
    chunks: list[Chunk] = []
    if spec is not None and load_language(spec) is not None:
        try:
            chunks = _chunk_with_grammar(path, source, text, spec)
        except (RecursionError, ValueError):
            chunks = []
        if chunks:
            return chunks
    return line_windows(path, text, spec.name if spec else "text")


def _spec_named(name: str) -> LanguageSpec | None:
    from codesearch.languages import spec_by_name

    return spec_by_name(name)


def line_windows(path: str, text: str, language: str, first_line: int = 1) -> list[Chunk]:
    lines = text.splitlines()
    chunks = []
    step = WINDOW_LINES - WINDOW_OVERLAP
    for start in range(0, max(len(lines), 1), step):
        window = lines[start : start + WINDOW_LINES]
        if any(line.strip() for line in window):
            chunks.append(
                Chunk(path, first_line + start, first_line + start + len(window) - 1,
                      f"{path.rsplit('/', 1)[-1]}:{first_line + start}", "window", language,
                      "\n".join(window))
            )
        if start + WINDOW_LINES >= len(lines):
            break
    return chunks


def _chunk_with_grammar(path: str, source: bytes, text: str, spec: LanguageSpec) -> list[Chunk]:
    from tree_sitter import Parser, QueryCursor

    language, query = load_language(spec)
    tree = Parser(language).parse(source)
    definitions = _collect_definitions(QueryCursor(query).matches(tree.root_node), source)
    if not definitions:
        return []
    _link_parents(definitions)
    lines = text.split("\n")
    chunks: list[Chunk] = []
    covered = [False] * (len(lines) + 1)
    for definition in definitions:
        if definition.category != "unit" or _inside_unit(definition):
            continue
        start_row = _extended_start_row(definition.node)
        end_row = _end_row(definition.node)
        for row in range(start_row, end_row + 1):
            covered[row] = True
        symbol = _symbol_path(definition, spec.separator)
        kind = "method" if definition.kind == "function" and definition.parent else definition.kind
        context = _symbol_path(definition.parent, spec.separator) if definition.parent else ""
        for part_start, part_end in _split_rows(definition.node, start_row, end_row, lines):
            chunks.append(Chunk(path, part_start + 1, part_end + 1, symbol, kind, spec.name,
                                "\n".join(lines[part_start : part_end + 1]), context))
    chunks.extend(_leftover_chunks(path, lines, covered, definitions, spec))
    chunks.sort(key=lambda chunk: (chunk.start_line, chunk.end_line))
    return chunks


def _collect_definitions(matches, source: bytes) -> list[_Definition]:
    seen: dict[int, _Definition] = {}
    for _pattern, captures in matches:
        definition_capture = next((name for name in captures if name.startswith(("unit.", "scope."))), None)
        if definition_capture is None:
            continue
        node = captures[definition_capture][0]
        key = (node.start_byte, node.end_byte)
        if key in seen:
            continue
        name = _node_text(captures["name"][0], source) if "name" in captures else "<anonymous>"
        if "qualifier" in captures:
            name = f"{_node_text(captures['qualifier'][0], source)}.{name}"
        category, kind = definition_capture.split(".", 1)
        seen[key] = _Definition(node, category, kind, _clean_name(name), node.start_byte, node.start_point.row)
    return sorted(seen.values(), key=lambda d: (d.node.start_byte, -d.node.end_byte))


def _node_text(node, source: bytes) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")


def _clean_name(name: str) -> str:
    name = " ".join(name.split())
    return name.strip("'\"`") or "<anonymous>"


def _link_parents(definitions: list[_Definition]) -> None:
    """Nest definitions by span: sorted by start, each one's parent is the innermost open span."""
    open_spans: list[_Definition] = []
    for definition in definitions:
        while open_spans and open_spans[-1].node.end_byte < definition.node.end_byte:
            open_spans.pop()
        while open_spans and open_spans[-1].node.end_byte <= definition.node.start_byte:
            open_spans.pop()
        if open_spans:
            definition.parent = open_spans[-1]
            open_spans[-1].children.append(definition)
        open_spans.append(definition)


def _inside_unit(definition: _Definition) -> bool:
    parent = definition.parent
    while parent is not None:
        if parent.category == "unit":
            return True
        parent = parent.parent
    return False


def _symbol_path(definition: _Definition | None, separator: str) -> str:
    names = []
    while definition is not None:
        names.append(definition.name.replace(".", separator) if separator != "." else definition.name)
        definition = definition.parent
    return separator.join(reversed(names))


def _extended_start_row(node) -> int:
    """The node's first row, moved up over wrappers and the comments/decorators attached above it."""
    while node.parent is not None and node.parent.type in WRAPPER_TYPES:
        node = node.parent
    start_row = node.start_point.row
    sibling = node.prev_sibling
    # A doc comment may stand one blank line above its definition (common in JavaScript and C).
    while sibling is not None and sibling.type.endswith(ATTACHED_PREFIX_TYPES) and sibling.end_point.row >= start_row - 2:
        start_row = sibling.start_point.row
        sibling = sibling.prev_sibling
    return start_row


def _end_row(node) -> int:
    end = node.end_point
    # A node that ends at column 0 stops before that line (it swallowed the newline).
    return end.row - 1 if end.column == 0 and end.row > node.start_point.row else end.row


def _split_rows(node, start_row: int, end_row: int, lines: list[str]) -> list[tuple[int, int]]:
    """Row spans no larger than the budget, cut between the node's children (recursively)."""
    if _fits(lines, start_row, end_row):
        return [(start_row, end_row)]
    boundaries = sorted({child_row for child_row in _child_start_rows(node) if start_row < child_row <= end_row})
    if not boundaries:
        return _split_evenly(start_row, end_row, lines)
    spans: list[tuple[int, int]] = []
    span_start = start_row
    previous = start_row
    for boundary in boundaries + [end_row + 1]:
        if not _fits(lines, span_start, boundary - 1) and previous > span_start:
            spans.append((span_start, previous - 1))
            span_start = previous
        previous = boundary
    spans.append((span_start, end_row))
    result = []
    for span in spans:
        result.extend([span] if _fits(lines, *span) else _split_evenly(*span, lines))
    return result


def _child_start_rows(node) -> list[int]:
    """Start rows of the statements under a node, descending into the body of a definition."""
    rows = []
    stack = [node]
    depth = 0
    while stack and depth < 3:
        next_level = []
        for current in stack:
            for child in current.named_children:
                rows.append(child.start_point.row)
                if child.end_point.row - child.start_point.row > MAX_CHUNK_LINES:
                    next_level.append(child)
        stack = next_level
        depth += 1
    return rows


def _fits(lines: list[str], start_row: int, end_row: int) -> bool:
    if end_row - start_row + 1 > MAX_CHUNK_LINES:
        return False
    return sum(len(line) + 1 for line in lines[start_row : end_row + 1]) <= MAX_CHUNK_CHARS


def _split_evenly(start_row: int, end_row: int, lines: list[str]) -> list[tuple[int, int]]:
    spans = []
    row = start_row
    while row <= end_row:
        stop = row
        size = 0
        while stop <= end_row and stop - row < MAX_CHUNK_LINES and size + len(lines[stop]) + 1 <= MAX_CHUNK_CHARS:
            size += len(lines[stop]) + 1
            stop += 1
        stop = max(stop, row + 1)
        spans.append((row, stop - 1))
        row = stop
    return spans


def _leftover_chunks(path, lines, covered, definitions, spec) -> list[Chunk]:
    """Module and class chunks from the lines no unit covers (imports, constants, fields)."""
    scopes = [d for d in definitions if d.category == "scope" and not _inside_unit(d)]
    row_scope: list[_Definition | None] = [None] * len(lines)
    for scope in scopes:  # sorted outer first, so inner scopes overwrite
        for row in range(scope.node.start_point.row, min(_end_row(scope.node), len(lines) - 1) + 1):
            row_scope[row] = scope
    chunks = []
    run_start = None
    for row in range(len(lines) + 1):
        in_run = row < len(lines) and not covered[row]
        if in_run and run_start is not None and row_scope[row] is not row_scope[run_start]:
            chunks.extend(_leftover_run(path, lines, run_start, row - 1, row_scope[run_start], spec))
            run_start = row
        elif in_run and run_start is None:
            run_start = row
        elif not in_run and run_start is not None:
            chunks.extend(_leftover_run(path, lines, run_start, row - 1, row_scope[run_start], spec))
            run_start = None
    return chunks


def _leftover_run(path, lines, start_row, end_row, scope, spec) -> list[Chunk]:
    while start_row <= end_row and not lines[start_row].strip():
        start_row += 1
    while end_row >= start_row and not lines[end_row].strip():
        end_row -= 1
    if start_row > end_row:
        return []
    meaningful = sum(1 for line in lines[start_row : end_row + 1] if len(line.strip()) > 2)
    if meaningful == 0:
        return []
    if scope is None:
        symbol, kind, context = path.rsplit("/", 1)[-1], "module", ""
    else:
        symbol, kind = _symbol_path(scope, spec.separator), scope.kind
        context = _symbol_path(scope.parent, spec.separator) if scope.parent else ""
    return [
        Chunk(path, s + 1, e + 1, symbol, kind, spec.name, "\n".join(lines[s : e + 1]), context)
        for s, e in _split_evenly(start_row, end_row, lines)
    ]
