"""Language support as data: one row per language, one tree-sitter query file per language.

A query file captures definitions with one of two prefixes:
  @unit.<kind>   a piece of code that becomes a chunk (function, method, ...)
  @scope.<kind>  a container that names its members (class, impl, namespace, ...)
and @name for the definition's name; @qualifier, when present, is prepended to the
name (a Go method's receiver type, for instance).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import PurePosixPath


@dataclass(frozen=True)
class LanguageSpec:
    name: str
    extensions: tuple[str, ...]
    grammar: str  # "module:function" returning the tree-sitter language pointer
    separator: str = "."  # joins a symbol path: Class.method, mod::Type::fn
    template_macros: bool = False  # files with Jinja {% macro %} blocks are cut at those blocks
    # (extension, pattern, language): a file with this extension whose text matches is parsed as that language
    content_overrides: tuple[tuple[str, str, str], ...] = ()
    queries: str = ""  # the query file's language when another's serves (TSX's grammar extends TypeScript's)
    shared_queries: tuple[str, ...] = ()  # query files of patterns several grammars share, read after its own

    @property
    def query_file(self) -> str:
        return f"{self.queries or self.name}.scm"


LANGUAGES: tuple[LanguageSpec, ...] = (
    LanguageSpec("python", (".py", ".pyi"), "tree_sitter_python:language"),
    LanguageSpec("javascript", (".js", ".mjs", ".cjs", ".jsx"), "tree_sitter_javascript:language",
                 shared_queries=("ecmascript-imports",)),
    LanguageSpec("typescript", (".ts", ".mts", ".cts"), "tree_sitter_typescript:language_typescript",
                 shared_queries=("ecmascript-imports",)),
    LanguageSpec("tsx", (".tsx",), "tree_sitter_typescript:language_tsx", queries="typescript",
                 shared_queries=("ecmascript-imports",)),
    LanguageSpec("go", (".go",), "tree_sitter_go:language"),
    LanguageSpec("java", (".java",), "tree_sitter_java:language"),
    LanguageSpec("kotlin", (".kt", ".kts"), "tree_sitter_kotlin:language"),
    LanguageSpec("scala", (".scala", ".sc"), "tree_sitter_scala:language"),
    LanguageSpec("csharp", (".cs",), "tree_sitter_c_sharp:language"),
    LanguageSpec("php", (".php", ".phtml"), "tree_sitter_php:language_php", "::"),
    LanguageSpec("ruby", (".rb", ".rake", ".gemspec"), "tree_sitter_ruby:language", "::"),
    # A .h file is often C++: a cheap look at its text decides.
    LanguageSpec("c", (".c", ".h"), "tree_sitter_c:language", "::",
                 content_overrides=((".h", r"^\s*(class|namespace|template\s*<)\b|\w::\w", "cpp"),)),
    LanguageSpec("cpp", (".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp", ".inl"), "tree_sitter_cpp:language", "::"),
    LanguageSpec("rust", (".rs",), "tree_sitter_rust:language", "::"),
    LanguageSpec("swift", (".swift",), "tree_sitter_swift:language"),
    LanguageSpec("lua", (".lua",), "tree_sitter_lua:language"),
    LanguageSpec("sql", (".sql",), "tree_sitter_sql:language", template_macros=True),
    LanguageSpec("bash", (".sh", ".bash", ".zsh"), "tree_sitter_bash:language"),
    LanguageSpec("html", (".html", ".htm"), "tree_sitter_html:language", template_macros=True),
    LanguageSpec("css", (".css",), "tree_sitter_css:language", " "),
)

SNIFF_BYTES = 64 * 1024
_BY_NAME = {spec.name: spec for spec in LANGUAGES}
_BY_EXTENSION = {ext: spec for spec in LANGUAGES for ext in spec.extensions}


def language_names() -> list[str]:
    return [spec.name for spec in LANGUAGES]


def spec_by_name(name: str) -> LanguageSpec | None:
    return _BY_NAME.get(name)


def spec_for_path(path: str) -> LanguageSpec | None:
    suffix = PurePosixPath(path).suffix.lower()
    return _BY_EXTENSION.get(suffix)


def spec_for_source(path: str, source: bytes) -> LanguageSpec | None:
    """The spec for a file, looking at its text where the extension is ambiguous (.h: C or C++)."""
    spec = spec_for_path(path)
    if spec is None:
        return None
    suffix = PurePosixPath(path).suffix.lower()
    for extension, pattern, language in spec.content_overrides:
        if suffix == extension and _sniff(pattern, source):
            return _BY_NAME[language]
    return spec


def _sniff(pattern: str, source: bytes) -> bool:
    head = source[:SNIFF_BYTES].decode("utf-8", errors="replace")
    return re.search(pattern, head, re.MULTILINE) is not None


def has_query(spec: LanguageSpec) -> bool:
    return resources.files("codesearch.source.queries").joinpath(spec.query_file).is_file()


@cache
def load_language(spec: LanguageSpec):
    """The tree-sitter Language and compiled Query for a spec, or None when it has no query file."""
    from tree_sitter import Language, Query

    if not has_query(spec):
        return None
    module_name, function_name = spec.grammar.split(":")
    language = Language(getattr(importlib.import_module(module_name), function_name)())
    return language, Query(language, query_source(spec))


def query_source(spec: LanguageSpec) -> str:
    """The text of a spec's query: its own file, then the files it shares."""
    folder = resources.files("codesearch.source.queries")
    return "\n".join(folder.joinpath(name).read_text(encoding="utf-8")
                     for name in (spec.query_file, *(f"{shared}.scm" for shared in spec.shared_queries)))
