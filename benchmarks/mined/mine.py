#!/usr/bin/env python3
"""Mine a CodeSearchNet-style retrieval benchmark from packages fetched by get_corpus.py.

For every recipe line this script reads the pristine repository that
../shared/eval/get_corpus.py built from it, and

  1. finds every function, method and function declaration with tree-sitter
     (the grammar packages directly, not codesearch's chunker or queries, so the
     benchmark does not share the code under test), together with the doc comment
     written directly above it (a docstring in Python);
  2. writes a copy of the repository in which every such doc comment is deleted
     (not only the targets': a docstring copied onto an overload, a prototype in a
     header or a wrapper would otherwise hand the answer to any ranker) and commits
     it once with a fixed author and date, so the commit id is reproducible;
  3. takes the first sentence of each doc comment as the query and the function as
     its answer (its span in the stripped file), drops junk (see `junk_reason`),
     ambiguous queries (the same sentence on several functions) and queries whose
     text still occurs in any indexable file of the stripped repository, and keeps
     at most --cap per repository, drawn with a fixed seed;
  4. writes queries/<name>.jsonl in the format of ../shared/eval/FORMAT.md.

Only the Python standard library and the tree-sitter grammar packages are needed.

Example:
  python benchmarks/mined/mine.py --recipes benchmarks/mined/corpus.tsv \\
      --pristine OUT/pristine --corpus OUT/corpus --queries OUT/queries
"""

from __future__ import annotations

import argparse
import bisect
import html
import importlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------
# languages

GRAMMARS = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "java": ("tree_sitter_java", "language"),
    "kotlin": ("tree_sitter_kotlin", "language"),
    "scala": ("tree_sitter_scala", "language"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "ruby": ("tree_sitter_ruby", "language"),
    "php": ("tree_sitter_php", "language_php"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "csharp": ("tree_sitter_c_sharp", "language"),
    "swift": ("tree_sitter_swift", "language"),
    "lua": ("tree_sitter_lua", "language"),
}

EXTENSIONS = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".java": "java", ".kt": "kotlin", ".kts": "kotlin", ".scala": "scala",
    ".go": "go", ".rs": "rust", ".rb": "ruby", ".php": "php",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".ipp": "cpp", ".inl": "cpp", ".tpp": "cpp",
    ".cs": "csharp", ".swift": "swift", ".lua": "lua",
}

# The language a recipe's `language` column means, for deciding which files hold its targets.
FAMILY = {"tsx": "typescript"}

# Definitions that can be answers (they have a body) and declarations whose doc comment is
# stripped as well (a prototype in a header, an interface or trait method, a TS overload).
DEFINITIONS = {
    "python": {"function_definition"},
    "javascript": {"function_declaration", "generator_function_declaration", "method_definition",
                   "function_expression", "arrow_function", "generator_function", "function"},
    "java": {"method_declaration", "constructor_declaration", "compact_constructor_declaration"},
    "kotlin": {"function_declaration", "secondary_constructor"},
    "scala": {"function_definition"},
    "go": {"function_declaration", "method_declaration"},
    "rust": {"function_item"},
    "ruby": {"method", "singleton_method"},
    "php": {"function_definition", "method_declaration"},
    "c": {"function_definition"},
    "cpp": {"function_definition"},
    "csharp": {"method_declaration", "constructor_declaration", "local_function_statement",
               "operator_declaration", "conversion_operator_declaration"},
    "swift": {"function_declaration", "init_declaration"},
    "lua": {"function_declaration", "function_definition"},
}
DEFINITIONS["typescript"] = DEFINITIONS["javascript"]
DEFINITIONS["tsx"] = DEFINITIONS["javascript"]
DECLARATIONS = {
    "typescript": {"function_signature", "method_signature", "abstract_method_signature"},
    "rust": {"function_signature_item"},
    "swift": {"protocol_function_declaration"},
    "scala": {"function_declaration"},
}
DECLARATIONS["tsx"] = DECLARATIONS["typescript"]
# Function values that count only when they are bound to a name.
ANONYMOUS = {"function_expression", "arrow_function", "generator_function", "function",
             "function_definition"}
# Nodes that wrap a definition without changing what it is: the doc comment sits above them.
WRAPPERS = {"export_statement", "decorated_definition", "template_declaration",
            "ambient_declaration", "lexical_declaration", "variable_declaration",
            "expression_statement", "assignment_statement", "expression_list", "variable_declarator",
            "assignment_expression", "pair", "public_field_definition", "field_definition",
            "augmented_assignment_expression"}
# Siblings that may stand between a doc comment and its definition.
ATTRIBUTES = {"attribute_item", "attribute_list", "decorator", "annotation", "marker_annotation",
              "attribute"}

# Comment styles that count as a doc comment, per language:
#   doc-block  /** ... */     triple  /// ...     line  // ...     block  /* ... */
#   hash  # ...     dash  -- ... (and --[[ ]])
DOC_STYLES = {
    "javascript": {"doc-block"}, "typescript": {"doc-block"}, "tsx": {"doc-block"},
    "java": {"doc-block"}, "kotlin": {"doc-block"}, "scala": {"doc-block"}, "php": {"doc-block"},
    "rust": {"doc-block", "triple"}, "csharp": {"triple", "doc-block"},
    "swift": {"triple", "doc-block"},
    "go": {"line", "block", "doc-block"},
    "c": {"doc-block", "triple", "line", "block"}, "cpp": {"doc-block", "triple", "line", "block"},
    "ruby": {"hash"}, "lua": {"dash"},
}

# Paths codesearch does not index, and paths that are tests, examples or generated.
UNINDEXED_PARTS = {"node_modules", "vendor", "third_party", "dist", "build", ".git", ".codesearch",
                   "__pycache__", ".venv", "venv", "site-packages", "bower_components"}
UNINDEXED_NAME = re.compile(r"(\.min\.(js|css)$|\.map$|-lock\.json$|\.lock$|\.bundle\.js$|\.pb\.go$|_pb2\.py$)")
MAX_FILE_BYTES = 1_000_000
TEST_PART = re.compile(r"^(tests?|__tests__|__mocks__|specs?|testing|testdata|test_?utils|fixtures?|"
                       r"examples?|samples?|benchmarks?|bench|docs?|androidTest|unitTest|"
                       r"integration[-_]?tests?|e2e|generated|__generated__|autogen)$", re.I)
TEST_NAME = re.compile(r"(^test_|_test\.|_tests\.|\.test\.|\.spec\.|_spec\.|Tests?\.(java|kt|cs|swift|php)$|"
                       r"^conftest\.py$|Spec\.(kt|swift|scala)$|\.d\.ts$)")

BINARY = re.compile(rb"\0")


def is_indexable(path: str) -> bool:
    *dirs, name = path.split("/")
    return not (UNINDEXED_PARTS.intersection(dirs) or UNINDEXED_NAME.search(name))


def is_test_path(path: str) -> bool:
    *dirs, name = path.split("/")
    return any(TEST_PART.match(d) for d in dirs) or bool(TEST_NAME.search(name))


def language_of(path: str, data: bytes) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    lang = EXTENSIONS.get(ext)
    if lang == "c" and ext == ".h":
        head = data[:65536].decode("utf-8", "replace")
        if re.search(r"^\s*(class|namespace|template\s*<)\b|\w::\w", head, re.M):
            lang = "cpp"
    return lang


_PARSERS: dict = {}


def parser_for(lang: str):
    if lang not in _PARSERS:
        import tree_sitter
        module, func = GRAMMARS[lang]
        language = tree_sitter.Language(getattr(importlib.import_module(module), func)())
        _PARSERS[lang] = tree_sitter.Parser(language)
    return _PARSERS[lang]


# --------------------------------------------------------------------------
# finding definitions and their doc comments

@dataclass
class Definition:
    lang: str
    name: str
    node_start: int          # bytes of the definition node itself
    node_end: int
    span_start: int          # first byte of the answer: decorators/attributes included
    is_target_kind: bool     # has a body (may be an answer)
    doc_nodes: list = field(default_factory=list)   # comment nodes (or the docstring statement)
    doc_text: str = ""       # the cleaned doc comment
    docstring_alone: bool = False  # Python: the docstring is the only statement of the body


def node_text(node, src: bytes) -> str:
    return src[node.start_byte:node.end_byte].decode("utf-8", "replace")


def line_start(src: bytes, pos: int) -> int:
    return src.rfind(b"\n", 0, pos) + 1


def line_end(src: bytes, pos: int) -> int:
    """Index just past the newline that ends the line holding byte pos-1 (or len(src))."""
    nl = src.find(b"\n", max(pos - 1, 0))
    return len(src) if nl < 0 else nl + 1


def first_on_line(src: bytes, node) -> bool:
    return not src[line_start(src, node.start_byte):node.start_byte].strip()


def last_row(node) -> int:
    """The row of the node's last character (a line comment may end at column 0 of the next row)."""
    if node.end_point[1] == 0 and node.end_point[0] > node.start_point[0]:
        return node.end_point[0] - 1
    return node.end_point[0]


def definition_name(node, src: bytes) -> str:
    for fieldname in ("name", "declarator"):
        child = node.child_by_field_name(fieldname)
        if child is not None:
            break
    else:
        child = None
    # C/C++: dig through pointer/reference/function declarators to the identifier.
    depth = 0
    while child is not None and depth < 8 and child.type not in (
            "identifier", "field_identifier", "property_identifier", "simple_identifier",
            "name", "constant", "type_identifier", "qualified_identifier", "operator_name",
            "destructor_name", "dot_index_expression", "method_index_expression",
            "private_property_identifier", "setter", "operator"):
        nxt = child.child_by_field_name("declarator") or child.child_by_field_name("name")
        if nxt is None:
            break
        child, depth = nxt, depth + 1
    if child is None:
        for c in node.named_children:
            if c.type in ("identifier", "simple_identifier", "property_identifier", "name",
                          "field_identifier", "constant"):
                child = c
                break
    if child is None:
        return ""
    text = node_text(child, src)
    return re.split(r"[.:#]+", text)[-1].strip() if text else ""


def bound_name(node, src: bytes) -> tuple[str, object] | None:
    """For a function value: the name it is bound to and the node that carries the binding."""
    parent = node.parent
    if parent is None:
        return None
    if parent.type == "variable_declarator":
        n = parent.child_by_field_name("name")
        return (node_text(n, src) if n is not None else "", parent)
    if parent.type in ("assignment_expression", "augmented_assignment_expression"):
        left = parent.child_by_field_name("left")
        if left is None:
            return None
        return (re.split(r"[.\[\]'\"]+", node_text(left, src).strip("]'\""))[-1], parent)
    if parent.type == "pair":
        key = parent.child_by_field_name("key")
        return (node_text(key, src).strip("'\"") if key is not None else "", parent)
    if parent.type in ("public_field_definition", "field_definition"):
        n = parent.child_by_field_name("name") or parent.child_by_field_name("property")
        return (node_text(n, src) if n is not None else "", parent)
    if parent.type == "expression_list" and parent.parent is not None \
            and parent.parent.type == "assignment_statement":  # Lua: M.f = function() end
        stmt = parent.parent
        names = [c for c in stmt.named_children if c.type == "variable_list"]
        text = node_text(names[0], src) if names else ""
        return (re.split(r"[.:\[\]'\"]+", text.strip("]'\""))[-1], stmt)
    return None


def has_body(node, lang: str) -> bool:
    if lang in ("c", "cpp"):
        return node.type == "function_definition"
    if node.child_by_field_name("body") is not None:
        return True
    body_types = {"block", "statement_block", "compound_statement", "function_body", "body_statement",
                  "constructor_body", "block_body"}
    return any(c.type in body_types for c in node.children)


def c_declaration_is_function(node) -> bool:
    """A C/C++ declaration (prototype) that declares a function."""
    stack = [c for c in node.children if c.type not in ("compound_statement", "field_declaration_list")]
    while stack:
        n = stack.pop()
        if n.type == "function_declarator":
            return True
        if n.type in ("init_declarator", "pointer_declarator", "reference_declarator",
                      "parenthesized_declarator", "attributed_declarator"):
            stack.extend(n.children)
    return False


def comment_style(text: str, lang: str) -> str | None:
    t = text.lstrip()
    if t.startswith("/**") and not t.startswith("/**/") and not t.startswith("/***"):
        return "doc-block"
    if t.startswith("/*!"):
        return "doc-block"
    if t.startswith("///") and not t.startswith("////"):
        return "triple"
    if t.startswith("//!") or t.startswith("//go:") or t.startswith("//nolint") or t.startswith("//+build"):
        return None
    if t.startswith("//"):
        return "line"
    if t.startswith("/*"):
        return "block"
    if t.startswith("#") and lang == "ruby":
        if t.startswith("#!") or re.match(r"#\s*(frozen_string_literal|encoding|-\*-|rubocop:|:nodoc:)", t):
            return None
        return "hash"
    if t.startswith("--") and lang == "lua":
        return "dash"
    return None


def doc_comment_above(anchor, src: bytes, lang: str) -> tuple[list, int]:
    """The doc comment nodes directly above anchor (nearest last) and the start of the
    attributes that sit between them and anchor (or anchor's own start)."""
    styles = DOC_STYLES.get(lang, set())
    span_start = anchor.start_byte
    node = anchor
    run = []
    prev = anchor.prev_sibling
    next_row = anchor.start_point[0]
    while prev is not None:
        if last_row(prev) < next_row - 1:
            break  # a blank line (or more) between
        if "comment" in prev.type:
            if not first_on_line(src, prev):
                break
            run.append(prev)
        elif prev.type in ATTRIBUTES:
            if not run:
                span_start = prev.start_byte
            else:
                break
        else:
            break
        next_row = prev.start_point[0]
        prev = prev.prev_sibling
    if not run:
        return [], span_start
    # run is nearest-first.  A block comment stands alone; line comments group by style.
    first_style = comment_style(node_text(run[0], src), lang)
    if first_style is None or first_style not in styles:
        return [], span_start
    chosen = [run[0]]
    if first_style not in ("doc-block", "block") and not node_text(run[0], src).lstrip().startswith("--[["):
        for c in run[1:]:
            if comment_style(node_text(c, src), lang) != first_style:
                break
            chosen.append(c)
    chosen.reverse()
    return chosen, span_start


def python_docstring(fn, src: bytes):
    body = fn.child_by_field_name("body")
    if body is None or not body.named_children:
        return None, False
    first = body.named_children[0]
    if first.type != "expression_statement" or len(first.named_children) != 1:
        return None, False
    s = first.named_children[0]
    if s.type not in ("string", "concatenated_string"):
        return None, False
    alone = len([c for c in body.named_children if c.type != "comment"]) == 1
    return first, alone


def python_string_value(stmt, src: bytes) -> str:
    parts = []
    for s in ([stmt.named_children[0]] if stmt.named_children[0].type == "string"
              else stmt.named_children[0].named_children):
        contents = [c for c in s.children if c.type == "string_content"]
        if contents:
            parts.append(src[contents[0].start_byte:contents[-1].end_byte].decode("utf-8", "replace"))
        else:
            raw = node_text(s, src)
            parts.append(re.sub(r"^[rRuUbBfF]*('''|\"\"\"|'|\")|('''|\"\"\"|'|\")$", "", raw))
    return "".join(parts)


def find_definitions(tree, src: bytes, lang: str) -> list[Definition]:
    defs_types = DEFINITIONS.get(lang, set())
    decl_types = DECLARATIONS.get(lang, set())
    out: list[Definition] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(reversed(node.children))
        t = node.type
        is_def = t in defs_types
        is_decl = t in decl_types or (
            lang in ("c", "cpp") and t in ("declaration", "field_declaration")
            and c_declaration_is_function(node))
        if not (is_def or is_decl):
            continue
        if lang == "lua" and t == "function_definition" or (t in ANONYMOUS and lang != "python"
                                                             and t not in ("function_definition",)):
            bound = bound_name(node, src)
            if bound is None:
                continue
            name, anchor = bound
        elif lang == "scala" and t == "function_definition":
            name, anchor = definition_name(node, src), node
        else:
            name, anchor = definition_name(node, src), node
        # Climb wrappers (export, decorators, declarations that hold one declarator...).
        while anchor.parent is not None and anchor.parent.type in WRAPPERS:
            p = anchor.parent
            if p.type in ("lexical_declaration", "variable_declaration") and \
                    len([c for c in p.named_children if c.type == "variable_declarator"]) > 1:
                break
            if p.type == "expression_list" and len(p.named_children) > 1:
                break
            anchor = p
        d = Definition(lang, name, node.start_byte, node.end_byte, anchor.start_byte,
                       is_target_kind=is_def and has_body(node, lang))
        if lang == "python":
            stmt, alone = python_docstring(node, src)
            if stmt is not None:
                d.doc_nodes, d.docstring_alone = [stmt], alone
                d.doc_text = clean_python_doc(python_string_value(stmt, src))
        else:
            nodes, span_start = doc_comment_above(anchor, src, lang)
            d.span_start = min(span_start, anchor.start_byte)
            if nodes:
                d.doc_nodes = nodes
                d.doc_text = clean_comment("\n".join(node_text(n, src).rstrip() for n in nodes), lang)
        out.append(d)
    return out


# --------------------------------------------------------------------------
# doc comment text -> first sentence

TAG_LINE = re.compile(
    r"^\s*([@\\](param|tparam|arg|argument|return|returns|throws|throw|exception|see|since|"
    r"deprecated|example|examples|note|template|type|typedef|callback|property|prop|private|"
    r"internal|api|override|inheritdoc|author|version|link|raise|raises|yield|yields|sample|"
    r"usage|option|options|field|async|function|method|memberof|static|public|protected|access|"
    r"category|group|experimental|todo|code|pre|post|retval|ingroup|defgroup|addtogroup|overload|"
    r"psalm-\w+|phpstan-\w+|var|rtype|ptype|treturn|constructor|class|module|namespace|\w+)\b"
    r"|:(param|type|return|returns|raises|rtype|arg|keyword|ivar|var)\b"
    r"|(Args|Arguments|Parameters|Params|Returns|Return|Raises|Yields|Example|Examples|Note|Notes|"
    r"See Also|Warning|Usage|Throws|Attributes)\s*:?\s*$"
    r"|- ?(Parameter|Parameters|Returns|Throws|Note|Warning|Precondition|Complexity)\b"
    r"|#+\s|```|~~~)")
LEAD_TAG = re.compile(r"^\s*[@\\](brief|short|summary|description|desc|fn|func|function)\b\s*", re.I)
ABBREV = {"e.g", "i.e", "etc", "vs", "cf", "approx", "mr", "dr", "no", "eg", "ie", "resp", "incl",
          "esp", "viz", "al", "st", "ca", "ex", "fig", "op", "ver", "v"}


def clean_python_doc(text: str) -> str:
    lines = text.expandtabs().split("\n")
    indent = min((len(l) - len(l.lstrip()) for l in lines[1:] if l.strip()), default=0)
    return "\n".join([lines[0].strip()] + [l[indent:].rstrip() for l in lines[1:]])


def clean_comment(text: str, lang: str) -> str:
    t = text.strip()
    out = []
    if t.startswith("/*"):
        t = re.sub(r"^/\*+!?", "", t)
        t = re.sub(r"\*+/$", "", t)
        for line in t.split("\n"):
            out.append(re.sub(r"^\s*\*+ ?", "", line).rstrip())
    elif lang == "lua" and t.startswith("--[["):
        t = re.sub(r"^--\[=*\[-*", "", t)
        t = re.sub(r"\]=*\]\s*$", "", t)
        out = [l.rstrip() for l in t.split("\n")]
    else:
        for line in t.split("\n"):
            line = line.strip()
            line = re.sub(r"^(///?!?|//|#+|-{2,})", "", line)
            out.append(line[1:] if line.startswith(" ") else line)
    return "\n".join(out)


def first_sentence(doc: str, lang: str) -> str:
    text = doc
    if lang == "csharp" or "<summary>" in text:
        m = re.search(r"<summary>(.*?)(</summary>|$)", text, re.S)
        if m:
            text = m.group(1)
        text = re.sub(r"<(see|seealso)\s+(cref|href|langword)=\"(?:\w:)?([^\"]+)\"\s*/>",
                      lambda mm: mm.group(3).split(".")[-1], text)
        text = re.sub(r"<(paramref|typeparamref)\s+name=\"([^\"]+)\"\s*/>", r"\2", text)
        text = re.sub(r"</?para>", "\n\n", text)
    # Inline markup.
    text = re.sub(r"\{@(?:link|linkplain|linkcode)\s+([^}\s]+)(?:\s+([^}]+))?\}",
                  lambda m: (m.group(2) or m.group(1).split("#")[-1].split(".")[-1]), text)
    text = re.sub(r"\{@(?:code|literal)\s+([^}]*)\}", r"\1", text)
    text = re.sub(r"\{@inheritDoc\}", "", text, flags=re.I)
    text = re.sub(r"<p\s*/?>|</p>|<br\s*/?>", "\n\n", text, flags=re.I)
    text = re.sub(r"</?[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?>", "", text)
    text = html.unescape(text)
    text = re.sub(r":[a-z]+(?::[a-z]+)?:`~?([^`]+)`", r"\1", text)   # reST roles
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)             # markdown links
    text = re.sub(r"\[`([^`\]]+)`\](\[[^\]]*\])?", r"\1", text)        # rustdoc intra-doc links
    text = text.replace("``", "").replace("`", "")
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    # First paragraph, up to the first tag line.
    lines = []
    for i, raw in enumerate(text.split("\n")):
        line = raw.strip()
        if i == 0 or not lines:
            line = LEAD_TAG.sub("", line)
        if not line:
            if lines:
                break
            continue
        if TAG_LINE.match(line) or re.match(r"^[-=~^*]{3,}$", line):
            break
        lines.append(line)
    para = re.sub(r"\s+", " ", " ".join(lines)).strip()
    for m in re.finditer(r"[.!?](?=\s|$)", para):
        word = re.findall(r"[\w.]+$", para[:m.start()])
        w = word[0].lower() if word else ""
        if w in ABBREV or (len(w) == 1 and w.isalpha()):
            continue
        return para[:m.end()].strip()
    return para


BOILERPLATE = re.compile(
    r"^(todo|fixme|xxx|hack|nb|note)\b|generated by|auto-?generated|do not (edit|modify)|@generated"
    r"|^(the |a )?(default |copy |move |private |public |protected |static )?(constructor|destructor|ctor|dtor|"
    r"getter|setter|accessor|mutator)\b"
    r"|^(initializes?|creates?|constructs?|instantiates?) (a |an )?new instance of\b"
    r"|^(gets|sets|returns|get|set|return)( or sets)? the \w+( \w+)?\.?$"
    r"|^(an? )?(alias|shorthand|synonym) (for|of)\b|^(see|inherited|inherit|overrides?|implements?|"
    r"implementation of|deprecated|internal use|for internal use|private)\b"
    r"|copyright|license|licence|\bspdx\b|^(test|tests|unit test)\b", re.I)


def junk_reason(sentence: str) -> str | None:
    if not sentence:
        return "empty"
    if len(sentence) < 15:
        return "short"
    if len(re.findall(r"[A-Za-z][A-Za-z'-]*", sentence)) < 3:
        return "short"
    if len(sentence) > 300:
        return "long"
    if BOILERPLATE.search(sentence):
        return "boilerplate"
    letters = sum(ch.isalpha() or ch == " " for ch in sentence)
    if letters / len(sentence) < 0.75 or re.search(r"[;{}]|=>|\)\s*\(|==|^\W", sentence):
        return "code-like"
    return None


def drop_leading_name(sentence: str, name: str) -> str:
    """Go's (and some others') convention opens the comment with the function's name:
    'Contains asserts that ...'.  A searcher does not know the name, so it is dropped."""
    m = re.match(r"^[`'\"*]*([A-Za-z_][\w.:#]*)(\(\))?[`'\"*]*\s+(.*)$", sentence)
    if not m or not name:
        return sentence
    word = re.split(r"[.:#]+", m.group(1))[-1]
    if word != name or len(m.group(3).split()) < 3:
        return sentence
    rest = m.group(3)
    return rest[0].upper() + rest[1:]


def is_identifier_query(query: str, name: str) -> bool:
    """Does the query name the answer: the exact identifier, written as code (an underscore,
    a digit or an inner capital), not a plain word that happens to be the name ('parse')."""
    if len(name) < 3 or not re.search(r"_|\d|[a-z][A-Z]|^[A-Z].*[A-Z]", name):
        return False
    return re.search(r"(?<![\w$])" + re.escape(name) + r"(?![\w$])", query) is not None


def normalize(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


# --------------------------------------------------------------------------
# stripping

def strip_edits(defs: list[Definition], src: bytes) -> list[tuple[int, int, bytes]]:
    """Byte edits (start, end, replacement) that delete every doc comment in defs."""
    edits = []
    for d in defs:
        if not d.doc_nodes:
            continue
        first, last = d.doc_nodes[0], d.doc_nodes[-1]
        if d.lang == "python" and d.docstring_alone:
            # The body would be empty: keep a `pass` where the docstring was.
            s = first.named_children[0]
            edits.append((s.start_byte, s.end_byte, b"pass"))
            continue
        a, b = first.start_byte, last.end_byte
        if first_on_line(src, first) and not src[b:line_end(src, b)].strip():
            a, b = line_start(src, a), line_end(src, b)
            edits.append((a, b, b""))
        else:
            edits.append((a, b, b""))
    edits.sort()
    merged: list[tuple[int, int, bytes]] = []
    for e in edits:
        if merged and e[0] < merged[-1][1]:
            continue  # overlapping (the same comment above two nested definitions)
        merged.append(e)
    return merged


def apply_edits(src: bytes, edits) -> bytes:
    out, pos = [], 0
    for a, b, rep in edits:
        out.append(src[pos:a])
        out.append(rep)
        pos = b
    out.append(src[pos:])
    return b"".join(out)


def mapper(edits):
    """Position in the original -> position in the stripped text (for positions outside edits)."""
    starts = [e[0] for e in edits]
    shifts, total = [], 0
    for a, b, rep in edits:
        total += (b - a) - len(rep)
        shifts.append(total)

    def f(pos: int) -> int:
        i = bisect.bisect_right(starts, pos) - 1
        while i >= 0 and edits[i][1] > pos:  # inside an edit: map to its start
            pos = edits[i][0]
            i -= 1
        return pos - (shifts[i] if i >= 0 else 0)
    return f


def line_of(text: bytes, pos: int, cache: list) -> int:
    """1-based line of byte pos; cache holds the newline offsets after the first call."""
    if not cache:
        cache.append(-1)
        cache.extend(m.start() for m in re.finditer(b"\n", text))
    return bisect.bisect_left(cache, pos)


# --------------------------------------------------------------------------
# repositories

GIT_ENV = {
    "GIT_AUTHOR_NAME": "mined-corpus", "GIT_AUTHOR_EMAIL": "mined-corpus@example.invalid",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "mined-corpus", "GIT_COMMITTER_EMAIL": "mined-corpus@example.invalid",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
}
GIT_OPTS = ["-c", "init.defaultBranch=main", "-c", "core.autocrlf=false", "-c", "core.safecrlf=false",
            "-c", "commit.gpgSign=false", "-c", "gc.auto=0", "-c", "core.symlinks=true"]
COMMIT_PREFIX = "mined corpus:"


def git(args, cwd, check=True) -> str:
    env = dict(os.environ)
    env.update(GIT_ENV)
    p = subprocess.run(["git", *GIT_OPTS, *args], cwd=cwd, env=env, capture_output=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {cwd}: {p.stderr.decode(errors='replace')}")
    return p.stdout.decode("utf-8", "surrogateescape")


def read_recipes(path: str) -> list[dict]:
    out = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        cols = [c.strip() for c in raw.split("\t")]
        if len(cols) != 6 or cols[:2] == ["name", "source"]:
            continue
        out.append(dict(zip(("name", "source", "spec", "root", "language", "split"), cols)))
    return out


@dataclass
class Candidate:
    path: str
    name: str
    start_line: int
    end_line: int
    query: str
    norm: str


def mine_repo(recipe: dict, pristine: Path, dest: Path, stats: Counter) -> list[Candidate]:
    """Write the stripped copy of one repository to dest and return its query candidates."""
    files = git(["ls-files", "-z"], pristine).split("\0")
    files = [f for f in files if f]
    if dest.exists():
        head = git(["log", "-1", "--format=%B"], dest, check=False) if (dest / ".git").is_dir() else ""
        if not head.startswith(COMMIT_PREFIX):
            raise RuntimeError(f"{dest} exists and was not made by mine.py; move it away")
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    want = recipe["language"]
    candidates: list[Candidate] = []
    all_sentences: Counter = Counter()
    indexable_text: list[str] = []
    for rel in files:
        srcpath = pristine / rel
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if srcpath.is_symlink():
            os.symlink(os.readlink(srcpath), target)
            continue
        data = srcpath.read_bytes()
        lang = language_of(rel, data) if not BINARY.search(data[:8192]) else None
        new = data
        if lang is not None and len(data) <= 4 * MAX_FILE_BYTES:
            tree = parser_for(lang).parse(data)
            defs = find_definitions(tree, data, lang)
            edits = strip_edits(defs, data)
            new = apply_edits(data, edits)
            stats["docs_stripped"] += len(edits)
            fmap, lines_cache = mapper(edits), []
            eligible_file = (FAMILY.get(lang, lang) == want and is_indexable(rel)
                             and not is_test_path(rel) and len(new) <= MAX_FILE_BYTES)
            for d in defs:
                if not d.doc_text:
                    continue
                sentence = first_sentence(d.doc_text, lang)
                sentence = drop_leading_name(sentence, d.name)
                if d.is_target_kind:  # a prototype or signature of the same function is no rival
                    all_sentences[normalize(sentence)] += 1
                if not (eligible_file and d.is_target_kind):
                    continue
                stats["with_doc"] += 1
                why = junk_reason(sentence)
                if why:
                    stats[f"drop_{why}"] += 1
                    continue
                start = line_of(new, fmap(d.span_start), lines_cache)
                end = line_of(new, max(fmap(d.node_end) - 1, 0), lines_cache)
                if end - start + 1 < 3:
                    stats["drop_under_3_lines"] += 1
                    continue
                candidates.append(Candidate(rel, d.name, start, end, sentence, normalize(sentence)))
        target.write_bytes(new)
        os.chmod(target, srcpath.stat().st_mode & 0o777 | 0o600)
        if is_indexable(rel) and len(new) <= MAX_FILE_BYTES and not BINARY.search(new[:8192]):
            indexable_text.append(normalize(new.decode("utf-8", "replace")))
    git(["init", "-q"], dest)
    git(["add", "-A", "-f", "."], dest)
    msg = (f"{COMMIT_PREFIX} {recipe['name']}\n\nsource: {recipe['source']}\nspec: {recipe['spec']}\n"
           f"root: {recipe['root']}\nlanguage: {recipe['language']}\n"
           f"doc comments of functions removed by benchmarks/mined/mine.py\n")
    git(["commit", "-q", "--no-verify", "-m", msg], dest)
    # Ambiguous (the same sentence on several functions) and leaked (the sentence still in the
    # stripped repository: a README, a class comment, a copy of the file) queries are dropped.
    blob = "\n".join(indexable_text)
    kept = []
    for c in candidates:
        if all_sentences[c.norm] > 1:
            stats["drop_duplicate"] += 1
        elif c.norm in blob:
            stats["drop_leaked"] += 1
        else:
            kept.append(c)
    stats["candidates"] += len(kept)
    return kept


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--recipes", required=True, help="recipe TSV (get_corpus.py format)")
    ap.add_argument("--pristine", required=True, help="folder that get_corpus.py filled from --recipes")
    ap.add_argument("--corpus", required=True, help="folder for the stripped repositories")
    ap.add_argument("--queries", required=True, help="folder for <name>.jsonl query files")
    ap.add_argument("--cap", type=int, default=100, help="queries per repository at most (default 100)")
    ap.add_argument("--seed", default="codesearch-mined-1", help="sampling seed")
    ap.add_argument("--only", default="", help="comma-separated recipe names")
    ap.add_argument("--stats", help="write per-repository mining counts (JSON) here")
    args = ap.parse_args(argv)

    recipes = read_recipes(args.recipes)
    if args.only:
        keep = {x.strip() for x in args.only.split(",")}
        recipes = [r for r in recipes if r["name"] in keep]
    corpus, qdir = Path(args.corpus).resolve(), Path(args.queries).resolve()
    corpus.mkdir(parents=True, exist_ok=True)
    qdir.mkdir(parents=True, exist_ok=True)
    report = {}
    total = 0
    failed = 0
    for r in recipes:
        pristine = Path(args.pristine) / r["name"]
        if not (pristine / ".git").is_dir():
            print(f"error: {r['name']}: {pristine} missing (run get_corpus.py first)", file=sys.stderr)
            failed += 1
            continue
        stats: Counter = Counter()
        cands = mine_repo(r, pristine, corpus / r["name"], stats)
        cands.sort(key=lambda c: (c.path, c.start_line))
        rng = random.Random(f"{args.seed}:{r['name']}")
        chosen = sorted(rng.sample(cands, args.cap), key=lambda c: (c.path, c.start_line)) \
            if len(cands) > args.cap else cands
        with open(qdir / f"{r['name']}.jsonl", "w", encoding="utf-8") as fh:
            for i, c in enumerate(chosen, 1):
                style = "identifier" if is_identifier_query(c.query, c.name) else "semantic"
                fh.write(json.dumps({
                    "id": f"{r['name']}-{i:03d}", "repo": r["name"], "query": c.query, "style": style,
                    "answers": [{"path": c.path, "start_line": c.start_line, "end_line": c.end_line,
                                 "symbol": c.name}]}, ensure_ascii=False) + "\n")
        stats["queries"] = len(chosen)
        total += len(chosen)
        report[r["name"]] = {"language": r["language"], **dict(sorted(stats.items()))}
        print(f"{r['name']:<24} {r['language']:<11} queries {len(chosen):>4} of {len(cands):>5} candidates"
              f"  (docs stripped {stats['docs_stripped']}, with doc {stats['with_doc']}, "
              + ", ".join(f"{k[5:]} {v}" for k, v in sorted(stats.items()) if k.startswith("drop_")) + ")",
              flush=True)
    print(f"{total} queries in {len(report)} repositories", file=sys.stderr)
    if args.stats:
        Path(args.stats).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
