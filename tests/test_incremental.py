"""A refresh costs what the change costs: told by `codesearch index --json` after each kind of change.

One repository is indexed once with the real minilm model; each test works on a copy of it.
A run that embeds nothing never loads the model, so most steps here take well under a second.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import codesearch, git

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "incremental"
CHUNKS = {"shapes.py": 4, "text_tools.py": 4, "retry.js": 3}  # as `codesearch chunks` cuts them


def index(repo: Path, *options: str) -> dict:
    result = codesearch("index", "--json", *options, cwd=repo)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, dict]:
    repo = tmp_path_factory.mktemp("incremental") / "repo"
    shutil.copytree(FIXTURES / "repo", repo)
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "shapes, text tools and retry")
    return repo, index(repo, "--model", "minilm")


@pytest.fixture
def repo(indexed, tmp_path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(indexed[0], copy, symlinks=True)
    return copy


def test_first_index_embeds_every_chunk(indexed):
    _, report = indexed
    assert report["files"] == 3
    assert report["chunks"] == sum(CHUNKS.values())
    assert report["embedded"] == sum(CHUNKS.values())
    assert report["model"] == "minilm"


def test_unchanged_repository_embeds_nothing(repo):
    report = index(repo)
    assert (report["embedded"], report["reused"], report["removed"]) == (0, 0, 0)
    assert report["chunks"] == sum(CHUNKS.values())


def test_editing_one_function_embeds_one_chunk_and_reverting_embeds_none(repo):
    replace_in(repo / "shapes.py", "return base * height / 2", "return 0.5 * base * height")
    edited = index(repo)
    assert edited["embedded"] == 1
    assert edited["reused"] == CHUNKS["shapes.py"] - 1

    git(repo, "checkout", "--", "shapes.py")
    reverted = index(repo)
    assert reverted["embedded"] == 0
    assert reverted["reused"] == CHUNKS["shapes.py"]
    assert reverted["chunks"] == sum(CHUNKS.values())


def test_moving_a_function_within_its_file_embeds_nothing(repo):
    shapes = repo / "shapes.py"
    text = shapes.read_text(encoding="utf-8")
    head, rest = text.split("def circle_area", 1)
    circle_area, rest = rest.split("def circle_perimeter", 1)
    shapes.write_text(head + "def circle_perimeter" + rest.rstrip("\n") + "\n\n\ndef circle_area" + circle_area.rstrip("\n") + "\n",
                      encoding="utf-8")
    report = index(repo)
    assert report["embedded"] == 0
    assert report["chunks"] == sum(CHUNKS.values())


def test_adding_then_committing_then_deleting_a_file(repo):
    shutil.copy(FIXTURES / "units.py", repo / "units.py")
    added = index(repo)  # untracked: found through git status, fingerprinted by size and mtime
    assert added["embedded"] == 3
    assert added["files"] == 4

    git(repo, "add", "units.py")
    git(repo, "commit", "--quiet", "-m", "units")
    committed = index(repo)  # now fingerprinted by its blob id: read again, embedded never
    assert committed["embedded"] == 0

    (repo / "units.py").unlink()
    deleted = index(repo)
    assert (deleted["embedded"], deleted["removed"], deleted["files"]) == (0, 1, 3)
    assert deleted["chunks"] == sum(CHUNKS.values())


def test_deleting_a_tracked_file_removes_its_chunks(repo):
    git(repo, "rm", "--quiet", "retry.js")
    report = index(repo)
    assert (report["embedded"], report["removed"]) == (0, 1)
    assert report["chunks"] == CHUNKS["shapes.py"] + CHUNKS["text_tools.py"]


def test_renaming_a_file_re_embeds_it_because_the_path_is_in_the_embedded_header(repo):
    git(repo, "mv", "text_tools.py", "strings.py")
    renamed = index(repo)
    assert renamed["removed"] == 1
    assert renamed["embedded"] == CHUNKS["text_tools.py"]
    assert renamed["files"] == 3

    git(repo, "mv", "strings.py", "text_tools.py")
    back = index(repo)
    assert (back["embedded"], back["removed"]) == (0, 1)


def test_switching_branches_and_back_embeds_nothing(repo):
    git(repo, "checkout", "--quiet", "-b", "feature")
    replace_in(repo / "text_tools.py", 'return "-".join(words)', 'return "_".join(words)')
    shutil.copy(FIXTURES / "units.py", repo / "units.py")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "underscores and units")
    on_feature = index(repo)
    assert on_feature["embedded"] == 1 + 3

    git(repo, "checkout", "--quiet", "main")
    on_main = index(repo)
    assert (on_main["embedded"], on_main["removed"], on_main["files"]) == (0, 1, 3)

    git(repo, "checkout", "--quiet", "feature")
    again = index(repo)
    assert (again["embedded"], again["files"]) == (0, 4)
