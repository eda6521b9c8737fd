"""Answers that do not lag the code: what changed in the working tree since the index was written, and the
index brought up to date before a query answers, when that is cheap.

The check is what a no-op `codesearch index` does: git's status and its index's blob ids (discover_files),
compared with the fingerprints the index keeps; it costs about what `git status` costs. Up to
REFRESH_BOUND changed files are refreshed in place before the answer (chunked and embedded: with minilm on
a CPU, well under a second for a few files). Past the bound the answer comes from the index as it is, says
how many files it lags, and the hooks' refresh starts detached, so the queries after it are current. A
writer already at work is never waited for, and a query never rebuilds an index another chunker wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from codesearch.errors import CodesearchError, IndexBusy

# Files a query refreshes before answering. Each costs its chunks' embedding (about 10 ms a chunk with
# minilm on one core); twenty files of a few chunks each stay under about a second.
REFRESH_BOUND = 20


@dataclass(frozen=True)
class Freshness:
    """How an answer stands against the working tree."""

    stale_files: int = 0  # files that changed since the index and are not reflected in the answer
    refreshed: int = 0  # files refreshed before answering
    reason: str = ""  # why stale files were not refreshed, in a few words

    def note(self) -> str:
        """One line for the user when the answer lags the working tree, else ""."""
        if not self.stale_files:
            return ""
        files = "1 file" if self.stale_files == 1 else f"{self.stale_files} files"
        return f"{files} changed since the index, not seen by this answer: {self.reason}"


def changed_files(root: Path, database) -> list[str]:
    """Paths whose content differs from what the index holds: changed, new (and not ignored) or deleted."""
    from codesearch.source.discover import discover_files

    known = database.file_fingerprints()
    current = {source.path: source.fingerprint for source in discover_files(root)}
    return sorted([path for path, fingerprint in current.items() if known.get(path) != fingerprint]
                  + [path for path in known if path not in current])


def bring_up_to_date(root: Path, store, bound: int = REFRESH_BOUND, embedder_factory: Callable | None = None,
                     refresh_in_background: Callable[[Path], object] | None = None) -> Freshness:
    """Refresh the index of `root` (its open `store`) before a query when at most `bound` files changed;
    otherwise start `refresh_in_background(root)` (the hooks' detached refresh unless given) and say so."""
    if not store.database.manifest():
        return Freshness()
    changed = changed_files(root, store.database)
    if not changed:
        return Freshness()
    if len(changed) > bound:
        if refresh_in_background is None:
            from codesearch.indexer.hooks import start_refresh as refresh_in_background
        refresh_in_background(root)
        return Freshness(len(changed), reason=f"more than {bound}, refreshing in the background")
    from codesearch.indexer.build import index_repository

    try:
        index_repository(root, embedder_factory=embedder_factory, lock_timeout=0, refresh_only=True)
    except IndexBusy:
        return Freshness(len(changed), reason="another codesearch run is updating the index")
    except CodesearchError as error:
        return Freshness(len(changed), reason=str(error))
    return Freshness(refreshed=len(changed))
