"""The warm server, as a user meets it: start it, query through it (the same answers as without it),
refresh the index under it, try to start a second one, stop it. Real small model (minilm); the
server runs in a fresh process (never forked from one that loaded torch)."""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codesearch.server.client import request_server
from codesearch.server.protocol import socket_path
from conftest import clean_env, codesearch, git, make_repo


def start_server(repo: Path, log: Path) -> subprocess.Popen:
    with open(log, "wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "codesearch", "serve", "--repo", str(repo)],
                                   stdout=handle, stderr=subprocess.STDOUT, env=clean_env())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited {process.returncode}: {log.read_text()}")
        try:
            if request_server(socket_path(repo), {"op": "ping"}, timeout=5)["ok"]:
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the server did not come up: {log.read_text()}")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def leave_stale_socket(path: Path) -> None:
    """What a killed server leaves behind: a socket file nobody listens on."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve")
    repo = make_repo(base / "repo")
    codesearch("index", str(repo), "--model", "minilm", check=True)
    leave_stale_socket(socket_path(repo))
    process = start_server(repo, base / "server.log")
    yield repo, process
    stop_process(process)


def test_a_stale_socket_file_is_replaced_and_only_its_owner_may_connect(served):
    repo, process = served
    assert process.poll() is None
    answer = request_server(socket_path(repo), {"op": "status"})
    assert answer["ok"] and answer["model"] == "minilm" and answer["pid"] == process.pid
    assert oct(socket_path(repo).stat().st_mode & 0o777) == "0o600"


def test_query_through_the_server_equals_the_in_process_answer(served, tmp_path, monkeypatch):
    repo, _ = served
    queries = tmp_path / "queries.txt"
    queries.write_text("send the files that could not be stored again\nread a json settings file\n")
    args = ["query", "--queries-file", str(queries), "--json", "-k", "4", "--repo", str(repo), "--verbose"]
    warm = codesearch(*args, "--path", "!tests")
    assert warm.returncode == 0, warm.stderr
    assert "answered by the running server" in warm.stderr
    monkeypatch.setenv("CODESEARCH_NO_SERVER", "1")
    cold = codesearch(*args, "--path", "!tests")
    assert "answered in-process" in cold.stderr
    assert warm.stdout == cold.stdout
    answers = [json.loads(line) for line in warm.stdout.splitlines()]
    assert answers[0]["results"][0]["symbol"] == "retry_failed_uploads"
    assert all(not result["path"].startswith("tests/") for answer in answers for result in answer["results"])


@pytest.mark.parametrize("options", [
    ["--mode", "lexical", "-C", "2"],
    ["--mode", "lexical", "--format", "vimgrep", "--lang", "go"],
    ["--mode", "lexical", "--files-only"],
])
def test_every_output_format_is_the_same_either_way(served, monkeypatch, options):
    repo, _ = served
    warm = codesearch("query", "upload checksum server", "-k", "3", *options, cwd=repo)
    monkeypatch.setenv("CODESEARCH_NO_SERVER", "1")
    cold = codesearch("query", "upload checksum server", "-k", "3", *options, cwd=repo)
    assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout)
    assert warm.stdout


def test_the_server_reports_user_errors_as_the_cli_does(served):
    repo, _ = served
    result = codesearch("query", "x", "--model", "bge-code-v1", "--verbose", cwd=repo)
    assert result.returncode == 2
    assert "built with model 'minilm'" in result.stderr


def test_a_second_server_on_the_same_repository_refuses(served, tmp_path):
    repo, process = served
    started = time.monotonic()
    second = codesearch("serve", "--repo", str(repo))
    assert second.returncode == 2
    assert second.stderr.strip().count("\n") == 0
    assert f"already serving {repo}" in second.stderr and str(process.pid) in second.stderr
    assert time.monotonic() - started < 60  # refused before loading any model
    assert request_server(socket_path(repo), {"op": "ping"})["pid"] == process.pid


def test_the_server_picks_up_a_refreshed_index(served):
    repo, _ = served
    before = request_server(socket_path(repo), {"op": "status"})["generation"]
    (repo / "billing.py").write_text(
        "def compute_invoice_total(lines, tax_rate):\n"
        "    \"\"\"Sum the invoice lines and add the sales tax.\"\"\"\n"
        "    subtotal = sum(line.price * line.quantity for line in lines)\n"
        "    return subtotal * (1 + tax_rate)\n")
    git(repo, "add", "billing.py")
    codesearch("index", str(repo), check=True)
    result = codesearch("query", "add up the invoice with tax", "--json", "-k", "1", "--verbose", cwd=repo)
    assert "answered by the running server" in result.stderr
    assert json.loads(result.stdout)["results"][0]["symbol"] == "compute_invoice_total"
    assert request_server(socket_path(repo), {"op": "status"})["generation"] == before + 1


def test_stop_removes_the_socket_and_queries_go_back_in_process(served):
    repo, process = served
    stopped = codesearch("serve", "--stop", "--repo", str(repo))
    assert stopped.returncode == 0, stopped.stderr
    assert process.wait(30) == 0
    assert not socket_path(repo).exists()
    result = codesearch("query", "checksum", "--mode", "lexical", "--verbose", cwd=repo)
    assert result.returncode == 0 and "answered in-process" in result.stderr
    assert codesearch("serve", "--stop", "--repo", str(repo)).returncode == 1


def test_a_query_ignores_a_stale_socket(served):
    repo, process = served
    assert process.poll() is not None
    leave_stale_socket(socket_path(repo))
    result = codesearch("query", "checksum", "--mode", "lexical", "--verbose", cwd=repo)
    assert result.returncode == 0 and "answered in-process" in result.stderr
    socket_path(repo).unlink()


def test_sigterm_stops_a_server_and_removes_its_socket(served, tmp_path):
    repo, _ = served
    process = start_server(repo, tmp_path / "server.log")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert not socket_path(repo).exists()


def test_a_server_stops_on_sigterm_after_a_storm_of_signals(served, tmp_path):
    """The handler once set a threading.Event and deadlocked on the lock the interrupted wait held."""
    repo, _ = served
    process = start_server(repo, tmp_path / "server.log")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and process.poll() is None:
        process.send_signal(signal.SIGSTOP)
        process.send_signal(signal.SIGCONT)
        for _ in range(20):
            process.send_signal(signal.SIGHUP if process.poll() is None else 0)
    process.send_signal(signal.SIGCONT)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert not socket_path(repo).exists()


def test_a_socket_path_too_long_for_an_address_goes_to_the_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    deep = Path("/") / ("d" * 120) / "repo"
    assert socket_path(deep).parent == tmp_path / "codesearch"
    assert socket_path(deep) != socket_path(Path("/") / ("e" * 120) / "repo")
    assert socket_path(Path("/short/repo")) == Path("/short/repo/.codesearch/serve.sock")
