"""Git hooks that keep the index fresh: installing, removing and describing them, and the refresh they
run. The commands over them (`codesearch hook install | uninstall | status | refresh`) are cli/hooks.py.

The hooks are small shell scripts, so a commit pays nothing for them: each one runs the hook
that was there before (moved aside to `<hook>.codesearch-original`, and put back by uninstall),
keeps that hook's exit status, and then starts `codesearch hook refresh` with the interpreter
that installed it. By default the refresh is started detached (nohup, appending its report to
.codesearch/hook.log itself, never through the shell, which would follow a link there) so a
commit never waits for it; with --sync it runs inline. Either way our part of the script cannot
fail the commit: its status is thrown away.

Hooks are never installed into a folder git tracks (a husky-style `core.hooksPath`) unless asked
with --force, and a tracked file is never changed: it is left as it is, with a message.

The refresh is a fresh process, never a fork of this one: a child forked after torch or faiss
started their OpenMP threads hangs. It runs with `python -P`, so a `codesearch/` folder in the
repository being committed is never imported in place of the installed package.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from codesearch.source.discover import INDEX_DIR
from codesearch.errors import CodesearchError
from codesearch.trust import PrivateLock, open_private, read_regular_file, replace_atomically, write_private_file

HOOK_NAMES = ("pre-commit", "post-checkout", "post-merge")
MARKER = "# codesearch-hook"
SCRIPT_VERSION = 2  # 2: the background refresh writes hook.log itself (1 redirected the shell into it)
ORIGINAL_SUFFIX = ".codesearch-original"
LOG_NAME = "hook.log"
REFRESH_LOCK_NAME = "hook.lock"
PENDING_NAME = "hook.pending"
LOG_KEEP_BYTES = 256_000  # hook.log is cut back to its tail past twice this

_SCRIPT = """#!/bin/sh
{marker} {hook} mode={mode} version={version}
# Installed by `codesearch hook install`; `codesearch hook uninstall` puts back the hook that was here.
# The hook that was here before runs first and its exit status is kept; the refresh never fails git.
original="$(dirname "$0")/{hook}{suffix}"
status=0
if [ -x "$original" ]; then
    "$original" "$@"
    status=$?
fi
if [ "$status" -eq 0 ] && [ -d {index_dir} ]; then
    (
        python={python}
        # A commit's temporary index may be gone by the time a detached refresh reads it, and a
        # refresh must never take index.lock from under the git command the user runs next.
        unset GIT_INDEX_FILE
        GIT_OPTIONAL_LOCKS=0
        export GIT_OPTIONAL_LOCKS
        if [ ! -x "$python" ]; then
            echo "codesearch: index not refreshed: $python is gone; run \\`codesearch hook install\\` again" >&2
        else
{launch}
        fi
    ) || true
fi
exit $status
"""
_LAUNCH = {
    "background": '            nohup "$python" -P -m codesearch hook refresh --log >/dev/null 2>&1 </dev/null &',
    "sync": '            "$python" -P -m codesearch hook refresh </dev/null',
}


@dataclass(frozen=True)
class HookState:
    name: str
    path: Path
    state: str  # "installed", "absent" or "foreign" (a hook codesearch did not write)
    mode: str = ""  # background or sync, when installed
    chained: bool = False  # an original hook runs first
    outdated: bool = False  # written by an earlier codesearch: `codesearch hook install` renews it
    tracked: bool = False  # git tracks the file, so codesearch leaves it as it is

    def as_json(self) -> dict:
        return {"hook": self.name, "path": str(self.path), "state": self.state, "mode": self.mode,
                "chained": self.chained, "outdated": self.outdated, "tracked": self.tracked}


def hooks_directory(root: Path) -> Path:
    """Where git looks for hooks here, honouring core.hooksPath and linked worktrees (links on the way
    kept, so that tracked_hooks can see them)."""
    from codesearch.source.discover import git_path

    return git_path(root, "hooks", resolve=False)


def hook_script(hook: str, mode: str, python: str = sys.executable) -> str:
    return _SCRIPT.format(marker=MARKER, hook=hook, mode=mode, version=SCRIPT_VERSION, suffix=ORIGINAL_SUFFIX,
                          python=shlex.quote(python), index_dir=shlex.quote(INDEX_DIR), launch=_LAUNCH[mode])


def tracked_hooks(root: Path, directory: Path) -> set[str]:
    """The names git tracks in a hooks folder that lies in the work tree, as git names it or once its links
    are resolved ("." for the folder itself, tracked as a link or a submodule). A folder in the work tree
    reached through a link is refused: the repository could point that link anywhere."""
    from codesearch.source.discover import tracked_paths

    real_root = os.path.realpath(root)
    named = os.path.normpath(os.path.join(real_root, os.path.relpath(directory, root)))
    names = set()
    for path in {named, os.path.realpath(named)}:
        relative = os.path.relpath(path, real_root)
        if relative == ".." or relative.startswith("../") or relative.split("/")[0] == ".git":
            continue  # outside the work tree: .git/hooks, or a folder of the user's
        if path != os.path.realpath(named):
            raise CodesearchError(f"the hooks folder {directory} is reached through a link in the work tree; "
                                  f"codesearch will not install hooks there")
        prefix = "" if relative == "." else relative + "/"
        names.update("." if name == relative else name[len(prefix):] for name in tracked_paths(real_root, relative))
    return names


def install_hooks(root: Path, mode: str = "background", python: str = sys.executable,
                  force: bool = False) -> list[HookState]:
    """Write our hooks, moving any other hook aside so ours runs it first. Installing twice updates ours.

    A hooks folder git tracks is refused unless `force`; even then a tracked hook file is left as it is.
    """
    if mode not in _LAUNCH:
        raise CodesearchError(f"unknown hook mode {mode!r}; use background or sync")
    directory = hooks_directory(root)
    tracked = tracked_hooks(root, directory)
    if "." in tracked:
        raise CodesearchError(f"the hooks folder {directory} is itself tracked by git (a submodule or a file); "
                              f"codesearch will not write into it")
    if tracked and not force:
        raise CodesearchError(f"the hooks folder {directory} is part of the repository (git tracks "
                              f"{sorted(tracked)[0]}); codesearch will not edit or add files there (--force adds "
                              f"its hooks beside the tracked ones and leaves those alone)")
    directory.mkdir(parents=True, exist_ok=True)
    for hook in HOOK_NAMES:
        path = directory / hook
        original = _original_path(path)
        if hook in tracked or original.name in tracked:
            continue  # never changed: the user chains `codesearch hook refresh` from it by hand
        if os.path.lexists(path) and not _is_ours(path):
            if os.path.lexists(original):
                raise CodesearchError(f"both {path} and {original} exist and neither was written by codesearch; "
                                      f"merge them by hand, then run `codesearch hook install` again")
            os.replace(path, original)
        replace_atomically(path, _script_writer(hook_script(hook, mode, python)))
    return hook_states(root)


def _script_writer(script: str):
    def write(temporary: Path) -> None:
        descriptor = open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode=0o755)
        os.fchmod(descriptor, 0o755)  # executable whatever the umask
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(script)

    return write


def uninstall_hooks(root: Path) -> list[HookState]:
    """Remove our hooks and put back, byte for byte, the ones they chained. Other hooks, and files git
    tracks, are left alone."""
    directory = hooks_directory(root)
    tracked = tracked_hooks(root, directory)
    for hook in HOOK_NAMES:
        path = directory / hook
        if not os.path.lexists(path) or not _is_ours(path) or {hook, _original_path(path).name} & tracked:
            continue
        original = _original_path(path)
        if os.path.lexists(original):
            os.replace(original, path)
        else:
            path.unlink()
    return hook_states(root)


def hook_states(root: Path) -> list[HookState]:
    directory = hooks_directory(root)
    tracked = tracked_hooks(root, directory)
    states = []
    for hook in HOOK_NAMES:
        path = directory / hook
        if not os.path.lexists(path):
            states.append(HookState(hook, path, "absent"))
        elif not _is_ours(path):
            states.append(HookState(hook, path, "foreign", tracked=hook in tracked))
        else:
            first_lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[:2]
            mode = "sync" if any("mode=sync" in line for line in first_lines) else "background"
            outdated = not any(f"version={SCRIPT_VERSION}" in line for line in first_lines)
            states.append(HookState(hook, path, "installed", mode, os.path.lexists(_original_path(path)),
                                    outdated=outdated, tracked=hook in tracked))
    return states


def refresh_for_hook(path: Path) -> str:
    """Refresh the index the way a hook does; returns a one-line report and never raises.

    One refresh at a time: a hook that finds one running leaves a note and returns; the running
    one sees the note when it finishes and refreshes once more, so no change is missed.
    """
    try:
        from codesearch.source.discover import repository_root
        from codesearch.indexer.build import index_dir
        from codesearch.index.store import DATABASE_NAME, checked_directory

        root = repository_root(path)
        directory = index_dir(root)
        if not os.path.lexists(directory / DATABASE_NAME):
            return f"skipped: {root} has no index yet; run `codesearch index` there once"
        checked_directory(directory)
        pending = directory / PENDING_NAME
        # Before trying the lock, so a holder that is just finishing still sees it.
        os.close(open_private(pending, os.O_WRONLY | os.O_CREAT))
        reports = []
        while pending.exists():
            # Past the first round, the lock is waited for a moment: a query may be probing it just then
            # (refresh_running), and this refresh is the one its note is for.
            outcome = _refresh_once(root, directory / REFRESH_LOCK_NAME, pending, wait=1.0 if reports else 0.0)
            if outcome is None:
                return "; ".join(reports) if reports else "skipped: a refresh is already running; it will pick this change up"
            reports.append(outcome)
        return "; ".join(reports)
    except Exception as error:  # a hook reports, it never raises
        return f"failed: {_describe(error)}"


def start_refresh(root: Path) -> None:
    """Start the hooks' refresh detached, as a background hook does (`python -P`, a fresh process, its report
    appended to hook.log), for a query that found too many changed files to refresh before answering.

    While one runs, a query past the bound (a server asks again at every question until it is done) only
    leaves the note a hook leaves, which the running refresh takes up when it finishes: starting a process
    that would find the lock held costs a Python start each time, taken from the refresh's cores."""
    import subprocess

    if _note_for_running_refresh(root):
        return
    environment = {key: value for key, value in os.environ.items() if key != "GIT_INDEX_FILE"}
    try:
        subprocess.Popen([sys.executable, "-P", "-m", "codesearch", "hook", "refresh", "--log", str(root)],
                         cwd=root, env={**environment, "GIT_OPTIONAL_LOCKS": "0"}, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        pass  # the answer already says the index lags; the next query tries again


def _note_for_running_refresh(root: Path) -> bool:
    """When a refresh is running, leave it the note that another change came; whether one was running."""
    directory = _own_index_directory(root)
    if directory is None or not refresh_running(root):
        return False
    try:
        os.close(open_private(directory / PENDING_NAME, os.O_WRONLY | os.O_CREAT))
    except (OSError, CodesearchError):
        return False
    # Left just as the refresh finished, the note would wait for the next refresh: start one after all.
    return refresh_running(root)


def _refresh_once(root: Path, lock_path: Path, pending: Path, wait: float = 0.0) -> Optional[str]:
    from codesearch.indexer.build import index_repository

    lock = PrivateLock(lock_path)
    if not lock.acquire(timeout=wait):
        return None
    try:
        pending.unlink(missing_ok=True)
        try:
            report = index_repository(root)
        except Exception as error:
            return f"failed: {_describe(error)}"
        return "refreshed: " + json.dumps(report.as_json())
    finally:
        lock.release()


def refresh_running(root: Path) -> bool:
    directory = _own_index_directory(root)
    if directory is None or not os.path.lexists(directory / REFRESH_LOCK_NAME):
        return False
    lock = PrivateLock(directory / REFRESH_LOCK_NAME)
    if not lock.acquire(timeout=0):
        return True
    lock.release()
    return False


def last_log_line(root: Path) -> str:
    directory = _own_index_directory(root)
    try:
        text = read_regular_file(directory / LOG_NAME).decode("utf-8", "replace") if directory else ""
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def append_to_log(path: Path, line: str) -> bool:
    """Add a line to the repository's hook.log, cut back to its tail past twice LOG_KEEP_BYTES; False when
    the index folder is missing or not codesearch's own (nothing is written then)."""
    from codesearch.source.discover import repository_root

    try:
        directory = _own_index_directory(repository_root(path))
        if directory is None:
            return False
        data = (line + "\n").encode("utf-8", "replace")
        descriptor = open_private(directory / LOG_NAME, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        try:
            size = os.fstat(descriptor).st_size
            if size + len(data) <= 2 * LOG_KEEP_BYTES:
                os.write(descriptor, data)
                return True
            tail = os.pread(descriptor, LOG_KEEP_BYTES, size - LOG_KEEP_BYTES)
        finally:
            os.close(descriptor)
        write_private_file(directory / LOG_NAME, tail[tail.find(b"\n") + 1:] + data)
        return True
    except (OSError, CodesearchError):
        return False


def _own_index_directory(root: Path) -> Optional[Path]:
    """root/.codesearch when it exists and is codesearch's own (see index.store.index_dir); None otherwise."""
    from codesearch.indexer.build import index_dir
    from codesearch.index.store import checked_directory

    try:
        directory = index_dir(root)
        return checked_directory(directory) if os.path.lexists(directory) else None
    except CodesearchError:
        return None


def _is_ours(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return MARKER.encode() in handle.read(512)
    except OSError:
        return False


def _original_path(path: Path) -> Path:
    return path.with_name(path.name + ORIGINAL_SUFFIX)


def _describe(error: Exception) -> str:
    if isinstance(error, CodesearchError):
        return str(error)
    return f"{type(error).__name__}: {error}"
