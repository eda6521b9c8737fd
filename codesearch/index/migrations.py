"""The index database's layout, as an ordered list of steps (as simonw/llm keeps its own).

Each step runs once per database, in order, in a transaction of its own, and `PRAGMA user_version`
counts the steps done, so opening an index of any age brings it up to date and a current one costs one
read of the header. A step is never edited once released; a change is a new step at the end.

Steps change the layout only. Whether the rows in it still mean what this version of codesearch
expects (the chunker, the terms format, the model) is the manifest's question: database.needs_rebuild.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []


def migration(step: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    MIGRATIONS.append(step)
    return step


@migration
def m001_tables(db: sqlite3.Connection) -> None:
    """The tables of the first index format (indexes made before migrations were counted have them)."""
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, "
               "chunks INTEGER NOT NULL)")
    db.execute("""CREATE TABLE IF NOT EXISTS chunks (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        start_line INTEGER NOT NULL,
        end_line INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        kind TEXT NOT NULL,
        language TEXT NOT NULL,
        context TEXT NOT NULL,
        text TEXT NOT NULL,
        embedding_key TEXT NOT NULL
    )""")
    db.execute("CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks(path)")
    db.execute("CREATE INDEX IF NOT EXISTS chunks_by_language ON chunks(language)")
    db.execute("CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")


@migration
def m002_chunk_terms(db: sqlite3.Connection) -> None:
    """Each chunk keeps its lexical terms (BM25 moved from an FTS5 table to bm25s files per generation)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(chunks)")}
    if "terms" not in columns:
        db.execute("ALTER TABLE chunks ADD COLUMN terms TEXT NOT NULL DEFAULT ''")
    db.execute("DROP TABLE IF EXISTS lexical")


@migration
def m003_manifest_table(db: sqlite3.Connection) -> None:
    """The table the manifest lives in is called so."""
    db.execute("ALTER TABLE meta RENAME TO manifest")


@migration
def m004_segments(db: sqlite3.Connection) -> None:
    """The index is a set of immutable segments: each chunk names the segment holding its vector and postings,
    and `deleted` lists the chunks removed from a segment since it was written."""
    if "segment" not in {row[1] for row in db.execute("PRAGMA table_info(chunks)")}:
        db.execute("ALTER TABLE chunks ADD COLUMN segment INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX IF NOT EXISTS chunks_by_segment ON chunks(segment)")
    db.execute("CREATE INDEX IF NOT EXISTS chunks_by_key ON chunks(embedding_key)")
    db.execute("CREATE TABLE IF NOT EXISTS deleted (segment INTEGER NOT NULL, chunk_id INTEGER NOT NULL, "
               "PRIMARY KEY (segment, chunk_id))")


@migration
def m005_moved_segments(db: sqlite3.Connection) -> None:
    """A merge records which segment the chunks of each merged one moved to, instead of rewriting every
    chunk's row: a chunk's segment is its `moved` target if its first segment has one."""
    db.execute("CREATE TABLE IF NOT EXISTS moved (source INTEGER PRIMARY KEY, target INTEGER NOT NULL)")


@migration
def m006_unembedded(db: sqlite3.Connection) -> None:
    """Live chunks whose segment row holds no vector yet (a first index answers by words while it embeds):
    the dense search skips them, and the next `index` embeds them."""
    db.execute("CREATE TABLE IF NOT EXISTS unembedded (chunk_id INTEGER PRIMARY KEY)")


@migration
def m007_code_graph(db: sqlite3.Connection) -> None:
    """What each chunk defines and what it refers to (index/graph.py): `codesearch defs/refs/callers/callees`."""
    db.execute("CREATE TABLE IF NOT EXISTS definitions (chunk_id INTEGER NOT NULL, name TEXT NOT NULL COLLATE NOCASE)")
    db.execute("CREATE INDEX IF NOT EXISTS definitions_name ON definitions(name)")
    db.execute("CREATE INDEX IF NOT EXISTS definitions_chunk ON definitions(chunk_id)")
    db.execute("CREATE TABLE IF NOT EXISTS refs (chunk_id INTEGER NOT NULL, name TEXT NOT NULL COLLATE NOCASE, "
               "kind TEXT NOT NULL, line INTEGER NOT NULL, qualifier TEXT NOT NULL DEFAULT '')")
    db.execute("CREATE INDEX IF NOT EXISTS refs_name ON refs(name)")
    db.execute("CREATE INDEX IF NOT EXISTS refs_chunk ON refs(chunk_id)")


def migrate(db: sqlite3.Connection) -> None:
    """Run the steps this database has not run yet; another process opening it at once waits its turn.
    `db` is in autocommit mode (isolation_level None)."""
    if _done(db) >= len(MIGRATIONS):
        return
    while True:
        db.execute("BEGIN IMMEDIATE")
        try:
            done = _done(db)  # again, under the write lock: another process may have migrated meanwhile
            if done < len(MIGRATIONS):
                MIGRATIONS[done](db)
                db.execute(f"PRAGMA user_version = {done + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if done + 1 >= len(MIGRATIONS):
            return


def _done(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]
