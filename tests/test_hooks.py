"""Git hooks keep the index fresh, chain the hooks already there, and never fail a commit.

Every test makes real commits in a copy of one repository indexed once with the real minilm
model. The changes committed here reuse cached vectors or only delete, so the hooks' refreshes
do not load the model unless a test says so.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codesearch.indexer.hooks import HOOK_NAMES, ORIGINAL_SUFFIX, install_hooks
from conftest import codesearch, git

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "incremental"
EXISTING_HOOK = "#!/bin/sh\n# the team's own hook\necho \"$0 ran\" >> \"$(git rev-parse --git-dir)/team-hook-ran\"\nexit 0\n"


def index_status(repo: Path) -> dict:
    result = codesearch("status", "--json", cwd=repo)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def hooks_dir(repo: Path) -> Path:
    return repo / ".git" / "hooks"


def write_hook(path: Path, text: str, mode: int = 0o755) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("hooks") / "repo"
    shutil.copytree(FIXTURES / "repo", repo)
    git(repo, "init", "--quiet", "--initial-branch=main")
    for sample in hooks_dir(repo).glob("*.sample"):
        sample.unlink()
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "shapes, text tools and retry")
    result = codesearch("index", "--json", "--model", "minilm", cwd=repo)
    assert result.returncode == 0, result.stderr
    return repo


@pytest.fixture
def repo(indexed, tmp_path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(indexed, copy, symlinks=True)
    return copy


def test_install_chains_the_existing_hook_and_uninstall_restores_it_exactly(repo):
    original = hooks_dir(repo) / "pre-commit"
    write_hook(original, EXISTING_HOOK, mode=0o750)

    installed = codesearch("hook", "install", "--sync", cwd=repo)
    assert installed.returncode == 0, installed.stderr
    assert (hooks_dir(repo) / f"pre-commit{ORIGINAL_SUFFIX}").read_text(encoding="utf-8") == EXISTING_HOOK
    states = json.loads(codesearch("hook", "status", "--json", cwd=repo).stdout)["hooks"]
    assert [(s["hook"], s["state"], s["mode"], s["chained"]) for s in states] == [
        ("pre-commit", "installed", "sync", True), ("post-checkout", "installed", "sync", False),
        ("post-merge", "installed", "sync", False)]

    git(repo, "rm", "--quiet", "retry.js")
    committed = git(repo, "commit", "-m", "drop retry.js")
    assert (repo / ".git" / "team-hook-ran").read_text(encoding="utf-8").strip().endswith("ran")
    assert "codesearch hook refresh: refreshed" in committed.stderr
    assert index_status(repo)["stale_files"] == 0

    uninstalled = codesearch("hook", "uninstall", cwd=repo)
    assert uninstalled.returncode == 0, uninstalled.stderr
    assert original.read_text(encoding="utf-8") == EXISTING_HOOK
    assert stat.S_IMODE(original.stat().st_mode) == 0o750
    assert sorted(path.name for path in hooks_dir(repo).iterdir()) == ["pre-commit"]


def test_a_failing_original_hook_still_stops_the_commit(repo):
    write_hook(hooks_dir(repo) / "pre-commit", "#!/bin/sh\necho 'lint failed' >&2\nexit 3\n")
    assert codesearch("hook", "install", "--sync", cwd=repo).returncode == 0
    (repo / "shapes.py").write_text("broken = (\n", encoding="utf-8")
    git(repo, "add", "shapes.py")

    refused = git(repo, "commit", "-m", "broken", check=False)
    assert refused.returncode != 0
    assert "lint failed" in refused.stderr
    assert "codesearch" not in refused.stderr  # no refresh for a commit that did not happen


def test_installing_twice_keeps_one_original_and_switches_mode(repo):
    write_hook(hooks_dir(repo) / "post-merge", EXISTING_HOOK)
    assert codesearch("hook", "install", "--sync", cwd=repo).returncode == 0
    assert codesearch("hook", "install", "--background", cwd=repo).returncode == 0
    assert (hooks_dir(repo) / f"post-merge{ORIGINAL_SUFFIX}").read_text(encoding="utf-8") == EXISTING_HOOK
    states = json.loads(codesearch("hook", "status", "--json", cwd=repo).stdout)["hooks"]
    assert {s["mode"] for s in states} == {"background"}
    assert codesearch("hook", "uninstall", cwd=repo).returncode == 0
    assert sorted(path.name for path in hooks_dir(repo).iterdir()) == ["post-merge"]
    assert (hooks_dir(repo) / "post-merge").read_text(encoding="utf-8") == EXISTING_HOOK


def test_a_query_past_the_bound_leaves_a_running_refresh_a_note_instead_of_starting_another(repo, monkeypatch):
    from codesearch.indexer.hooks import PENDING_NAME, REFRESH_LOCK_NAME, start_refresh
    from codesearch.trust import PrivateLock

    started, popen = [], subprocess.Popen

    def spawn(command, *arguments, **options):  # git runs; a refresh is counted, not started
        if "refresh" not in command:
            return popen(command, *arguments, **options)
        started.append(command)

    monkeypatch.setattr(subprocess, "Popen", spawn)
    pending = repo / ".codesearch" / PENDING_NAME
    running = PrivateLock(repo / ".codesearch" / REFRESH_LOCK_NAME)
    assert running.acquire(timeout=0)  # a refresh at work
    try:
        start_refresh(repo)
        assert started == [] and pending.exists()  # it will look again when it finishes
    finally:
        running.release()
    pending.unlink()
    start_refresh(repo)  # none at work: one is started
    assert len(started) == 1 and not pending.exists()


def test_background_refresh_runs_detached_and_logs(repo):
    assert codesearch("hook", "install", cwd=repo).returncode == 0
    git(repo, "rm", "--quiet", "shapes.py")
    started = time.monotonic()
    committed = git(repo, "commit", "-m", "drop shapes.py")
    assert time.monotonic() - started < 5  # the commit did not wait for the refresh
    assert "codesearch" not in committed.stderr

    log = repo / ".codesearch" / "hook.log"
    deadline = time.monotonic() + 120
    while "refreshed" not in (log.read_text(encoding="utf-8") if log.exists() else ""):
        assert time.monotonic() < deadline, "the background refresh did not finish in two minutes"
        time.sleep(0.2)
    assert '"removed": 1' in log.read_text(encoding="utf-8")
    _wait_until_idle(repo)
    assert index_status(repo)["stale_files"] == 0
    assert "refreshed" in json.loads(codesearch("hook", "status", "--json", cwd=repo).stdout)["last_refresh"]


def test_checkout_and_merge_hooks_refresh_the_index(repo):
    assert codesearch("hook", "install", "--sync", cwd=repo).returncode == 0
    git(repo, "checkout", "--quiet", "-b", "smaller")
    git(repo, "rm", "--quiet", "text_tools.py")
    git(repo, "commit", "--quiet", "-m", "drop text_tools.py")
    assert index_status(repo)["files"] == 2

    switched = git(repo, "checkout", "main")
    assert "codesearch hook refresh: refreshed" in switched.stderr
    assert (index_status(repo)["files"], index_status(repo)["stale_files"]) == (3, 0)

    merged = git(repo, "merge", "--ff-only", "smaller")
    assert "codesearch hook refresh: refreshed" in merged.stderr
    assert (index_status(repo)["files"], index_status(repo)["stale_files"]) == (2, 0)


def test_hooks_go_where_core_hooks_path_points(repo, tmp_path):
    shared = tmp_path / "team-hooks"
    git(repo, "config", "core.hooksPath", str(shared))
    write_hook(shared / "pre-commit", EXISTING_HOOK)
    assert codesearch("hook", "install", "--sync", cwd=repo).returncode == 0
    assert sorted(path.name for path in shared.iterdir()) == sorted(
        [*HOOK_NAMES, f"pre-commit{ORIGINAL_SUFFIX}"])
    assert not (hooks_dir(repo) / "pre-commit").exists()

    git(repo, "rm", "--quiet", "retry.js")
    committed = git(repo, "commit", "-m", "drop retry.js")
    assert "codesearch hook refresh: refreshed" in committed.stderr
    assert (repo / ".git" / "team-hook-ran").exists()


def test_a_commit_succeeds_when_the_index_is_broken(repo):
    assert codesearch("hook", "install", "--sync", cwd=repo).returncode == 0
    for path in (repo / ".codesearch").glob("index.sqlite*"):
        path.unlink()
    (repo / ".codesearch" / "index.sqlite").write_bytes(b"this is not a database" * 100)
    git(repo, "rm", "--quiet", "retry.js")
    committed = git(repo, "commit", "-m", "drop retry.js", check=False)
    assert committed.returncode == 0
    assert "codesearch hook refresh: failed" in committed.stderr
    assert "codesearch index --rebuild" in committed.stderr


def test_a_commit_succeeds_when_the_model_is_missing(repo):
    assert codesearch("hook", "install", "--sync", cwd=repo).returncode == 0
    with sqlite3.connect(repo / ".codesearch" / "index.sqlite") as database:
        database.execute("UPDATE manifest SET value = ? WHERE key = 'model'", (json.dumps(str(repo / "no-such-model")),))
    database.close()
    (repo / "units.py").write_text((FIXTURES / "units.py").read_text(encoding="utf-8"), encoding="utf-8")
    git(repo, "add", "units.py")
    committed = git(repo, "commit", "-m", "units", check=False)
    assert committed.returncode == 0
    assert "codesearch hook refresh: failed" in committed.stderr
    assert "no-such-model" in committed.stderr


def test_a_commit_succeeds_when_the_installing_python_is_gone(repo):
    install_hooks(repo, "sync", python=str(repo / "gone" / "bin" / "python"))
    git(repo, "rm", "--quiet", "retry.js")
    committed = git(repo, "commit", "-m", "drop retry.js", check=False)
    assert committed.returncode == 0
    assert "is gone" in committed.stderr


def test_a_refresh_that_finds_one_running_leaves_a_note_and_skips(repo):
    from filelock import FileLock

    with FileLock(str(repo / ".codesearch" / "hook.lock")):
        skipped = codesearch("hook", "refresh", cwd=repo)
    assert skipped.returncode == 0
    assert "skipped: a refresh is already running" in skipped.stderr
    assert (repo / ".codesearch" / "hook.pending").exists()


def test_no_index_means_no_refresh(tmp_path):
    repo = tmp_path / "fresh"
    shutil.copytree(FIXTURES / "repo", repo)
    git(repo, "init", "--quiet")
    installed = codesearch("hook", "install", "--sync", cwd=repo)
    assert installed.returncode == 0
    assert "no index yet" in installed.stderr
    git(repo, "add", "--all")
    committed = git(repo, "commit", "-m", "first")
    assert "codesearch" not in committed.stderr
    assert not (repo / ".codesearch").exists()


def _wait_until_idle(repo: Path) -> None:
    deadline = time.monotonic() + 60
    while json.loads(codesearch("hook", "status", "--json", cwd=repo).stdout)["refresh_running"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_the_pre_commit_framework_accepts_our_hook_manifest():
    """`.pre-commit-hooks.yaml` is valid for the framework, and its entry is a command we ship."""
    manifest = Path(__file__).resolve().parent.parent / ".pre-commit-hooks.yaml"
    result = subprocess.run([sys.executable, "-m", "pre_commit", "validate-manifest", str(manifest)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "entry: codesearch hook refresh" in manifest.read_text(encoding="utf-8")
