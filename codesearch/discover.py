"""Find the files of a git repository worth indexing, with a cheap fingerprint for each.

Git decides what belongs to the repository (tracked files plus untracked files it does not
ignore). A tracked file that git reports clean is fingerprinted by its blob id, so an
unchanged repository is recognised without reading a single file; anything else by size
and modification time.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from codesearch.errors import CodesearchError

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


@dataclass(frozen=True)
class SourceFile:
    path: str  # repository-relative, POSIX separators
    fingerprint: str


def repository_root(path: str | os.PathLike) -> Path:
    """The top of the work tree that path is in (asked of git itself: importing GitPython alone
    costs more than a whole no-op refresh)."""
    target = Path(path)
    if not target.exists():
        raise CodesearchError(f"path does not exist: {target}")
    try:
        result = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=target if target.is_dir() else target.parent,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except OSError as error:
        raise CodesearchError(f"cannot run git: {error.strerror or error}") from None
    if result.returncode == 0:
        return Path(result.stdout.rstrip("\n"))
    if "not a git repository" in result.stderr:
        raise CodesearchError(f"not a git repository: {target} (codesearch indexes git repositories; run `git init` there first)")
    raise CodesearchError(f"{target} is not in a git work tree (a bare repository, or inside .git); "
                          f"point codesearch at a working tree")


def git_path(root: Path, name: str) -> Path:
    """Where git keeps `name` (e.g. "info/exclude", "hooks") for the work tree at root; linked
    worktrees and core.hooksPath taken into account."""
    try:
        result = subprocess.run(["git", "rev-parse", "--git-path", name], cwd=root, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True)
    except OSError as error:
        raise CodesearchError(f"cannot run git: {error.strerror or error}") from None
    if result.returncode != 0:
        raise CodesearchError(f"git cannot locate {name} for {root}: {result.stderr.strip()}")
    return (root / result.stdout.rstrip("\n")).resolve()


def discover_files(root: Path) -> list[SourceFile]:
    """Indexable files under root, sorted by path.

    This is the whole cost of a refresh that finds nothing to do, so it stays close to what
    `git status` costs: both git commands run at once, and each file costs one lstat and a
    few string operations (pathlib here cost five times as much).
    """
    staged, dirty = _git_listings(root)
    base = os.path.join(os.fspath(root), "")
    files = []
    for path in sorted(staged.keys() | dirty):
        if not is_indexable_path(path):
            continue
        try:
            info = os.lstat(base + path)
        except OSError:
            continue  # deleted in the work tree
        if not stat.S_ISREG(info.st_mode) or not 0 < info.st_size <= MAX_FILE_BYTES:
            continue  # symlinks, submodules, empty and oversized files
        blob = None if path in dirty else staged.get(path)
        fingerprint = f"blob:{blob}" if blob else f"stat:{info.st_size}:{info.st_mtime_ns}"
        files.append(SourceFile(path, fingerprint))
    return files


def is_indexable_path(path: str) -> bool:
    *directories, name = path.split("/")
    if not _SKIPPED_PARTS.isdisjoint(directories):
        return False
    if _SKIPPED_NAMES.search(name):
        return False
    dot = name.rfind(".")  # the suffix as pathlib defines it, without building a Path
    suffix = name[dot:].lower() if 0 < dot < len(name) - 1 else ""
    return suffix not in _BINARY_SUFFIXES


def looks_binary(data: bytes) -> bool:
    return b"\0" in data[:8192]


def _git_listings(root: Path) -> tuple[dict[str, str | None], set[str]]:
    """git's index (path -> blob id) and the paths git status reports, from two git runs side by side."""
    ls_files = _start_git(root, "ls-files", "--stage", "-z")
    status = _start_git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames",
                        "--ignore-submodules=all")
    return _tracked_blobs(_finish_git(ls_files)), _dirty_paths(_finish_git(status))


def _start_git(root: Path, *arguments: str) -> subprocess.Popen:
    try:
        # --no-optional-locks: `git status` would otherwise rewrite .git/index, and take index.lock
        # from under a git command the user runs at the same time.
        return subprocess.Popen(["git", "--no-optional-locks", *arguments], cwd=root, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as error:
        raise CodesearchError(f"cannot run git: {error.strerror or error}") from None


def _finish_git(process: subprocess.Popen) -> str:
    output, errors = process.communicate()
    if process.returncode != 0:
        message = errors.decode("utf-8", "replace").strip() or f"exit status {process.returncode}"
        raise CodesearchError(f"`{' '.join(process.args)}` failed: {message}")
    return output.decode("utf-8", "surrogateescape")


def _tracked_blobs(output: str) -> dict[str, str | None]:
    """Path -> blob id for regular files in `git ls-files --stage -z` output (symlinks and submodules
    left out; a path with merge conflicts maps to None)."""
    blobs: dict[str, str | None] = {}
    for entry in output.split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, blob, stage = meta.split()
        if mode not in ("100644", "100755"):
            continue
        blobs[path] = blob if stage == "0" else None
    return blobs


def _dirty_paths(output: str) -> set[str]:
    """Paths `git status --porcelain -z` reports as modified, added or untracked (not ignored)."""
    return {entry[3:] for entry in output.split("\0") if len(entry) > 3}
