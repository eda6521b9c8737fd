"""`codesearch hook install | uninstall | status | refresh`: the commands over the git hooks that keep the
index fresh (indexer/hooks.py holds what they do and why)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import typer

from codesearch.indexer.hooks import (LOG_NAME, ORIGINAL_SUFFIX, append_to_log, hook_states, install_hooks,
                                      last_log_line, refresh_for_hook, refresh_running, uninstall_hooks)
from codesearch.source.discover import INDEX_DIR

hook_app = typer.Typer(no_args_is_help=True, help="Git hooks that refresh the index after commits, checkouts and merges.")

PathArgument = typer.Argument(Path("."), help="A directory inside the git repository.")


@hook_app.command()
def install(
    path: Path = PathArgument,
    background: bool = typer.Option(True, "--background/--sync",
                                    help="Refresh detached in the background (default), or inline before git goes on."),
    force: bool = typer.Option(False, "--force",
                               help="Install into a hooks folder git tracks; its tracked files are still left alone."),
):
    """Install pre-commit, post-checkout and post-merge hooks that refresh the index.

    A hook already there is kept and runs first; `codesearch hook uninstall` puts it back.
    """
    from codesearch.source.discover import repository_root

    root = repository_root(path)
    states = install_hooks(root, "background" if background else "sync", force=force)
    for state in states:
        if state.tracked:
            print(f"left {state.path} as it is: git tracks it (call `codesearch hook refresh` from it to chain "
                  f"codesearch)")
            continue
        chained = f" (runs the previous hook first: {state.path.name}{ORIGINAL_SUFFIX})" if state.chained else ""
        print(f"installed {state.path}{chained}")
    if not (root / INDEX_DIR).is_dir():
        print("note: there is no index yet; the hooks refresh it once `codesearch index` has built it", file=sys.stderr)


@hook_app.command()
def uninstall(path: Path = PathArgument):
    """Remove the hooks and restore the ones they chained."""
    from codesearch.source.discover import repository_root

    for state in uninstall_hooks(repository_root(path)):
        if state.state == "foreign":
            print(f"{state.path}: not a codesearch hook, left as it is")
        else:
            print(f"{state.path}: {'restored' if os.path.lexists(state.path) else 'removed'}")


@hook_app.command()
def status(path: Path = PathArgument, as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Which hooks are installed, whether a refresh is running, and how the last one went."""
    from codesearch.source.discover import repository_root

    root = repository_root(path)
    states = hook_states(root)
    running, last = refresh_running(root), last_log_line(root)
    if as_json:
        print(json.dumps({"hooks": [state.as_json() for state in states], "refresh_running": running,
                          "last_refresh": last}))
        return
    for state in states:
        detail = {"installed": f"installed, {state.mode}" + (", chains the previous hook" if state.chained else "")
                  + (", outdated: run `codesearch hook install` again" if state.outdated else ""),
                  "absent": "not installed", "foreign": "another hook (not codesearch's)"
                  + (", tracked by git: codesearch leaves it alone" if state.tracked else "")}[state.state]
        print(f"{state.name:<14}{detail}  {state.path}")
    print(f"{'refresh':<14}{'running now' if running else 'idle'}")
    if last:
        print(f"{'last':<14}{last}")


@hook_app.command()
def refresh(
    path: Path = PathArgument,
    log: bool = typer.Option(False, "--log", help=f"Append the report to {INDEX_DIR}/{LOG_NAME} (as background hooks "
                                                  f"do) instead of printing it."),
):
    """Refresh the index as the hooks do: never fails, skips if a refresh is already running."""
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    line = f"{started} codesearch hook refresh: {refresh_for_hook(path)}"
    if not (log and append_to_log(path, line)):
        print(line, file=sys.stderr)
