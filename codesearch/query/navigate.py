"""Code navigation over the index's code graph (index/graph.py): where a name is defined, every place that
refers to it, who calls it and what it calls.

Resolution is by name, narrowed by what the referring file can see, and every site says how sure it is:
  same file       the file defines the name itself;
  imported        the file imports the name;
  unique          one definition of the name in the repository;
  same package    (Go) a definition in the file's folder;
  ambiguous       several definitions, and nothing in the file picks one;
  not defined here  no definition in the repository (a library's, the language's).
Nothing here type-checks: `obj.get()` is a call of every `get` the file can see.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codesearch.errors import CodesearchError, IndexMissing
from codesearch.index.database import StoredChunk
from codesearch.source.chunk import CHUNKER_VERSION
from codesearch.index.graph import NAMELESS_KINDS, QUALIFIER, defined_names
from codesearch.query.api import Filters
from codesearch.source.references import THROUGH_EXPRESSION

MAX_SITES = 10_000  # references read for one name: a name used more often than this is no one's
# Qualifiers that mean the enclosing object or class: they do not narrow a name to another owner.
SELF_NAMES = frozenset({"self", "this", "cls", "super", "base", "Self", "static", "parent", "$this", "@"})
# Languages whose files see only the names they define or import: an unqualified name is one of those.
FILE_SCOPED = frozenset({"python", "javascript", "typescript", "tsx"})
PACKAGE_FILES = frozenset({"__init__", "index", "mod", "lib"})
CASE_INSENSITIVE = frozenset({"sql", "php"})  # languages whose function names ignore case
FREE_KINDS = frozenset({"function"})  # definitions no object holds: reached by name or through their module


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
        self._imports: dict[str, set[str]] = {}
        self._definitions: dict[str, list[StoredChunk]] = {}
        self._defined_in: dict[str, set[str]] = {}

    # -- definitions -----------------------------------------------------------------------

    def definitions(self, name: str) -> list[StoredChunk]:
        """The chunks defining `name`: bare (`parse_config`) or qualified (`Config.parse`, `a::b::f`, whose
        containers must end the definition's own path). Exact case first; one chunk per split function."""
        if name not in self._definitions:  # a tree, and each site's resolution, ask for the same names again
            self._definitions[name] = self._find_definitions(name)
        return self._definitions[name]

    def _find_definitions(self, name: str) -> list[StoredChunk]:
        parts = [part for part in QUALIFIER.split(name.strip()) if part]
        if not parts:
            return []
        rows = self.database.db.execute("SELECT chunk_id FROM definitions WHERE name = ?", (parts[-1],)).fetchall()
        chunks = [chunk for chunk in self.database.chunks_by_id(chunk_id for (chunk_id,) in rows).values()
                  if self._allowed(chunk) and _qualified_as(chunk.symbol, parts)]
        exact = [chunk for chunk in chunks if parts[-1] in defined_names(chunk.symbol, "")]
        return _whole_units(exact or chunks)

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
            resolved = self.resolve(chunk.path, found, qualifier, targets)[1]
            sites.append(Site(chunk, found, kind, line, resolved, qualifier))
        return sorted(sites, key=lambda site: (site.chunk.path, site.line, site.kind))

    def resolve(self, path: str, name: str, qualifier: str, targets: list[StoredChunk]) -> tuple[list, str]:
        """The definitions among `targets` (those of `name`) that a reference in `path` can mean, and how sure
        that is. A qualifier narrows them: `Config.parse` to Config's; `json.load`, through an imported name
        that owns none of them, to none (a library's). An unqualified name means, in a language whose files
        see only what they define or import (Python, JavaScript, TypeScript), one of those or none; in Go,
        one of its package's (its folder's)."""
        imported = self._imported_names(path)
        through_package = False
        if _language_of(path) not in CASE_INSENSITIVE:  # `len` is no call of a method `Len`
            targets = [target for target in targets if name in defined_names(target.symbol, "")]
        if qualifier and qualifier not in SELF_NAMES and qualifier != THROUGH_EXPRESSION:
            owners = [target for target in targets if qualifier.lower() in _owners(target)]
            # A package folder above the definition may re-export it (`flask.flash`), or only share its name.
            packages = [target for target in targets if qualifier.lower() in _packages(target)]
            if owners or packages:
                targets, through_package = owners or packages, not owners
            elif qualifier in imported:
                return [], "not defined here"
            else:  # an object's member (`session.get()`): a method, not a free function of that name
                targets = [target for target in targets if target.kind not in FREE_KINDS]
        elif qualifier == THROUGH_EXPRESSION:
            targets = [target for target in targets if target.kind not in FREE_KINDS]
        here = [target for target in targets if target.path == path]
        if here:
            return here, "same file"
        if not targets:
            return [], "same file" if name in self._defined_names(path) else "not defined here"
        if through_package:
            return targets, "ambiguous"
        if name in imported or (qualifier and qualifier in imported):
            return targets, "imported"
        if not qualifier:
            language = targets[0].language if all(t.language == targets[0].language for t in targets) else ""
            if language in FILE_SCOPED and _language_of(path) == language:
                return [], "not defined here"  # a builtin, a global, or a star import's
            if language == "go":
                folder = path.rpartition("/")[0]
                package = [target for target in targets if target.path.rpartition("/")[0] == folder]
                return (package, "same package") if package else ([], "not defined here")
        return targets, "unique" if len(targets) == 1 else "ambiguous"

    def callers(self, name: str, depth: int = 1) -> list[Node]:
        """A tree per definition of `name`: the definitions whose code calls it, and theirs, `depth` levels."""
        return [self._tree(target, depth, self._callers_step) for target in self.definitions(name)]

    def callees(self, name: str, depth: int = 1) -> list[Node]:
        """A tree per definition of `name`: the definitions its code calls, and theirs, `depth` levels; a call
        of a name the repository does not define is a leaf with no chunk of its own (site only)."""
        return [self._tree(target, depth, self._callees_step) for target in self.definitions(name)]

    def impact(self, path: str, line: int | None = None, depth: int = 5) -> list[tuple[StoredChunk, int, Site | None]]:
        """What a change at `path` (at `line`, or anywhere in the file) can reach: the definitions there
        (distance 0), then every definition that calls one of them, transitively up to `depth` calls away,
        nearest first; each with the call that reaches it."""
        here = [chunk for chunk in self.database.chunks_in_file(path) if chunk.kind not in NAMELESS_KINDS
                and (line is None or chunk.start_line <= line <= chunk.end_line)]
        reached = {(chunk.path, chunk.symbol): (chunk, 0, None) for chunk in _whole_units(here)}
        frontier = [chunk for chunk, _, _ in reached.values()]
        for distance in range(1, depth + 1):
            following = []
            for target in frontier:
                for site in self._calls_of(target):
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

    def _callers_step(self, target: StoredChunk):
        return [(site.chunk, site, site.chunk.kind not in NAMELESS_KINDS) for site in self._calls_of(target)]

    def _callees_step(self, source: StoredChunk):
        parts = self.database.db.execute(
            "SELECT id FROM chunks WHERE path = ? AND symbol = ? ORDER BY start_line", (source.path, source.symbol)).fetchall()
        ids = [chunk_id for (chunk_id,) in parts] or [source.id]
        marks = ",".join("?" * len(ids))
        calls = self.database.db.execute(f"SELECT DISTINCT name, line, qualifier FROM refs WHERE kind = 'call' AND "
                                         f"chunk_id IN ({marks}) ORDER BY line", ids)
        found = []
        for name, line, qualifier in calls.fetchall():
            chosen, resolved = self.resolve(source.path, name, qualifier, self.definitions(name))
            site = Site(source, name, "call", line, resolved, qualifier)
            external = StoredChunk(0, "", line, line, name, "external", source.language, "", "")
            found += [(target, site, True) for target in chosen] or [(external, site, False)]
        return found

    def _calls_of(self, target: StoredChunk) -> list[Site]:
        """The call sites that resolve to `target` (one of the definitions it may mean)."""
        found = []
        for name in defined_names(target.symbol, ""):
            targets = self.definitions(name)
            found += [site for site in self.references(name, kinds=("call",))
                      if target in self.resolve(site.chunk.path, name, site.qualifier, targets)[0]]
        return found

    def _sees(self, path: str, container: str) -> bool:
        """Whether the file at `path` can see `container`: it defines, imports or mentions it."""
        if container in self._defined_names(path) or container in self._imported_names(path):
            return True
        row = self.database.db.execute(
            "SELECT 1 FROM refs JOIN chunks ON chunks.id = refs.chunk_id WHERE chunks.path = ? AND refs.name = ? "
            "LIMIT 1", (path, container)).fetchone()
        return row is not None

    def _imported_names(self, path: str) -> set[str]:
        if path not in self._imports:
            self._imports[path] = {name for (name,) in self.database.db.execute(
                "SELECT refs.name FROM refs JOIN chunks ON chunks.id = refs.chunk_id WHERE chunks.path = ? "
                "AND refs.kind = 'import'", (path,))}
        return self._imports[path]

    def _defined_names(self, path: str) -> set[str]:
        if path not in self._defined_in:
            self._defined_in[path] = {name for (name,) in self.database.db.execute(
                "SELECT definitions.name FROM definitions JOIN chunks ON chunks.id = definitions.chunk_id "
                "WHERE chunks.path = ?", (path,))}
        return self._defined_in[path]

    def _allowed(self, chunk: StoredChunk) -> bool:
        filters = self.filters
        if filters.languages and chunk.language not in filters.languages:
            return False
        return not (filters.include_globs or filters.exclude_globs) or filters.allows_path(chunk.path)


def _owners(chunk: StoredChunk) -> set[str]:
    """The names a qualifier can give for a definition's owner: its container, its file's name, and for a
    package's own file (`__init__.py`, `index.js`, `mod.rs`) its folder's; in Go, its package's folder."""
    container = QUALIFIER.split(chunk.symbol.split(", ")[0])[:-1]
    folder, _, file = chunk.path.rpartition("/")
    stem = file.split(".", 1)[0]
    owners = {part.lower() for part in container[-1:]} | {stem.lower()}
    if stem in PACKAGE_FILES or chunk.language == "go":
        owners.add(folder.rpartition("/")[2].lower())
    return owners


def _packages(chunk: StoredChunk) -> set[str]:
    """The folders above a definition's file, each a package that may re-export it."""
    return {folder.lower() for folder in chunk.path.split("/")[:-1]}


def _language_of(path: str) -> str:
    from codesearch.source.languages import spec_for_path

    spec = spec_for_path(path)
    return spec.name if spec else ""


def _qualified_as(symbol: str, parts: list[str]) -> bool:
    """Whether a definition's symbol path ends with the containers a qualified name gives (case-insensitive)."""
    if len(parts) == 1:
        return True
    for member in symbol.split(", "):
        path = [part.lower() for part in QUALIFIER.split(member.strip()) if part]
        wanted = [part.lower() for part in parts]
        if path[-len(wanted):] == wanted:
            return True
    return False


def _whole_units(chunks: list[StoredChunk]) -> list[StoredChunk]:
    """One chunk per definition: the parts of a split function, or a class's header parts, as one span."""
    units: dict[tuple[str, str, str], StoredChunk] = {}
    for chunk in sorted(chunks, key=lambda chunk: (chunk.path, chunk.start_line)):
        key = (chunk.path, chunk.symbol, chunk.kind)
        first = units.get(key)
        if first is None:
            units[key] = chunk
        elif chunk.start_line <= first.end_line + 1:
            units[key] = StoredChunk(first.id, first.path, first.start_line, max(first.end_line, chunk.end_line),
                                     first.symbol, first.kind, first.language, first.context, first.text)
        else:
            units[(chunk.path, chunk.symbol, f"{chunk.kind}@{chunk.start_line}")] = chunk  # an overload
    return sorted(units.values(), key=lambda chunk: (chunk.path, chunk.start_line))


def definition_json(chunk: StoredChunk) -> dict:
    return {"path": chunk.path, "start_line": chunk.start_line, "end_line": chunk.end_line, "symbol": chunk.symbol,
            "kind": chunk.kind, "language": chunk.language}


def site_json(site: Site) -> dict:
    """A reference as JSON: where it is, what it names, in which definition, and how sure its resolution is."""
    return {"path": site.chunk.path, "line": site.line, "name": site.name, "kind": site.kind,
            "resolved": site.resolved, "in": {key: value for key, value in definition_json(site.chunk).items()
                                               if key != "path"}}


def node_json(node: Node) -> dict:
    """A callers/callees tree as JSON; a call of a name no file here defines has "kind": "external"."""
    found = definition_json(node.chunk) if node.chunk.path else {"symbol": node.chunk.symbol, "kind": "external"}
    if node.site is not None:
        found["call"] = {"path": node.site.chunk.path, "line": node.site.line, "resolved": node.site.resolved}
    found["children"] = [node_json(child) for child in node.children]
    return found
