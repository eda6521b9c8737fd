"""Bad inputs, through the CLI: each gets a correct skip or a one-line error, never a traceback.

One repository with no commits holds every strange file at once (binary, broken or other
encodings, CRLF, minified, deeply nested, empty, odd names, symlinks out and in loops, a
submodule, files that would run code if imported) and is indexed once with minilm, with HOME
pointed at an empty folder so that anything written outside `.codesearch/` shows.
"""

from __future__ import annotations

import codecs
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_one_line_error, clean_env, codesearch, codesearch_process, git, make_repo

INDEX = ".codesearch"
MINIFIED_BYTES = 20_000_000
NESTING = 5000


def _function(name: str, line_end: str = "\n") -> str:
    return line_end.join([f"def {name}(values):", f'    """{name.replace("_", " ")} of the values."""',
                          "    total = 0", "    for value in values:", "        total += value", "    return total",
                          ""])


def _nested_lines(opening: str, closing: str, per_line: int = 100) -> str:
    lines = [opening * per_line for _ in range(NESTING // per_line)]
    return "\n".join(lines) + "\n" + "\n".join(closing * per_line for _ in range(NESTING // per_line))


def _runs_code_marker(marker: Path) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('executed')\n"


def write_strange_repository(repo: Path, outside: Path, ran: Path) -> dict[str, str]:
    """Writes the files; returns name -> the symbol that must be found (or must not, for skips)."""
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    files = {
        "good.py": _function("compute_total_price").encode(),
        "binary_blob.py": b"def binary_only_symbol():\n    return 1\n" + bytes(range(256)) * 4,
        "latin1.py": _function("invalid_utf8_helper").encode() + "# caf\xe9 cr\xe8me\n".encode("latin-1"),
        "utf16.py": codecs.BOM_UTF16_LE + _function("utf16_encoded_function").encode("utf-16-le"),
        "crlf.py": (_function("crlf_first_function", "\r\n") + "\r\n" + _function("crlf_second_function", "\r\n")).encode(),
        "empty.py": b"",
        "deep.js": ("const deep_nesting_js = " + _nested_lines("[", "]") + ";\n").encode(),
        "deep.py": ("deep_nesting_py = " + _nested_lines("(", ")") + "\n").encode(),
        "deep.c": ("int deep_nesting_c(int a) {\n" + _nested_lines("if (a) { ", "} ", 50) + "\nreturn a; }\n").encode(),
        "with space.py": _function("name_with_space_function").encode(),
        "ünïcödé_名前.py": _function("unicode_name_function").encode(),
        "new\nline.py": _function("newline_name_function").encode(),
        # Code that would leave a marker if anything imported or ran it.
        "setup.py": _runs_code_marker(ran).encode(),
        "conftest.py": _runs_code_marker(ran).encode(),
        "__init__.py": _runs_code_marker(ran).encode(),
        "sitecustomize.py": _runs_code_marker(ran).encode(),
        "codesearch/__init__.py": _runs_code_marker(ran).encode(),
        "codesearch/__main__.py": _runs_code_marker(ran).encode(),
    }
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    with open(repo / "minified.js", "wb") as handle:  # one 20 MB line
        handle.write(b"var minified_only_symbol=1;" + b"a=a+1;" * ((MINIFIED_BYTES - 27) // 6))
    (repo / "bundle.js").write_bytes(b"function bundled_only_symbol(){" + b"x++;" * 200_000 + b"}")

    outside.mkdir()
    (outside / "secret.py").write_text(_function("outside_secret_function"), encoding="utf-8")
    os.symlink(outside / "secret.py", repo / "outside_link.py")
    os.symlink(outside, repo / "outside_dir")
    os.symlink("loop_b.py", repo / "loop_a.py")
    os.symlink("loop_a.py", repo / "loop_b.py")
    os.symlink(".", repo / "self_loop")

    submodule = repo.parent / "submodule_source"
    submodule.mkdir()
    (submodule / "inside.py").write_text(_function("submodule_only_function"), encoding="utf-8")
    git(submodule, "init", "-q", "-b", "main")
    git(submodule, "add", "-A")
    git(submodule, "commit", "-q", "-m", "sub")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(submodule), "libs/sub")
    git(repo, "add", "good.py", "crlf.py")  # staged, never committed: the repository has no commits
    return files


def snapshot(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Every path under folder (symlinks not followed) with its type, size and modification time."""
    found = {}
    for directory, subdirectories, names in os.walk(folder):
        relative_directory = os.path.relpath(directory, folder)
        subdirectories[:] = [d for d in subdirectories
                             if os.path.normpath(os.path.join(relative_directory, d)) not in skip]
        for name in names + subdirectories:
            relative = os.path.normpath(os.path.join(relative_directory, name))
            if relative in skip:
                continue
            info = os.lstat(os.path.join(directory, name))
            found[relative] = (info.st_mode, info.st_size if not os.path.isdir(os.path.join(directory, name)) else 0,
                               info.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def strange(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad-inputs")
    repo, home, ran = base / "repo", base / "home", base / "code-ran"
    home.mkdir()
    write_strange_repository(repo, base / "outside", ran)
    tree_before = snapshot(repo, skip=(".git",))
    git_before = snapshot(repo / ".git", skip=("info/exclude",))
    outside_before = snapshot(base / "outside")
    # A process of its own, with HOME pointed at an empty folder: anything written outside the index shows.
    result = codesearch_process("index", str(repo), "--model", "minilm", "--json",
                                env=clean_env(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache")))
    return {"repo": repo, "home": home, "ran": ran, "index": result, "tree_before": tree_before,
            "git_before": git_before, "outside": base / "outside", "outside_before": outside_before}


def indexed_paths(repo: Path) -> set[str]:
    connection = sqlite3.connect(repo / INDEX / "index.sqlite")
    try:
        return {row[0] for row in connection.execute("SELECT DISTINCT path FROM chunks")}
    finally:
        connection.close()


def find(repo: Path, query: str, *options: str) -> subprocess.CompletedProcess:
    return codesearch("query", query, "--mode", "lexical", "--json", "-k", "5", "--repo", str(repo), *options)


def hits(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)["results"]


# -- the strange repository, indexed once ---------------------------------------------------------


def test_indexing_every_strange_file_at_once_succeeds_quietly(strange):
    result = strange["index"]
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["chunks"] > 0


@pytest.mark.parametrize("symbol, path", [
    ("compute_total_price", "good.py"),
    ("invalid_utf8_helper", "latin1.py"),
    ("utf16_encoded_function", "utf16.py"),
    ("name_with_space_function", "with space.py"),
    ("unicode_name_function", "ünïcödé_名前.py"),
    ("newline_name_function", "new\nline.py"),
    ("deep_nesting_js", "deep.js"),
    ("deep_nesting_py", "deep.py"),
    ("deep_nesting_c", "deep.c"),
])
def test_readable_files_are_found_by_their_symbols(strange, symbol, path):
    found = hits(find(strange["repo"], symbol))
    assert path in [hit["path"] for hit in found]


@pytest.mark.parametrize("symbol", ["binary_only_symbol", "minified_only_symbol", "bundled_only_symbol",
                                    "outside_secret_function", "submodule_only_function"])
def test_binary_minified_symlinked_out_and_submodule_files_are_skipped(strange, symbol):
    found = hits(find(strange["repo"], symbol))
    assert not any(symbol in hit["symbol"] for hit in found)


def test_skipped_paths_never_reach_the_index(strange):
    paths = indexed_paths(strange["repo"])
    for skipped in ("binary_blob.py", "minified.js", "bundle.js", "empty.py", "outside_link.py", "loop_a.py",
                    "loop_b.py"):
        assert skipped not in paths
    assert not any(path.startswith(("outside_dir/", "self_loop/", "libs/sub")) for path in paths)


def test_a_crlf_file_keeps_its_line_numbers(strange):
    second = [hit for hit in hits(find(strange["repo"], "crlf_second_function")) if hit["path"] == "crlf.py"]
    assert (second[0]["start_line"], second[0]["end_line"]) == (8, 13)
    assert "\r" not in second[0]["symbol"]


def test_status_counts_what_was_indexed(strange):
    result = codesearch("status", str(strange["repo"]), "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    status = json.loads(result.stdout)
    assert status["stale_files"] == 0 and status["model"] == "minilm"


# -- queries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, needle", [
    (["query", ""], "give a query"),
    (["query", "   "], "give a query"),
    (["query", "x" * 100_000], "at most"),
    (["query", "total", "-k", "0"], "-k must be"),
    (["query", "total", "-k", "-3"], "-k must be"),
    (["query", "total", "--top=-1"], "-k must be"),
    (["query", "total", "--lang", "cobol"], "unknown --lang"),
])
def test_bad_queries_are_one_line_errors(strange, args, needle):
    assert_one_line_error(codesearch(*args, "--mode", "lexical", "--repo", str(strange["repo"])), needle)


def test_a_100_kb_query_in_a_queries_file_is_cut_and_answered(strange, tmp_path):
    queries = tmp_path / "queries.txt"
    queries.write_text("compute total price " + "z" * 100_000 + "\n", encoding="utf-8")
    result = codesearch("query", "--queries-file", str(queries), "--mode", "lexical", "--json",
                        "--repo", str(strange["repo"]))
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr
    assert len(json.loads(result.stdout)["query"]) <= 10_000


def test_a_path_glob_that_matches_nothing_finds_nothing(strange):
    result = find(strange["repo"], "compute total price", "--path", "no/such/dir/**")
    assert result.returncode == 1 and result.stderr == ""
    assert hits(result) == []


def test_a_language_filter_keeps_only_that_language(strange):
    found = hits(find(strange["repo"], "deep nesting", "--lang", "c"))
    assert found and {hit["language"] for hit in found} == {"c"}


# -- places that are not indexable repositories -------------------------------------------------


@pytest.mark.parametrize("command", [["index"], ["status"], ["query", "x", "--repo"]])
def test_a_path_that_does_not_exist_is_a_one_line_error(tmp_path, command):
    assert_one_line_error(codesearch(*command, str(tmp_path / "nowhere")), "does not exist")


@pytest.mark.parametrize("command", [["index"], ["status"], ["query", "x", "--repo"]])
def test_a_directory_outside_git_is_a_one_line_error_and_stays_untouched(tmp_path, command):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "main.py").write_text(_function("not_in_git"), encoding="utf-8")
    assert_one_line_error(codesearch(*command, str(folder)), "not a git repository")
    assert sorted(p.name for p in folder.iterdir()) == ["main.py"]


def test_an_empty_repository_without_commits_indexes_nothing_and_says_so(tmp_path):
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q")
    result = codesearch("index", str(repo))
    assert "Traceback" not in result.stderr
    if result.returncode != 0:
        assert_one_line_error(result)
    assert_one_line_error(codesearch("query", "anything", "--mode", "lexical", "--repo", str(repo)),
                          "codesearch index")


# -- files that change under the indexer ---------------------------------------------------------


def test_files_deleted_or_changed_while_indexing(tmp_path, monkeypatch, fake_embedder):
    """Deleted: indexed as absent. Changed: whatever was read, and the next run catches up."""
    from codesearch.indexer import build as indexing, read

    repo = make_repo(tmp_path / "repo")
    (repo / "doomed.py").write_text(_function("doomed_function"), encoding="utf-8")
    (repo / "shifting.py").write_text(_function("shifting_before"), encoding="utf-8")
    original = read.read_listed

    def racing_read(root, path, limit=-1):
        if path == "doomed.py":
            (root / "doomed.py").unlink()
        elif path == "shifting.py":
            (root / "shifting.py").write_text(_function("shifting_after") + "\n# grown\n", encoding="utf-8")
        return original(root, path, limit)

    monkeypatch.setattr(read, "read_listed", racing_read)
    indexing.index_repository(repo, model="minilm", embedder_factory=fake_embedder)
    assert "doomed.py" not in indexed_paths(repo)
    monkeypatch.undo()
    report = indexing.index_repository(repo, embedder_factory=fake_embedder)
    assert (report.removed, report.changed_files) == (1, 1)  # doomed.py is gone; shifting.py is read again
    assert "doomed.py" not in indexed_paths(repo)
    assert [hit["symbol"] for hit in hits(find(repo, "shifting_after"))][:1] == ["shifting_after"]
    assert "shifting_before" not in [hit["symbol"] for hit in hits(find(repo, "shifting_before"))]


# -- security ------------------------------------------------------------------------------------


def test_nothing_is_written_outside_the_index_folder(strange):
    repo = strange["repo"]
    assert snapshot(repo, skip=(".git", INDEX)) == {k: v for k, v in strange["tree_before"].items()
                                                    if k != INDEX and not k.startswith(INDEX + "/")}
    assert snapshot(repo / ".git", skip=("info/exclude",)) == strange["git_before"]
    assert snapshot(strange["outside"]) == strange["outside_before"]
    # Only the model's ONNX export, in the user's cache (README "Runtimes"), private like the index.
    home = strange["home"]
    written = sorted(path.relative_to(home).as_posix() for path in home.rglob("*") if path.is_file())
    assert all(path.startswith(".cache/codesearch/onnx/") and path.endswith(".onnx") for path in written), written
    assert all(path.stat().st_mode & 0o077 == 0 for path in home.rglob("*") if ".cache/codesearch" in path.as_posix())


def test_the_index_folder_is_excluded_from_git(strange):
    status = git(strange["repo"], "status", "--porcelain", "--untracked-files=all", "-z").stdout
    assert INDEX not in status
    assert f"/{INDEX}/" in (strange["repo"] / ".git" / "info" / "exclude").read_text(encoding="utf-8").split("\n")


def test_no_code_of_the_indexed_repository_runs(strange):
    """Indexing and searching read files; they never import or run them, even from inside the repository."""
    repo = strange["repo"]
    installed = Path(sys.executable).parent / "codesearch"
    env = clean_env()
    for args in (["index"], ["status"], ["query", "values total", "--mode", "lexical"]):
        result = subprocess.run([str(installed), *args], cwd=repo, capture_output=True, text=True, env=env,
                                timeout=300)
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr
    assert not strange["ran"].exists()
    assert strange["index"].returncode == 0 and not strange["ran"].exists()


def test_python_dash_m_inside_a_repository_imports_nothing_from_it(tmp_path):
    """`python -m` puts the working directory first on sys.path: a repository's json.py or queue.py would
    shadow the standard library and run."""
    repo = make_repo(tmp_path / "repo")
    ran = tmp_path / "code-ran"
    for name in ("json.py", "queue.py", "typing_extensions.py", "numpy.py"):
        (repo / name).write_text(_runs_code_marker(ran))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "shadows")
    for args in (["index", "--model", "minilm"], ["query", "retry uploads", "--mode", "lexical", "--json"]):
        result = codesearch_process(*args, cwd=repo)
        assert result.returncode == 0, result.stderr
    assert not ran.exists()


def test_remote_code_stays_off_unless_asked():
    from codesearch.embedding.spec import resolve_model

    assert resolve_model("minilm").trust_remote_code is False


def test_a_file_over_the_size_bound_is_skipped_with_a_notice(tmp_path, fake_embedder):
    from codesearch.indexer import build as indexing

    repo = make_repo(tmp_path / "repo")
    (repo / "generated_tables.py").write_text("VALUE = 1\n" * 150_000, encoding="utf-8")  # 1.5 MB

    class Notices(indexing.Progress):
        said: list = []

        def notice(self, message):
            self.said.append(message)

    indexing.index_repository(repo, model="minilm", embedder_factory=fake_embedder, progress=Notices())
    assert any("larger than 1 MB: generated_tables.py" in said for said in Notices.said), Notices.said
    assert "generated_tables.py" not in indexed_paths(repo)
