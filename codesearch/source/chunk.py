"""Cut a source file into chunks that follow its structure.

Functions and methods (the language's query file marks them @unit.*) become one chunk
each, with the comments and decorators directly above them. Code outside any unit
(imports, constants, class fields) is gathered into module or class chunks; the one holding a type's
header also lists its members' signatures (declarations.py). Units
larger than the budget are split at child-node boundaries (the cAST recipe); tiny
one-line neighbours share a chunk. Files without a grammar, or whose grammar finds
nothing, become overlapping line windows.

Three things no query can say are handled here: code embedded in another language
(@inject.<language>, e.g. <script> in HTML), Jinja macro files (dbt's .sql), and .h
files that are C++ (languages.spec_for_source).

A file its grammar cannot parse within parse.py's budget of work becomes line windows too; the
grammars' crashes and hangs are contained by chunk_process.py, which runs chunk_file in a child process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator, TypeVar

from codesearch.source.declarations import member_signatures, with_signatures
from codesearch.source.languages import LanguageSpec, load_language, spec_by_name, spec_for_source
from codesearch.source.parse import parse, shown_to_parser
from codesearch.source.references import attach_references, collect_references
from codesearch.source.syntax import Definition, collect_definitions, first_row, inside_unit, last_row, link_parents, symbol_path

CHUNKER_VERSION = 10
MAX_CHUNK_CHARS = 2400
MAX_CHUNK_LINES = 80
# Characters per model token on code, at the dense end: MiniLM's WordPiece reads Rust at 2.7 (C 3.1,
# Python 3.2). Below this, a part may still overflow its window; above it, parts are cut smaller than needed.
CHARS_PER_TOKEN = 2.7
HEADER_TOKENS = 24  # the path and scope line that starts every embedded text
WINDOW_LINES = 40
WINDOW_OVERLAP = 10
# Scopes whose functions stay functions; in any other scope (class, impl, module...) a function is a method.
FREE_FUNCTION_SCOPES = frozenset({"namespace", "function"})
# One-liners (getters, constants, tiny CSS rules) merge with their neighbours up to this size.
TINY_UNIT_LINES = 1
TINY_GROUP_LINES = 15
TINY_GROUP_CHARS = 600
# A line that only opens or closes a block: }, end, a bare tag (</div>, <body>), perhaps with a comment.
BARE_LINE = re.compile(r"^\s*([})\]]+;?|end|</?[\w-]+>|<!DOCTYPE[^>]*>)\s*(//.*|#.*|--.*)?$", re.IGNORECASE)
NOT_NEWLINE = re.compile(rb"[^\n]")
T = TypeVar("T")
# No grammar parses Jinja: dbt-style .sql files are cut at their {% macro %} blocks instead.
JINJA_MACRO_START = re.compile(r"\{%-?\s*(macro|materialization|test)\s+(\w+)")


@dataclass(frozen=True)
class Chunk:
    path: str
    start_line: int  # 1-based
    end_line: int  # inclusive
    symbol: str
    kind: str
    language: str
    text: str  # the real lines, as shown to the user (a type's header chunk adds its members' signatures)
    context: str = ""  # enclosing scope, e.g. the class of a method
    references: tuple = ()  # (name, kind, line, qualifier) of the calls, type uses, bases, imports on its lines
    terms: str = ""  # its lexical terms when computed beside the cutting (index.terms.chunk_with_terms), else ""

    @property
    def embedding_text(self) -> str:
        return embedding_text(self.path, self.context, self.text)


def embedding_text(path: str, context: str, text: str) -> str:
    """What the model sees of a chunk: a short header that makes a method findable by its class and file."""
    header = path if not context else f"{path} :: {context}"
    return f"{header}\n{text}"


# Kinds that declare rather than act: the left-over lines of a scope (imports, fields; a leftover takes
# its scope's kind) and type declarations. They form no unit, so each of their parts answers alone.
DECLARATION_KINDS = frozenset({"module", "class", "interface", "namespace", "impl", "object", "trait", "extension",
                               "protocol", "type", "struct", "union", "enum", "table", "supports", "media"})


def continues_unit(previous, part) -> bool:
    """Whether chunk `part` is the next part of the split unit that chunk `previous` ends. A unit's parts are
    adjacent and share path, symbol and kind; overloads (Swift's `color(fromHex:)` beside `color(fromRGB:)`)
    and same-named functions elsewhere in the file are apart, so they stay separate units."""
    return (part.kind not in DECLARATION_KINDS and part.start_line == previous.end_line + 1
            and (part.path, part.symbol, part.kind) == (previous.path, previous.symbol, previous.kind))


def units_of(parts: Iterable[T], chunk_of: Callable[[T], object] = lambda part: part) -> Iterator[list[T]]:
    """Parts in unit order (by path, symbol, kind and start line) gathered into units, one at a time: each
    run of the adjacent parts of one split unit together, any other chunk alone. `chunk_of` finds the chunk
    in a part."""
    unit: list[T] = []
    for part in parts:
        if unit and not continues_unit(chunk_of(unit[-1]), chunk_of(part)):
            yield unit
            unit = []
        unit.append(part)
    if unit:
        yield unit


@dataclass(frozen=True)
class PartBudget:
    """How large one chunk may be: a unit over it is cut into parts the model reads whole."""

    lines: int = MAX_CHUNK_LINES
    chars: int = MAX_CHUNK_CHARS

    @classmethod
    def for_window(cls, tokens: int) -> "PartBudget":
        """Parts that fit a model window of `tokens` (MiniLM's 256: about 600 characters). A model that
        truncates instead sees only a long function's first lines; that cost MiniLM 0.09 nDCG."""
        chars = max(200, min(MAX_CHUNK_CHARS, int((tokens - HEADER_TOKENS) * CHARS_PER_TOKEN)))
        return cls(lines=max(10, min(MAX_CHUNK_LINES, chars // 16)), chars=chars)


def chunk_file(path: str, source: bytes, language: str | None = None,
               budget: PartBudget | None = None) -> list[Chunk]:
    """Chunks of one file; never raises on any input. Without a budget, parts fit 80 lines or 2,400
    characters (bge-code-v1's window with room to spare). The budget is handed down to every step
    that cuts, code embedded in the file (a <script> body) included."""
    budget = budget or PartBudget()
    text = source.decode("utf-8", errors="replace")
    spec = spec_by_name(language) if language is not None else spec_for_source(path, source)
    chunks: list[Chunk] = []
    if spec is not None:
        try:
            chunks = _structured_chunks(path, source, text, spec, budget)
        except Exception:  # noqa: BLE001 - a file the chunker cannot read structurally still gets windows
            chunks = []
    return chunks or line_windows(path, text, spec.name if spec else "text")


def _structured_chunks(path: str, source: bytes, text: str, spec: LanguageSpec, budget: PartBudget) -> list[Chunk]:
    if spec.template_macros and JINJA_MACRO_START.search(text):
        return _jinja_chunks(path, text, spec, budget)
    if load_language(spec) is None:
        return []
    return _chunk_with_grammar(path, source, text, spec, budget)


def line_windows(path: str, text: str, language: str, first_line: int = 1) -> list[Chunk]:
    # Only "\n" ends a line, as in editors and the syntax tree; str.splitlines also splits at \v, \f, \u2028...
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()
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


@dataclass
class _Unit:
    """A unit's rows before it is cut into chunks; node is None when no syntax tree backs it."""

    start_row: int
    end_row: int
    symbol: str
    kind: str
    context: str
    node: object = None
    name: str = ""
    group: bool = False  # several tiny units merged


def _chunk_with_grammar(path: str, source: bytes, text: str, spec: LanguageSpec, budget: PartBudget) -> list[Chunk]:
    from tree_sitter import QueryCursor

    language, query = load_language(spec)
    tree = parse(language, shown_to_parser(source, spec),
                 with_text=query.string_count > 0)  # a query's strings are its predicates' (html's only)
    if tree is None:
        return []
    matches = QueryCursor(query).matches(tree.root_node)
    definitions = collect_definitions(matches, source, spec.separator)
    lines = text.split("\n")
    injected = _injected_chunks(path, source, matches, budget)
    if not definitions and not injected:
        return []
    link_parents(definitions)
    _open_oversized_units(definitions, lines, budget)
    units = [_unit_of(definition, spec) for definition in definitions
             if definition.category == "unit" and not inside_unit(definition)]
    chunks = _assemble(path, lines, _merge_tiny_neighbours(units, lines), definitions, spec, budget, injected)
    return attach_references(chunks, collect_references(matches, source))


def _assemble(path, lines, units, definitions, spec, budget: PartBudget, injected=()) -> list[Chunk]:
    """Chunks of the units (split when too large), of injected code, and of the lines left over."""
    chunks: list[Chunk] = [chunk for chunk, _host in injected]
    covered = [False] * (len(lines) + 1)
    for _chunk, host in injected:
        _cover(covered, host.start_point.row, last_row(host))
    for unit in units:
        _cover(covered, unit.start_row, unit.end_row)
        for part_start, part_end in _split_rows(unit.node, unit.start_row, unit.end_row, lines, budget):
            chunks.append(Chunk(path, part_start + 1, part_end + 1, unit.symbol, unit.kind, spec.name,
                                "\n".join(lines[part_start : part_end + 1]), unit.context))
    chunks.extend(_leftover_chunks(path, lines, covered, definitions, spec, budget))
    chunks.sort(key=lambda chunk: (chunk.start_line, chunk.end_line))
    return chunks


def _open_oversized_units(definitions: list[Definition], lines: list[str], budget: PartBudget) -> None:
    """A unit too large for one chunk that is mostly (3/4) made of other units becomes their scope.

    Its inner functions then become chunks of their own instead of being cut blindly (cAST:
    split a big node along its own structure), and its remaining lines form chunks under its
    name. A function with a few small helpers inside stays whole and is split at statements.
    """
    for definition in definitions:  # outer first
        if definition.category != "unit":
            continue
        start_row, end_row = first_row(definition.node), last_row(definition.node)
        inner_rows = sum(last_row(child.node) - child.node.start_point.row + 1
                         for child in definition.children if child.category == "unit")
        if inner_rows * 4 >= (end_row - start_row + 1) * 3 and not _fits(lines, start_row, end_row, budget):
            definition.category = "scope"


def _cover(covered: list[bool], start_row: int, end_row: int) -> None:
    for row in range(max(start_row, 0), min(end_row, len(covered) - 1) + 1):
        covered[row] = True


def _unit_of(definition: Definition, spec: LanguageSpec) -> _Unit:
    parent = definition.parent
    is_member = definition.kind == "function" and parent is not None and parent.kind not in FREE_FUNCTION_SCOPES
    return _Unit(first_row(definition.node), last_row(definition.node),
                 symbol_path(definition, spec.separator), "method" if is_member else definition.kind,
                 symbol_path(parent, spec.separator) if parent else "", definition.node, definition.name)


def _merge_tiny_neighbours(units: list[_Unit], lines: list[str]) -> list[_Unit]:
    """Consecutive one-liners of the same scope (getters, properties, tiny rules) share a chunk, keeping their names."""
    merged: list[_Unit] = []
    for unit in units:
        previous = merged[-1] if merged else None
        if previous is not None and _can_join(previous, unit, lines):
            merged[-1] = _Unit(previous.start_row, unit.end_row, _group_symbol(previous, unit),
                               previous.kind if previous.kind == unit.kind else "group", previous.context,
                               group=True)
        else:
            merged.append(unit)
    return merged


def _group_symbol(previous: _Unit, unit: _Unit) -> str:
    """The first member's full path, then the other members' names: "Point.left, right, up"."""
    names = previous.symbol.split(", ")
    if unit.symbol == names[0] or unit.name in names[1:]:  # overloads appear once
        return previous.symbol
    return f"{previous.symbol}, {unit.name}"


def _can_join(previous: _Unit, unit: _Unit, lines: list[str]) -> bool:
    if previous.context != unit.context or unit.start_row <= previous.end_row:
        return False
    if not (_is_tiny(unit) and (previous.group or _is_tiny(previous))):
        return False
    if any(line.strip() for line in lines[previous.end_row + 1 : unit.start_row]):
        return False
    size = sum(len(line) + 1 for line in lines[previous.start_row : unit.end_row + 1])
    return unit.end_row - previous.start_row < TINY_GROUP_LINES and size <= TINY_GROUP_CHARS


def _is_tiny(unit: _Unit) -> bool:
    return unit.end_row - unit.start_row < TINY_UNIT_LINES


def _injected_chunks(path: str, source: bytes, matches, budget: PartBudget) -> list[tuple[Chunk, object]]:
    """Code embedded in another language (a <script> in HTML), chunked in its own language at the host's lines.

    Each chunk comes with the node that holds the code (the <script> element), whose lines it covers.
    """
    chunks = []
    for _pattern, captures in matches:
        for capture, nodes in captures.items():
            if capture.startswith("inject."):
                for node in nodes:
                    host = node.parent or node
                    embedded = chunk_file(path, _blank_outside(source, node), capture.split(".", 1)[1], budget)
                    chunks.extend((chunk, host) for chunk in embedded)
    return chunks


def _blank_outside(source: bytes, node) -> bytes:
    """The source with everything outside the node blanked, so that lines keep their numbers."""
    before = NOT_NEWLINE.sub(b" ", source[: node.start_byte])
    return before + source[node.start_byte : node.end_byte]


def _jinja_chunks(path: str, text: str, spec: LanguageSpec, budget: PartBudget) -> list[Chunk]:
    """Units of a Jinja template (a dbt .sql file): its macro, test and materialization blocks."""
    lines = text.split("\n")
    units = []
    for start in JINJA_MACRO_START.finditer(text):
        end = re.compile(r"\{%-?\s*end" + start.group(1) + r"\b").search(text, start.end())
        end_offset = end.end() if end else len(text)
        start_row = text.count("\n", 0, start.start())
        units.append(_Unit(_jinja_comment_start(lines, start_row), text.count("\n", 0, end_offset),
                           start.group(2), start.group(1), ""))
    return _assemble(path, lines, units, [], spec, budget)


def _jinja_comment_start(lines: list[str], row: int) -> int:
    """Move up over a {# ... #} or -- comment directly above a macro."""
    above = row - 1
    if above >= 0 and lines[above].strip().endswith("#}"):
        while above > 0 and "{#" not in lines[above]:
            above -= 1
        return above
    while above >= 0 and lines[above].strip().startswith("--"):
        row, above = above, above - 1
    return row


def _split_rows(node, start_row: int, end_row: int, lines: list[str], budget: PartBudget) -> list[tuple[int, int]]:
    """Row spans no larger than the budget, cut between the node's children (recursively)."""
    if _fits(lines, start_row, end_row, budget):
        return [(start_row, end_row)]
    child_rows = _child_start_rows(node, budget) if node is not None else []
    boundaries = sorted({child_row for child_row in child_rows if start_row < child_row <= end_row})
    if not boundaries:
        return _split_evenly(start_row, end_row, lines, budget)
    spans: list[tuple[int, int]] = []
    span_start = start_row
    previous = start_row
    for boundary in boundaries + [end_row + 1]:
        if not _fits(lines, span_start, boundary - 1, budget) and previous > span_start:
            spans.append((span_start, previous - 1))
            span_start = previous
        previous = boundary
    spans.append((span_start, end_row))
    result = []
    for span in spans:
        result.extend([span] if _fits(lines, *span, budget) else _split_evenly(*span, lines, budget))
    return result


def _child_start_rows(node, budget: PartBudget) -> list[int]:
    """Start rows of the statements under a node, descending into the body of a definition."""
    rows = []
    stack = [node]
    depth = 0
    while stack and depth < 3:
        next_level = []
        for current in stack:
            for child in current.named_children:
                rows.append(child.start_point.row)
                if child.end_point.row - child.start_point.row > budget.lines:
                    next_level.append(child)
        stack = next_level
        depth += 1
    return rows


def _fits(lines: list[str], start_row: int, end_row: int, budget: PartBudget) -> bool:
    if end_row - start_row + 1 > budget.lines:
        return False
    return sum(len(line) + 1 for line in lines[start_row : end_row + 1]) <= budget.chars


def _split_evenly(start_row: int, end_row: int, lines: list[str], budget: PartBudget) -> list[tuple[int, int]]:
    spans = []
    row = start_row
    while row <= end_row:
        stop = row
        size = 0
        while stop <= end_row and stop - row < budget.lines and size + len(lines[stop]) + 1 <= budget.chars:
            size += len(lines[stop]) + 1
            stop += 1
        stop = max(stop, row + 1)
        spans.append((row, stop - 1))
        row = stop
    return spans


def _leftover_chunks(path, lines, covered, definitions, spec, budget: PartBudget) -> list[Chunk]:
    """Module and class chunks from the lines no unit covers (imports, constants, fields)."""
    scopes = [d for d in definitions if d.category == "scope" and not inside_unit(d)]
    row_scope: list[Definition | None] = [None] * len(lines)
    for scope in scopes:  # sorted outer first, so inner scopes overwrite
        for row in range(first_row(scope.node), min(last_row(scope.node), len(lines) - 1) + 1):
            row_scope[row] = scope
    chunks = []
    run_start = None
    for row in range(len(lines) + 1):
        in_run = row < len(lines) and not covered[row]
        if in_run and run_start is not None and row_scope[row] is not row_scope[run_start]:
            chunks.extend(_leftover_run(path, lines, run_start, row - 1, row_scope[run_start], spec, budget))
            run_start = row
        elif in_run and run_start is None:
            run_start = row
        elif not in_run and run_start is not None:
            chunks.extend(_leftover_run(path, lines, run_start, row - 1, row_scope[run_start], spec, budget))
            run_start = None
    return chunks


def _has_substance(lines, start_row: int, end_row: int, scope) -> bool:
    """False for runs of nothing but a scope's first line and bare braces or tags, which alone find nothing.

    The scope's name is not lost: it heads the context of the chunks of its members.
    """
    bare_rows = {scope.node.start_point.row} if scope is not None and scope.children else set()
    return any(len(lines[row].strip()) > 2 and not BARE_LINE.match(lines[row]) and row not in bare_rows
               for row in range(start_row, end_row + 1))


def _leftover_run(path, lines, start_row, end_row, scope, spec, budget: PartBudget) -> list[Chunk]:
    while start_row <= end_row and not lines[start_row].strip():
        start_row += 1
    while end_row >= start_row and not lines[end_row].strip():
        end_row -= 1
    if start_row > end_row:
        return []
    signatures = member_signatures(lines, scope, start_row, end_row)
    if not signatures and not _has_substance(lines, start_row, end_row, scope):
        return []
    if scope is None:
        symbol, kind, context = path.rsplit("/", 1)[-1], "module", ""
    else:
        symbol, kind = symbol_path(scope, spec.separator), scope.kind
        context = symbol_path(scope.parent, spec.separator) if scope.parent else ""
    chunks = [
        Chunk(path, s + 1, e + 1, symbol, kind, spec.name, "\n".join(lines[s : e + 1]), context)
        for s, e in _split_evenly(start_row, end_row, lines, budget)
    ]
    if signatures:
        chunks[0] = replace(chunks[0], text=with_signatures(chunks[0].text, signatures, budget.lines, budget.chars))
    return chunks
