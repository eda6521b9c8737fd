"""The code graph's rows: the names each chunk defines and the names it refers to, kept beside the chunks in
the index database and written and deleted with them, so a refresh costs what changed and a deleted file
never answers. query/navigate.py reads them (defs, refs, callers, callees)."""

from __future__ import annotations

import re
import sqlite3
from typing import Iterable

# Kinds whose chunks define no name of their own (a file's left-over lines, a window of lines).
NAMELESS_KINDS = frozenset({"module", "window"})
QUALIFIER = re.compile(r"::|\.|#|->|\\")  # what joins a symbol path's parts: Class.method, a::b, A#m


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
