"""The trust boundary: folders that belong to this user alone, and files opened without following links.

Everything in a repository is under its author's control, and so is everything another local user
can write. A folder codesearch keeps state in (`.codesearch/`, the socket folder) is therefore used
only when it is a real directory, owned by this user, that nobody else can write into; once that
holds, nobody else can plant a link inside it either, and the files in it are ours. Files are still
opened with O_NOFOLLOW, so a link that got there some other way (an unpacked archive) is refused
rather than followed.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import Callable

from codesearch.errors import CodesearchError


class UntrustedPath(CodesearchError):
    """A folder or file codesearch would use is a link, another user's, or open to others."""


def private_directory(path: Path, create: bool = False, strict: bool = False) -> Path:
    """`path` as a folder only this user can use, created 0700 when `create` is set.

    Refused when it is a symbolic link, not a directory, or owned by someone else, and when group
    or others may write into it. Read or search bits for others (an index made before this check,
    under a 022 umask) are taken away, unless `strict`, which refuses any of them.
    """
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as error:
            raise CodesearchError(f"cannot create {path}: {error.strerror or error}") from None
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise CodesearchError(f"{path} does not exist") from None
    if stat.S_ISLNK(info.st_mode):
        raise UntrustedPath(f"{path} is a symbolic link; codesearch keeps its files only in a real folder "
                            f"(remove the link)")
    if not stat.S_ISDIR(info.st_mode):
        raise UntrustedPath(f"{path} is not a folder")
    if info.st_uid != os.getuid():
        raise UntrustedPath(f"{path} belongs to another user (uid {info.st_uid}); codesearch will not use it")
    open_bits = stat.S_IMODE(info.st_mode) & 0o077
    if open_bits & 0o022 or (strict and open_bits):
        raise UntrustedPath(f"{path} can be {'written' if open_bits & 0o022 else 'read'} by other users "
                            f"(mode {stat.S_IMODE(info.st_mode):o}); codesearch will not use it")
    if open_bits:
        os.chmod(path, 0o700, follow_symlinks=False)
    return path


def open_private(path: Path, flags: int, mode: int = 0o600) -> int:
    """os.open that never follows a symbolic link at `path` and creates files readable by their owner only."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UntrustedPath(f"{path} is a symbolic link; codesearch will not open it") from None
        raise



def refuse_links(directory: Path) -> None:
    """Refuse a private folder that holds a symbolic link, or a hard link to a file elsewhere, anywhere below it.

    codesearch never makes either, so one is planted (an unpacked archive, a copied folder) and would
    send a write, a truncation or a deletion to a file outside the folder.
    """
    for folder, subfolders, names in os.walk(directory):  # os.walk lists links to folders without entering them
        for name in subfolders + names:
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue  # a generation another run just tidied away
            if stat.S_ISLNK(info.st_mode):
                raise UntrustedPath(f"{path} is a symbolic link; codesearch makes none in {directory} and will not "
                                    f"use the folder (delete the link, or the folder)")
            if not stat.S_ISDIR(info.st_mode) and info.st_nlink > 1:
                raise UntrustedPath(f"{path} has other names (a hard link); codesearch makes none in {directory} "
                                    f"and will not use the folder (delete the file, or the folder)")


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Put `path` in place whole or not at all: `write` makes a temporary name beside it (a file it opens
    with open_private and O_EXCL, or a folder it creates), everything written there reaches the disk, then
    one rename puts it in place of whatever `path` was. A leftover of a killed run that had this process id
    is cleared first, and a failed write leaves no temporary behind.

    The one way codesearch replaces a file or folder: index generations, the manifest copy, hook scripts.
    """
    temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
    remove_path(temporary)
    try:
        write(temporary)
        _sync(temporary)
        if stat.S_ISDIR(os.lstat(temporary).st_mode) and os.path.lexists(path):
            remove_path(path)  # a rename replaces an empty folder only
        os.replace(temporary, path)
    except BaseException:
        try:
            remove_path(temporary)
        except OSError:
            pass
        raise


def write_private_file(path: Path, data: bytes) -> None:
    """Replace `path` with `data` at once (replace_atomically), readable by its owner only."""
    def write(temporary: Path) -> None:
        with os.fdopen(open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
            handle.write(data)

    replace_atomically(path, write)


def _sync(path: Path) -> None:
    """fsync a file, or every file in a folder (never through a link)."""
    if stat.S_ISDIR(os.lstat(path).st_mode):
        for name in os.listdir(path):
            _sync(path / name)
        return
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_path(path: Path) -> None:
    """Delete a file or a folder at `path`, if there is one; a link is removed, never followed."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)  # never follows a link inside
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def read_regular_file(path: str | Path, limit: int = -1) -> bytes:
    """The bytes of a regular file, opened without following a link at `path` and never blocking on a fifo."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        return handle.read(limit)


def resolve_inside(root: Path, relative: str) -> str | None:
    """The real path of root/relative, or None when a link (of any component) leads outside root."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, relative))
    return real if real.startswith(os.path.join(real_root, "")) else None


def is_repository_path(path: object) -> bool:
    """A path as codesearch stores it: relative, POSIX, printable as it is (no NUL, no lone surrogate), and
    with no `..`, `.` or empty part, so joined to the root it names a file under it."""
    if not isinstance(path, str) or not path or "\0" in path or path.startswith("/"):
        return False
    if not path.isascii():
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


class PrivateLock:
    """An exclusive flock on a file opened without following links (filelock takes a path and, in the
    versions this project accepts, may open it following a link and truncate it)."""

    def __init__(self, path: Path):
        self.path = path
        self._descriptor: int | None = None

    def acquire(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds (0: try once); True once held."""
        import fcntl
        import time

        descriptor = open_private(self.path, os.O_RDWR | os.O_CREAT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(descriptor)
                    return False
                time.sleep(0.05)
                continue
            except BaseException:
                os.close(descriptor)
                raise
            self._descriptor = descriptor
            return True

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the only descriptor releases the flock
            self._descriptor = None
