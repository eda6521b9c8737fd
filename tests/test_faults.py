"""Faults: an index is never lost or left half-written, and a broken one says how to fix it.

Runs kill `codesearch index` with SIGKILL at random moments; others write at the same time;
index files are truncated or filled with garbage; writes fail part-way (injected in-process:
these tests run as root, whom file modes do not stop); models and versions change.

The state of an index is read straight from its files: every chunk (path, lines, symbol, text)
with its file fingerprints, and the segments the current generation lists, whose live rows (those
not marked deleted) must be exactly the chunks. "Never a mix" means that state equals either the last state seen before
a run or what chunking the work tree gives.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import assert_one_line_error, clean_env, codesearch, make_repo

INDEX = ".codesearch"


# -- reading an index's state -----------------------------------------------------------------


@dataclass(frozen=True)
class State:
    generation: int | None
    files: tuple  # (path, fingerprint), sorted
    chunks: tuple  # (path, start_line, end_line, symbol, text digest), sorted

    @property
    def paths(self) -> set[str]:
        return {path for path, _ in self.files}


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def indexed_state(repo: Path) -> State:
    """What the index holds, after checking that its segments and chunks belong together."""
    import faiss
    import numpy as np

    connection = sqlite3.connect(repo / INDEX / "index.sqlite")
    try:
        meta = {key: json.loads(value) for key, value in connection.execute("SELECT key, value FROM manifest")}
        files = tuple(sorted(connection.execute("SELECT path, fingerprint FROM files")))
        rows = connection.execute("SELECT id, path, start_line, end_line, symbol, text, "
                                  "coalesce(moved.target, chunks.segment) FROM chunks "
                                  "LEFT JOIN moved ON moved.source = chunks.segment").fetchall()
        deleted = set(connection.execute("SELECT segment, chunk_id FROM deleted"))
    finally:
        connection.close()
    generation = meta.get("generation")
    if generation is not None:
        live = set()
        for segment in meta["segments"]:
            folder = repo / INDEX / f"segment-{segment}"
            ids = np.load(folder / "chunk_ids.npy").tolist()
            assert faiss.read_index(str(folder / "vectors.faiss")).ntotal == len(ids)
            live.update((segment, chunk_id) for chunk_id in ids if (segment, chunk_id) not in deleted)
        assert live == {(row[6], row[0]) for row in rows}, \
            f"generation {generation}: the segments' live rows and the chunks disagree"
    chunks = tuple(sorted((path, start, end, symbol, _digest(text)) for _, path, start, end, symbol, text, _ in rows))
    return State(generation, files, chunks)


def work_tree_state(repo: Path) -> State:
    """What a complete `codesearch index` of the work tree as it is now would store."""
    from codesearch.source.chunk import PartBudget
    from codesearch.source.discover import discover_files
    from codesearch.embedding.spec import resolve_model
    from codesearch.indexer.read import chunks_of_files

    sources = discover_files(repo)
    budget = PartBudget.for_window(resolve_model("minilm").max_length)
    read = list(chunks_of_files(repo, sources, budget))  # each source with its fingerprint as read
    chunks = [(c.path, c.start_line, c.end_line, c.symbol, _digest(c.text)) for _, pieces in read for c in pieces]
    return State(None, tuple(sorted((s.path, s.fingerprint) for s, _ in read)), tuple(sorted(chunks)))


def same_content(a: State, b: State) -> bool:
    return a.files == b.files and a.chunks == b.chunks


def leftovers(repo: Path) -> list[str]:
    return sorted(p.name for p in (repo / INDEX).iterdir() if ".tmp" in p.name)


# -- running the CLI ---------------------------------------------------------------------------


def start_index(repo: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "codesearch", "index", str(repo), "--model", "minilm", "--json",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())


def lexical_hits(repo: Path, queries: list[str]) -> list[list[str]]:
    """The symbols each query finds in the index as it is (no model load). The engine's own query: the command
    would first refresh the files the killed run left out (indexer/freshness.py), which is not what this reads."""
    from codesearch.query.api import QueryRequest
    from codesearch.query.engine import Engine

    engine = Engine.open(repo)
    try:
        answer = engine.query(QueryRequest(queries, k=3, mode="lexical"))
    finally:
        engine.close()
    return [[hit.chunk.symbol for hit in hits] for hits in answer.hits]


def status_of(repo: Path) -> dict:
    result = codesearch("status", str(repo), "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("faults") / "repo")
    codesearch("index", str(repo), "--model", "minilm", "--json", check=True)
    return repo


@pytest.fixture(scope="module")
def semantic_answer(indexed) -> list:
    return _semantic_answer(indexed)


@pytest.fixture
def repo(indexed, tmp_path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(indexed, copy, symlinks=True)
    return copy


# -- SIGKILL at random moments -----------------------------------------------------------------

MARKER_FUNCTION = '''def trial_marker_{n}(items):
    """Trial {n}: count the items that are ready, a function only this trial adds."""
    return sum(1 for item in items if item.ready) + {n}
'''


class KillTrials:
    """Changes the work tree, starts `codesearch index`, kills it, and checks what is left."""

    def __init__(self, repo: Path, seed: int):
        self.repo, self.random, self.seed = repo, random.Random(seed), seed
        self.seconds = {"embed": 15.0, "write": 2.5}  # how long an uncut run of each kind took
        self.markers: dict[str, str] = {}  # path -> marker symbol of every trial file ever written
        self.removed: dict[str, str] = {}  # path -> content of trial files taken out again
        self.embedded: set[str] = set()  # trial files some index has held (so their vectors are cached)
        self.outcomes: list[tuple[str, str]] = []  # (how the kill was timed, what the index held after it)
        self.last: State | None = None

    def new_file(self, n: int) -> None:
        path = f"trials/trial_{n}.py"
        (self.repo / "trials").mkdir(exist_ok=True)
        (self.repo / path).write_text(MARKER_FUNCTION.format(n=n), encoding="utf-8")
        self.markers[path] = f"trial_marker_{n}"

    def cheap_change(self) -> bool:
        """Take out or put back a file whose vectors are cached: a run that writes without the model."""
        present = [p for p in self.markers if p not in self.removed and p in self.embedded]
        restorable = [p for p in self.removed if p in self.embedded]
        if restorable and (not present or self.random.random() < 0.5):
            path = self.random.choice(restorable)
            (self.repo / path).write_text(self.removed.pop(path), encoding="utf-8")
            return True
        if present:
            path = self.random.choice(present)
            self.removed[path] = (self.repo / path).read_text(encoding="utf-8")
            (self.repo / path).unlink()
            return True
        return False

    def run(self, how: str, seconds: float, kind: str = "embed", start=None, give_up: float = 120) -> State:
        """One run (`codesearch index`, or the process start() gives), killed when `how` says or after
        `give_up` seconds; returns the index's state after checking it."""
        before = self.last
        expected = work_tree_state(self.repo)
        segments_before = {path.name for path in (self.repo / INDEX).glob("segment-*")} if before else set()
        wal = self.repo / INDEX / "index.sqlite-wal"
        wal_size = wal.stat().st_size if wal.exists() else 0
        process = start() if start else start_index(self.repo)
        started = time.monotonic()
        killed = False
        while process.poll() is None:
            elapsed = time.monotonic() - started
            if how == "time":
                fire = elapsed >= seconds
            elif how.startswith("segment-file"):  # the next generation's segment is being written or renamed
                fire = any(path.name not in segments_before for path in (self.repo / INDEX).glob("segment-*"))
                if fire and how == "segment-file+delay":  # around the commit and the tidying after it
                    time.sleep(self.random.uniform(0.0, 0.03))
            elif how == "database-write":  # the first write of this run (cached vectors or the new generation)
                fire = wal.exists() and wal.stat().st_size not in (0, wal_size)
            else:
                fire = False
            if fire or elapsed > give_up:
                process.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.002)
        _, stderr = process.communicate()
        assert "Traceback" not in (stderr or "")  # a server writes to its log (the caller reads it)
        if not killed:
            assert process.returncode == 0, stderr
            self.seconds[kind] = time.monotonic() - started
        after = self.check(before, expected)
        if not killed:
            outcome = "completed"
        elif after is None:
            outcome = "no index"
        elif before is None or (same_content(after, expected) and not same_content(before, expected)):
            outcome = "new index"
        else:
            outcome = "previous index"
        self.outcomes.append((how if killed else "not killed", outcome))
        return after

    def check(self, before: State | None, expected: State) -> State:
        context = f"(seed {self.seed}, trial {len(self.outcomes) + 1})"
        if not (self.repo / INDEX / "index.sqlite").exists():
            assert before is None, context
            result = codesearch("status", str(self.repo))
            assert_one_line_error(result, "codesearch index")
            return before
        after = indexed_state(self.repo)
        if before is None:
            assert after.generation is None or same_content(after, expected), context
        else:
            assert same_content(after, before) or same_content(after, expected), f"a mixed index {context}"
            assert after.generation >= before.generation, context  # a refresh, then any merges: a step each
        status = status_of(self.repo)
        assert (status["files"], status["chunks"], status["generation"]) == (
            len(after.files), len(after.chunks), after.generation), context
        assert (status["stale_files"] == 0) == same_content(after, expected), context
        if after.generation is None:
            result = codesearch("query", "count ready items", "--mode", "lexical", "--repo", str(self.repo))
            assert_one_line_error(result, "codesearch index")
            return None
        assert status["model"] == "minilm"
        paths = sorted(self.markers)
        found = lexical_hits(self.repo, [self.markers[path] for path in paths] + ["retry failed uploads"])
        for path, hits in zip(paths, found):
            assert (self.markers[path] in hits) == (path in after.paths), f"{path} {context}"
        assert found[-1][0] == "retry_failed_uploads", context
        self.embedded |= after.paths
        self.last = after
        return after


def test_sigkill_at_random_moments_leaves_the_previous_or_the_new_index(tmp_path):
    seed = int(os.environ.get("CODESEARCH_FAULT_SEED", time.time_ns() % 1_000_000))
    repo = make_repo(tmp_path / "repo")
    trials = KillTrials(repo, seed)
    pick = trials.random

    # The very first index, killed early: no index yet, or an empty one, and both say so.
    trials.run("time", pick.uniform(0.3, 4.0))
    trials.run("never", 0)

    # Runs that embed (start-up, model load, embedding, write) are killed anywhere in their length;
    # runs that only write (their vectors are cached) are cheap, so most trials are those. A kill
    # is timed at random or set off by the run's first database write or its new segment.
    number = 0
    while sum(how != "not killed" for how, _ in trials.outcomes) < 21 and number < 35:
        number += 1
        kind = "write" if pick.random() < 0.7 and trials.cheap_change() else "embed"
        if kind == "embed":
            trials.new_file(number)
        how = pick.choice(["time", "time", "time", "segment-file", "segment-file+delay", "database-write"])
        trials.run(how, pick.uniform(0.2, 1.1 * trials.seconds[kind]), kind)

    # The next index completes and holds exactly the work tree; the vectors answer semantic queries.
    trials.new_file(number + 1)
    final = trials.run("never", 0)
    assert same_content(final, work_tree_state(repo))
    listed = json.loads((repo / INDEX / "manifest.json").read_text())["segments"]
    assert leftovers(repo) == [] and sorted(path.name for path in (repo / INDEX).glob("segment-*")) == sorted(
        f"segment-{number}" for number in listed)
    answer = codesearch("query", "send the failed uploads again, waiting longer each time", "--json", "-k", "1",
                        "--mode", "semantic", "--repo", str(repo))
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["results"][0]["symbol"] == "retry_failed_uploads"

    killed = [outcome for outcome in trials.outcomes if outcome[0] != "not killed"]
    summary = ", ".join(f"{how}→{what}" for how, what in trials.outcomes)
    print(f"\nSIGKILL trials (seed {seed}): {len(killed)} killed; {summary}")
    assert len(killed) >= 20, summary


def test_sigkill_of_a_server_refreshing_leaves_the_previous_or_the_new_index(tmp_path):
    """A server (`codesearch serve`) refreshes the files a question finds changed on its own worker; killed
    at any moment of that refresh, it leaves what `codesearch index` killed leaves, and the next run is whole."""
    from codesearch.server.client import request_server
    from codesearch.server.protocol import socket_path
    from test_serve import start_server

    seed = int(os.environ.get("CODESEARCH_FAULT_SEED", time.time_ns() % 1_000_000))
    repo = make_repo(tmp_path / "repo")
    trials = KillTrials(repo, seed)
    trials.run("never", 0)

    def asked_while_changed(number: int):
        def start() -> subprocess.Popen:
            process = start_server(repo, tmp_path / f"server-{number}.log")
            question = {"op": "query", "queries": [f"trial_marker_{number}"], "k": 1, "mode": "lexical"}
            threading.Thread(target=lambda: _ignoring_errors(request_server, socket_path(repo), question, timeout=60),
                             daemon=True).start()
            return process
        return start

    for number, how in enumerate(["database-write", "segment-file", "segment-file+delay", "time", "time"], 1):
        trials.new_file(number)
        trials.run(how, trials.random.uniform(0.05, 1.5), start=asked_while_changed(number), give_up=30)
        assert "Traceback" not in (tmp_path / f"server-{number}.log").read_text()
    killed = [outcome for outcome in trials.outcomes if outcome[0] != "not killed"]
    assert len(killed) == 5, trials.outcomes
    final = trials.run("never", 0)
    assert same_content(final, work_tree_state(repo))
    print(f"\nserver SIGKILL trials (seed {seed}): " + ", ".join(f"{how}→{what}" for how, what in trials.outcomes))


def _ignoring_errors(function, *args, **options) -> None:
    try:
        function(*args, **options)
    except Exception:  # noqa: BLE001 - the server it asks is being killed
        pass


# -- concurrent writers ------------------------------------------------------------------------


def test_two_index_runs_and_a_hook_refresh_at_once_are_serialized(repo):
    """Every run takes its turn; whichever goes last sees every change made before it started."""
    initial = indexed_state(repo)
    saved = {path: (repo / path).read_bytes() for path in ("server/server.go", "web/config.js")}
    for round_number, change in enumerate(("delete", "restore")):
        first, second = "server/server.go", "web/config.js"
        if change == "delete":
            (repo / first).unlink()
        else:
            (repo / first).write_bytes(saved[first])
        runs = [start_index(repo)]
        time.sleep(0.3)
        if change == "delete":
            (repo / second).unlink()
        else:
            (repo / second).write_bytes(saved[second])
        runs.append(start_index(repo))
        runs.append(subprocess.Popen([sys.executable, "-m", "codesearch", "hook", "refresh", str(repo)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()))
        for run in runs:
            _, stderr = run.communicate(timeout=300)
            assert run.returncode == 0 and "Traceback" not in stderr, stderr
        assert "refreshed:" in stderr  # the hook's own report, printed on stderr
        after = indexed_state(repo)
        assert same_content(after, work_tree_state(repo)), f"round {round_number}: an update was lost"
        assert status_of(repo)["stale_files"] == 0
    assert same_content(after, initial)
    assert leftovers(repo) == []


# -- damaged files -----------------------------------------------------------------------------


def _semantic_answer(repo: Path) -> list:
    result = codesearch("query", "send the failed uploads again, waiting longer each time", "--json", "-k", "3",
                        "--mode", "semantic", "--repo", str(repo))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return [(hit["path"], hit["symbol"]) for hit in json.loads(result.stdout)["results"]]


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_segment_names_index_and_index_restores_the_same_answer(semantic_answer, repo, damage):
    """A live vector is kept once, in its segment: a damaged one is re-embedded by the next refresh, which
    indexes again the files that segment held."""
    vectors = repo / INDEX / "segment-1" / "vectors.faiss"
    data = vectors.read_bytes()
    vectors.write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(len(data)))
    result = codesearch("query", "retry uploads", "--mode", "semantic", "--repo", str(repo))
    assert_one_line_error(result, "codesearch index")
    refreshed = codesearch("index", str(repo), "--json")
    assert refreshed.returncode == 0 and "Traceback" not in refreshed.stderr, refreshed.stderr
    assert json.loads(refreshed.stdout)["embedded"] > 0 and "damaged part of the index" in refreshed.stderr
    assert _semantic_answer(repo) == semantic_answer
    assert same_content(indexed_state(repo), work_tree_state(repo))


def _damage_database(repo: Path, damage: str) -> None:
    database = repo / INDEX / "index.sqlite"
    data = database.read_bytes()
    if damage == "truncated":
        database.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        database.write_bytes(os.urandom(len(data)))
    else:  # one page in the middle overwritten: the file still opens, some tables do not read
        connection = sqlite3.connect(database)
        root_page = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'chunks'").fetchone()[0]
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        connection.close()
        with open(database, "r+b") as handle:
            handle.seek((root_page - 1) * page_size)
            handle.write(os.urandom(page_size))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "page overwritten"])
def test_a_damaged_database_names_rebuild_and_rebuild_recovers(repo, damage, fake_embedder):
    _damage_database(repo, damage)
    if damage != "page overwritten":  # the file does not even open: every command says what to do
        for args in (["status", str(repo)], ["query", "retry uploads", "--mode", "lexical", "--repo", str(repo)],
                     ["index", str(repo)]):
            assert_one_line_error(codesearch(*args), "codesearch index --rebuild")
    else:  # the file opens; the damage shows when the chunks are read
        (repo / "README.md").write_text("# sample\n\nchanged\n", encoding="utf-8")
        assert_one_line_error(codesearch("index", str(repo)), "codesearch index --rebuild")
    if damage == "garbage":  # through the CLI, with the real model (the cached vectors went with the file)
        rebuilt = codesearch("index", str(repo), "--rebuild", "--model", "minilm")
        assert rebuilt.returncode == 0 and "Traceback" not in rebuilt.stderr, rebuilt.stderr
        assert "damaged" in rebuilt.stderr
    else:  # in-process with a stand-in model, to spare a model load
        from codesearch.indexer.build import index_repository

        index_repository(repo, model="minilm", rebuild=True, embedder_factory=fake_embedder)
    assert same_content(indexed_state(repo), work_tree_state(repo))
    assert lexical_hits(repo, ["retry failed uploads"])[0][0] == "retry_failed_uploads"
    assert status_of(repo)["stale_files"] == 0


def test_a_query_that_meets_a_damaged_table_names_rebuild(repo):
    _damage_database(repo, "page overwritten")
    result = codesearch("query", "retry uploads", "--mode", "lexical", "--repo", str(repo))
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert_one_line_error(result, "codesearch index --rebuild")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_manifest_changes_nothing_and_rebuild_rewrites_it(repo, damage):
    """manifest.json is a readable copy of what the database holds; nothing reads it back."""
    manifest = repo / INDEX / "manifest.json"
    text = manifest.read_text(encoding="utf-8")
    manifest.write_bytes(text.encode()[: len(text) // 2] if damage == "truncated" else os.urandom(len(text)))
    assert lexical_hits(repo, ["retry failed uploads"])[0][0] == "retry_failed_uploads"
    assert status_of(repo)["model"] == "minilm"
    rebuilt = codesearch("index", str(repo), "--rebuild")  # the vectors are cached: no model load
    assert rebuilt.returncode == 0 and "Traceback" not in rebuilt.stderr, rebuilt.stderr
    assert json.loads(manifest.read_text(encoding="utf-8"))["model"] == "minilm"


# -- failing writes: not writable, disk full part-way ------------------------------------------


def _fail_after(calls: int, error: BaseException, original=None):
    count = {"n": 0}

    def failing(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise error
        return original(*args, **kwargs) if original else None

    return failing


NEW_FILE = '''def brand_new_helper(items):
    """Keep the items that are ready and sort them by name."""
    ready = [item for item in items if item.ready]
    ready.sort(key=lambda item: item.name)
    return ready


def another_new_helper(text):
    """Split a line of text into trimmed, non-empty words."""
    words = [word.strip() for word in text.split()]
    return [word for word in words if word]
'''

FAILURES = {  # where the failure is injected: (module, function or Class.method, calls that succeed first, error)
    "folder not writable (segment)": ("index.store", "write_segment", 0,
                                          PermissionError(errno.EACCES, "Permission denied")),
    "folder not writable (database)": ("index.database", "IndexDatabase.insert_chunk", 0,
                                       sqlite3.OperationalError("attempt to write a readonly database")),
    "disk full part-way (database)": ("index.database", "IndexDatabase.insert_chunk", 1,
                                      sqlite3.OperationalError("database or disk is full")),
    "disk full part-way (postings)": ("index.lexical", "Postings.save", 0,
                                      OSError(errno.ENOSPC, "No space left on device")),
    "disk full part-way (segment)": ("index.store", "write_segment", 0,
                                         OSError(errno.ENOSPC, "No space left on device")),
    "disk full while caching vectors": ("index.database", "IndexDatabase.cache_vectors", 0,
                                        sqlite3.OperationalError("database or disk is full")),
}


def test_a_full_disk_after_the_commit_keeps_the_new_index(repo, monkeypatch):
    """The manifest copy and the clean-up come after the commit: failing there fails nothing."""
    from codesearch.indexer.build import index_repository
    from codesearch.index.store import IndexStore

    monkeypatch.setattr(IndexStore, "_write_manifest_file",
                        _fail_after(0, OSError(errno.ENOSPC, "No space left on device")))
    (repo / "web" / "config.js").unlink()
    index_repository(repo)
    assert same_content(indexed_state(repo), work_tree_state(repo))
    assert status_of(repo)["stale_files"] == 0


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failing_write_is_a_clear_error_and_the_previous_index_stays(repo, monkeypatch, failure, fake_embedder):
    from codesearch.errors import CodesearchError
    from codesearch.indexer.build import index_repository

    module_name, name, calls, error = FAILURES[failure]
    owner = importlib.import_module(f"codesearch.{module_name}")
    if "." in name:
        class_name, name = name.split(".")
        owner = getattr(owner, class_name)
    if name == "write_segment":  # a partial folder first, as a full disk leaves it
        def write_partially(directory, number, *args):
            (directory / f"segment-{number}.tmp{os.getpid()}").mkdir()
            (directory / f"segment-{number}.tmp{os.getpid()}" / "vectors.faiss").write_bytes(b"\0" * 100)
            raise error
        monkeypatch.setattr(owner, name, write_partially)
    else:
        monkeypatch.setattr(owner, name, _fail_after(calls, error, getattr(owner, name)))
    before = indexed_state(repo)
    (repo / "web" / "config.js").unlink()
    (repo / "server" / "notes.py").write_text(NEW_FILE, encoding="utf-8")

    with pytest.raises(CodesearchError) as raised:
        index_repository(repo, embedder_factory=fake_embedder)
    message = str(raised.value)
    assert "\n" not in message and "previous index is intact" in message
    assert str(error.strerror if isinstance(error, OSError) else error) in message
    assert indexed_state(repo) == before
    assert lexical_hits(repo, ["retry failed uploads"])[0][0] == "retry_failed_uploads"

    monkeypatch.undo()
    index_repository(repo, embedder_factory=fake_embedder)
    assert same_content(indexed_state(repo), work_tree_state(repo))
    assert leftovers(repo) == []


# -- models and versions -----------------------------------------------------------------------


def test_asking_another_model_than_the_index_was_built_with_is_a_clear_error(repo):
    assert_one_line_error(codesearch("query", "retry", "--model", "bge-code-v1", "--repo", str(repo)),
                          "built with model 'minilm'", "--rebuild")
    assert_one_line_error(codesearch("index", str(repo), "--model", "bge-code-v1"), "minilm", "--rebuild")
    assert indexed_state(repo).generation == 1


@pytest.mark.parametrize("version, notice", [("chunker_version", "the chunker changed"),
                                             ("schema_version", "the index format changed")])
def test_a_version_change_rebuilds_with_a_notice(repo, version, notice):
    connection = sqlite3.connect(repo / INDEX / "index.sqlite")
    with connection:
        connection.execute("UPDATE manifest SET value = '0' WHERE key = ?", (version,))
    connection.close()
    result = codesearch("index", str(repo))  # same texts, so the cached vectors serve: no model load
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"rebuilding the index: {notice}" in result.stderr
    state = indexed_state(repo)
    assert state.generation == 2 and same_content(state, work_tree_state(repo))
    connection = sqlite3.connect(repo / INDEX / "index.sqlite")
    assert json.loads(connection.execute("SELECT value FROM manifest WHERE key = ?", (version,)).fetchone()[0]) != 0
    connection.close()


def test_an_index_from_the_fts5_days_asks_for_a_refresh_then_rebuilds(repo):
    """Schema 1 kept BM25 in an FTS5 table and no terms per chunk: it opens, says what to do, and one
    `codesearch index` brings it to the current format."""
    connection = sqlite3.connect(repo / INDEX / "index.sqlite")
    with connection:
        connection.execute("ALTER TABLE chunks DROP COLUMN terms")
        connection.execute("CREATE VIRTUAL TABLE lexical USING fts5(symbol, path, body, content='')")
        connection.execute("UPDATE manifest SET value = '1' WHERE key = 'schema_version'")
        connection.execute("ALTER TABLE manifest RENAME TO meta")  # the layout before migrations were counted
        connection.execute("PRAGMA user_version = 0")
    connection.close()
    for folder in (repo / INDEX).glob("lexical-*"):
        shutil.rmtree(folder)
    assert_one_line_error(codesearch("query", "retry uploads", "--mode", "lexical", "--repo", str(repo)),
                          "codesearch index")
    result = codesearch("index", str(repo))
    assert result.returncode == 0 and "the index format changed" in result.stderr, result.stderr
    assert lexical_hits(repo, ["retry failed uploads"])[0][0] == "retry_failed_uploads"
    assert same_content(indexed_state(repo), work_tree_state(repo))
