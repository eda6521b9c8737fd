"""Cut a source file into chunks that follow its structure.

Functions and methods (the language's query file marks them @unit.*) become one chunk
each, with the comments and decorators directly above them. Code outside any unit
(imports, constants, class fields) is gathered into module or class chunks. Units
larger than the budget are split at child-node boundaries (the cAST recipe); tiny
one-line neighbours share a chunk. Files without a grammar, or whose grammar finds
nothing, become overlapping line windows.

Three things no query can say are handled here: code embedded in another language
(@inject.<language>, e.g. <script> in HTML), Jinja macro files (dbt's .sql), and .h
files that are C++ (languages.spec_for_source).

Grammars are C code fed untrusted files. A parse that would run for minutes is stopped by a
budget of work (the file becomes windows), the known crash of the bash grammar and loop of the
Kotlin one are kept from happening, and chunk_files runs the chunker in a child process that a
crash or a hang takes down alone.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

from codesearch.source.languages import LanguageSpec, load_language, spec_by_name, spec_for_source
from codesearch.source.syntax import Definition, collect_definitions, first_row, inside_unit, last_row, link_parents, symbol_path

CHUNKER_VERSION = 3
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
# The work one parse may take, counted in tree-sitter's progress reports (one per 100 parser operations):
# a base and an amount per KiB. Real code took at most 37 reports per KiB (12,400 files of 20 languages,
# 130 MB); crafted files of a few hundred bytes keep the Kotlin and TSX grammars busy for minutes and
# gigabytes (fixtures/crash_inputs: the 17 bytes of TSX, 13 minutes and 2.4 GiB). Over budget: line windows.
PARSE_REPORTS_BASE = 500
PARSE_REPORTS_PER_KIB = 100
# tree-sitter-bash 0.25.1 tests characters with C's isdigit, which reads outside its table for a code point
# above 255: "{" then U+F0000 segfaults (tree-sitter-bash#337, unfixed in any release). Its parser is shown
# every non-ASCII byte as "x" (a word character, as any letter is to bash), so offsets and lines stay put.
ASCII_ONLY_GRAMMARS = frozenset({"bash"})
NON_ASCII_AS_X = bytes(range(128)) + b"x" * 128
# tree-sitter-kotlin 1.1.0's scanner skips from an "@" to the next whitespace or newline, and at the end of the
# file loops forever looking for it ("private val()\n@"; fixed upstream by an end-of-file test, not released):
# a file whose last line holds an "@" is shown to its parser with a newline after it.
FINAL_NEWLINE_GRAMMARS = frozenset({"kotlin"})


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


def units_of(parts: Iterable[T], chunk_of: Callable[[T], object] = lambda part: part) -> list[list[T]]:
    """Parts in unit order (by path, symbol, kind and start line) gathered into units: each run of the
    adjacent parts of one split unit together, any other chunk alone. `chunk_of` finds the chunk in a part."""
    units: list[list[T]] = []
    for part in parts:
        if units and continues_unit(chunk_of(units[-1][-1]), chunk_of(part)):
            units[-1].append(part)
        else:
            units.append([part])
    return units


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


def parse(language, source: bytes, with_text: bool = False):
    """The syntax tree of `source`, or None when parsing it would take more work than its budget.

    Only a tree made `with_text` may have its nodes' text read, as a query's #match? or #any-of? does."""
    from tree_sitter import Parser

    allowed = PARSE_REPORTS_BASE + PARSE_REPORTS_PER_KIB * len(source) // 1024
    reports = 0

    def over_budget(_offset: int, _has_error: bool) -> bool:
        nonlocal reports
        reports += 1
        return reports > allowed

    parser = Parser(language)
    view = memoryview(source)
    try:  # only a parse that reads through a callback can be stopped
        tree = parser.parse(lambda offset, _point: view[offset:], progress_callback=over_budget)
    except ValueError:  # stopped by over_budget
        return None
    # Reading the text of a tree parsed through a callback segfaults py-tree-sitter 0.26.1 (a memoryview; bytes
    # would be copied for every node). Parsed again from the bytes, reusing the first tree: 16% of a parse.
    return parser.parse(source, old_tree=tree) if with_text else tree


def _shown_to_parser(source: bytes, spec: LanguageSpec) -> bytes:
    """The source as its grammar's parser gets it: kept from the grammar's known crashes, offsets unchanged."""
    if spec.name in ASCII_ONLY_GRAMMARS:
        source = source.translate(NON_ASCII_AS_X)
    if spec.name in FINAL_NEWLINE_GRAMMARS and b"@" in source[source.rfind(b"\n") + 1 :]:
        source += b"\n"
    return source


def _chunk_with_grammar(path: str, source: bytes, text: str, spec: LanguageSpec, budget: PartBudget) -> list[Chunk]:
    from tree_sitter import QueryCursor

    language, query = load_language(spec)
    tree = parse(language, _shown_to_parser(source, spec),
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
    return _assemble(path, lines, _merge_tiny_neighbours(units, lines), definitions, spec, budget, injected)


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
    if not _has_substance(lines, start_row, end_row, scope):
        return []
    if scope is None:
        symbol, kind, context = path.rsplit("/", 1)[-1], "module", ""
    else:
        symbol, kind = symbol_path(scope, spec.separator), scope.kind
        context = symbol_path(scope.parent, spec.separator) if scope.parent else ""
    return [
        Chunk(path, s + 1, e + 1, symbol, kind, spec.name, "\n".join(lines[s : e + 1]), context)
        for s, e in _split_evenly(start_row, end_row, lines, budget)
    ]


# -- the chunker in a child process ------------------------------------------------------------------------------

# A grammar is C code run on untrusted files: a segfault in it would end the indexer, and a loop in its scanner,
# which no parse budget sees, would stall it. chunk_files runs chunk_file in a child process instead.
BATCH_FILES = 64  # files sent to the child in one message (one message back per file)
BATCH_BYTES = 4 << 20
FILE_SECONDS = 30.0  # a file whose chunks take longer hangs its grammar; real files take milliseconds
START_SECONDS = 60.0  # for the child to import the chunker (about 0.1 s)
CHILD_MEMORY = 4 << 30  # the child's address space: a grammar that allocates without end fails alone
_CHILD_MAIN = ("import sys; from multiprocessing.connection import Connection; "
               "connection = Connection(int(sys.argv[1])); sys.path[:], function = connection.recv(); "
               "from codesearch.source.chunk import _serve; _serve(connection, function)")


def chunk_files(files: Iterable[tuple[str, bytes | None]], budget: PartBudget | None = None,
                notice: Callable[[str], None] | None = None) -> Iterator[list[Chunk]]:
    """chunk_file of each (path, source), in order, run in a child process; a source of None has no chunks.

    A file that crashes or hangs the child becomes line windows, with a one-line notice, and a new child
    goes on with the next files. The child starts with the first file that has a source."""
    with ChunkingProcess(budget, notice) as chunker:
        yield from chunker.chunk(files)


class ChunkingProcess:
    """A child process that runs chunk_file, restarted when a file kills it (see chunk_files).

    `function` names what the child runs in chunk_file's place ("module:function", called with a path, a
    source and budget=), and `file_seconds` how long one file may take; the tests change both."""

    def __init__(self, budget: PartBudget | None = None, notice: Callable[[str], None] | None = None,
                 function: str = "codesearch.source.chunk:chunk_file", file_seconds: float = FILE_SECONDS):
        self.budget = budget or PartBudget()
        self.notice = notice or (lambda message: None)
        self.function = function
        self.file_seconds = file_seconds
        self._process: subprocess.Popen | None = None
        self._connection = None
        self._answers = None  # polls the connection: cheaper than Connection.poll, which builds a selector each time
        self._ready = False
        self._in_process = False  # no child could be started: chunk here, as chunk_file does

    def __enter__(self) -> "ChunkingProcess":
        return self

    def __exit__(self, *_exception) -> None:
        self.close()

    def chunk(self, files: Iterable[tuple[str, bytes | None]]) -> Iterator[list[Chunk]]:
        batch: list[tuple[str, bytes | None]] = []
        size = 0
        for path, source in files:
            batch.append((path, source))
            size += len(source or b"")
            if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
                yield from self._chunk_batch(batch)
                batch, size = [], 0
        yield from self._chunk_batch(batch)

    def close(self) -> None:
        """Ends the child, busy or not (it holds nothing to save)."""
        connection, process = self._connection, self._process
        self._connection, self._process, self._ready = None, None, False
        if connection is not None:
            connection.close()
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait()

    def _chunk_batch(self, batch: list[tuple[str, bytes | None]]) -> list[list[Chunk]]:
        results: list[list[Chunk] | None] = [[] if source is None else None for _path, source in batch]
        pending = [index for index, result in enumerate(results) if result is None]
        while pending:
            connection = self._send([batch[index] for index in pending])
            if connection is None:
                for index in pending:
                    results[index] = chunk_file(*batch[index], budget=self.budget)
                break
            for done, index in enumerate(pending):
                try:
                    if not self._answers.poll(self.file_seconds * 1000):
                        raise TimeoutError
                    rows = connection.recv()
                except (EOFError, OSError) as failure:  # TimeoutError is an OSError
                    results[index] = self._lost(*batch[index], hung=isinstance(failure, TimeoutError))
                    pending = pending[done + 1 :]
                    break
                results[index] = [Chunk(*row) for row in rows]
            else:
                pending = []
        return results

    def _send(self, files: list[tuple[str, bytes]]):
        """The connection to a child that has been sent these files; None when no child can run."""
        for _attempt in range(2):  # a child that died between batches (killed from outside) is replaced once
            if self._in_process:
                return None
            try:
                connection = self._connection or self._start()
                connection.send((self.budget, files))
                if not self._ready:
                    if not connection.poll(START_SECONDS) or connection.recv() != "ready":
                        raise OSError("it did not answer")
                    self._ready = True
                return connection
            except (EOFError, OSError, ValueError) as error:
                failure = str(error) or "it exited"
                self.close()
        self._in_process = True
        self.notice(f"chunking in this process: the chunking process did not start ({failure})")
        return None

    def _start(self):
        import select
        import socket
        from multiprocessing.connection import Connection

        if not sys.executable:
            raise OSError("no Python executable to run it")
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD_MAIN, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._connection = Connection(ours.detach())
        self._answers = select.poll()
        self._answers.register(self._connection.fileno(), select.POLLIN)
        self._connection.send((sys.path, self.function))
        return self._connection

    def _lost(self, path: str, source: bytes, hung: bool) -> list[Chunk]:
        """Line windows of the file the child died on (or hung on, and was killed for), and a notice."""
        returncode = None
        if not hung and self._process is not None:
            try:  # its end of the connection closed as it died
                returncode = self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.close()
        spec = spec_for_source(path, source)
        name = spec.name if spec else "text"
        if hung:
            what = f"took more than {self.file_seconds:g} s"
        elif returncode is not None and returncode < 0:
            what = f"crashed ({_signal_name(-returncode)})"
        else:
            what = f"crashed (exit status {returncode})"
        self.notice(f"{_one_line(path)}: parsing it as {name} {what}; indexed as plain text")
        return line_windows(path, source.decode("utf-8", errors="replace"), name)


def _one_line(path: str) -> str:
    """The path with its control characters (a newline, a terminal escape) written as escapes."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in path)


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _serve(connection, function: str) -> None:
    """The child: batches of (path, source) in, one list of chunk rows out per file, until the parent closes."""
    import importlib
    import signal

    import tree_sitter  # noqa: F401 - imported before the first file's time starts

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes the child
    _limit_memory(CHILD_MEMORY)
    module_name, function_name = function.split(":")
    cut = getattr(importlib.import_module(module_name), function_name)
    connection.send("ready")
    while True:
        try:
            budget, files = connection.recv()
        except EOFError:
            return
        for path, source in files:
            connection.send([(chunk.path, chunk.start_line, chunk.end_line, chunk.symbol, chunk.kind, chunk.language,
                              chunk.text, chunk.context) for chunk in cut(path, source, budget=budget)])


def _limit_memory(limit: int) -> None:
    """At most `limit` bytes of address space, and no core file left behind in the user's folder by a crash."""
    try:
        import resource

        for kind, value in ((resource.RLIMIT_AS, limit), (resource.RLIMIT_CORE, 0)):
            _soft, hard = resource.getrlimit(kind)
            resource.setrlimit(kind, (value if hard == resource.RLIM_INFINITY else min(value, hard), hard))
    except (ImportError, ValueError, OSError):
        pass  # no such limits here (Windows), or not allowed: the child runs without them
