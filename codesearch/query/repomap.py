"""A map of a repository for a reader who has never seen it: its most central definitions, as their
declaration lines grouped by file, under a token budget, as aider's repository map does.

Centrality is PageRank over the reference graph: a definition is a node, and each call, type use or base
class in one definition's code is an edge to the definitions of that name (to the file's own when it has
one, else shared among all of them). `focus` files personalise the ranking: their definitions and what they
reach come first.
"""

from __future__ import annotations

from dataclasses import dataclass

from codesearch.index.graph import NAMELESS_KINDS
from codesearch.query.api import CHARS_PER_TOKEN
from codesearch.query.fuse import declaration_line

DAMPING = 0.85
ITERATIONS = 40


@dataclass(frozen=True)
class Entry:
    path: str
    symbol: str
    kind: str
    start_line: int
    signature: str
    rank: float


def repository_map(database, max_tokens: int = 1024, focus: tuple[str, ...] = ()) -> list[Entry]:
    """The most central definitions that fit `max_tokens`, grouped by file in order of their best one."""
    import numpy as np

    nodes: dict[tuple[str, str], int] = {}
    entries: list[Entry] = []
    node_of_chunk: dict[int, int] = {}
    by_name: dict[str, list[int]] = {}
    rows = database.db.execute("SELECT definitions.name, chunks.id, chunks.path, chunks.symbol, chunks.kind, "
                               "chunks.start_line, substr(chunks.text, 1, 400) FROM definitions JOIN chunks "
                               "ON chunks.id = definitions.chunk_id ORDER BY chunks.path, chunks.start_line")
    for name, chunk_id, path, symbol, kind, start_line, text in rows:
        if kind in NAMELESS_KINDS:
            continue
        key = (path, symbol)
        if key not in nodes:
            nodes[key] = len(entries)
            entries.append(Entry(path, symbol, kind, start_line, _signature(text), 0.0))
        node_of_chunk[chunk_id] = nodes[key]
        by_name.setdefault(name, [])
        if nodes[key] not in by_name[name]:
            by_name[name].append(nodes[key])
    if not entries:
        return []
    sources, targets, weights = [], [], []
    for chunk_id, name in database.db.execute("SELECT chunk_id, name FROM refs WHERE kind != 'import'"):
        source = node_of_chunk.get(chunk_id)
        candidates = by_name.get(name)
        if source is None or not candidates:
            continue
        own = [node for node in candidates if entries[node].path == entries[source].path]
        chosen = own or candidates
        for target in chosen:
            if target != source:
                sources.append(source)
                targets.append(target)
                weights.append(1.0 / len(chosen))
    count = len(entries)
    personal = np.ones(count)
    if focus:
        personal = np.array([1.0 if any(entry.path == f or entry.path.startswith(f.rstrip("/") + "/")
                                        for f in focus) else 0.0 for entry in entries])
        if not personal.any():
            personal = np.ones(count)
    personal /= personal.sum()
    sources_array, targets_array = np.asarray(sources, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    weights_array = np.asarray(weights, dtype=np.float64)
    out = np.bincount(sources_array, weights=weights_array, minlength=count)
    share = weights_array / np.where(out[sources_array] > 0, out[sources_array], 1.0)
    rank = personal.copy()
    for _ in range(ITERATIONS):
        flow = np.bincount(targets_array, weights=rank[sources_array] * share, minlength=count)
        dangling = rank[out == 0].sum()
        rank = (1 - DAMPING) * personal + DAMPING * (flow + dangling * personal)
    order = np.argsort(-rank, kind="stable")
    chosen, used, files = [], 0, set()
    for node in order:
        entry = entries[node]
        cost = (len(entry.signature) + 8 + (0 if entry.path in files else len(entry.path) + 1)) // CHARS_PER_TOKEN + 1
        if used + cost > max_tokens:
            break
        chosen.append(Entry(entry.path, entry.symbol, entry.kind, entry.start_line, entry.signature, float(rank[node])))
        files.add(entry.path)
        used += cost
    first_rank = {}
    for position, entry in enumerate(chosen):
        first_rank.setdefault(entry.path, position)
    return sorted(chosen, key=lambda entry: (first_rank[entry.path], entry.start_line))


def _signature(text: str) -> str:
    """A definition's declaration line: its first line of code past decorators, attributes and comments."""
    line = declaration_line(text)
    return (text.split("\n", 1)[0] if line is None else line).strip()[:200]
