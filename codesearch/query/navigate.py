"""Code navigation over the index's code graph (index/graph.py): where a name is defined, every place that
refers to it, who calls it and what it calls.

Resolution is by name, narrowed by what the referring code can see, and every site says how sure it is:
  same file       the file defines the name itself;
  same class      `self.m()`, `this.m()`, `super().m()`, Go's `p.m()` in a method of p: the enclosing class's
                  own or its bases' (as its inheritance references name them), nearest first;
  imported        the file imports the name (from a module that defines it), or what it is reached through;
  unique          one definition of the name in the repository;
  same package    (Go) a definition in the file's folder;
  ambiguous       several definitions, and nothing in the code picks one (`x.get()` on an object of unknown
                  class: every method `get`);
  not defined here  no definition in the repository (a library's, the language's).
Nothing here type-checks. What narrows is what holds in any code: a bare name is never a method (in the
languages that reach one only through its object); a name reached through a module (`requests.get`) is none
either; one imported from, or reached through, a module the repository does not hold (`os.path.join`) is that
library's; `Foo(x).m()` is Foo's m; a reference means a definition of its own language family. `callers`,
`callees` and `impact` follow an ambiguous call only among MAX_CANDIDATES definitions, unless asked for
`everything`: a name that many classes define would make every call of it a caller of each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from codesearch.errors import CodesearchError, IndexMissing
from codesearch.index.database import StoredChunk
from codesearch.source.chunk import CHUNKER_VERSION
from codesearch.index import graph
from codesearch.index.graph import (NAMELESS_KINDS, QUALIFIER, defined_names, in_module, members_home,
                                    module_names, package_names, qualified_as, same_family, symbol_parts,
                                    whole_units)
from codesearch.query.api import Filters
from codesearch.source.references import THROUGH_EXPRESSION

# Languages whose files see only the names they define or import: an unqualified name is one of those.
FILE_SCOPED = frozenset({"python", "javascript", "typescript", "tsx"})
MAX_SITES = 10_000  # references read for one name: a name used more often than this is no one's
# An ambiguous call among more definitions than this (`x.get()`, `get` a method of many classes) is no caller
# of each unless asked: among two, half the time it is.
MAX_CANDIDATES = 2
MAX_LINEAGE = 50  # classes followed up an inheritance line: deeper is a cycle the names could not break
# Qualifiers that mean the enclosing object or class (`self.m()`), or its bases (`super().m()`; PHP's
# `parent::m()`, C#'s `base.M()`, words that are plain variables elsewhere).
SELF_NAMES = frozenset({"self", "this", "cls", "Self", "static", "$this", "@"})
SUPER_NAMES = {"php": "parent", "csharp": "base"}
# Where a method names its own object as it likes (Go's `func (p *parser) f()`): how its signature says so.
RECEIVERS = {"go": re.compile(r"^\s*func\s*\(\s*(\w+)", re.MULTILINE)}
# Languages that reach a method only through its object (`self.m()`, `p.m()`): a bare name is never one.
NO_IMPLICIT_SELF = FILE_SCOPED | {"go", "rust", "php", "lua"}
OF_UNKNOWN_CLASS, THROUGH_PACKAGE = "of unknown class", "through a package"  # what _narrowed leaves open
CASE_INSENSITIVE = frozenset({"sql", "php"})  # languages whose function names ignore case
FREE_KINDS = frozenset({"function"})  # definitions no object holds: reached by name or through their module
MEMBER_KINDS = frozenset({"method", "constructor", "destructor", "property", "indexer", "operator", "event"})
# Containers whose members `self`/`this` reach; the bases their inheritance references name.
CLASS_KINDS = ("class", "struct", "interface", "trait", "protocol", "object", "enum", "impl", "type")


@dataclass(frozen=True)
class Site:
    """One reference: the chunk it sits in (its enclosing definition, or a file's top-level code), the name it
    refers to, its kind (call, type, inherit, import), its line, and how sure its resolution is."""

    chunk: StoredChunk
    name: str
    kind: str
    line: int
    resolved: str
    qualifier: str = ""  # what the name is reached through (`json` in `json.load()`), when a plain name


@dataclass
class Node:
    """A definition in a callers or callees tree, reached through `site` (None at the root)."""

    chunk: StoredChunk
    site: Site | None = None
    children: list["Node"] = field(default_factory=list)


class CodeGraph:
    """Reads the code graph of one open index database; `filters` (languages, paths) apply to every answer."""

    def __init__(self, database, filters: Filters = Filters()):
        manifest = database.manifest()
        if not manifest:
            raise IndexMissing("the index is empty; run `codesearch index`")
        if manifest.get("chunker_version") != CHUNKER_VERSION:
            raise CodesearchError("this index was built by a codesearch that kept no code graph; run "
                                  "`codesearch index` to rebuild it (the vectors already computed are reused)")
        self.database, self.filters = database, filters
        self._memos: dict[str, dict] = {}  # per table (definitions, imports, ...): key -> what was read

    # -- definitions -----------------------------------------------------------------------

    def definitions(self, name: str) -> list[StoredChunk]:
        """The chunks defining `name`: bare (`parse_config`) or qualified (`Config.parse`, `a::b::f`, whose
        containers must end the definition's own path). Exact case first; one chunk per split function."""
        return self._memo("definitions", name, lambda: self._find_definitions(name))

    def _find_definitions(self, name: str) -> list[StoredChunk]:
        parts = [part for part in QUALIFIER.split(name.strip()) if part]
        if not parts:
            return []
        rows = self.database.db.execute("SELECT chunk_id FROM definitions WHERE name = ?", (parts[-1],)).fetchall()
        chunks = [chunk for chunk in self.database.chunks_by_id(chunk_id for (chunk_id,) in rows).values()
                  if self._allowed(chunk) and qualified_as(chunk.symbol, parts)]
        exact = [chunk for chunk in chunks if parts[-1] in defined_names(chunk.symbol, "")]
        return whole_units(exact or chunks)

    # -- references ------------------------------------------------------------------------

    def references(self, name: str, kinds: tuple[str, ...] = ()) -> list[Site]:
        """Every site referring to `name` (of these kinds), in path and line order. For a qualified name, only
        sites in files that can see its container (define, import or mention it)."""
        parts = [part for part in QUALIFIER.split(name.strip()) if part]
        if not parts:
            return []
        targets = self.definitions(name)
        rows = self.database.db.execute("SELECT chunk_id, name, kind, line, qualifier FROM refs WHERE name = ? LIMIT ?",
                                        (parts[-1], MAX_SITES)).fetchall()
        rows = [row for row in rows if row[1] == parts[-1]] or rows  # case decides, unless only case differs
        chunks = self.database.chunks_by_id({row[0] for row in rows})
        sites = []
        for chunk_id, found, kind, line, qualifier in rows:
            chunk = chunks.get(chunk_id)
            if chunk is None or not self._allowed(chunk) or (kinds and kind not in kinds):
                continue
            if len(parts) > 1 and not self._sees(chunk.path, parts[-2]):
                continue
            # An import's qualifier is where it imports from: the name is resolved as the file then sees it.
            resolved = self.resolve(chunk, found, "" if kind == "import" else qualifier, targets)[1]
            sites.append(Site(chunk, found, kind, line, resolved, qualifier))
        return sorted(sites, key=lambda site: (site.chunk.path, site.line, site.kind))

    def resolve(self, chunk: StoredChunk, name: str, qualifier: str, targets: list[StoredChunk]) -> tuple[list, str]:
        """The definitions among `targets` (those of `name`) that a reference in `chunk` can mean, and how sure
        that is (the module's docstring lists how). What the name is reached through narrows them first
        (_narrowed); then the file: its own definition, then what it imports, then in Python and JavaScript
        nothing else (a builtin's, a global's), in Go its package's."""
        path, given = chunk.path, targets
        targets = [target for target in targets if same_family(target.language, chunk.language)]
        if chunk.language not in CASE_INSENSITIVE:  # `len` is no call of a method `Len`
            targets = [target for target in targets if name in defined_names(target.symbol, "")]
        targets, how = self._narrowed(chunk, name, qualifier, targets)
        several = len({(target.path, target.symbol) for target in targets}) > 1  # overloads are one function
        if how == OF_UNKNOWN_CLASS and targets:  # the file does not say which class's: being here picks none
            return targets, "ambiguous" if several else "unique"
        if how not in (OF_UNKNOWN_CLASS, THROUGH_PACKAGE, ""):
            return targets, how
        here = [target for target in targets if target.path == path]
        if here:
            return here, "same file"
        if not targets:
            filtered_out = name in self._defined_names(path) and not any(t.path == path for t in given)
            return [], "same file" if filtered_out else "not defined here"
        if how == THROUGH_PACKAGE and several:
            return targets, "ambiguous"
        imported = self._imported_names(path)
        if qualifier and qualifier.partition(".")[0] in imported:
            return targets, "imported"
        if name in imported and not qualifier:
            sources = imported[name]
            named = [target for target in targets if "" in sources or any(in_module(target.path, source)
                                                                           for source in sources)]
            if named or self._from_repository(name, sources):
                return named or targets, "imported"  # or through a module that imports it in turn
            return [], "not defined here"  # `from werkzeug.exceptions import abort`
        if not qualifier:
            language = targets[0].language if all(t.language == targets[0].language for t in targets) else ""
            if language in FILE_SCOPED and chunk.language in FILE_SCOPED:
                return [], "not defined here"  # a builtin, a global, or a star import's
            if language == "go":
                folder = path.rpartition("/")[0]
                package = [target for target in targets if target.path.rpartition("/")[0] == folder]
                return (package, "same package") if package else ([], "not defined here")
        return targets, "ambiguous" if several else "unique"

    def _narrowed(self, chunk: StoredChunk, name: str, qualifier: str, targets: list[StoredChunk]) -> tuple[list, str]:
        """The targets what a name is reached through leaves, with a resolution when that settles it, else
        OF_UNKNOWN_CLASS (an object's member: `x.get()`), THROUGH_PACKAGE (a package folder's name) or "".
        `self.parse` means the enclosing class's or its bases'; `Foo(x).parse` Foo's; `Config.parse` Config's;
        `json.load`, through an imported module the repository does not hold, a library's."""
        head, imported = qualifier.partition(".")[0], self._imported_names(chunk.path)
        through_super = qualifier in ("super", SUPER_NAMES.get(chunk.language))
        if qualifier in SELF_NAMES or through_super or (qualifier and qualifier == self._receiver(chunk)):
            inherited, outside = self._in_class(chunk, targets, skip_own=through_super)
            if inherited:
                return inherited, "same class"
            if outside and through_super:
                return [], "not defined here"  # the base the repository does not hold has it
        elif qualifier.endswith("()"):
            made = self._constructed(chunk, qualifier[:-2], targets)
            if made is not None:
                return made
        elif qualifier and qualifier != THROUGH_EXPRESSION and head not in SELF_NAMES:
            if self._from_library(chunk, qualifier):
                return [], "not defined here"  # `os.path.join`, `json.load`: the library's
            holder = qualifier.rpartition(".")[2].lower()
            # A variable named after its class (`session.get()`) reaches it as the class's name does.
            classes = [target for target in targets if holder in {part.lower() for part in _container(target)[-1:]}]
            modules = [target for target in targets if target.kind not in MEMBER_KINDS and target.path != chunk.path
                       and holder in module_names(target.path, target.language)]
            # A package folder above the definition may re-export it (`flask.flash`), or only share its name.
            packages = [target for target in targets if target.kind not in MEMBER_KINDS
                        and holder in package_names(target.path)]
            # A chain names modules only from an imported module (`flask.json.dumps`, not `app.json.dumps`).
            if (classes or modules or packages) and (head == qualifier or "" in imported.get(head, ())):
                return classes or modules or packages, "" if classes or modules else THROUGH_PACKAGE
            if "" in imported.get(head, ()):
                return [], "not defined here"  # a module of the repository's that holds none of them
        elif not qualifier:
            if chunk.language in NO_IMPLICIT_SELF:  # a bare name: no method, nor in Python or JavaScript an
                targets = [target for target in targets if target.kind not in MEMBER_KINDS and (  # object's member
                    chunk.language not in FILE_SCOPED or not _container(target)  # but another file's export
                    or (name in imported and target.path != chunk.path))]
            return targets, ""
        return _members(targets), OF_UNKNOWN_CLASS  # an object's member: a method, not a free function

    def callers(self, name: str, depth: int = 1, everything: bool = False) -> list[Node]:
        """A tree per definition of `name`: the definitions whose code calls it, and theirs, `depth` levels;
        a call ambiguous among many definitions (`x.get()`, `get` a method of many classes) only when asked
        for `everything`."""
        step = lambda target: [(site.chunk, site, site.chunk.kind not in NAMELESS_KINDS)  # noqa: E731
                               for site in self._calls_of(target, everything)]
        return [self._tree(target, depth, step) for target in self.definitions(name)]

    def callees(self, name: str, depth: int = 1, everything: bool = False) -> list[Node]:
        """A tree per definition of `name`: the definitions its code calls, and theirs, `depth` levels; a call
        of a name the repository does not define is a leaf with no chunk of its own (site only), and the
        candidates of an ambiguous call are leaves unless `everything` is asked for."""
        step = lambda source: self._callees_step(source, everything)  # noqa: E731
        return [self._tree(target, depth, step) for target in self.definitions(name)]

    def impact(self, path: str, line: int | None = None, depth: int = 5,
               everything: bool = False) -> list[tuple[StoredChunk, int, Site | None]]:
        """What a change at `path` (at `line`, or anywhere in the file) can reach: the definitions there
        (distance 0), then every definition that calls one of them, transitively up to `depth` calls away,
        nearest first; each with the call that reaches it (an ambiguous one only when `everything`)."""
        here = [chunk for chunk in self.database.chunks_in_file(path) if chunk.kind not in NAMELESS_KINDS
                and (line is None or chunk.start_line <= line <= chunk.end_line)]
        reached = {(chunk.path, chunk.symbol): (chunk, 0, None) for chunk in whole_units(here)}
        frontier = [chunk for chunk, _, _ in reached.values()]
        for distance in range(1, depth + 1):
            following = []
            for target in frontier:
                for site in self._calls_of(target, everything):
                    key = (site.chunk.path, site.chunk.symbol)
                    if key not in reached and site.chunk.kind not in NAMELESS_KINDS and self._allowed(site.chunk):
                        reached[key] = (site.chunk, distance, site)
                        following.append(site.chunk)
            frontier = following
        return sorted(reached.values(), key=lambda item: (item[1], item[0].path, item[0].start_line))

    # -- internals -------------------------------------------------------------------------

    def _tree(self, root: StoredChunk, depth: int, step) -> Node:
        """The tree below `root`, `depth` levels of step(chunk) -> (chunk, site, whether it goes on); a
        definition met twice is a leaf the second time."""
        seen = {(root.path, root.symbol)}

        def grow(node: Node, left: int) -> Node:
            for chunk, site, goes_on in step(node.chunk) if left > 0 else ():
                key = (chunk.path, chunk.symbol)
                child = Node(chunk, site)
                if goes_on and key not in seen:
                    seen.add(key)
                    grow(child, left - 1)
                node.children.append(child)
            return node

        return grow(Node(root), depth)

    def _callees_step(self, source: StoredChunk, everything: bool):
        found = []
        for name, line, qualifier in graph.calls_in(self.database.db, source.path, source.symbol, source.id):
            chosen, resolved = self.resolve(source, name, qualifier, self.definitions(name))
            site = Site(source, name, "call", line, resolved, qualifier)
            external = StoredChunk(0, "", line, line, name, "external", source.language, "", "")
            goes_on = everything or _pinned(resolved, chosen)
            found += [(target, site, goes_on) for target in chosen] or [(external, site, False)]
        return found

    def _calls_of(self, target: StoredChunk, everything: bool = False) -> list[Site]:
        """The call sites that resolve to `target` (one of the definitions they may mean); one ambiguous among
        more than MAX_CANDIDATES definitions only when asked for `everything`."""
        found = []
        for name in defined_names(target.symbol, ""):
            targets = self.definitions(name)
            for site in self.references(name, kinds=("call",)):
                meant = self.resolve(site.chunk, name, site.qualifier, targets)[0]
                if target in meant and (everything or _pinned(site.resolved, meant)):
                    found.append(site)
        return found

    def _in_class(self, chunk: StoredChunk, targets: list[StoredChunk], skip_own: bool = False) -> tuple[list, bool]:
        """The targets that are members of the class enclosing `chunk` or of its bases: those of the nearest
        class along that line that has any (its own first, unless `skip_own`: `super().m()`); and whether a
        base along it is none of the repository's (a library's class, `object`)."""
        parts = symbol_parts(chunk.symbol) if chunk.kind not in NAMELESS_KINDS else ()
        classes = self._classes_in(chunk.path)
        enclosing = next((parts[:end] for end in range(len(parts), 0, -1) if parts[:end] in classes), None)
        if enclosing is None and len(parts) > 1:  # a class with no chunk of its own (its members cover it), or
            enclosing = parts[:-1]  # the object a function is assigned to (`res.json = function`): no bases known
        return self._members_along(chunk.path, enclosing, targets, skip_own) if enclosing else ([], False)

    def _constructed(self, chunk: StoredChunk, callee: str, targets: list[StoredChunk]) -> tuple[list, str] | None:
        """`Foo(x).m()`: the members of the class Foo names or of its bases, as sure as Foo's own resolution;
        none when Foo is a library's; None when Foo is no class of the repository's (a function's result)."""
        prefix, _, called = callee.rpartition(".")
        meant, how = self.resolve(chunk, called, prefix, self.definitions(called))
        found, outside = [], False
        for klass in [target for target in meant if target.kind in CLASS_KINDS]:
            members, beyond = self._members_along(klass.path, symbol_parts(klass.symbol), targets)
            found, outside = found + members, outside or beyond
        if found:
            return found, how
        # A library's base class has it, or a library's class or function made the object (`Path(x).open()`).
        return ([], "not defined here") if outside or self._from_library(chunk, callee) else None

    def _members_along(self, path: str, enclosing: tuple[str, ...], targets: list[StoredChunk],
                       skip_own: bool = False) -> tuple[list, bool]:
        """The targets that are members of a class or of its bases, nearest first, as the class's inheritance
        references name them (resolved as any reference is); and whether some base is none of the repository's."""
        order: list[tuple[str, tuple[str, ...]]] = []
        waiting, outside = [(path, enclosing)], False
        while waiting and len(order) < MAX_LINEAGE:
            owner = waiting.pop(0)
            if owner not in order:
                order.append(owner)
                bases, complete = self._bases(*owner)
                waiting += [(base.path, symbol_parts(base.symbol)) for base in bases]
                outside = outside or not complete
        for owner in order[1 if skip_own else 0:]:
            found = [target for target in targets if _container(target) == owner[1]
                     and members_home(target.path, target.language) == members_home(owner[0], target.language)]
            if found:
                return found, outside
        return [], outside

    def _bases(self, path: str, parts: tuple[str, ...]) -> tuple[list[StoredChunk], bool]:
        """The class definitions a class's inheritance references (`class A(B)`, `extends B`) resolve to, and
        whether each resolved to one."""
        def resolved():
            rows = graph.inheritance(self.database.db, self._classes_in(path).get(parts, []))
            chunks = self.database.chunks_by_id({chunk_id for chunk_id, _, _ in rows})
            bases = [self.resolve(chunks[chunk_id], name, qualifier, [target for target in self.definitions(name)
                                                                      if target.kind in CLASS_KINDS])[0]
                     for chunk_id, name, qualifier in rows]
            return list({base.id: base for found in bases for base in found}.values()), all(bases)

        return self._memo("bases", (path, parts), resolved)

    def _classes_in(self, path: str) -> dict[tuple[str, ...], list[int]]:
        return self._memo("classes", path, lambda: graph.containers_in(self.database.db, path, CLASS_KINDS))

    def _imported_names(self, path: str) -> dict[str, set[str]]:
        return self._memo("imports", path, lambda: graph.imports_in(self.database.db, path))

    def _defined_names(self, path: str) -> set[str]:
        return self._memo("defined", path, lambda: graph.defined_in(self.database.db, path))

    def _sees(self, path: str, container: str) -> bool:
        """Whether the file at `path` can see `container`: it defines, imports or mentions it."""
        return (container in self._defined_names(path) or container in self._imported_names(path)
                or graph.mentions(self.database.db, path, container))

    def _from_library(self, chunk: StoredChunk, qualifier: str) -> bool:
        """Whether what a qualifier starts with is imported in the chunk's file from a library (`os` of `os.path`)."""
        head = qualifier.partition(".")[0]
        imported = self._imported_names(chunk.path)
        return head in imported and not self._from_repository(head, imported[head])

    def _from_repository(self, name: str, sources: set[str]) -> bool:
        """Whether an imported name can be the repository's: imported relatively, or from (or as) a module
        whose top-level package the repository holds; `os`, `werkzeug.exceptions` are libraries'."""
        top_level = self._memo("top level", "", lambda: graph.top_level_names(graph.file_paths(self.database.db)))
        return any(source.startswith((".", "/")) or re.split(r"[./]", source or name)[0] in top_level
                   for source in sources)

    def _receiver(self, chunk: StoredChunk) -> str:
        """The name a method gives its own object, in a language where it chooses one (RECEIVERS); else ""."""
        pattern = RECEIVERS.get(chunk.language)
        if pattern is None or chunk.kind in NAMELESS_KINDS:
            return ""
        first = self._memo("receivers", (chunk.path, chunk.symbol), lambda: graph.opening_text(
            self.database.db, chunk.path, chunk.symbol))
        found = pattern.search(first)  # after the doc comment
        return found.group(1) if found else ""

    def _memo(self, table: str, key, compute):
        """What compute() gives, once per key: a tree, and each site's resolution, ask the same again."""
        memo = self._memos.setdefault(table, {})
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def _allowed(self, chunk: StoredChunk) -> bool:
        filters = self.filters
        if filters.languages and chunk.language not in filters.languages:
            return False
        return not (filters.include_globs or filters.exclude_globs) or filters.allows_path(chunk.path)


def _container(chunk: StoredChunk) -> tuple[str, ...]:
    """The symbol parts of what holds a definition (`("Config",)` for Config.parse; `()` at a file's top)."""
    return symbol_parts(chunk.symbol)[:-1]


def _pinned(resolved: str, meant: list[StoredChunk]) -> bool:
    """Whether a call is one to follow by default: not ambiguous among more than MAX_CANDIDATES definitions."""
    return resolved != "ambiguous" or len({(chunk.path, chunk.symbol) for chunk in meant}) <= MAX_CANDIDATES


def _members(targets: list[StoredChunk]) -> list[StoredChunk]:
    """Those an object can hold: not a free function (`obj.f = function` is an object's)."""
    return [target for target in targets if target.kind not in FREE_KINDS or _container(target)]


def definition_json(chunk: StoredChunk) -> dict:
    return {"path": chunk.path, "start_line": chunk.start_line, "end_line": chunk.end_line, "symbol": chunk.symbol,
            "kind": chunk.kind, "language": chunk.language}


def site_json(site: Site) -> dict:
    """A reference as JSON: where it is, what it names, in which definition, and how sure its resolution is."""
    return {"path": site.chunk.path, "line": site.line, "name": site.name, "kind": site.kind,
            "resolved": site.resolved, "in": {key: value for key, value in definition_json(site.chunk).items()
                                               if key != "path"}}


def impact_json(chunk: StoredChunk, distance: int, site: Site | None) -> dict:
    """What a change reaches as JSON: the definition, its distance in calls, and the call that reaches it."""
    found = {**definition_json(chunk), "distance": distance}
    if site is not None:
        found["call"] = {"path": site.chunk.path, "line": site.line, "resolved": site.resolved}
    return found


def node_json(node: Node) -> dict:
    """A callers/callees tree as JSON; a call of a name no file here defines has "kind": "external"."""
    found = definition_json(node.chunk) if node.chunk.path else {"symbol": node.chunk.symbol, "kind": "external"}
    if node.site is not None:
        found["call"] = {"path": node.site.chunk.path, "line": node.site.line, "resolved": node.site.resolved}
    found["children"] = [node_json(child) for child in node.children]
    return found
