"""What the working-tree check before each in-process query costs, asking git or trusting the recorded tree,
on a copy of each indexed repository given (the originals are not touched; the copy leaves out the index's
segments, which the check never reads). A copy's files have new ctimes and inodes, so git's own index no
longer vouches for any of them and `git status` reads every file again, each time (codesearch never lets
git rewrite its index); a `git status` in the copy first refreshes it, as the user's own git would, unless
--stale-git-index.

Prints per repository the median over --runs rounds, each round measuring every case once, in turn, so that
a busy moment on a shared machine costs each alike:
  git, as before      discover_files against the files table: the whole check before the recorded tree
  git, recording      changed_files with no snapshot: the first check after a change, which records one
  snapshot holds      changed_files once recorded, nothing changed: one lstat per watched path, no git
  one file edited     changed_files after an edit: the lstats that find it, then git (nothing recorded)

Usage: python benchmarks/freshness_check.py INDEXED_REPO [INDEXED_REPO ...] [--runs 21]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from codesearch.index.database import IndexDatabase
from codesearch.index.store import checked_directory
from codesearch.indexer.freshness import SNAPSHOT_NAME, TreeSnapshot, changed_files, file_system_clock
from codesearch.source.discover import INDEX_DIR, discover_files

CASES = ("git, as before", "git, recording", "snapshot holds", "one file edited")


def asked_of_git(root: Path, database: IndexDatabase) -> list[str]:
    """changed_files as it was before the recorded tree."""
    known = database.file_fingerprints()
    current = {source.path: source.fingerprint for source in discover_files(root)}
    return sorted([path for path, fingerprint in current.items() if known.get(path) != fingerprint]
                  + [path for path in known if path not in current])


def settle(directory: Path) -> None:
    """Wait for the file system's next timestamp tick: a check in the tick of the last write records nothing
    (the racily clean rule), and each round should measure the steady state."""
    first = file_system_clock(directory)
    while file_system_clock(directory) == first:
        time.sleep(0.001)


def timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def measure(repo: Path, runs: int) -> str:
    database = IndexDatabase.open(checked_directory(repo / INDEX_DIR))
    snapshot = repo / INDEX_DIR / SNAPSHOT_NAME
    edited = next(repo / source.path for source in discover_files(repo) if source.fingerprint.startswith("blob:"))
    original = edited.read_bytes()
    samples: dict[str, list[float]] = {case: [] for case in CASES}
    try:
        for _ in range(runs):
            settle(repo / INDEX_DIR)
            seconds, expected = timed(lambda: asked_of_git(repo, database))
            samples["git, as before"].append(seconds)
            snapshot.unlink(missing_ok=True)
            seconds, answer = timed(lambda: changed_files(repo, database))
            samples["git, recording"].append(seconds)
            assert answer == expected and snapshot.exists(), "no snapshot recorded (a file changed meanwhile?)"
            seconds, answer = timed(lambda: changed_files(repo, database))
            samples["snapshot holds"].append(seconds)
            assert answer == expected
            edited.write_bytes(original + b"\n# an edit\n")
            seconds, answer = timed(lambda: changed_files(repo, database))
            samples["one file edited"].append(seconds)
            assert answer == sorted({*expected, str(edited.relative_to(repo))}), answer
            edited.write_bytes(original)
        watched = len(TreeSnapshot.read(snapshot).paths)
    finally:
        edited.write_bytes(original)
        database.close()
    heading = (f"{repo.name}: {database_files(repo)} files indexed, {watched} paths watched, "
               f"snapshot {snapshot.stat().st_size // 1024} KiB; median of {runs}")
    lines = [heading]
    baseline = statistics.median(samples["git, as before"])
    for case in CASES:
        median = statistics.median(samples[case])
        lines.append(f"  {case:18s} {median * 1000:8.1f} ms   {median / baseline:5.2f}x")
    return "\n".join(lines)


def database_files(repo: Path) -> int:
    database = IndexDatabase.open(repo / INDEX_DIR)
    try:
        return database.file_count()
    finally:
        database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repos", type=Path, nargs="+")
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--stale-git-index", action="store_true", help="leave the copy's git index as copied")
    args = parser.parse_args()
    for original in args.repos:
        with tempfile.TemporaryDirectory() as scratch:
            repo = Path(scratch) / original.name
            shutil.copytree(original, repo, symlinks=True, ignore=lambda folder, names: [
                name for name in names if folder.endswith(INDEX_DIR) and name.startswith("segment-")])
            if not args.stale_git_index:
                subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, check=True)
            print(measure(repo, args.runs), flush=True)


if __name__ == "__main__":
    main()
