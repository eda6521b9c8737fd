"""Answers that do not lag the code: what changed in the working tree since the index was written, and the
index brought up to date before a query answers, when that is cheap.

The check is what a no-op `codesearch index` does: git's status and its index's blob ids (discover_files),
compared with the fingerprints the index keeps. Up to REFRESH_BOUND changed files are refreshed in place
before the answer (chunked and embedded: with minilm on a CPU, well under a second for a few files). Past
the bound the answer comes from the index as it is, says how many files it lags, and the hooks' refresh
starts detached, so the queries after it are current. A writer already at work is never waited for, and a
query never rebuilds an index another chunker wrote.

Asking git costs what `git status` costs, most of it git's walk of every folder for untracked files (0.1 to
0.25 s on Django's 6,800 files). So a check that finds the index current records what it saw (TreeSnapshot, in
the index folder): the lstat of every file the answer depends on, of every folder git's walk enters, and of
the files that steer git (its index, config and ignore files), with the index's generation. A later check
whose lstats are all unchanged, against an index still at that generation, is answered "nothing changed"
without running git: an edit changes its file's ctime, and a new, deleted or renamed entry its folder's. A
change made while the recording check looked could keep the ctime tick of an earlier one (git's "racily
clean" files), so no snapshot is recorded while any entry's ctime is not older than a clock read before git
ran.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from codesearch.errors import CodesearchError, IndexBusy

# Files a query refreshes before answering. Each costs its chunks' embedding (about 10 ms a chunk with
# minilm on one core); twenty files of a few chunks each stay under about a second.
REFRESH_BOUND = 20

SNAPSHOT_NAME = "tree-snapshot"
CLOCK_NAME = "tree-clock"
_SNAPSHOT_MAGIC = b"codesearch tree snapshot 1\n"
_FIELDS = 5  # mode, inode, size, mtime, ctime: a rename, a replacement by a link and an edit all change one
_ABSENT = (0,) * _FIELDS  # no entry has mode 0: a path that is not there
_PART = 1024  # paths compared at a time
_recording = threading.Lock()  # replace_atomically's temporary name is per process, not per thread


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
    """Paths whose content differs from what the index holds: changed, new (and not ignored) or deleted.
    None, without running git, when the tree recorded by the last check that found the index current holds."""
    from codesearch.source.discover import files_listed, git_listing, is_indexable_path, same_content

    token = snapshot_token(root, database)  # read before the fingerprints: a write between fails the next check
    snapshot_path = database.directory / SNAPSHOT_NAME
    recorded = TreeSnapshot.read(snapshot_path)
    if recorded is not None and recorded.token == token and recorded.still_holds(root):
        return []
    clock = file_system_clock(database.directory)
    steering = _start_steering_files(root) if clock is not None else []
    try:
        listing = git_listing(root)
    finally:
        answers = [_answer(process) for process in steering]
    accepted: list[str] = []  # the names the answer depends on, kept to be recorded

    def accept(name: str) -> bool:
        return is_indexable_path(name) and not accepted.append(name)

    known = database.file_fingerprints()
    current = {source.path: source.fingerprint for source in files_listed(root, listing, accept=accept)}
    changed = sorted([path for path, fingerprint in current.items() if not same_content(known.get(path), fingerprint)]
                     + [path for path in known if path not in current])
    if not changed and clock is not None and None not in answers:
        _record(snapshot_path, root, watched_paths(root, listing, accepted), _steering_files(root, *answers),
                token, clock)
    return changed


def bring_up_to_date(root: Path, store, bound: int = REFRESH_BOUND, embedder_factory: Callable | None = None,
                     refresh_in_background: Callable[[Path], object] | None = None) -> Freshness:
    """Refresh the index of `root` (its open `store`) before a query when at most `bound` files changed;
    otherwise start `refresh_in_background(root)` (the hooks' detached refresh unless given) and say so."""
    if not store.database.manifest():
        return Freshness()
    from codesearch.source.discover import unreadable

    changed = changed_files(root, store.database)
    if not changed:
        return Freshness()
    cannot_read = unreadable(root, changed) if len(changed) <= bound else set()
    unread_reason = f"permission denied: {min(cannot_read)}" if cannot_read else ""
    if cannot_read:  # a refresh would keep what the index holds of them: it is asked only for the others
        changed = [path for path in changed if path not in cannot_read]
        if not changed:
            return Freshness(len(cannot_read), reason=unread_reason)
    if len(changed) > bound:
        if refresh_in_background is None:
            from codesearch.indexer.hooks import start_refresh as refresh_in_background
        refresh_in_background(root)
        return Freshness(len(changed), reason=f"more than {bound}, refreshing in the background")
    from codesearch.indexer.build import index_repository

    try:
        index_repository(root, embedder_factory=embedder_factory, lock_timeout=0, refresh_only=True)
    except IndexBusy:
        return Freshness(len(changed) + len(cannot_read), reason="another codesearch run is updating the index")
    except CodesearchError as error:
        return Freshness(len(changed) + len(cannot_read), reason=str(error))
    return Freshness(len(cannot_read), refreshed=len(changed), reason=unread_reason)


# -- the recorded tree -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeSnapshot:
    """What a check that found the index current saw: `paths` (absolute, or relative to the work tree's root)
    with their lstat `stats` (_FIELDS numbers each), while the index was at `token`."""

    token: str
    paths: list[bytes]
    stats: array

    @classmethod
    def read(cls, path: Path) -> TreeSnapshot | None:
        """The snapshot recorded at `path`; None when there is none or it cannot be read whole."""
        from codesearch.trust import read_regular_file

        try:
            data = read_regular_file(path)
            if not data.startswith(_SNAPSHOT_MAGIC):
                return None
            header_end = data.index(b"\n", len(_SNAPSHOT_MAGIC))
            header = json.loads(data[len(_SNAPSHOT_MAGIC):header_end])
            paths_end = header_end + 1 + header["paths_bytes"]
            paths = data[header_end + 1:paths_end].split(b"\0")
            stats = array("q")
            stats.frombytes(data[paths_end:])
            if len(stats) != len(paths) * _FIELDS:
                return None
            return cls(header["token"], paths, stats)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, path: Path) -> None:
        from codesearch.trust import write_private_file

        joined = b"\0".join(self.paths)
        header = json.dumps({"token": self.token, "paths_bytes": len(joined)})
        write_private_file(path, _SNAPSHOT_MAGIC + header.encode("utf-8") + b"\n" + joined + self.stats.tobytes())

    def still_holds(self, root: Path) -> bool:
        """Whether every recorded path has the lstat it had: one system call each, no git; a part at a time,
        so that a change stops it early."""
        try:
            descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return False  # the work tree itself is gone
        try:
            for start in range(0, len(self.paths), _PART):
                recorded = self.stats[start * _FIELDS:(start + _PART) * _FIELDS]
                if _lstats(descriptor, self.paths[start:start + _PART]) != recorded:
                    return False
            return True
        except OSError:
            return False
        finally:
            os.close(descriptor)


def lstat_all(root: Path, paths: list[bytes]) -> array:
    """The lstat of each path (relative ones from root, looked up from its open folder), _FIELDS numbers
    each; _ABSENT for a path that is not there."""
    descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _lstats(descriptor, paths)
    finally:
        os.close(descriptor)


def _lstats(descriptor: int, paths: list[bytes]) -> array:
    values = array("q")
    extend, lstat = values.extend, os.lstat
    for path in paths:
        try:
            info = lstat(path, dir_fd=descriptor)
        except (FileNotFoundError, NotADirectoryError):
            extend(_ABSENT)
            continue
        extend((info.st_mode, info.st_ino & 0x7FFF_FFFF_FFFF_FFFF, info.st_size, info.st_mtime_ns, info.st_ctime_ns))
    return values


def snapshot_token(root: Path, database) -> str:
    """What a snapshot's answer also depends on besides the tree: the index's generation (every change to its
    files moves it on), the environment git reads, and the rules of this codesearch."""
    from codesearch import __version__
    from codesearch.source.discover import MAX_FILE_BYTES

    manifest = database.manifest()
    environment = sorted((name, value) for name, value in os.environ.items()
                         if name.startswith("GIT_") or name in ("HOME", "XDG_CONFIG_HOME"))
    return json.dumps([__version__, MAX_FILE_BYTES, os.fspath(root), manifest.get("generation"),
                       manifest.get("updated_at"), environment])


def file_system_clock(directory: Path) -> int | None:
    """The file system's time now, as it stamps a change (coarser and sometimes behind the system clock):
    the ctime of a file in `directory` set to now. None when it cannot be written."""
    from codesearch.trust import open_private

    try:
        descriptor = open_private(directory / CLOCK_NAME, os.O_WRONLY | os.O_CREAT)
        try:
            os.utime(descriptor)
            return os.fstat(descriptor).st_ctime_ns
        finally:
            os.close(descriptor)
    except (OSError, CodesearchError):
        return None


def _record(path: Path, root: Path, watched: tuple[list[str], list[str]], steering: list[str], token: str,
            clock: int) -> None:
    """Write that the index at `token` is current, with the lstat of what that depends on, unless something
    changed while this check looked or a folder on the way is a link. A snapshot is only ever a shortcut: any
    failure here leaves the next check to ask git."""
    files, folders = watched
    if not _recording.acquire(blocking=False):
        return  # another thread of this process is recording the same tree
    try:
        encoded = [os.fsencode(name) for name in (*steering, *folders, *files)]
        stats = lstat_all(root, encoded)
        if any(stats[offset] >= clock for offset in range(4, len(stats), _FIELDS)):
            return  # changed since git looked, or in the same tick: its stat may not show the next change
        first_folder, first_file = len(steering) * _FIELDS, (len(steering) + len(folders)) * _FIELDS
        if any(stat.S_ISLNK(stats[offset]) for offset in range(first_folder, first_file, _FIELDS)):
            return  # a folder link: what git and lstat see through it is not what is recorded
        TreeSnapshot(token, encoded, stats).write(path)
    except (OSError, CodesearchError, ValueError):
        pass
    finally:
        _recording.release()


def watched_paths(root: Path, listing, accepted: list[str]) -> tuple[list[str], list[str]]:
    """The files an answer depends on (those git lists that codesearch would index, `accepted`, and the
    ignore files that steer git) and the folders whose entries it depends on: every folder git's untracked
    walk enters, and the folders on the way to each file. Folders of vendored files and ignored folders are
    left out: nothing new in them is ever listed."""
    from codesearch.source.discover import in_skipped_folder

    files = [name for name in accepted if not name.endswith("/")]
    # Other repositories, nested or submodules: git stops at their folder.
    nested = listing.submodules | {name[:-1] for name in listing.dirty if name.endswith("/")}
    folders = {"", *(f"{name}/.git" for name in nested)}  # unmade, or no longer a repository: git looks in
    base = os.path.join(os.fspath(root), "")
    pending = [""]
    while pending:
        folder = pending.pop()
        prefix = f"{folder}/" if folder else ""
        try:
            entries = os.scandir(base + folder)
        except OSError:
            continue  # unreadable to git too, until its mode changes, which its own lstat shows
        with entries:
            for entry in entries:
                path = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    if path not in listing.ignored_folders and path not in nested \
                            and not in_skipped_folder(entry.name + "/"):
                        folders.add(path)
                        pending.append(path)
                elif entry.name == ".gitignore":
                    files.append(path)
    for name in files:
        folder = name.rpartition("/")[0]
        while folder not in folders:
            folders.add(folder)
            folder = folder.rpartition("/")[0]
    return sorted(set(files)), sorted(name or "." for name in folders)


def _start_steering_files(root: Path) -> list[subprocess.Popen]:
    """Ask git, beside its listing, where the files that steer its answer are: its index, its info/exclude
    and its config files, and the excludes file the config names."""
    from codesearch.source.discover import GIT

    arguments = [("rev-parse", *[option for name in ("index", "info/exclude", "config", "config.worktree")
                                 for option in ("--git-path", name)]),
                 ("config", "--list", "--show-origin", "-z")]
    return [subprocess.Popen([*GIT, "--no-optional-locks", *command], cwd=root, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for command in arguments]


def _answer(process: subprocess.Popen) -> str | None:
    """A git run's output; None when it failed (`git config --list` fails only when there is no config)."""
    output = process.communicate()[0]
    return output.decode("utf-8", "surrogateescape") if process.returncode == 0 else None


def _steering_files(root: Path, git_paths: str, config: str) -> list[str]:
    """Absolute paths of the files whose change can change git's listing without touching the tree: those
    git named, the config and excludes files it would read if they were made, and the work tree's .git; a
    link's target beside the link, since lstat sees only the link."""
    home = os.path.expanduser("~")
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    paths = {os.path.join(root, ".git"), os.path.join(home, ".gitconfig"), os.path.join(xdg, "git", "config"),
             os.path.join(xdg, "git", "ignore"), "/etc/gitconfig"}
    paths.update(os.environ[name] for name in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM") if os.environ.get(name))
    paths.update(os.path.join(root, line) for line in git_paths.splitlines() if line)
    entries = config.split("\0")
    for origin, setting in zip(entries[::2], entries[1::2]):
        if origin.startswith("file:"):
            paths.add(os.path.join(root, origin[5:]))
        key, _, value = setting.partition("\n")
        if key == "core.excludesfile" and value:
            paths.add(os.path.join(root, os.path.expanduser(value)))
    paths = {os.path.normpath(path) for path in paths}
    return sorted(paths | {os.path.realpath(path) for path in paths})
