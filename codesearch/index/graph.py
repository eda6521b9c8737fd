"""The code graph's rows: the names each chunk defines and the names it refers to, kept beside the chunks in
the index database and written and deleted with them, so a refresh costs what changed and a deleted file
never answers. query/navigate.py reads them (defs, refs, callers, callees)."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from typing import Iterable

# Kinds whose chunks define no name of their own (a file's left-over lines, a window of lines).
NAMELESS_KINDS = frozenset({"module", "window"})
QUALIFIER = re.compile(r"::|\.|#|->|\\")  # what joins a symbol path's parts: Class.method, a::b, A#m
PACKAGE_FILES = frozenset({"__init__", "index", "mod", "lib"})  # a folder's own file: the folder is its module
# Languages that call one another's definitions directly; any other language's references mean its own.
LANGUAGE_FAMILIES = (frozenset({"javascript", "typescript", "tsx"}), frozenset({"c", "cpp"}),
                     frozenset({"java", "kotlin", "scala"}))


def defined_names(symbol: str, kind: str) -> list[str]:
    """The names a chunk defines: its symbol's last part; each member's for a group of one-liners
    ("Point.left, right" defines left and right)."""
    if kind in NAMELESS_KINDS:
        return []
    names = []
    for member in symbol.split(", "):
        name = QUALIFIER.split(member.strip())[-1].strip()
        if name and name not in names and name != "<anonymous>":
            names.append(name)
    return names


def symbol_parts(symbol: str) -> tuple[str, ...]:
    """A symbol's path (`("Config", "parse")`); a group of one-liners' ("Point.left, right") by its first."""
    return tuple(part for part in QUALIFIER.split(symbol.split(", ")[0]) if part)


def module_names(path: str, language: str) -> set[str]:
    """The names a qualifier gives for the module a file is, lowercased: its file's name, and for a package's own
    file (`__init__.py`, `index.js`, `mod.rs`) its folder's; in Go, its package's folder."""
    folder, _, file = path.rpartition("/")
    stem = file.split(".", 1)[0]
    names = {stem.lower()}
    if stem in PACKAGE_FILES or language == "go":
        names.add(folder.rpartition("/")[2].lower())
    return names


def package_names(path: str) -> set[str]:
    """The folders above a file, lowercased, each a package that may re-export what it defines."""
    return {folder.lower() for folder in path.split("/")[:-1]}


def in_module(path: str, source: str) -> bool:
    """Whether a file is the module an import names (`werkzeug.exceptions`, `.helpers`, `./lib/y`) or lies in
    that package: the import's names run, in order, along the file's folders and name. A bare relative import
    (`from . import x`) names no module and narrows nothing."""
    if "/" in source:  # a path (`./lib/y.js`): its folders and its file's name
        wanted = [part for part in source.lower().split("/") if part not in ("", ".", "..")]
        wanted[-1:] = [part.split(".", 1)[0] for part in wanted[-1:]]
    else:  # a dotted module (`werkzeug.exceptions`, `..a.b`)
        wanted = [part for part in source.lower().split(".") if part]
    if not wanted:
        return True
    *folders, file = path.lower().split("/")
    stem = file.split(".", 1)[0]
    parts = folders + ([] if stem in PACKAGE_FILES else [stem])
    return any(parts[start:start + len(wanted)] == wanted for start in range(len(parts) - len(wanted) + 1))


def top_level_names(paths: Iterable[str]) -> set[str]:
    """The names an absolute import can reach in the repository: each file's or folder's whose folder is no
    Python package (has no `__init__.py`), so a source root's packages (`src/flask`), not their subpackages
    (`flask/json`, which `import json` does not mean)."""
    paths = list(paths)
    packages = {path.rpartition("/")[0] for path in paths if path.rpartition("/")[2].startswith("__init__.")}
    found = set()
    for path in paths:
        parts = path.split("/")
        for depth, part in enumerate(parts):
            if "/".join(parts[:depth]) not in packages or depth == 0:
                found.add(part.split(".", 1)[0] if depth == len(parts) - 1 else part)
    return found


def members_home(path: str, language: str) -> str:
    """Where a type's members are: its file, or in Go its package's folder (methods of one type span files)."""
    return path.rpartition("/")[0] + "/" if language == "go" else path


def same_family(language: str, other: str) -> bool:
    """Whether code in one language can call a definition in the other (JavaScript a TypeScript one)."""
    return language == other or any(language in family and other in family for family in LANGUAGE_FAMILIES)


def qualified_as(symbol: str, parts: list[str]) -> bool:
    """Whether a definition's symbol path ends with the containers a qualified name gives (case-insensitive)."""
    if len(parts) == 1:
        return True
    for member in symbol.split(", "):
        path = [part.lower() for part in QUALIFIER.split(member.strip()) if part]
        wanted = [part.lower() for part in parts]
        if path[-len(wanted):] == wanted:
            return True
    return False


def whole_units(chunks: list) -> list:
    """One chunk per definition: the parts of a split function, or a class's header parts, as one span."""
    units: dict[tuple[str, str, str], object] = {}
    for chunk in sorted(chunks, key=lambda chunk: (chunk.path, chunk.start_line)):
        key = (chunk.path, chunk.symbol, chunk.kind)
        first = units.get(key)
        if first is None:
            units[key] = chunk
        elif chunk.start_line <= first.end_line + 1:
            units[key] = replace(first, end_line=max(first.end_line, chunk.end_line))
        else:
            units[(chunk.path, chunk.symbol, f"{chunk.kind}@{chunk.start_line}")] = chunk  # an overload
    return sorted(units.values(), key=lambda chunk: (chunk.path, chunk.start_line))


def imports_in(db: sqlite3.Connection, path: str) -> dict[str, set[str]]:
    """The names a file imports, each with the modules its imports name as their source ("" for `import json`)."""
    found: dict[str, set[str]] = {}
    for name, source in db.execute("SELECT refs.name, refs.qualifier FROM refs JOIN chunks ON chunks.id = "
                                   "refs.chunk_id WHERE chunks.path = ? AND refs.kind = 'import'", (path,)):
        found.setdefault(name, set()).add(source)
    return found


def defined_in(db: sqlite3.Connection, path: str) -> set[str]:
    return {name for (name,) in db.execute("SELECT definitions.name FROM definitions JOIN chunks ON chunks.id = "
                                           "definitions.chunk_id WHERE chunks.path = ?", (path,))}


def mentions(db: sqlite3.Connection, path: str, name: str) -> bool:
    return db.execute("SELECT 1 FROM refs JOIN chunks ON chunks.id = refs.chunk_id WHERE chunks.path = ? AND "
                      "refs.name = ? LIMIT 1", (path, name)).fetchone() is not None


def containers_in(db: sqlite3.Connection, path: str, kinds: tuple[str, ...]) -> dict[tuple[str, ...], list[int]]:
    """The containers of these kinds (classes, ...) a file defines: symbol parts -> their chunks' ids."""
    found: dict[tuple[str, ...], list[int]] = {}
    for chunk_id, symbol in db.execute(f"SELECT id, symbol FROM chunks WHERE path = ? AND kind IN "
                                       f"({','.join('?' * len(kinds))})", (path, *kinds)):
        found.setdefault(symbol_parts(symbol), []).append(chunk_id)
    return found


def inheritance(db: sqlite3.Connection, chunk_ids: list[int]) -> list[tuple[int, str, str]]:
    """(chunk id, name, qualifier) of the inheritance references (bases) these chunks hold."""
    marks = ",".join("?" * len(chunk_ids))
    return db.execute(f"SELECT chunk_id, name, qualifier FROM refs WHERE kind = 'inherit' AND chunk_id IN ({marks})",
                      chunk_ids).fetchall() if chunk_ids else []


def opening_text(db: sqlite3.Connection, path: str, symbol: str) -> str:
    """The code of a definition's first chunks: a split function's signature is in them (its doc comment may
    be a part of its own)."""
    return "\n".join(text for (text,) in db.execute(
        "SELECT text FROM chunks WHERE path = ? AND symbol = ? ORDER BY start_line LIMIT 2", (path, symbol)))


def calls_in(db: sqlite3.Connection, path: str, symbol: str, chunk_id: int) -> list[tuple[str, int, str]]:
    """(name, line, qualifier) of the calls in a definition, all its chunks (a split function's parts) read."""
    ids = [found for (found,) in db.execute("SELECT id FROM chunks WHERE path = ? AND symbol = ? ORDER BY "
                                            "start_line", (path, symbol))] or [chunk_id]
    return db.execute(f"SELECT DISTINCT name, line, qualifier FROM refs WHERE kind = 'call' AND chunk_id IN "
                      f"({','.join('?' * len(ids))}) ORDER BY line", ids).fetchall()


def file_paths(db: sqlite3.Connection) -> list[str]:
    return [path for (path,) in db.execute("SELECT path FROM files")]


def record(db: sqlite3.Connection, chunk_id: int, symbol: str, kind: str, references: Iterable) -> None:
    """Inside the caller's transaction: a new chunk's definitions and references."""
    db.executemany("INSERT INTO definitions(chunk_id, name) VALUES (?, ?)",
                   [(chunk_id, name) for name in defined_names(symbol, kind)])
    db.executemany("INSERT INTO refs(chunk_id, name, kind, line, qualifier) VALUES (?, ?, ?, ?, ?)",
                   [(chunk_id, name, ref_kind, line, qualifier) for name, ref_kind, line, qualifier in references])


def forget(db: sqlite3.Connection, chunk_ids: list[int]) -> None:
    """Inside the caller's transaction: the rows of chunks that are gone."""
    for start in range(0, len(chunk_ids), 500):
        part = chunk_ids[start:start + 500]
        marks = ",".join("?" * len(part))
        db.execute(f"DELETE FROM definitions WHERE chunk_id IN ({marks})", part)
        db.execute(f"DELETE FROM refs WHERE chunk_id IN ({marks})", part)


def forget_all(db: sqlite3.Connection, orphans_only: bool = False) -> None:
    where = " WHERE chunk_id NOT IN (SELECT id FROM chunks)" if orphans_only else ""
    db.execute(f"DELETE FROM definitions{where}")
    db.execute(f"DELETE FROM refs{where}")
