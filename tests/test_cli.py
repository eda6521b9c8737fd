"""The two main commands, end to end through the CLI, with the real small model (minilm)."""

import json
import shutil

import pytest

from conftest import FIXTURES, codesearch, git, make_repo


@pytest.fixture(scope="module")
def indexed_repo(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("cli") / "repo")
    result = codesearch("index", str(repo), "--model", "minilm", "--json", check=True)
    return repo, json.loads(result.stdout.strip().splitlines()[-1])


def test_index_reports_a_json_summary(indexed_repo):
    _, summary = indexed_repo
    assert set(summary) == {"files", "chunks", "embedded", "reused", "removed", "seconds", "model"}
    assert summary["model"] == "minilm"
    assert summary["files"] == 5
    assert summary["embedded"] == summary["chunks"] > 5


def test_index_folder_is_kept_out_of_git(indexed_repo):
    repo, _ = indexed_repo
    assert (repo / ".codesearch" / "index.sqlite").exists()
    assert "/.codesearch/" in (repo / ".git" / "info" / "exclude").read_text()
    assert git(repo, "status", "--porcelain").stdout == ""


def test_a_paraphrase_finds_the_function_first(indexed_repo):
    repo, _ = indexed_repo
    result = codesearch("query", "send the files that could not be stored again, waiting longer each time",
                        "--json", "-k", "3", cwd=repo)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    first = answer["results"][0]
    assert (first["path"], first["symbol"]) == ("uploads.py", "retry_failed_uploads")
    assert first["start_line"] == 9 and first["end_line"] == 24
    assert set(first) >= {"path", "start_line", "end_line", "symbol", "language", "score"}
    assert len(answer["results"]) <= 3


def test_queries_file_answers_each_line_in_order(indexed_repo, tmp_path):
    repo, _ = indexed_repo
    queries = tmp_path / "queries.txt"
    queries.write_text("wait for open requests to finish before stopping\nread a json settings file\n")
    result = codesearch("query", "--queries-file", str(queries), "--json", "--repo", str(repo))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query"] for line in lines] == ["wait for open requests to finish before stopping", "read a json settings file"]
    assert lines[0]["results"][0]["symbol"] == "Server.Shutdown"
    assert lines[1]["results"][0]["symbol"] == "parseConfig"


def test_human_output_shows_path_lines_symbol_and_code(indexed_repo):
    repo, _ = indexed_repo
    result = codesearch("query", "checksum of a payload", "-k", "1", "--mode", "lexical", cwd=repo)
    assert result.returncode == 0
    assert "uploads.py:27-29" in result.stdout and "compute_checksum" in result.stdout
    assert "hashlib.sha256" in result.stdout


def test_exit_code_is_one_when_nothing_matches(indexed_repo):
    repo, _ = indexed_repo
    result = codesearch("query", "zyxwvut", "--mode", "lexical", "--json", cwd=repo)
    assert result.returncode == 1
    assert json.loads(result.stdout)["results"] == []


@pytest.mark.parametrize("args, message", [
    (["query", "", "--mode", "lexical"], "give a query"),
    (["query", "x", "-k", "0"], "-k must be"),
    (["query", "x", "--lang", "cobol"], "unknown --lang"),
    (["query", "x", "--mode", "fuzzy"], "unknown --mode"),
    (["query", "x", "--model", "bge-code-v1"], "built with model 'minilm'"),
])
def test_bad_input_is_one_line_and_exit_two(indexed_repo, args, message):
    repo, _ = indexed_repo
    result = codesearch(*args, cwd=repo)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_query_without_an_index_says_how_to_build_one(tmp_path):
    repo = make_repo(tmp_path / "fresh")
    result = codesearch("query", "anything", cwd=repo)
    assert result.returncode == 2 and "codesearch index" in result.stderr


def test_a_directory_outside_git_is_refused(tmp_path):
    result = codesearch("index", str(tmp_path), "--model", "minilm")
    assert result.returncode == 2 and "not a git repository" in result.stderr


def test_a_missing_path_is_refused(tmp_path):
    result = codesearch("index", str(tmp_path / "nope"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_a_model_that_cannot_be_had_fails_fast_and_names_minilm(tmp_path):
    repo = make_repo(tmp_path / "r")
    result = codesearch("index", str(repo), "--model", "bge-code-v1")
    assert result.returncode == 2
    assert "--model minilm" in result.stderr and "Traceback" not in result.stderr


def test_status_tells_model_counts_and_freshness(indexed_repo, tmp_path):
    repo, summary = indexed_repo
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy)
    status = json.loads(codesearch("status", str(copy), "--json", check=True).stdout)
    assert status["model"] == "minilm" and status["chunks"] == summary["chunks"] and status["stale_files"] == 0
    (copy / "uploads.py").write_text((copy / "uploads.py").read_text() + "\n\ndef extra():\n    return 1\n")
    status = json.loads(codesearch("status", str(copy), "--json", check=True).stdout)
    assert status["stale_files"] == 1


def test_chunks_command_lists_functions(tmp_path):
    result = codesearch("chunks", str(FIXTURES / "sample_repo" / "server" / "server.go"), "--json", check=True)
    units = [json.loads(line) for line in result.stdout.splitlines()]
    symbols = {(unit["symbol"], unit["kind"]) for unit in units}
    assert ("NewServer", "function") in symbols and ("Server.Shutdown", "method") in symbols


@pytest.mark.parametrize("output", ["text", "json", "vimgrep"])
def test_a_reader_that_stops_reading_is_no_error(indexed_repo, output):
    import os
    import subprocess
    import sys

    repo, _ = indexed_repo
    reader, writer = os.pipe()
    os.close(reader)  # gone before the first line is written, as `| head -0` would be
    try:
        result = subprocess.run([sys.executable, "-m", "codesearch", "query", "checksum of a payload", "--mode",
                                 "lexical", "--format", output], cwd=repo, stdout=writer, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    finally:
        os.close(writer)
    assert (result.returncode, result.stderr) == (0, "")


def test_version():
    from codesearch import __version__

    result = codesearch("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"codesearch {__version__}")


def test_a_notice_prints_a_repository_path_literally_on_one_line():
    import io

    from rich.console import Console

    from codesearch.cli.terminal import TerminalProgress

    out = io.StringIO()
    message = "a[/x].kt: parsing it as kotlin crashed (SIGSEGV); indexed as plain text " + "x" * 200
    TerminalProgress(Console(file=out, width=40, highlight=False)).notice(message)
    assert out.getvalue() == f"codesearch: {message}\n"


def test_json_answers_page_by_offset_and_token_budget(indexed_repo):
    repo, _ = indexed_repo

    def answer(*options):
        result = codesearch("query", "upload", "--mode", "lexical", "--json", *options, cwd=repo)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    whole = answer("-k", "12")
    assert "next_offset" not in whole and whole["stale_files"] == 0 and whole["embedded"] == 1.0
    first = answer("-k", "6", "--max-tokens", "100")
    taken = len(first["results"])
    assert first["results"] == whole["results"][:taken] and first["next_offset"] == taken < 6
    rest = answer("-k", "6", "--offset", str(taken))  # the results ranked taken+1 to taken+6
    assert rest["results"] == whole["results"][taken:taken + 6]
    assert codesearch("query", "upload", "--offset", "-1", cwd=repo).returncode == 2
