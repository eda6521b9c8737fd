"""Find the files of a git repository worth indexing, with a cheap fingerprint for each.

Git decides what belongs to the repository (tracked files plus untracked files it does not
ignore). A tracked file that git reports clean is fingerprinted by its blob id, so an
unchanged repository is recognised without reading a single file; anything else by size
and modification time.
"""

from __future__ import annotations

import os
import re
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
    import git

    target = Path(path)
    if not target.exists():
        raise CodesearchError(f"path does not exist: {target}")
    try:
        repo = git.Repo(target, search_parent_directories=True)
    except git.InvalidGitRepositoryError:
        raise CodesearchError(f"not a git repository: {target} (codesearch indexes git repositories; run `git init` there first)") from None
    except git.NoSuchPathError:
        raise CodesearchError(f"path does not exist: {target}") from None
    if repo.working_tree_dir is None:
        raise CodesearchError(f"{target} is a bare git repository; point codesearch at a working tree")
    return Path(repo.working_tree_dir)


def discover_files(root: Path) -> list[SourceFile]:
    """Indexable files under root, sorted by path."""
    import git

    repo = git.Repo(root)
    staged = _tracked_blobs(repo)
    dirty = _dirty_paths(repo)
    files = []
    for path in sorted(set(staged) | dirty):
        if not is_indexable_path(path):
            continue
        full = root / path
        try:
            stat = full.lstat()
        except OSError:
            continue  # deleted in the work tree
        if not full.is_file() or full.is_symlink() or stat.st_size > MAX_FILE_BYTES or stat.st_size == 0:
            continue
        if path in staged and path not in dirty and staged[path] is not None:
            fingerprint = f"blob:{staged[path]}"
        else:
            fingerprint = f"stat:{stat.st_size}:{stat.st_mtime_ns}"
        files.append(SourceFile(path, fingerprint))
    return files


def is_indexable_path(path: str) -> bool:
    parts = path.split("/")
    if any(part in _SKIPPED_PARTS for part in parts[:-1]):
        return False
    name = parts[-1]
    if _SKIPPED_NAMES.search(name):
        return False
    return Path(name).suffix.lower() not in _BINARY_SUFFIXES


def looks_binary(data: bytes) -> bool:
    return b"\0" in data[:8192]


def _tracked_blobs(repo) -> dict[str, str | None]:
    """Path -> blob id for regular files in git's index (symlinks and submodules left out)."""
    blobs: dict[str, str | None] = {}
    output = repo.git.ls_files("-s", "-z")
    for entry in output.split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, blob, stage = meta.split()
        if mode not in ("100644", "100755"):
            continue
        blobs[path] = blob if stage == "0" else None
    return blobs


def _dirty_paths(repo) -> set[str]:
    """Paths git reports as modified, added or untracked (not ignored) in the work tree."""
    output = repo.git.status("--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
    paths = set()
    for entry in output.split("\0"):
        if len(entry) > 3:
            paths.add(entry[3:])
    return paths
