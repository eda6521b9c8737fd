#!/usr/bin/env python3
"""Mine two more benchmark sets from the packages of the mined benchmark (issue 28).

symbols: bare names asked of the mined corpus (OUT/corpus, built by mine.py).  Candidates are the
    types (class, struct, interface, trait, enum, protocol, object, module, type alias) and the
    functions and methods in the recipe's language, outside test paths, whose name has at least 4
    characters and is defined exactly once in the repository (every indexable file counts).  The
    answer of a function is its whole definition; the answer of a type is its declaration: from its
    first line (doc comment, attributes) to the line before its first nested function definition
    (all of it when it has none), so that a chunk holding the declaration hits and a method does not.
    At most --symbol-cap per repository, half types and half functions where there are enough.

qualified: a method asked by its container and name as people write it (`Buf::get_f64`, `Parser.parse`,
    `Basic#file_collision`), where that pair is defined exactly once in the repository though the name alone may
    not be (a `get` of one class among many); the answer is the method's whole definition. Same filters as
    symbols otherwise, at most --symbol-cap per repository. Asked of OUT/corpus, with its indexes.
files: the first sentence of a file's header (the Python module docstring, or else the first
    comment block above the first line of code that is no licence, generated-file notice, shebang
    or pragma) asks for the whole file, in a variant of the pristine packages (OUT/pristine) where
    those headers are deleted, committed once with mine.py's fixed author and date into
    OUT/files-corpus/<name>.  Duplicate sentences and sentences still found in an indexable file of
    the variant are dropped; only repositories with --min-files questions are kept, at most
    --max-repos of them, spread over languages (every one is indexed).

typedocs: where a file is one documented type (exactly one type definition in it has a doc comment, and
    that type spans at least half of the file's non-blank lines: a Java, C# or Kotlin class, a Swift or
    PHP type, a Python class module), the first sentence of that doc comment asks for the whole file, in
    a variant (OUT/typedocs-corpus/<name>) where those doc comments are deleted. Same filters as files.
    A file-level question that does not depend on a package writing file headers, in more languages.

score.py accepts only the styles identifier (symbols here) and semantic (files), so the field
"kind" (symbol-type, symbol-function, file) tells the questions apart: tables.py --queries splits
by it.  Like mine.py, this reads code with the tree-sitter grammars, never with codesearch, so the
benchmark does not share the code under test.  Samples are drawn with a fixed seed.

Example:
  python benchmarks/mined/mine_sets.py --recipes benchmarks/mined/corpus.tsv \\
      --pristine OUT/pristine --corpus OUT/corpus --out OUT
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mine import (ANONYMOUS, BINARY, COMMIT_PREFIX, DEFINITIONS, FAMILY, MAX_FILE_BYTES,  # noqa: E402
                  WRAPPERS, apply_edits, clean_comment, clean_python_doc, definition_name,
                  doc_comment_above, find_definitions, first_on_line, first_sentence, git,
                  is_indexable, is_test_path, junk_reason, language_of, last_row, line_end, line_of,
                  line_start, normalize, parser_for, python_docstring, python_string_value, read_recipes)

TYPES = {
    "python": {"class_definition"}, "javascript": {"class_declaration"},
    "typescript": {"class_declaration", "abstract_class_declaration", "interface_declaration",
                   "enum_declaration", "type_alias_declaration"},
    "java": {"class_declaration", "interface_declaration", "enum_declaration", "record_declaration",
             "annotation_type_declaration"},
    "kotlin": {"class_declaration", "object_declaration", "type_alias"},
    "scala": {"class_definition", "object_definition", "trait_definition", "enum_definition", "type_definition"},
    "go": {"type_spec", "type_alias"}, "rust": {"struct_item", "enum_item", "trait_item", "type_item", "union_item"},
    "ruby": {"class", "module"},
    "php": {"class_declaration", "interface_declaration", "trait_declaration", "enum_declaration"},
    "c": {"struct_specifier", "union_specifier", "enum_specifier", "type_definition"},
    "csharp": {"class_declaration", "struct_declaration", "interface_declaration", "enum_declaration",
               "record_declaration", "record_struct_declaration", "delegate_declaration"},
    "swift": {"class_declaration", "protocol_declaration", "typealias_declaration"}, "lua": set(),
}
TYPES["tsx"] = TYPES["typescript"]
TYPES["cpp"] = TYPES["c"] | {"class_specifier", "alias_declaration"}
C_SPECIFIERS = {"struct_specifier", "union_specifier", "enum_specifier", "class_specifier"}
CONSTRUCTORS = {"constructor_declaration", "compact_constructor_declaration", "secondary_constructor",
                "init_declaration"}
# Names a language gives to every constructor or hook: a question made of one is not about a symbol.
CONVENTIONAL = {"constructor", "initialize", "init", "deinit", "dealloc", "finalize"}
# Stub and declaration files restate what the code defines; like a C prototype, they define nothing.
DECLARATION_FILE = re.compile(r"(\.pyi|\.d\.[cm]?ts)$")
# A minified copy (mine.py leaves out only .min.js) holds no name anyone would search for.
MINIFIED = re.compile(r"[._-]min\.\w+$")
SYMBOL_NAME = re.compile(r"^[A-Za-z_$][\w$]*[?!]?$")

# Header blocks that describe no file: licences, generated-file notices, IDE templates.
LICENCE = re.compile(r"copyright|\(c\)\s*\d|licen[cs]ed? (under|to)|spdx-license|permission is hereby "
                     r"granted|all rights reserved|this file is (a )?part of|generated by|auto-?generated|"
                     r"do not (edit|modify)|@generated|created by .{1,80} on \d", re.I)
# Single comments that are directives, not prose: shebang, encoding, build tags, linters.
PRAGMA = re.compile(r"^(#!|#\s*-\*-|#\s*(frozen_string_literal|encoding|coding|typed|rubocop):|//\s*\+build|"
                    r"//go:|//\s*swift-tools-version|//\s*@ts-|/[/*]\s*(eslint|jshint|jslint|global|prettier|"
                    r"istanbul|@flow|tslint|clang-format|NOLINT)\b|#\s*(vim?|pylint|type|mypy|noqa|flake8):|"
                    r"--\s*luacheck:)", re.I)


def inside_function(node, lang: str) -> bool:
    """Local classes and closures are not symbols a reader looks up by name (an IIFE is no function)."""
    p = node.parent
    while p is not None:
        anonymous = p.type in ANONYMOUS and (p.type != "function_definition" or lang == "lua")
        if p.type in DEFINITIONS.get(lang, ()) and not anonymous:
            return True
        p = p.parent
    return False


def answer_start(anchor, src: bytes, lang: str) -> int:
    """First byte of a definition's answer: its doc comment and attributes directly above."""
    while anchor.parent is not None and anchor.parent.type in WRAPPERS:
        anchor = anchor.parent
    docs, attr_start = doc_comment_above(anchor, src, lang)
    return min([anchor.start_byte, attr_start] + [n.start_byte for n in docs])


@dataclass
class Symbol:
    kind: str      # symbol-type or symbol-function
    name: str
    path: str
    start_line: int
    end_line: int


def type_definitions(tree, src: bytes, lang: str):
    """(name, node, anchor) of every type defined in a file; anchor is what its answer starts at."""
    kinds = TYPES.get(lang, set())
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.type not in kinds:
            continue
        anchor = node
        if node.type in C_SPECIFIERS:
            # A typedef'd struct is counted once, under the typedef; a forward declaration is none.
            if node.child_by_field_name("body") is None or node.parent.type == "type_definition":
                continue
        elif lang == "go" and len([c for c in node.parent.named_children
                                   if c.type in ("type_spec", "type_alias")]) == 1:
            anchor = node.parent   # `type X struct`: the keyword line belongs to the declaration
        name_node = node.child_by_field_name("name")
        if lang == "swift" and name_node is not None and name_node.type != "type_identifier":
            continue   # `extension Foo` adds to a type defined elsewhere
        yield definition_name(node, src), node, anchor


def is_constructor(node, name: str, src: bytes, lang: str) -> bool:
    owner = node.parent
    while owner is not None and owner.type not in TYPES.get(lang, ()):
        owner = owner.parent
    if node.type in CONSTRUCTORS or name in CONVENTIONAL or (owner and name == definition_name(owner, src)):
        return True
    head = src[node.start_byte:node.end_byte].split(b"(", 1)[0].decode("utf-8", "replace")
    return re.search(r"\b(\w+)::~?\1\s*$", head) is not None   # C++ Foo::Foo, Foo::~Foo


def file_symbols(rel: str, src: bytes, lang: str) -> tuple[list[str], list[Symbol]]:
    """Every defined name in one file (for counting), and the file's candidate answers."""
    tree = parser_for(lang).parse(src)
    functions = [d for d in find_definitions(tree, src, lang) if d.is_target_kind]
    cache: list = []
    lines = src.split(b"\n")
    # Where each function's answer starts: a doc comment left above it (not a docstring) included.
    starts = {id(d): min([d.span_start] + [n.start_byte for n in d.doc_nodes if n.start_byte < d.node_start])
              for d in functions}

    def span(start: int, end: int) -> tuple[int, int]:
        return line_of(src, start, cache), line_of(src, max(end - 1, start), cache)

    names, found = [], []
    for name, node, anchor in type_definitions(tree, src, lang):
        names.append(name)
        first, last = span(answer_start(anchor, src, lang), node.end_byte)
        nested = [starts[id(d)] for d in functions if node.start_byte < d.node_start < node.end_byte]
        if nested:
            last = max(first, line_of(src, min(nested), cache) - 1)
            while last > first and not lines[last - 1].strip():
                last -= 1
        if not inside_function(node, lang) and not node.has_error:   # a misparse misplaces the span
            found.append(Symbol("symbol-type", name, rel, first, last))
    for d in functions:
        node = tree.root_node.descendant_for_byte_range(d.node_start, d.node_end)
        while node is not None and not (node.start_byte == d.node_start and node.end_byte == d.node_end
                                        and node.type in DEFINITIONS[lang]):
            node = node.parent
        if node is None or is_constructor(node, d.name, src, lang):
            continue
        names.append(d.name)
        first, last = span(starts[id(d)], d.node_end)
        if last - first + 1 >= 3 and not inside_function(node, lang) and not node.has_error:
            found.append(Symbol("symbol-function", d.name, rel, first, last))
    return names, found


# How people write a member with its container, per language (Ruby's instance methods: Foo#bar).
QUALIFIERS = {"cpp": "::", "rust": "::", "php": "::", "ruby": "#"}


def owner_of(node, src: bytes, lang: str) -> str | None:
    """The name of the type a method is defined in (Rust: the type its impl block is for); None outside one."""
    parent = node.parent
    while parent is not None:
        if lang == "rust" and parent.type == "impl_item":
            kind = parent.child_by_field_name("type")
            while kind is not None and kind.type in ("generic_type", "scoped_type_identifier"):
                kind = kind.child_by_field_name("type") or kind.child_by_field_name("name")
            return src[kind.start_byte:kind.end_byte].decode("utf-8", "replace") if kind is not None else None
        if parent.type in TYPES.get(lang, ()):
            return definition_name(parent, src)
        parent = parent.parent
    return None


def file_qualified(rel: str, src: bytes, lang: str) -> tuple[list[str], list[Symbol]]:
    """Every Container<sep>method pair in one file (for counting), and the file's candidate answers."""
    tree = parser_for(lang).parse(src)
    cache: list = []
    pairs, found = [], []
    for d in find_definitions(tree, src, lang):
        if not d.is_target_kind:
            continue
        node = tree.root_node.descendant_for_byte_range(d.node_start, d.node_end)
        while node is not None and not (node.start_byte == d.node_start and node.end_byte == d.node_end
                                        and node.type in DEFINITIONS[lang]):
            node = node.parent
        owner = owner_of(node, src, lang) if node is not None else None
        if owner is None or is_constructor(node, d.name, src, lang) or not SYMBOL_NAME.match(owner):
            continue
        qualified = f"{owner}{QUALIFIERS.get(FAMILY.get(lang, lang), '.')}{d.name}"
        pairs.append(qualified)
        start = min([d.span_start] + [n.start_byte for n in d.doc_nodes if n.start_byte < d.node_start])
        first, last = line_of(src, start, cache), line_of(src, max(d.node_end - 1, start), cache)
        if last - first + 1 >= 3 and not inside_function(node, lang) and not node.has_error:
            found.append(Symbol("symbol-qualified", qualified, rel, first, last))
    return pairs, found


def mine_symbols(recipe: dict, corpus: Path, stats: Counter, qualified: bool = False) -> list[Symbol]:
    counts: Counter = Counter()
    candidates: list[Symbol] = []
    for rel in [f for f in git(["ls-files", "-z"], corpus).split("\0") if f]:
        path = corpus / rel
        if path.is_symlink() or not path.is_file() or not is_indexable(rel):
            continue
        src = path.read_bytes()
        lang = language_of(rel, src) if not BINARY.search(src[:8192]) else None
        if lang is None or len(src) > MAX_FILE_BYTES or DECLARATION_FILE.search(rel):
            continue
        names, found = (file_qualified if qualified else file_symbols)(rel, src, lang)
        counts.update(names)
        if FAMILY.get(lang, lang) == recipe["language"] and not is_test_path(rel) and not MINIFIED.search(rel):
            candidates.extend(found)
    kept = []
    for s in candidates:
        name = re.split(r"::|#|\.", s.name)[-1]
        why = ("short_name" if len(name.rstrip("?!")) < (2 if qualified else 4) else
               "not_a_name" if not SYMBOL_NAME.match(name) or re.match(r"^__\w+__$", name) else
               "defined_twice" if counts[s.name] > 1 else None)
        stats[f"drop_{why}" if why else s.kind] += 1
        if not why:
            kept.append(s)
    return kept


def choose_symbols(cands: list[Symbol], cap: int, rng: random.Random) -> list[Symbol]:
    types = [s for s in cands if s.kind == "symbol-type"]
    funcs = [s for s in cands if s.kind == "symbol-function"]
    n_types = min(len(types), cap - min(len(funcs), cap // 2))
    n_funcs = min(len(funcs), cap - n_types)
    chosen = rng.sample(types, n_types) + rng.sample(funcs, n_funcs)
    return sorted(chosen, key=lambda s: (s.kind != "symbol-type", s.path, s.start_line))


# --------------------------------------------------------------------------
# file headers

def documents_function(code, lang: str) -> bool:
    while code.type in WRAPPERS and code.named_children:
        code = code.named_children[-1]
    return code.type in DEFINITIONS.get(lang, ())


def comment_blocks(comments: list, src: bytes) -> list[list]:
    """Consecutive line comments form one block; a block comment stands alone."""
    blocks: list[list] = []
    prev_joinable = False
    for c in comments:
        joinable = not src[c.start_byte:c.end_byte].lstrip().startswith((b"/*", b"--[["))
        prev = blocks[-1][-1] if blocks else None
        if prev is not None and joinable and prev_joinable and c.start_point[0] == last_row(prev) + 1:
            blocks[-1].append(c)
        else:
            blocks.append([c])
        prev_joinable = joinable
    return blocks


@dataclass
class Header:
    start: int     # bytes to delete
    end: int
    text: str      # cleaned comment or docstring


def file_header(src: bytes, lang: str) -> Header | None:
    root = parser_for(lang).parse(src).root_node
    children = [c for c in root.children if c.type not in ("php_tag", "text")]
    code = next((c for c in children if "comment" not in c.type), None)
    if code is None:
        return None   # a file of comments only describes nothing to find
    if lang == "python" and code.type == "expression_statement" and len(code.named_children) == 1 \
            and code.named_children[0].type in ("string", "concatenated_string"):
        text = clean_python_doc(python_string_value(code, src))
        return None if LICENCE.search(text) else Header(code.start_byte, code.end_byte, text)
    comments = [c for c in children[:children.index(code)] if "comment" in c.type
                and not PRAGMA.match(src[c.start_byte:c.end_byte].decode("utf-8", "replace").lstrip())]
    blocks = comment_blocks(comments, src)
    for i, block in enumerate(blocks):
        raw = "\n".join(src[c.start_byte:c.end_byte].decode("utf-8", "replace") for c in block)
        if LICENCE.search(raw) or not first_on_line(src, block[0]):
            continue
        if i == len(blocks) - 1 and documents_function(code, lang) \
                and last_row(block[-1]) + 1 >= code.start_point[0]:
            return None   # the doc comment of the file's first function, not of the file
        text = re.sub(r"^\s*[@\\]file\b.*$", "", clean_comment(raw, lang), flags=re.M)
        return Header(block[0].start_byte, block[-1].end_byte, text)
    return None


def delete_header(src: bytes, h: Header) -> bytes:
    start, end = h.start, h.end
    if not src[line_start(src, start):start].strip() and not src[end:line_end(src, end)].strip():
        start, end = line_start(src, start), line_end(src, end)
        while end < len(src) and not src[end:line_end(src, end + 1)].strip():
            end = line_end(src, end + 1)   # and the blank lines under it
    return apply_edits(src, [(start, end, b"")])


def type_doc(src: bytes, lang: str) -> Header | None:
    """The doc comment of the one documented type that makes up most of the file (see "typedocs")."""
    tree = parser_for(lang).parse(src)
    documented = []
    for _name, node, anchor in type_definitions(tree, src, lang):
        if lang == "python":
            doc, _ = python_docstring(node, src)
            if doc is not None:
                text = clean_python_doc(python_string_value(doc, src))
                documented.append((node, Header(doc.start_byte, doc.end_byte, text)))
            continue
        comments, _ = doc_comment_above(anchor, src, lang)
        if comments:
            raw = "\n".join(src[c.start_byte:c.end_byte].decode("utf-8", "replace") for c in comments)
            documented.append((node, Header(comments[0].start_byte, comments[-1].end_byte, clean_comment(raw, lang))))
    if len(documented) != 1:
        return None
    node, header = documented[0]
    lines = src.split(b"\n")
    spanned = sum(1 for line in lines[node.start_point[0]:node.end_point[0] + 1] if line.strip())
    if spanned * 2 < sum(1 for line in lines if line.strip()) or LICENCE.search(header.text):
        return None
    return header


@dataclass
class FileQuestion:
    path: str
    end_line: int
    query: str
    norm: str


def mine_files(recipe: dict, pristine: Path, stats: Counter, find=None) -> tuple[dict, list[FileQuestion]]:
    """The variant's files (path -> bytes, None for a symlink) and its questions; `find`: what is asked
    and deleted (file_header for "files", type_doc for "typedocs")."""
    find = find or file_header
    files: dict[str, bytes | None] = {}
    candidates: list[FileQuestion] = []
    sentences: Counter = Counter()
    for rel in [f for f in git(["ls-files", "-z"], pristine).split("\0") if f]:
        path = pristine / rel
        if path.is_symlink():
            files[rel] = None
            continue
        src = files[rel] = path.read_bytes()
        lang = language_of(rel, src) if not BINARY.search(src[:8192]) else None
        if lang is None or not is_indexable(rel) or len(src) > MAX_FILE_BYTES:
            continue
        header = find(src, lang)
        if header is None:
            continue
        new = files[rel] = delete_header(src, header)
        sentence = first_sentence(header.text, lang)
        sentences[normalize(sentence)] += 1
        if FAMILY.get(lang, lang) != recipe["language"] or is_test_path(rel):
            continue
        stats["with_header"] += 1
        text = new.decode("utf-8", "replace")
        why = junk_reason(sentence)
        if not why and sentence.split()[0] == rel.rsplit("/", 1)[-1]:
            why = "names_file"
        elif not why and sum(1 for line in text.split("\n") if line.strip()) < 3:
            why = "under_3_lines"
        if why:
            stats[f"drop_{why}"] += 1
            continue
        n_lines = len(text.split("\n")) - (1 if text.endswith("\n") else 0)
        candidates.append(FileQuestion(rel, n_lines, sentence, normalize(sentence)))
    blob = "\n".join(normalize(b.decode("utf-8", "replace")) for rel, b in files.items()
                     if b is not None and is_indexable(rel) and len(b) <= MAX_FILE_BYTES
                     and not BINARY.search(b[:8192]))
    kept = []
    for c in candidates:
        why = "duplicate" if sentences[c.norm] > 1 else "leaked" if c.norm in blob else None
        stats[f"drop_{why}" if why else "candidates"] += 1
        if not why:
            kept.append(c)
    return files, kept


def write_variant(recipe: dict, files: dict, pristine: Path, dest: Path, set_name: str = "files") -> str:
    if dest.exists():
        head = git(["log", "-1", "--format=%B"], dest, check=False) if (dest / ".git").is_dir() else ""
        if not head.startswith(COMMIT_PREFIX):
            raise RuntimeError(f"{dest} exists and was not made by mine_sets.py; move it away")
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for rel, data in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            os.symlink(os.readlink(pristine / rel), target)
            continue
        target.write_bytes(data)
        os.chmod(target, (pristine / rel).stat().st_mode & 0o777 | 0o600)
    git(["init", "-q"], dest)
    git(["add", "-A", "-f", "."], dest)
    git(["commit", "-q", "--no-verify", "-m",
         f"{COMMIT_PREFIX} {recipe['name']} ({'file headers' if set_name == 'files' else 'type docs'})\n\nsource: {recipe['source']}\n"
         f"spec: {recipe['spec']}\nroot: {recipe['root']}\nlanguage: {recipe['language']}\n"
         f"{'file header comments' if set_name == 'files' else 'doc comments of files made of one type'} removed by "
         f"benchmarks/mined/mine_sets.py\n"], dest)
    return git(["rev-parse", "HEAD"], dest).strip()


def spread_over_languages(counts: dict[str, tuple[str, int]], most: int) -> list[str]:
    """Repository names, one language at a time (largest set first within it), up to `most`."""
    by_lang = defaultdict(list)
    for name, (lang, n) in sorted(counts.items(), key=lambda kv: (-kv[1][1], kv[0])):
        by_lang[lang].append(name)
    chosen: list[str] = []
    while len(chosen) < most and any(by_lang.values()):
        for lang in sorted(by_lang):
            if by_lang[lang] and len(chosen) < most:
                chosen.append(by_lang[lang].pop(0))
    return chosen


# --------------------------------------------------------------------------

def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def drops(stats: Counter) -> str:
    return ", ".join(f"{k[5:]} {v}" for k, v in sorted(stats.items()) if k.startswith("drop_"))


def symbol_set(args, recipes: list[dict], out: Path, report: dict, set_name: str = "symbols") -> int:
    qualified = set_name == "qualified"
    (out / set_name).mkdir(parents=True, exist_ok=True)
    missing = 0
    for r in recipes:
        repo = Path(args.corpus) / r["name"]
        if not (repo / ".git").is_dir():
            print(f"error: {r['name']}: {repo} missing (run mine.py first)", file=sys.stderr)
            missing += 1
            continue
        stats: Counter = Counter()
        cands = sorted(mine_symbols(r, repo, stats, qualified), key=lambda s: (s.path, s.start_line))
        rng = random.Random(f"{args.seed}:{set_name}:{r['name']}")
        chosen = (sorted(rng.sample(cands, min(len(cands), args.symbol_cap)), key=lambda s: (s.path, s.start_line))
                  if qualified else choose_symbols(cands, args.symbol_cap, rng))
        numbers: Counter = Counter()
        rows = []
        for s in chosen:
            numbers[s.kind] += 1
            rows.append({"id": f"{r['name']}-{s.kind.split('-')[1]}-{numbers[s.kind]:03d}", "repo": r["name"],
                         "query": s.name, "style": "identifier", "kind": s.kind,
                         "answers": [{"path": s.path, "start_line": s.start_line, "end_line": s.end_line,
                                      "symbol": s.name}]})
        write_jsonl(out / set_name / f"{r['name']}.jsonl", rows)
        stats.update({f"queries_{k}": v for k, v in numbers.items()})
        report.setdefault(r["name"], {"language": r["language"]})[set_name] = dict(sorted(stats.items()))
        print(f"{set_name} {r['name']:<24} {r['language']:<11} types {numbers['symbol-type']:>3} of "
              f"{stats['symbol-type']:>4}, functions {numbers['symbol-function']:>3} of "
              f"{stats['symbol-function']:>4}, qualified {numbers['symbol-qualified']:>3} of "
              f"{stats['symbol-qualified']:>4}  ({drops(stats)})", flush=True)
    return missing


def file_set(args, recipes: list[dict], out: Path, report: dict, set_name: str = "files") -> int:
    """The file-level set `set_name` (files: file headers asked; typedocs: a file's type's doc asked)."""
    find, kind = (file_header, "file") if set_name == "files" else (type_doc, "file-type")
    mined, missing = {}, 0
    for r in recipes:
        pristine = Path(args.pristine) / r["name"]
        if not (pristine / ".git").is_dir():
            print(f"error: {r['name']}: {pristine} missing (run get_corpus.py first)", file=sys.stderr)
            missing += 1
            continue
        stats: Counter = Counter()
        files, cands = mine_files(r, pristine, stats, find)
        rng = random.Random(f"{args.seed}:{set_name}:{r['name']}")
        chosen = sorted(rng.sample(sorted(cands, key=lambda c: c.path), min(len(cands), args.file_cap)),
                        key=lambda c: c.path)
        mined[r["name"]] = (r, files, chosen, stats)
    least, most = (args.min_files, args.max_repos) if set_name == "files" else (args.typedoc_min, args.typedoc_max_repos)
    big_enough = {n: (m[0]["language"], len(m[2])) for n, m in mined.items() if len(m[2]) >= least}
    kept = set(spread_over_languages(big_enough, most))
    for d in (set_name, f"{set_name}-corpus"):
        (out / d).mkdir(parents=True, exist_ok=True)
    for name, (r, files, chosen, stats) in mined.items():
        stats["queries"] = len(chosen) if name in kept else 0
        verdict = "kept" if name in kept else "too few" if name not in big_enough else "over --max-repos"
        print(f"{set_name:<8}{name:<24} {r['language']:<11} questions {len(chosen):>3} of {stats['candidates']:>4} "
              f"{verdict:<17} (with header {stats['with_header']}, {drops(stats)})", flush=True)
        report.setdefault(name, {"language": r["language"]})[set_name] = dict(sorted(stats.items()))
        qfile, variant = out / set_name / f"{name}.jsonl", out / f"{set_name}-corpus" / name
        if name not in kept:   # a repository left out by an earlier run's choice goes
            qfile.unlink(missing_ok=True)
            if (variant / ".git").is_dir() and git(["log", "-1", "--format=%B"], variant,
                                                   check=False).startswith(COMMIT_PREFIX):
                shutil.rmtree(variant)
            continue
        report[name][set_name]["commit"] = write_variant(r, files, Path(args.pristine) / name, variant, set_name)
        write_jsonl(qfile, [{"id": f"{name}-{kind}-{i:03d}", "repo": name, "query": c.query, "style": "semantic",
                             "kind": kind, "answers": [{"path": c.path, "start_line": 1, "end_line": c.end_line}]}
                            for i, c in enumerate(chosen, 1)])
    return missing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--recipes", required=True, help="recipe TSV (get_corpus.py format)")
    ap.add_argument("--pristine", required=True, help="folder that get_corpus.py filled from --recipes")
    ap.add_argument("--corpus", required=True, help="folder of the repositories mine.py stripped")
    ap.add_argument("--out", required=True, help="writes symbols/, qualified/, files/, files-corpus/, typedocs/, typedocs-corpus/, sets-stats.json")
    ap.add_argument("--sets", default="symbols,files,typedocs", help="which sets to mine (symbols, qualified, files, typedocs; default all but qualified)")
    ap.add_argument("--symbol-cap", type=int, default=40, help="symbol questions per repository at most")
    ap.add_argument("--file-cap", type=int, default=30, help="file questions per repository at most")
    ap.add_argument("--min-files", type=int, default=5, help="file questions a repository needs to be kept")
    ap.add_argument("--max-repos", type=int, default=20, help="variant repositories at most (each is indexed)")
    ap.add_argument("--typedoc-min", type=int, default=3, help="type-doc questions a repository needs to be kept")
    ap.add_argument("--typedoc-max-repos", type=int, default=32, help="type-doc variant repositories at most")
    ap.add_argument("--seed", default="codesearch-mined-sets-1", help="sampling seed")
    ap.add_argument("--only", default="", help="comma-separated recipe names")
    args = ap.parse_args(argv)
    sets = {s.strip() for s in args.sets.split(",")}
    recipes = read_recipes(args.recipes)
    if args.only:
        recipes = [r for r in recipes if r["name"] in {x.strip() for x in args.only.split(",")}]
    out = Path(args.out).resolve()
    stats_file = out / "sets-stats.json"
    report = json.loads(stats_file.read_text(encoding="utf-8")) if stats_file.is_file() else {}
    missing = symbol_set(args, recipes, out, report) if "symbols" in sets else 0
    missing += symbol_set(args, recipes, out, report, "qualified") if "qualified" in sets else 0
    for set_name in ("files", "typedocs"):
        missing += file_set(args, recipes, out, report, set_name) if set_name in sets else 0
    stats_file.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
