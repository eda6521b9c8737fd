"""The organisation index (codesearch org index / query --org / org status) on a local Ray.

One Ray session serves every test here (module fixture); the embedder is the tests' FakeEmbedder, run by
Ray's actors. Select these with `-m distributed`; without Ray installed they are skipped, except the
ones that check what a user without Ray is told.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import FakeEmbedder, assert_one_line_error, codesearch, git

TESTS = Path(__file__).resolve().parent

FILES = {
    "payments": {
        "billing/refunds.py": 'def refund_payment(order_id, amount):\n    """Return money to the card of a cancelled order."""\n'
                              '    ledger = open_ledger()\n    return ledger.credit(order_id, amount)\n',
        "billing/invoices.py": "def render_invoice(order):\n    lines = [item.describe() for item in order.items]\n"
                               "    return '\\n'.join(lines)\n",
        "common/slugify.py": "def slugify(title):\n    return '-'.join(title.lower().split())\n",
    },
    "imaging": {
        "thumbs/resize.go": "package thumbs\n\n// ResizeThumbnail shrinks a picture to thumbnail size.\n"
                            "func ResizeThumbnail(img Image, width int) Image {\n\treturn scale(img, width)\n}\n",
        "thumbs/crop.go": "package thumbs\n\nfunc CropSquare(img Image) Image {\n\treturn cut(img)\n}\n",
    },
    "notifier": {
        "src/reminders.js": "// Email a reminder before a bill is due.\nfunction sendEmailReminder(user, dueDate) {\n"
                            "  return mailer.send(user.email, `due ${dueDate}`);\n}\n",
        "common/slugify.py": "def slugify(title):\n    return '-'.join(title.lower().split())\n",  # a vendored copy
    },
    "mono": {f"pkg{number}/module{number}.py": f"def monorepo_function_{number}(value):\n    return value * {number}\n"
             for number in range(7)},
}
QUESTIONS = [("refund_payment of a cancelled order", "payments", "billing/refunds.py"),
             ("ResizeThumbnail to thumbnail size", "imaging", "thumbs/resize.go"),
             ("sendEmailReminder before a bill is due", "notifier", "src/reminders.js"),
             ("monorepo_function_5", "mono", "pkg5/module5.py")]
SHARD_FILES = 3  # mono's 7 files make three shards


def make_files_repo(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    # The workers import the tests' FakeEmbedder from conftest.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def organisation(ray_session, tmp_path_factory):
    from codesearch.org.ray_pipeline import index_organisation

    base = tmp_path_factory.mktemp("org")
    repos = {name: make_files_repo(base / name, files) for name, files in FILES.items()}
    report = index_organisation(base / "org", list(repos.values()), model="minilm", workers=1,
                                shard_files=SHARD_FILES, embedder_factory=FakeEmbedder)
    return base / "org", repos, report


@pytest.fixture
def fake_model(monkeypatch):
    monkeypatch.setattr("codesearch.embedding.load.load_embedder", FakeEmbedder)


def org_query(org_dir: Path, *args: str) -> list[dict]:
    result = codesearch("query", "--org", org_dir, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["results"]


pytestmark = pytest.mark.distributed


def test_first_run_reports_and_embeds_a_vendored_copy_once(organisation):
    org_dir, repos, report = organisation
    summary = report.as_json()
    assert summary["executor"] == "ray" and summary["workers"] == 1
    assert (summary["repositories"], summary["shards"], summary["shards_updated"]) == (4, 6, 6)
    assert summary["chunks"] == 16 and summary["embedded"] == 15 and summary["reused"] == 1  # slugify.py twice
    for repo in repos.values():  # nothing written into an indexed repository
        assert not (repo / ".codesearch").exists()
        assert git(repo, "status", "--porcelain", "--ignored").stdout == ""


@pytest.mark.parametrize("question, repository, path", QUESTIONS)
def test_known_questions_name_the_right_repository_and_path(organisation, fake_model, question, repository, path):
    best = org_query(organisation[0], question, "-k", "3")[0]
    assert (best["repository"], best["path"]) == (repository, path)


def test_text_output_shows_the_repository_before_the_path(organisation, fake_model):
    result = codesearch("query", "--org", organisation[0], "ResizeThumbnail", "-k", "1")
    assert result.returncode == 0, result.stderr
    assert "imaging  thumbs/resize.go:" in result.stdout


def test_a_repository_named_ranks_exactly_as_its_shards_alone(organisation, fake_model):
    from codesearch.org.search import OrganisationSearch
    from codesearch.query.fuse import dense_weight, fuse
    from codesearch.query.api import Query
    from codesearch.query.retrieve import retrieve

    org_dir = organisation[0]
    for name in ("mono", "payments"):
        restricted = org_query(org_dir, "return value of a function", "--repo-name", name, "-k", "5")
        search = OrganisationSearch(org_dir, [name])
        try:
            vector = FakeEmbedder().encode_queries(["return value of a function"])[0]
            query = Query("return value of a function", 5, "hybrid", vector)
            alone = fuse([retrieve(store, query) for store in search.stores], query.text, 5, dense_weight("minilm"))
        finally:
            search.close()
        assert [(hit["path"], hit["start_line"], hit["score"]) for hit in restricted] == \
               [(hit.chunk.path, hit.chunk.start_line, round(hit.score, 6)) for hit in alone]
        assert {hit["repository"] for hit in restricted} == {name}


def test_shards_held_by_ray_actors_answer_as_in_process(organisation):
    from codesearch.query.api import QueryRequest
    from codesearch.org.search import OrganisationSearch
    from codesearch.org.ray_pipeline import shard_retriever

    search = OrganisationSearch(organisation[0], embedder_for=FakeEmbedder)
    try:
        request = QueryRequest(["slugify a title", "refund_payment", "monorepo_function_2 value"], k=5)
        here = search.query(request)
        on_actors = search.query(request, shard_retriever(search, None))
    finally:
        search.close()
    as_rows = lambda answer: [[(hit.repository, hit.index_number, hit.chunk.path, hit.chunk.start_line,  # noqa: E731
                                round(hit.score, 9)) for hit in hits] for hits in answer.hits]
    assert as_rows(on_actors) == as_rows(here)


def test_status_lists_repositories_shards_and_what_is_stale(organisation):
    result = codesearch("org", "status", organisation[0], "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["model"] == "minilm" and info["shards"] == 6 and info["stale_shards"] == 0
    mono = next(repository for repository in info["repositories"] if repository["name"] == "mono")
    assert len(mono["shards"]) == 3 and all(shard["files"] <= SHARD_FILES for shard in mono["shards"])


def test_an_edit_rewrites_one_shard_and_embeds_one_chunk(organisation, fake_model):
    from codesearch.org.catalog import read_catalog
    from codesearch.org.ray_pipeline import index_organisation

    org_dir, repos, _ = organisation
    before = {shard["key"]: shard for shard in read_catalog(org_dir).shards}
    refunds = repos["payments"] / "billing" / "refunds.py"
    refunds.write_text(refunds.read_text() + "\n\ndef void_authorisation(order_id):\n    return gateway.void(order_id)\n")
    git(repos["payments"], "commit", "-q", "-am", "void")
    stale = json.loads(codesearch("org", "status", org_dir, "--json").stdout)
    assert stale["stale_shards"] == 1

    report = index_organisation(org_dir, [], embedder_factory=FakeEmbedder).as_json()
    assert (report["shards_updated"], report["embedded"], report["reused"]) == (1, 1, 3)
    after = {shard["key"]: shard for shard in read_catalog(org_dir).shards}
    changed = [key for key in after if after[key] != before[key]]
    assert len(changed) == 1 and after[changed[0]]["repository"] == "payments"
    assert org_query(org_dir, "void_authorisation", "-k", "1")[0]["repository"] == "payments"


class DyingEmbedder(FakeEmbedder):
    """A worker that is killed as it embeds (the process exits, as on a lost node)."""

    def encode_token_ids(self, texts, progress=None):
        if any("killed_mid_run" in text for text in texts):
            os._exit(1)
        return super().encode_token_ids(texts, progress)


def test_a_worker_killed_mid_run_leaves_the_previous_index_whole(organisation, fake_model):
    from codesearch.errors import CodesearchError
    from codesearch.org.catalog import CATALOG_NAME, SHARDS_DIR, read_catalog
    from codesearch.org.ray_pipeline import index_organisation

    org_dir, repos, _ = organisation
    catalog_bytes = (org_dir / CATALOG_NAME).read_bytes()
    crop = repos["imaging"] / "thumbs" / "crop.go"
    crop.write_text(crop.read_text() + "\nfunc killed_mid_run() {}\n")
    with pytest.raises(CodesearchError, match="previous organisation index is intact"):
        index_organisation(org_dir, [], embedder_factory=DyingEmbedder)
    assert (org_dir / CATALOG_NAME).read_bytes() == catalog_bytes
    assert all((org_dir / SHARDS_DIR / shard["folder"]).is_dir() for shard in read_catalog(org_dir).shards)
    assert org_query(org_dir, "CropSquare", "-k", "1")[0]["path"] == "thumbs/crop.go"

    report = index_organisation(org_dir, [], embedder_factory=FakeEmbedder).as_json()
    assert report["shards_updated"] == 1
    assert org_query(org_dir, "killed_mid_run", "-k", "1")[0]["repository"] == "imaging"


def test_an_org_dir_inside_a_repository_is_refused(organisation):
    result = codesearch("org", "index", organisation[1]["imaging"] / "org", organisation[1]["imaging"])
    assert_one_line_error(result, "never writes into an indexed repository")
    assert not (organisation[1]["imaging"] / "org").exists()


# -- without Ray, and bad input: no Ray session needed ------------------------------------------------------------


@pytest.mark.parametrize("args", [["org", "index", "ORG", "."], ["query", "x", "--org", "ORG", "--ray", "auto"]])
def test_without_ray_a_distributed_command_names_the_extra(monkeypatch, tmp_path, args):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as when it is not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    result = codesearch(*[arg if arg != "ORG" else str(tmp_path / "org") for arg in args], cwd=TESTS)
    assert_one_line_error(result, "pip install 'codesearch[distributed]'")
    assert not (tmp_path / "org").exists()


@pytest.mark.parametrize("args, needle", [
    (["org", "status", "{tmp}/nothing"], "does not exist"),
    (["org", "status", "{tmp}"], "no organisation index"),
    (["query", "x", "--repo-name", "a"], "--repo-name needs --org"),
])
def test_bad_input_is_one_line(tmp_path, args, needle):
    result = codesearch(*[arg.replace("{tmp}", str(tmp_path)) for arg in args])
    assert_one_line_error(result, needle)


def test_an_unknown_repository_name_is_one_line(organisation):
    result = codesearch("query", "--org", organisation[0], "x", "--repo-name", "nope")
    assert_one_line_error(result, "no repository named 'nope'", "known: imaging, mono, notifier, payments")


@pytest.mark.parametrize("args, needle", [
    (["org", "index", "{tmp}/org"], "give the repositories to index"),
    (["org", "index", "{tmp}/org", ".", "--workers", "0"], "--workers must be at least 1"),
])
def test_bad_index_input_is_one_line_and_creates_nothing(tmp_path, args, needle):
    pytest.importorskip("ray")
    result = codesearch(*[arg.replace("{tmp}", str(tmp_path)) for arg in args], cwd=TESTS)
    assert_one_line_error(result, needle)
    assert not (tmp_path / "org").exists()


def test_as_many_cpu_workers_as_cpus_do_not_deadlock_the_pipeline(ray_session, tmp_path):
    """Two CPU embedding actors on the session's two CPUs: the cache lookups feeding them must not wait for
    a CPU that the actors hold."""
    import threading

    from codesearch.org.ray_pipeline import index_organisation

    repo = make_files_repo(tmp_path / "imaging", FILES["imaging"])
    reports = []
    run = threading.Thread(target=lambda: reports.append(index_organisation(
        tmp_path / "org", [repo], model="minilm", workers=2, embedder_factory=FakeEmbedder)), daemon=True)
    run.start()
    run.join(timeout=180)
    assert reports and reports[0].workers == 2 and reports[0].chunks > 0
