"""Watching a repository's working tree, so that a long-lived server refreshes its index within about a
second of a save, with nobody waiting, instead of at the next question.

watchfiles (the Rust notify crate: inotify on Linux, FSEvents on macOS) reports changes, grouped: a burst
of saves (a formatter, a checkout) arrives as one batch once no change came for STEP_MS. What git keeps
(.git) and what codesearch writes (.codesearch) are not watched, nor are the folders watchfiles leaves
out by default (node_modules, virtual environments, caches). When the system's watches run out (inotify's
per-user limit), the tree is polled instead, with a notice; when even that fails, or when a link to a folder
lies in the tree (the watch would follow it out of the repository), the server checks the working tree before
every answer, as a query without a server does.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from codesearch.source.discover import INDEX_DIR

STEP_MS = 100  # a batch is handed over once no further change came for this long
DEBOUNCE_MS = 1000  # ...or when changes have kept coming for this long
POLL_MS = 1000  # between two scans of the tree, when it has to be polled


class TreeWatch:
    """A daemon thread calling `on_change()` after each batch of changes under `root`, until stopped.
    `watching` is False once it gave up (then nothing reports changes, and the caller must check itself)."""

    def __init__(self, root: Path, on_change: Callable[[], None], notice: Callable[[str], None] = lambda _: None):
        self.root, self._on_change, self._notice = root, on_change, notice
        self._stop = threading.Event()
        self.watching = True
        self._thread = threading.Thread(target=self._run, name=f"codesearch-watch {root}", daemon=True)

    def start(self) -> "TreeWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            from watchfiles import DefaultFilter, watch
        except ImportError:
            self._give_up("watchfiles is not installed")
            return
        linked = _linked_folder(self.root)
        if linked is not None:  # notify follows links: a repository's link to / would have the whole disk watched
            self._give_up(f"{linked} is a link to a folder, which a watch would follow")
            return
        changes_filter = DefaultFilter(ignore_dirs=(*DefaultFilter.ignore_dirs, INDEX_DIR))
        for polling in (False, True):
            try:
                for _changes in watch(self.root, watch_filter=changes_filter, stop_event=self._stop, step=STEP_MS,
                                      debounce=DEBOUNCE_MS, force_polling=polling, poll_delay_ms=POLL_MS,
                                      raise_interrupt=False, ignore_permission_denied=True):
                    self._on_change()
                return
            except Exception as error:  # noqa: BLE001 - the Rust side reports a lost watch as various errors
                if self._stop.is_set():
                    return
                if polling:
                    self._give_up(f"{type(error).__name__}: {error}")
                    return
                self._notice(f"cannot watch {self.root} for changes ({error}); polling it every "
                             f"{POLL_MS / 1000:g} s instead")
                self._on_change()  # changes made while the watch was failing are not lost

    def _give_up(self, why: str) -> None:
        self.watching = False
        self._notice(f"not watching {self.root} for changes ({why}); the working tree is checked before each answer")
        self._on_change()


def _linked_folder(root: Path) -> str | None:
    """The first link to a folder under root (git's and codesearch's own folders aside), as a relative path."""
    import os

    for folder, folders, _files in os.walk(root):
        for name in list(folders):
            path = os.path.join(folder, name)
            if os.path.islink(path):
                return os.path.relpath(path, root)
            if name in (".git", INDEX_DIR):
                folders.remove(name)
    return None
