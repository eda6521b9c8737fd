"""Answers follow the working tree: uncommitted edits, new and deleted files are seen by the next query, in
this process or through a server that watches the tree; past the bound, or while another run writes the
index, the answer says how many changed files it does not reflect.

One repository is indexed once with the real minilm model; each test works on a copy of it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from codesearch.index.store import IndexStore, index_dir
from codesearch.indexer.freshness import Freshness, bring_up_to_date, changed_files
from codesearch.query.api import QueryRequest
from codesearch.server.service import Service
from conftest import codesearch, git

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "incremental"
NEW_FUNCTION = "def reconcile_ledger_entries(ledger, statement):\n    return [entry for entry in ledger if entry in statement]\n"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("freshness") / "repo"
    shutil.copytree(FIXTURES / "repo", repo)
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "shapes, text tools and retry")
    assert codesearch("index", "--model", "minilm", cwd=repo).returncode == 0
    return repo


@pytest.fixture
def repo(indexed, tmp_path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(indexed, copy, symlinks=True)
    return copy


def query_json(repo: Path, text: str, *options: str) -> dict:
    result = codesearch("query", text, "--json", *options, cwd=repo)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def symbols(answer: dict) -> list[str]:
    return [hit["symbol"] for hit in answer["results"]]


def test_a_query_sees_a_new_uncommitted_file_and_says_it_is_current(repo):
    (repo / "ledger.py").write_text(NEW_FUNCTION, encoding="utf-8")
    answer = query_json(repo, "reconcile_ledger_entries", "--mode", "lexical")
    assert symbols(answer)[0] == "reconcile_ledger_entries"
    assert answer["stale_files"] == 0


def test_a_query_sees_an_edit_and_no_longer_answers_with_what_was_deleted(repo):
    shapes = repo / "shapes.py"
    old = shapes.read_text(encoding="utf-8")
    (repo / "retry.js").unlink()
    name = next(line.split("(")[0][4:] for line in old.splitlines() if line.startswith("def "))
    shapes.write_text(old.replace(f"def {name}(", "def measure_hexagon_perimeter("), encoding="utf-8")
    answer = query_json(repo, "measure_hexagon_perimeter", "--mode", "lexical", "-k", "50")
    assert symbols(answer)[0] == "measure_hexagon_perimeter"
    assert name not in symbols(answer)
    assert not any(hit["path"] == "retry.js" for hit in answer["results"])


def _open(repo: Path) -> IndexStore:
    return IndexStore.open(index_dir(repo))


def test_past_the_bound_the_answer_is_from_the_index_and_a_background_refresh_starts(repo):
    for number in range(3):
        (repo / f"new_{number}.py").write_text(NEW_FUNCTION.replace("reconcile", f"reconcile{number}"), encoding="utf-8")
    started = []
    store = _open(repo)
    try:
        freshness = bring_up_to_date(repo, store, bound=2, refresh_in_background=started.append)
        assert (freshness.stale_files, started) == (3, [repo])
        assert "3 files changed since the index" in freshness.note()
        assert changed_files(repo, store.database) == ["new_0.py", "new_1.py", "new_2.py"]  # nothing written
        assert bring_up_to_date(repo, store, bound=3) == Freshness(refreshed=3)
        assert changed_files(repo, store.database) == []
    finally:
        store.close()


def test_a_query_does_not_wait_for_another_writer_and_says_its_answer_lags(repo):
    (repo / "ledger.py").write_text(NEW_FUNCTION, encoding="utf-8")
    store = _open(repo)
    try:
        with store.lock():  # another `codesearch index` at work
            freshness = bring_up_to_date(repo, store)
            result = codesearch("query", "reconcile_ledger_entries", "--mode", "lexical", cwd=repo)
    finally:
        store.close()
    assert freshness.stale_files == 1 and "updating the index" in freshness.reason
    assert "1 file changed since the index, not seen by this answer" in result.stderr
    assert "reconcile_ledger_entries" not in result.stdout


def test_a_watching_server_refreshes_a_saved_file_before_anyone_asks(repo):
    service = Service(watch=True)
    root = service.open(repo)
    try:
        assert service.query(root, QueryRequest(["shapes"], k=1, mode="lexical")).freshness == Freshness()
        generation = service.status(root)["generation"]
        (repo / "ledger.py").write_text(NEW_FUNCTION, encoding="utf-8")
        deadline = time.monotonic() + 30
        while service.status(root)["generation"] == generation and time.monotonic() < deadline:
            time.sleep(0.05)  # status reads the index; it neither checks nor refreshes the tree
        assert service.status(root)["generation"] > generation
        answer = service.query(root, QueryRequest(["reconcile_ledger_entries"], k=1, mode="lexical"))
        assert [hit.chunk.symbol for hit in answer.hits[0]] == ["reconcile_ledger_entries"]
    finally:
        service.stop_watching()


def test_the_users_server_closes_an_index_left_unused_and_opens_it_again_when_asked(repo):
    service = Service(watch=True)
    root = service.open(repo)
    try:
        service.close_idle(3600)
        service.query(root, QueryRequest(["shapes"], k=1, mode="lexical"))
        assert root in service._indexes
        service.close_idle(0)  # on the worker, soon
        deadline = time.monotonic() + 10
        while root in service._indexes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert root not in service._indexes
        answer = service.query(root, QueryRequest(["shapes"], k=1, mode="lexical"))
        assert answer.hits[0] and root in service._indexes
    finally:
        service.stop_watching()


def test_a_repository_deleted_under_the_users_server_is_a_one_line_error_and_the_others_are_still_served(
        repo, tmp_path):
    from codesearch.errors import CodesearchError

    other = tmp_path / "other"
    shutil.copytree(repo, other, symlinks=True)
    service = Service(watch=True)
    try:
        first, second = service.open(repo), service.open(other)
        assert service.query(first, QueryRequest(["shapes"], k=1, mode="lexical")).hits[0]
        shutil.rmtree(repo)
        with pytest.raises(CodesearchError) as raised:
            service.query(first, QueryRequest(["shapes"], k=1, mode="lexical"))
        assert "\n" not in str(raised.value)
        assert service.query(second, QueryRequest(["shapes"], k=1, mode="lexical")).hits[0]
    finally:
        service.stop_watching()


def test_a_tree_holding_a_link_to_a_folder_is_not_watched_but_checked_before_each_answer(repo, tmp_path):
    from codesearch.server.watch import TreeWatch

    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "elsewhere").symlink_to(outside, target_is_directory=True)
    notices, changes = [], []
    watch = TreeWatch(repo, lambda: changes.append(1), notices.append).start()
    deadline = time.monotonic() + 10
    while watch.watching and time.monotonic() < deadline:
        time.sleep(0.05)
    watch.stop()
    assert not watch.watching and "elsewhere is a link to a folder" in notices[0]
    service = Service(watch=True)
    root = service.open(repo)
    try:
        (repo / "ledger.py").write_text(NEW_FUNCTION, encoding="utf-8")
        answer = service.query(root, QueryRequest(["reconcile_ledger_entries"], k=1, mode="lexical"))
        assert [hit.chunk.symbol for hit in answer.hits[0]] == ["reconcile_ledger_entries"]
    finally:
        service.stop_watching()
