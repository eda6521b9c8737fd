"""Answers follow the working tree: uncommitted edits, new and deleted files are seen by the next query, in
this process or through a server that watches the tree; past the bound, or while another run writes the
index, the answer says how many changed files it does not reflect.

One repository is indexed once with the real minilm model; each test works on a copy of it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from codesearch.index.store import IndexStore, index_dir
from codesearch.indexer.freshness import Freshness, bring_up_to_date, changed_files
from codesearch.query.api import QueryRequest
from codesearch.server.service import Service
from codesearch.source.discover import files_listed, git_listing
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


def test_a_file_caught_half_written_is_refreshed_again_once_its_writer_is_done(repo):
    service = Service(watch=True)
    root = service.open(repo)

    def saved_and_refreshed(text: str) -> None:
        generation = service.status(root)["generation"]
        (repo / "ledger.py").write_text(text, encoding="utf-8")
        deadline = time.monotonic() + 30
        while service.status(root)["generation"] == generation and time.monotonic() < deadline:
            time.sleep(0.05)

    try:
        service.query(root, QueryRequest(["shapes"], k=1, mode="lexical"))
        half = NEW_FUNCTION[:NEW_FUNCTION.index("return") + 10]  # cut inside the function: it does not parse
        saved_and_refreshed(half)
        assert service.query(root, QueryRequest(["reconcile_ledger_entries"], k=1, mode="lexical")).hits[0]
        saved_and_refreshed(NEW_FUNCTION)
        answer = service.query(root, QueryRequest(["reconcile_ledger_entries"], k=1, mode="lexical"))
        [hit] = answer.hits[0]
        assert hit.chunk.symbol == "reconcile_ledger_entries" and hit.chunk.text == NEW_FUNCTION.rstrip("\n")
        assert answer.freshness.stale_files == 0
    finally:
        service.stop_watching()


def test_two_agents_asking_while_refreshes_run_get_whole_answers_and_then_every_new_function(repo):
    import threading

    service = Service(watch=True)
    root = service.open(repo)
    failures, answers = [], []

    def agent() -> None:
        for _ in range(15):
            try:
                answer = service.query(root, QueryRequest(["reconcile ledger entries", "shapes"], k=3, mode="lexical"))
                answers.append([hit.chunk.symbol for hit in answer.hits[1]])
            except Exception as error:  # noqa: BLE001 - collected: the test fails on any
                failures.append(repr(error))
            time.sleep(0.02)

    try:
        agents = [threading.Thread(target=agent) for _ in range(2)]
        for thread in agents:
            thread.start()
        for number in range(5):  # saves while the agents ask: each batch is a refresh on the worker
            (repo / f"ledger_{number}.py").write_text(NEW_FUNCTION.replace("reconcile", f"reconcile{number}"),
                                                      encoding="utf-8")
            time.sleep(0.15)
        for thread in agents:
            thread.join(120)
        assert failures == [] and len(answers) == 30 and all(answers)
        found = service.query(root, QueryRequest([f"reconcile{number}_ledger_entries" for number in range(5)], k=1,
                                                 mode="lexical"))
        assert [hits[0].chunk.symbol for hits in found.hits] == [f"reconcile{n}_ledger_entries" for n in range(5)]
    finally:
        service.stop_watching()


def test_a_file_or_folder_swapped_for_a_link_leading_out_is_never_read_through(repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = "def exfiltrated_secret_function():\n    return 'outside the repository'\n"
    (outside / "shapes.py").write_text(secret, encoding="utf-8")
    (repo / "shapes.py").unlink()
    (repo / "shapes.py").symlink_to(outside / "shapes.py")
    answer = query_json(repo, "exfiltrated_secret_function", "--mode", "lexical", "-k", "50")
    assert "exfiltrated_secret_function" not in symbols(answer)
    assert not any(hit["path"] == "shapes.py" for hit in answer["results"])  # a link is not indexed
    (repo / "nested").symlink_to(outside, target_is_directory=True)
    service = Service(watch=True)
    root = service.open(repo)
    try:
        answer = service.query(root, QueryRequest(["exfiltrated_secret_function"], k=50, mode="lexical"))
        assert "exfiltrated_secret_function" not in [hit.chunk.symbol for hit in answer.hits[0]]
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


def _as_another_user(tree: Path, work) -> dict:
    """work() in a forked child that cannot override file permissions (as root, it gives `tree` to nobody and
    becomes nobody first); its JSON-able result, or its traceback, sent back through a pipe."""
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(reading)
            if os.geteuid() == 0:
                for folder, names, files in os.walk(tree):
                    for name in [folder, *(os.path.join(folder, entry) for entry in names + files)]:
                        os.lchown(name, 65534, 65534)
                os.environ["HOME"] = os.fspath(tree / ".codesearch")  # nothing of root's home is read
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            result = work()
        except BaseException as error:  # noqa: BLE001 - said to the parent, which fails the test
            import traceback

            result = {"error": "".join(traceback.format_exception(error))}
        try:
            os.write(writing, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(writing)
    import selectors

    sent, deadline = b"", time.monotonic() + 300  # a child forked from a threaded process could hang: never CI
    with os.fdopen(reading, "rb") as pipe, selectors.DefaultSelector() as waiting:
        waiting.register(pipe, selectors.EVENT_READ)
        while time.monotonic() < deadline and waiting.select(deadline - time.monotonic()):
            piece = os.read(pipe.fileno(), 1 << 16)
            if not piece:
                break
            sent += piece
        else:
            os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    assert sent, "the child gave no answer within 300 s"
    result = json.loads(sent)
    assert "error" not in result, result["error"]
    return result


@pytest.fixture
def open_repo(repo):
    """The repository in a folder every user may pass through (pytest's own is its owner's alone)."""
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="codesearch-"))
    try:
        shared.chmod(0o711)
        yield Path(shutil.copytree(repo, shared / "repo", symlinks=True))
    finally:
        for folder, _, _ in os.walk(shared):
            os.chmod(folder, 0o755)  # the test may fail with a folder it made unreadable
        shutil.rmtree(shared)


def test_files_that_cannot_be_read_are_kept_as_indexed_and_said_so(open_repo):
    repo = open_repo
    (repo / "ledger").mkdir()
    (repo / "ledger" / "ledger.py").write_text(NEW_FUNCTION, encoding="utf-8")
    shapes_symbols = query_json(repo, "shapes", "--mode", "lexical", "-k", "50")  # refreshed: ledger indexed
    assert "reconcile_ledger_entries" in symbols(query_json(repo, "reconcile_ledger_entries", "--mode", "lexical"))
    assert codesearch("index", cwd=repo).returncode == 0  # everything a refresh imports is loaded before the fork

    def work():
        os.chmod(repo / "ledger", 0)  # its file cannot even be looked at
        os.chmod(repo / "shapes.py", 0)  # seen, not readable
        answer = query_json(repo, "reconcile_ledger_entries", "--mode", "lexical", "-k", "50")
        index = codesearch("index", cwd=repo)
        after = query_json(repo, "shapes", "--mode", "lexical", "-k", "50")
        os.chmod(repo / "ledger", 0o755)
        os.chmod(repo / "shapes.py", 0o644)
        readable = query_json(repo, "reconcile_ledger_entries", "--mode", "lexical")
        return {"answer": answer, "index": [index.returncode, index.stderr], "after": after, "readable": readable}

    seen = _as_another_user(repo, work)
    assert "reconcile_ledger_entries" in symbols(seen["answer"])  # nothing is lost
    assert seen["answer"]["stale_files"] == 2
    assert seen["index"][0] == 0 and "could not read 2 file(s) (permission denied)" in seen["index"][1]
    assert symbols(seen["after"]) == symbols(shapes_symbols)
    assert seen["readable"]["stale_files"] == 0
    assert "reconcile_ledger_entries" in symbols(seen["readable"])


# -- the recorded tree: a check that finds nothing changed runs no git ---------------------------------------


class FilesTable:
    """The part of an index database that changed_files reads (its folder, manifest and files table), filled
    from the tree as it is: an index that is current."""

    def __init__(self, repo: Path):
        self.directory = repo / ".codesearch"
        self.directory.mkdir(mode=0o700)
        self.fingerprints = {source.path: source.fingerprint for source in files_listed(repo, git_listing(repo))}
        self.generation = 1

    def manifest(self) -> dict:
        return {"generation": self.generation, "updated_at": 1.0}

    def file_fingerprints(self) -> dict[str, str]:
        return dict(self.fingerprints)


def asked_of_git(repo: Path, database: FilesTable) -> list[str]:
    """The answer as every check gave it before snapshots: git's listing against the files table (git_listing
    as imported here, which git_runs does not count)."""
    current = {source.path: source.fingerprint for source in files_listed(repo, git_listing(repo))}
    known = database.file_fingerprints()
    return sorted([path for path, fingerprint in current.items() if known.get(path) != fingerprint]
                  + [path for path in known if path not in current])


def next_tick(database: FilesTable) -> None:
    """Wait until the file system stamps a change later than everything written so far."""
    from codesearch.indexer.freshness import file_system_clock

    first = file_system_clock(database.directory)
    while file_system_clock(database.directory) == first:
        time.sleep(0.002)


@pytest.fixture
def git_runs(monkeypatch) -> list[Path]:
    """The roots changed_files asked git about, from here on."""
    from codesearch.source import discover

    asked, real = [], discover.git_listing
    monkeypatch.setattr(discover, "git_listing", lambda root: asked.append(root) or real(root))
    return asked


@pytest.fixture
def tree(tmp_path) -> Path:
    """A committed repository with a folder of ignored files, an ignored folder, an empty folder, an empty
    file, an untracked file, another branch and a repository nested in it; .codesearch/ excluded as
    codesearch excludes it."""
    repo = tmp_path / "tree"
    files = {"app/models.py": "class Ledger:\n    pass\n", "app/views.py": "def show(ledger):\n    return ledger\n",
             "app/pkg/__init__.py": "", "docs/guide.md": "# Guide\n", ".gitignore": "*.log\nbuilt/\n",
             "logs/app.log": "started\n", "built/out.py": "generated = 1\n"}
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text, encoding="utf-8")
    (repo / "empty").mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "ledger")
    git(repo, "checkout", "--quiet", "-b", "other")
    (repo / "app/views.py").write_text("def show(ledger):\n    return list(ledger)\n", encoding="utf-8")
    git(repo, "commit", "--quiet", "-am", "a list")
    git(repo, "checkout", "--quiet", "main")
    (repo / "scratch.py").write_text("trial = 2\n", encoding="utf-8")
    (repo / ".git/info/exclude").write_text(".codesearch/\n", encoding="utf-8")
    (repo / "plugin").mkdir()
    (repo / "plugin/hook.py").write_text("hooked = 1\n", encoding="utf-8")
    git(repo / "plugin", "init", "--quiet")  # a repository of its own in the tree: git lists nothing in it
    return repo


def _edit_keeping_size_and_time(repo: Path) -> None:
    views = repo / "app/views.py"
    before = views.stat()
    views.write_text(views.read_text(encoding="utf-8").replace("ledger", "LEDGER"), encoding="utf-8")
    os.utime(views, ns=(before.st_atime_ns, before.st_mtime_ns))


def _replace_by_link(repo: Path) -> None:
    (repo / "app/views.py").unlink()
    (repo / "app/views.py").symlink_to("models.py")


def _link_folder_outside(repo: Path) -> None:
    outside = repo.parent / "outside-docs"
    shutil.move(repo / "docs", outside)
    (repo / "docs").symlink_to(outside, target_is_directory=True)


def _stash_an_edit(repo: Path) -> None:
    (repo / "app/views.py").write_text("def show(ledger):\n    return None\n", encoding="utf-8")
    git(repo, "stash", "--quiet")


CHANGES = {
    "an edit keeping size and mtime": _edit_keeping_size_and_time,
    "a new file in a folder": lambda repo: (repo / "app/forms.py").write_text("form = 1\n", encoding="utf-8"),
    "a new folder": lambda repo: (repo / "api").mkdir() or (repo / "api/routes.py").write_text("r = 1\n"),
    "a new file among ignored ones": lambda repo: (repo / "logs/rotate.py").write_text("k = 1\n", encoding="utf-8"),
    "a new file in an empty folder": lambda repo: (repo / "empty/new.py").write_text("n = 1\n", encoding="utf-8"),
    "a new file in an ignored folder": lambda repo: (repo / "built/more.py").write_text("m = 1\n", encoding="utf-8"),
    "an empty file filled": lambda repo: (repo / "app/pkg/__init__.py").write_text("x = 1\n", encoding="utf-8"),
    "a deleted file": lambda repo: (repo / "app/views.py").unlink(),
    "a rename": lambda repo: (repo / "app/views.py").rename(repo / "app/pages.py"),
    "a file replaced by a link": _replace_by_link,
    "a folder linked outside": _link_folder_outside,
    "a .gitignore that stops ignoring": lambda repo: (repo / ".gitignore").write_text("built/\n", encoding="utf-8"),
    "info/exclude ignoring a file": lambda repo: (repo / ".git/info/exclude").write_text(".codesearch/\nscratch.py\n"),
    "a file committed": lambda repo: git(repo, "add", "scratch.py") and git(repo, "commit", "--quiet", "-m", "kept"),
    "a checkout": lambda repo: git(repo, "checkout", "--quiet", "other"),
    "an edit stashed": _stash_an_edit,
    "a new file in a nested repository": lambda repo: (repo / "plugin/more.py").write_text("m = 2\n", encoding="utf-8"),
    "a nested repository unmade": lambda repo: shutil.rmtree(repo / "plugin/.git"),
}
UNSEEN_BY_GIT = ("a new file in an ignored folder", "a new file in a nested repository")


@pytest.mark.parametrize("change", CHANGES)
def test_a_recorded_tree_answers_without_git_until_anything_changes_and_then_as_git_does(tree, git_runs, change):
    database = FilesTable(tree)
    next_tick(database)
    assert changed_files(tree, database) == [] and len(git_runs) == 1  # recorded
    assert changed_files(tree, database) == [] and len(git_runs) == 1  # no git
    CHANGES[change](tree)
    answer = changed_files(tree, database)
    assert answer == asked_of_git(tree, database)
    if change in UNSEEN_BY_GIT:
        assert answer == [] and len(git_runs) == 1  # not watched: git would not list it either
    else:
        assert len(git_runs) == 2 and bool(answer) == (change != "an edit stashed")


def test_a_file_changed_in_the_tick_of_the_recording_is_not_trusted(tree, git_runs, monkeypatch):
    from codesearch.indexer import freshness

    database = FilesTable(tree)
    next_tick(database)
    views = tree / "app/views.py"
    views.write_text(views.read_text(encoding="utf-8"), encoding="utf-8")
    # The check's clock reads the tick of that write: a second write in the same tick would keep every stamp.
    monkeypatch.setattr(freshness, "file_system_clock", lambda directory: os.lstat(views).st_ctime_ns)
    assert changed_files(tree, database) == []
    assert not (database.directory / freshness.SNAPSHOT_NAME).exists()
    _edit_keeping_size_and_time(tree)
    assert changed_files(tree, database) == ["app/views.py"] and len(git_runs) == 2


def test_a_new_generation_of_the_index_or_a_changed_global_ignore_file_asks_git_again(tree, git_runs, monkeypatch,
                                                                                        tmp_path):
    (tmp_path / "config/git").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    database = FilesTable(tree)
    next_tick(database)
    assert changed_files(tree, database) == [] and len(git_runs) == 1
    right = database.fingerprints["scratch.py"]
    database.generation, database.fingerprints["scratch.py"] = 2, "stat:0:0"  # another run wrote the index
    assert changed_files(tree, database) == ["scratch.py"] and len(git_runs) == 2
    database.generation, database.fingerprints["scratch.py"] = 3, right
    assert changed_files(tree, database) == [] and len(git_runs) == 3
    assert changed_files(tree, database) == [] and len(git_runs) == 3
    (tmp_path / "config/git/ignore").write_text("scratch.py\n", encoding="utf-8")
    assert changed_files(tree, database) == ["scratch.py"] == asked_of_git(tree, database) and len(git_runs) == 4


def test_names_in_any_encoding_are_recorded_and_their_edits_seen(tree, git_runs):
    odd = os.fsencode(tree) + b"/caf\xe9.py"
    with open(odd, "wb") as handle:
        handle.write(b"latin = 1\n")
    git(tree, "add", os.fsdecode(odd))
    git(tree, "commit", "--quiet", "-m", "latin-1")
    database = FilesTable(tree)
    next_tick(database)
    assert changed_files(tree, database) == [] and changed_files(tree, database) == [] and len(git_runs) == 1
    with open(odd, "ab") as handle:
        handle.write(b"more = 2\n")
    assert changed_files(tree, database) == ["caf\\xe9.py"] and len(git_runs) == 2


def test_a_tracked_folder_replaced_by_a_link_leading_out_is_never_recorded(tree, git_runs):
    from codesearch.indexer.freshness import SNAPSHOT_NAME

    _link_folder_outside(tree)  # what lstat sees through the link is outside anything recorded
    database = FilesTable(tree)
    next_tick(database)
    assert changed_files(tree, database) == [] and changed_files(tree, database) == [] and len(git_runs) == 2
    assert not (database.directory / SNAPSHOT_NAME).exists()
    (tree.parent / "outside-docs/guide.md").write_text("# Moved\n", encoding="utf-8")
    assert changed_files(tree, database) == [] == asked_of_git(tree, database)
