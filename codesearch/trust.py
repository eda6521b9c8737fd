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
import stat
from pathlib import Path

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

