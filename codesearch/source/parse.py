"""Parsing untrusted source with a grammar, kept from the ways a grammar's C code fails on crafted input.

Grammars are C code fed untrusted files. A parse that would run for minutes is stopped by a budget of work
(the caller cuts the file into windows instead), and the known crash of the bash grammar and loop of the
Kotlin one are kept from happening by what the parser is shown. What no budget sees (a crash, a loop in a
scanner) is chunk_process's to contain.
"""

from __future__ import annotations

from codesearch.source.languages import LanguageSpec

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


def shown_to_parser(source: bytes, spec: LanguageSpec) -> bytes:
    """The source as its grammar's parser gets it: kept from the grammar's known crashes, offsets unchanged."""
    if spec.name in ASCII_ONLY_GRAMMARS:
        source = source.translate(NON_ASCII_AS_X)
    if spec.name in FINAL_NEWLINE_GRAMMARS and b"@" in source[source.rfind(b"\n") + 1 :]:
        source += b"\n"
    return source
