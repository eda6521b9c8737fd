"""The server a query starts: the first query answers in-process and leaves the user's server behind, the
next ones, in any repository, are answered by it, `status` shows it, one setting turns it off, and it exits by
itself when idle."""

import json
import subprocess
import sys
import time

import pytest

from codesearch.server.client import request_server
from codesearch.server.protocol import socket_path, user_socket_path
from conftest import assert_one_line_error, clean_env, codesearch, codesearch_process, make_repo


def wait_for(condition, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def answers(socket_file) -> bool:
    try:
        return bool(request_server(socket_file, {"op": "ping"}, timeout=5).get("ok"))
    except OSError:
        return False


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("autostart") / "repo")
    codesearch("index", str(repo), "--model", "minilm", check=True)
    return repo


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    """A runtime folder of this test's own: the user's server it starts is nobody else's."""
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    return folder


def test_a_query_starts_the_users_server_that_the_next_queries_use_for_every_repository(indexed, runtime,
                                                                                        tmp_path):
    repo = indexed
    off = codesearch_process("query", "retry failed uploads", "-v", "--repo", repo,
                             env=clean_env(CODESEARCH_NO_AUTOSTART="1"))
    assert off.returncode == 0 and "started a server" not in off.stderr
    assert not user_socket_path().exists() and not socket_path(repo).exists()
    assert "the next query starts one" not in codesearch("status", str(repo)).stdout

    env = clean_env(CODESEARCH_NO_AUTOSTART="")
    first = codesearch_process("query", "retry failed uploads", "-v", "--json", "--repo", repo, env=env)
    try:
        assert "answered in-process" in first.stderr and "started a server" in first.stderr
        assert wait_for(lambda: answers(user_socket_path()))
        later = codesearch_process("query", "retry failed uploads", "-v", "--json", "--repo", repo, env=env)
        assert "answered by the running server" in later.stderr and "started" not in later.stderr
        assert later.stdout == first.stdout
        status = json.loads(codesearch_process("status", repo, "--json", env=env).stdout)["server"]
        assert status["running"] and status["idle_exit"] == 600 and status["autostart"] and status["shared"]
        assert "this user's, for every repository; stops after 600 s" in codesearch_process("status", repo,
                                                                                            env=env).stdout
        # Another repository: the same server opens its index when first asked, no second server starts.
        other = make_repo(tmp_path / "other")
        codesearch("index", str(other), "--model", "minilm", check=True)
        answered = codesearch_process("query", "retry failed uploads", "-v", "--repo", other, env=env)
        assert f"answered by the running server for {other.resolve()}" in answered.stderr
        assert json.loads(codesearch_process("status", other, "--json", env=env).stdout)["server"]["pid"] == \
            status["pid"]
        # A repository with no index is told so by the server, as in-process.
        bare = make_repo(tmp_path / "bare")
        refused = codesearch_process("query", "x", "--repo", bare, env=env)
        assert refused.returncode == 2 and "not indexed" in refused.stderr
        # It writes only under the writers' lock: a refresh beside it goes through.
        (repo / "extra.py").write_text("def added_later():\n    return 42\n")
        assert codesearch_process("index", repo, env=env).returncode == 0
    finally:
        codesearch_process("serve", "--stop", "--user", env=env)
    assert wait_for(lambda: not user_socket_path().exists(), 30)


def test_an_idle_server_exits_by_itself(indexed):
    repo = indexed
    server = subprocess.Popen([sys.executable, "-m", "codesearch", "serve", "--repo", str(repo), "--idle-exit", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        assert wait_for(lambda: answers(socket_path(repo)) or server.poll() is not None)
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
