"""The server a query starts: the first query answers in-process and leaves a server behind, the next
is answered by it, `status` shows it, one setting turns it off, and it exits by itself when idle."""

import json
import subprocess
import sys
import time

import pytest

from codesearch.server.client import request_server
from codesearch.server.protocol import socket_path
from conftest import assert_one_line_error, clean_env, codesearch, codesearch_process, make_repo


def wait_for(condition, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def answers(repo) -> bool:
    try:
        return bool(request_server(socket_path(repo), {"op": "ping"}, timeout=5).get("ok"))
    except OSError:
        return False


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("autostart") / "repo")
    codesearch("index", str(repo), "--model", "minilm", check=True)
    return repo


def test_a_query_starts_a_server_that_the_next_query_uses(indexed):
    repo = indexed
    off = codesearch_process("query", "retry failed uploads", "-v", "--repo", repo,
                             env=clean_env(CODESEARCH_NO_AUTOSTART="1"))
    assert off.returncode == 0 and "started a server" not in off.stderr
    assert not socket_path(repo).exists()
    assert "the next query starts one" not in codesearch("status", str(repo)).stdout

    env = clean_env(CODESEARCH_NO_AUTOSTART="")
    first = codesearch_process("query", "retry failed uploads", "-v", "--json", "--repo", repo, env=env)
    try:
        assert "answered in-process" in first.stderr and "started a server" in first.stderr
        assert wait_for(lambda: answers(repo))
        later = codesearch_process("query", "retry failed uploads", "-v", "--json", "--repo", repo, env=env)
        assert "answered by the running server" in later.stderr and "started" not in later.stderr
        assert later.stdout == first.stdout
        status = json.loads(codesearch_process("status", repo, "--json", env=env).stdout)["server"]
        assert status["running"] and status["idle_exit"] == 600 and status["autostart"]
        assert "stops after 600 s without a query" in codesearch_process("status", repo, env=env).stdout
        # It only reads: a refresh takes the writers' lock while it runs.
        (repo / "extra.py").write_text("def added_later():\n    return 42\n")
        assert codesearch_process("index", repo, env=env).returncode == 0
    finally:
        codesearch_process("serve", "--stop", "--repo", repo, env=env)
    assert wait_for(lambda: not socket_path(repo).exists(), 30)


def test_an_idle_server_exits_by_itself(indexed):
    repo = indexed
    server = subprocess.Popen([sys.executable, "-m", "codesearch", "serve", "--repo", str(repo), "--idle-exit", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        assert wait_for(lambda: answers(repo) or server.poll() is not None)
        assert server.wait(60) == 0
        assert "no request for 2 s; stopping" in server.stderr.read()
        assert not socket_path(repo).exists()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@pytest.mark.parametrize("seconds", ["0", "-5", "nan"])
def test_a_bad_idle_time_is_one_line(seconds):
    assert_one_line_error(codesearch("serve", "--idle-exit", seconds), "--idle-exit must be a positive number")
