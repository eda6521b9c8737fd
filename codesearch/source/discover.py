"""Find the files of a git repository worth indexing, with a cheap fingerprint for each.

Git decides what belongs to the repository (tracked files plus untracked files it does not
ignore). A tracked file that git reports clean is fingerprinted by its blob id, so an
unchanged repository is recognised without reading a single file; anything else by size
and modification time.

Every path comes from git, and a repository is someone else's input: a tracked file whose folder
was replaced by a link leading out of the work tree is skipped, and a name that is not UTF-8 is
stored with its odd bytes written `\\xNN`, so that it prints, embeds and stores as text and still
leads back to its file.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from codesearch.errors import CodesearchError
from codesearch.trust import read_regular_file, resolve_inside

MAX_FILE_BYTES = 1_000_000
INDEX_DIR = ".codesearch"
_SKIPPED_PARTS = frozenset({"node_modules", "vendor", "third_party", "dist", "build", ".git", INDEX_DIR,
                            "__pycache__", ".venv", "venv", "site-packages", "bower_components"})
_SKIPPED_NAMES = re.compile(
    r"(\.min\.(js|css)$|\.map$|-lock\.json$|\.lock$|^package-lock\.json$|^go\.sum$|\.bundle\.js$|\.pb\.go$|_pb2\.py$)"
)
_BINARY_SUFFIXES = frozenset(
    ".png .jpg .jpeg .gif .bmp .ico .webp .pdf .zip .gz .tgz .bz2 .xz .7z .jar .war .class .so .dll .dylib "
    ".exe .o .a .lib .pyc .whl .woff .woff2 .ttf .otf .eot .mp3 .mp4 .wav .ogg .mov .avi .sqlite .db .bin "
    ".npy .npz .pt .safetensors .onnx .faiss .psd .svgz".split()
)


# fsmonitor is a command named in the repository's config; git would run it for `git status`.
GIT = ("git", "-c", "core.fsmonitor=false")
_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")


@dataclass(frozen=True)
class GitListing:
    """What git says of a work tree: its index's regular files (path -> blob id; None while in conflict) and
    submodules, the paths status reports changed or untracked (a nested repository as its folder, with a
    trailing slash), and the folders status reports ignored as a whole. git looks into none of these folders."""

    staged: dict[str, str | None]
    submodules: set[str]
    dirty: set[str]
    ignored_folders: set[str]


@dataclass(frozen=True)
class SourceFile:
    path: str  # repository-relative, POSIX separators, as stored_path() writes it
    fingerprint: str


def stored_path(name: str) -> str:
    """git's name of a file (bytes that are not UTF-8 as surrogates) as codesearch stores and prints it:
    those bytes written `\\xNN`."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def file_name(path: str) -> str:
    """The name on disk of a stored path: stored_path() undone."""
    if "\\x" not in path:
        return path
    return _ESCAPED_BYTE.sub(lambda match: chr(0xDC00 + int(match.group(1), 16)), path)


def with_content_id(fingerprint: str, data: bytes | None) -> str:
    """The fingerprint to record for a file read as `data`. A file git saw as changed has a stat fingerprint;
    the git blob id of the bytes read goes beside it, so that once git holds those bytes (the change is
    committed, or a checkout that was under way when the file was read has finished) git's own name for them
    matches and the file is not read again. Under a clean filter or a SHA-256 repository the ids differ: the
    file is read again, as it would be without this."""
    if data is None or not fingerprint.startswith("stat:"):
        return fingerprint
    blob = hashlib.sha1(b"blob %d\0" % len(data))
    blob.update(data)
    return f"{fingerprint} blob:{blob.hexdigest()}"


def same_content(recorded: str | None, current: str) -> bool:
    """Whether a file discovered with fingerprint `current` still holds what was recorded for it."""
    return recorded is not None and (recorded == current or current in recorded.split(" "))


def read_listed(root: Path, path: str, limit: int = -1) -> bytes | None:
    """The bytes of a discovered file (a stored path), or None when it is gone or unreadable since discovery,
    or a link now takes it out of the repository."""
    real_path = resolve_inside(root, file_name(path))
    if real_path is None:
        return None
    try:
        return read_regular_file(real_path, limit)
    except OSError:
        return None


def unreadable(root: Path, paths: list[str]) -> set[str]:
    """Those of the stored `paths` this process may not read (their folder's or their own permissions): a
    file that cannot be read is not a file that was emptied or deleted, so what the index holds of it stands."""
    base = os.path.join(os.fspath(root), "")
    effective = os.access in os.supports_effective_ids
    found = set()
    for path in paths:
        name = base + file_name(path)
        if os.access(name, os.R_OK, effective_ids=effective):
            continue  # one system call for the common case
        try:
            os.lstat(name)
        except PermissionError:
            found.add(path)  # a folder on its way cannot be read
        except OSError:
            continue  # gone
        else:
            found.add(path)
    return found


def repository_root(path: str | os.PathLike) -> Path:
    """The top of the work tree that path is in (asked of git itself: importing GitPython alone
    costs more than a whole no-op refresh)."""
    target = Path(path)
    if not target.exists():
        raise CodesearchError(f"path does not exist: {target}")
    try:
        result = subprocess.run([*GIT, "rev-parse", "--show-toplevel"], cwd=target if target.is_dir() else target.parent,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except OSError as error:
        raise CodesearchError(f"cannot run git: {error.strerror or error}") from None
    if result.returncode == 0:
        return Path(result.stdout.rstrip("\n"))
    if "not a git repository" in result.stderr:
        raise CodesearchError(f"not a git repository: {target} (codesearch indexes git repositories; run `git init` there first)")
    raise CodesearchError(f"{target} is not in a git work tree (a bare repository, or inside .git); "
                          f"point codesearch at a working tree")


def git_path(root: Path, name: str, resolve: bool = True) -> Path:
    """Where git keeps `name` (e.g. "info/exclude", "hooks") for the work tree at root; linked
    worktrees and core.hooksPath taken into account. Links resolved unless `resolve` is False."""
    try:
        result = subprocess.run([*GIT, "rev-parse", "--git-path", name], cwd=root, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True)
    except OSError as error:
        raise CodesearchError(f"cannot run git: {error.strerror or error}") from None
    if result.returncode != 0:
        raise CodesearchError(f"git cannot locate {name} for {root}: {result.stderr.strip()}")
    path = root / result.stdout.rstrip("\n")
    return path.resolve() if resolve else Path(os.path.normpath(path))


def tracked_paths(root: Path, path: str) -> list[str]:
    """What git tracks at or under `path` (relative to root, taken literally, not as a glob)."""
    listing = _finish_git(_start_git(root, "--literal-pathspecs", "ls-files", "-z", "--", path))
    return [name for name in listing.split("\0") if name]


def discover_files(root: Path, notice: Callable[[str], None] | None = None,
                   accept: Callable[[str], bool] | None = None, max_bytes: int = MAX_FILE_BYTES) -> list[SourceFile]:
    """Indexable files under root, sorted by path: source files, or those `accept` takes (the pictures of
    source.media), up to `max_bytes` each.

    This is the whole cost of a refresh that finds nothing to do, so it stays close to what
    `git status` costs: both git commands run at once, and each file costs one lstat and a
    few string operations (pathlib here cost five times as much); each folder costs one lstat
    more, to skip those that are links leading out of the work tree.
    """
    return files_listed(root, git_listing(root), notice, accept, max_bytes)


def files_listed(root: Path, listing: GitListing, notice: Callable[[str], None] | None = None,
                 accept: Callable[[str], bool] | None = None, max_bytes: int = MAX_FILE_BYTES) -> list[SourceFile]:
    """discover_files() over a listing already taken (freshness keeps the listing to record what it saw)."""
    staged, dirty = listing.staged, listing.dirty
    base = os.path.join(os.fspath(root), "")
    folder_inside: dict[str, bool] = {"": True}
    ambiguous, oversized = [], []
    files = []
    accept = accept or is_indexable_path
    for name in sorted(staged.keys() | dirty):
        if not accept(name):
            continue
        path = name if name.isascii() else stored_path(name)
        if "\\x" in path and file_name(path) != name:
            ambiguous.append(path)  # spelled like another name's escaped bytes: it would not lead back here
            continue
        if not _folder_inside(base, name.rpartition("/")[0], folder_inside):
            continue
        try:
            info = os.lstat(base + name)
        except OSError:
            continue  # deleted in the work tree, or its folder cannot be read (indexer.build tells them apart)
        if not stat.S_ISREG(info.st_mode) or not 0 < info.st_size <= max_bytes:
            if stat.S_ISREG(info.st_mode) and info.st_size > max_bytes:
                oversized.append(path)  # generated or data files, as a rule: said once a run
            continue  # symlinks, submodules, empty and oversized files
        blob = None if name in dirty else staged.get(name)
        fingerprint = f"blob:{blob}" if blob else f"stat:{info.st_size}:{info.st_mtime_ns}"
        files.append(SourceFile(path, fingerprint))
    if ambiguous and notice:
        notice(f"skipped {len(ambiguous)} file(s) whose name reads like escaped bytes and would be confused "
               f"with another name: {ambiguous[0]}")
    if oversized and notice:
        notice(f"skipped {len(oversized)} file(s) larger than {max_bytes / 1e6:g} MB: {oversized[0]}")
    return files


def _folder_inside(base: str, folder: str, known: dict[str, bool]) -> bool:
    """Whether a repository folder stays inside the work tree: no folder on its way is a link leading out.
    One lstat per folder per run (a realpath only for folders that are links)."""
    inside = known.get(folder)
    if inside is None:
        inside = _folder_inside(base, folder.rpartition("/")[0], known)
        if inside:
            try:
                is_link = stat.S_ISLNK(os.lstat(base + folder).st_mode)
            except OSError:
                is_link = False  # gone: its files fail their own lstat
            if is_link:
                real_root = os.path.join(os.path.realpath(base), "")
                inside = os.path.join(os.path.realpath(base + folder), "").startswith(real_root)
        known[folder] = inside
    return inside


def in_skipped_folder(path: str) -> bool:
    """Under a folder of generated or vendored files (node_modules, build, .git, ...)."""
    return not _SKIPPED_PARTS.isdisjoint(path.split("/")[:-1])


def is_indexable_path(path: str) -> bool:
    name = path.rpartition("/")[2]
    if in_skipped_folder(path):
        return False
    if _SKIPPED_NAMES.search(name):
        return False
    dot = name.rfind(".")  # the suffix as pathlib defines it, without building a Path
    suffix = name[dot:].lower() if 0 < dot < len(name) - 1 else ""
    return suffix not in _BINARY_SUFFIXES


def looks_binary(data: bytes) -> bool:
    return b"\0" in data[:8192]


def git_listing(root: Path) -> GitListing:
    """git's index and status of the work tree, from two git runs side by side."""
    ls_files = _start_git(root, "ls-files", "--stage", "-z")
    # --ignored=matching costs git nothing more (it decides what is ignored anyway) and names the folders it
    # did not look into, which a recorded snapshot of the tree (indexer.freshness) need not watch either.
    status = _start_git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames",
                        "--ignore-submodules=all", "--ignored=matching")
    staged, submodules = _tracked_blobs(_finish_git(ls_files))
    dirty, ignored_folders = _status_paths(_finish_git(status))
    return GitListing(staged, submodules, dirty, ignored_folders)


def _start_git(root: Path, *arguments: str) -> subprocess.Popen:
    try:
        # --no-optional-locks: `git status` would otherwise rewrite .git/index, and take index.lock
        # from under a git command the user runs at the same time.
        return subprocess.Popen([*GIT, "--no-optional-locks", *arguments], cwd=root, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as error:
        raise CodesearchError(f"cannot run git: {error.strerror or error}") from None


def _finish_git(process: subprocess.Popen) -> str:
    output, errors = process.communicate()
    if process.returncode != 0:
        message = errors.decode("utf-8", "replace").strip() or f"exit status {process.returncode}"
        raise CodesearchError(f"`{' '.join(process.args)}` failed: {message}")
    return output.decode("utf-8", "surrogateescape")


def _tracked_blobs(output: str) -> tuple[dict[str, str | None], set[str]]:
    """Path -> blob id for regular files in `git ls-files --stage -z` output (symlinks left out; a path with
    merge conflicts maps to None), and the submodules' paths."""
    blobs: dict[str, str | None] = {}
    submodules = set()
    for entry in output.split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, blob, stage = meta.split()
        if mode in ("100644", "100755"):
            blobs[path] = blob if stage == "0" else None
        elif mode == "160000":
            submodules.add(path)
    return blobs, submodules


def _status_paths(output: str) -> tuple[set[str], set[str]]:
    """Paths `git status --porcelain -z --ignored=matching` reports as modified, added or untracked (not
    ignored), and the folders it reports ignored as a whole (without their trailing slash)."""
    dirty, ignored_folders = set(), set()
    for entry in output.split("\0"):
        if len(entry) <= 3:
            continue
        if not entry.startswith("!!"):
            dirty.add(entry[3:])
        elif entry.endswith("/"):
            ignored_folders.add(entry[3:-1])
    return dirty, ignored_folders
