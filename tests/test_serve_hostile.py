"""The warm server against other local users, web pages and careless clients: it answers its owner
only, within bounds, and a client never waits on a server that does not answer. Servers run on a
thread of this process with a stand-in model; clients are raw sockets, try_server or the CLI."""

import json
import os
import socket
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from codesearch.errors import CodesearchError
from codesearch.query.api import MAX_QUERY_CHARS
from codesearch.server.client import request_server, try_server
from codesearch.server.protocol import (MAX_QUERIES_PER_REQUEST, lock_path, peer_problem, read_token, request_message,
                                        socket_path, token_path)
from codesearch.embedding.batching import DocumentEncoder
from codesearch.query.api import QueryRequest
from codesearch.server.serve import MAX_CONNECTIONS, Dispatcher, bind_unix, encode_response, serve_forever
from codesearch.server.service import Service
from conftest import codesearch, make_repo

DIMENSION = 384  # minilm's, the model the index says it was built with
STRANGER = 65534  # nobody: "another user" for a test that runs as root


@dataclass
class StandInModel(DocumentEncoder):
    """Unit vectors instead of a model; `embedded` records every query the server embedded."""

    spec: object = None
    embedded: list = field(default_factory=list)
    device: str = "stand-in"
    dim: int = DIMENSION
    documents_per_call: int = 256

    def encode_queries(self, queries):
        self.embedded.extend(queries)
        return self.encode_token_ids(list(queries))

    def tokenize(self, texts, role="document"):
        return list(texts)  # the "token ids" of a stand-in are its texts

    def encode_token_ids(self, texts, progress=None):
        vectors = np.stack([np.random.default_rng(len(text)).standard_normal(DIMENSION) for text in texts])
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def indexed_repo(destination: Path) -> Path:
    from codesearch.indexer.build import index_repository

    repo = make_repo(destination)
    index_repository(repo, model="minilm", embedder_factory=lambda spec: StandInModel(spec))
    return repo


class ThreadServer:
    """serve_forever on a thread of this process, with the stand-in model."""

    def __init__(self, repo: Path, port: int | None = None, model: type = StandInModel):
        self.repo, self.notices, self.failure, self.embedded = repo, [], None, []
        service = Service(load_embedder=lambda spec: model(spec, self.embedded))
        self.thread = threading.Thread(target=self._run, args=(service, port), daemon=True)
        self.thread.start()

    def _run(self, service, port):
        try:
            serve_forever([self.repo], port=port, notice=self.notices.append, service=service)
        except Exception as error:
            self.failure = error

    def ready(self) -> "ThreadServer":
        deadline = time.monotonic() + 30
        while not any(notice.startswith("ready:") for notice in self.notices):
            assert self.failure is None, self.failure
            assert time.monotonic() < deadline, self.notices
            time.sleep(0.02)
        return self

    def refusal(self) -> str:
        self.thread.join(30)
        if self.thread.is_alive():
            self.stop()
            pytest.fail("the server started instead of refusing")
        assert isinstance(self.failure, CodesearchError), self.failure
        return str(self.failure)

    @property
    def port(self) -> int:
        notice = next(notice for notice in self.notices if notice.startswith("also listening on 127.0.0.1:"))
        return int(notice.split(":")[1].split(";")[0])

    def stop(self) -> None:
        request_server(socket_path(self.repo), {"op": "stop"}, timeout=10)
        self.thread.join(10)
        assert not self.thread.is_alive()


def give_away(folder: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("only root can give a folder to another user")
    os.chown(folder, STRANGER, STRANGER)


def lines_until_closed(connection: socket.socket, seconds: float = 5) -> list[bytes]:
    connection.settimeout(seconds)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received.splitlines()


def unix_client(repo: Path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(socket_path(repo)))
    return client


def ask(connection: socket.socket, message: dict) -> dict:
    """One request on an open connection."""
    connection.sendall(json.dumps(message).encode() + b"\n")
    return json.loads(connection.makefile("rb").readline())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = indexed_repo(tmp_path_factory.mktemp("served") / "repo")
    server = ThreadServer(repo, port=0).ready()
    yield server
    server.stop()
    assert not token_path(socket_path(repo)).exists()


# -- who may ask -----------------------------------------------------------------------------------


def test_a_lock_file_planted_as_a_link_is_refused_and_its_target_left_alone(tmp_path):
    repo = indexed_repo(tmp_path / "repo")
    victim = tmp_path / "precious.txt"
    victim.write_text("do not truncate\n")
    before = victim.stat()
    lock_path(socket_path(repo)).symlink_to(victim)
    message = ThreadServer(repo).refusal()
    assert "\n" not in message and "link" in message
    assert victim.read_text() == "do not truncate\n" and victim.stat().st_mtime_ns == before.st_mtime_ns
    assert not socket_path(repo).exists()


@pytest.fixture(scope="module")
def deep_repo(tmp_path_factory):
    """A repository whose socket path is too long for an address: its socket goes to the runtime folder."""
    return indexed_repo(tmp_path_factory.mktemp("deep") / ("d" * 50) / ("e" * 50) / "repo")


def _runtime_folder(tmp_path: Path, monkeypatch, where: str) -> Path:
    if where == "XDG_RUNTIME_DIR":
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
        return tmp_path / "codesearch"
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path / f"codesearch-{os.getuid()}"


@pytest.mark.parametrize("where", ["XDG_RUNTIME_DIR", "temporary directory"])
@pytest.mark.parametrize("planted", ["another user's", "open to the group", "a link"])
def test_a_runtime_folder_someone_else_could_write_is_refused(deep_repo, tmp_path, monkeypatch, where, planted):
    folder = _runtime_folder(tmp_path, monkeypatch, where)
    assert socket_path(deep_repo).parent == folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if planted == "a link":
        folder.symlink_to(elsewhere)
    else:
        folder.mkdir(mode=0o700)
        os.chmod(folder, 0o750) if planted == "open to the group" else give_away(folder)
    message = ThreadServer(deep_repo).refusal()
    assert "\n" not in message and str(folder) in message
    assert list(elsewhere.iterdir()) == [] and not socket_path(deep_repo).exists()
    assert not try_server(deep_repo, QueryRequest(["retry uploads"], mode="lexical"))


def test_a_client_does_not_ask_a_server_in_a_folder_another_user_owns(deep_repo, tmp_path, monkeypatch):
    folder = _runtime_folder(tmp_path, monkeypatch, "XDG_RUNTIME_DIR")
    folder.mkdir(mode=0o700)
    forged = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    forged.bind(str(socket_path(deep_repo)))
    forged.listen(8)
    forged.setblocking(False)
    give_away(folder)
    answer = try_server(deep_repo, QueryRequest(["what the forger wants to read"], mode="lexical"))
    assert not answer and "another user" in answer.reason
    with pytest.raises(BlockingIOError):
        forged.accept()  # nobody connected, so no query reached it
    forged.close()


def test_a_symlinked_lock_in_a_private_runtime_folder_is_refused(deep_repo, tmp_path, monkeypatch):
    folder = _runtime_folder(tmp_path, monkeypatch, "XDG_RUNTIME_DIR")
    folder.mkdir(mode=0o700)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep\n")
    lock_path(socket_path(deep_repo)).symlink_to(victim)
    assert "link" in ThreadServer(deep_repo).refusal()
    assert victim.read_text() == "keep\n"


def test_the_runtime_folder_is_made_private_and_the_token_lives_and_dies_with_the_server(deep_repo, tmp_path,
                                                                                         monkeypatch):
    folder = _runtime_folder(tmp_path, monkeypatch, "temporary directory")
    server = ThreadServer(deep_repo, port=0).ready()
    token_file = token_path(socket_path(deep_repo))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    answer = request_server(("127.0.0.1", server.port), {"op": "ping"}, token=read_token(socket_path(deep_repo)))
    assert answer["ok"]
    server.stop()
    assert not token_file.exists() and not socket_path(deep_repo).exists()


def test_the_peer_check_refuses_a_process_of_another_uid():
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    with ours, theirs:
        assert peer_problem(ours) is None
        assert f"uid {os.getuid()}, not {os.getuid() + 1}" in peer_problem(ours, expected_uid=os.getuid() + 1)


# -- the TCP port ----------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "guessed", 12345])
def test_a_tcp_request_without_the_token_gets_one_error_and_the_connection_closes(served, token):
    with socket.create_connection(("127.0.0.1", served.port)) as connection:
        request = {"op": "ping"} if token is None else {"op": "ping", "token": token}
        connection.sendall(json.dumps(request).encode() + b"\n" + json.dumps({"op": "ping"}).encode() + b"\n")
        lines = lines_until_closed(connection)
    assert len(lines) == 1
    answer = json.loads(lines[0])
    assert not answer["ok"] and "token" in answer["error"]


def test_a_web_page_posting_a_json_line_runs_nothing(served):
    token = read_token(socket_path(served.repo))
    body = json.dumps({"op": "query", "queries": ["exfiltrate"], "mode": "semantic", "token": token}) + "\n"
    post = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}")
    embedded = len(served.embedded)
    with socket.create_connection(("127.0.0.1", served.port)) as connection:
        connection.sendall(post.encode())
        lines = lines_until_closed(connection)
    assert len(lines) == 1 and not json.loads(lines[0])["ok"]
    assert request_server(("127.0.0.1", served.port), {"op": "ping"}, token=token)["ok"]
    assert len(served.embedded) == embedded and "exfiltrate" not in served.embedded


def test_stop_is_refused_on_the_tcp_port(served):
    answer = request_server(("127.0.0.1", served.port), {"op": "stop"}, token=read_token(socket_path(served.repo)))
    assert not answer["ok"] and served.thread.is_alive()


# -- trust_remote_code -----------------------------------------------------------------------------


def test_a_request_cannot_turn_on_trust_remote_code(served):
    with unix_client(served.repo) as connection:
        refused = ask(connection, {**request_message(QueryRequest(["x"])), "trust_remote_code": True})
        assert not refused["ok"] and not refused["user_error"] and "--trust-remote-code" in refused["error"]
        assert ask(connection, {"op": "ping"})["ok"]  # a well-formed request: the connection stays open


def test_query_with_trust_remote_code_answers_in_process_when_the_server_was_started_without(served):
    result = codesearch("query", "retry failed uploads", "--mode", "lexical", "--trust-remote-code", "--verbose",
                        "--repo", str(served.repo))
    assert result.returncode == 0, result.stderr
    assert "answered in-process (the server declined: this server was started without --trust-remote-code" in result.stderr
    assert "retry_failed_uploads" in result.stdout


def test_a_server_started_with_trust_remote_code_honours_the_request(served):
    service = Service(load_embedder=lambda spec: StandInModel(spec), trust_remote_code=True)
    root = service.open(served.repo)
    line = json.dumps({**request_message(QueryRequest(["retry uploads"])), "trust_remote_code": True}).encode()
    response, go_on = Dispatcher(service, [root], threading.Event()).respond(root, line, over_tcp=False)
    assert response["ok"] and go_on


# -- bounds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("queries, complaint", [
    (["retry"] * (MAX_QUERIES_PER_REQUEST + 1), f"at most {MAX_QUERIES_PER_REQUEST}"),
    (["x" * (MAX_QUERY_CHARS + 1)], f"at most {MAX_QUERY_CHARS} are accepted"),
])
def test_too_many_or_too_long_queries_get_an_error_line(served, queries, complaint):
    with unix_client(served.repo) as connection:
        answer = ask(connection, request_message(QueryRequest(queries, mode="lexical")))
        assert not answer["ok"] and answer["user_error"] and complaint in answer["error"]
        assert ask(connection, {"op": "ping"})["ok"]


@pytest.mark.parametrize("line", [
    b"[" * 100_000,
    b'{"op": "query", "queries": ' + b"[" * 100_000,
    b"POST / HTTP/1.1",
    b'{"op": "format the disk"}',
    b'"just a string"',
])
def test_a_malformed_line_gets_one_error_line_then_the_connection_closes(served, line):
    with unix_client(served.repo) as connection:
        connection.sendall(line + b"\n" + b'{"op": "ping"}\n')
        lines = lines_until_closed(connection)
    assert len(lines) == 1 and not json.loads(lines[0])["ok"]
    assert request_server(socket_path(served.repo), {"op": "ping"})["ok"]


def test_an_answer_that_cannot_be_encoded_is_an_error_line():
    assert json.loads(encode_response({"ok": True, "code": "a lone \udcff surrogate"}))["code"].endswith("\udcff surrogate")
    failure = json.loads(encode_response({"ok": True, "score": object()}))
    assert not failure["ok"] and not failure["user_error"]


def test_a_hundred_clients_connecting_at_once_all_get_an_answer(tmp_path):
    address = tmp_path / "s.sock"
    server = bind_unix(address, Dispatcher(None, [tmp_path], threading.Event()), tmp_path)
    clients = []
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    try:
        for _ in range(100):  # before the server accepts any: they wait in the listen queue
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.settimeout(0.5)
            client.connect(str(address))
            clients.append(client)
        serving.start()
        answers = []
        for client in clients:
            client.settimeout(10)
            try:
                client.sendall(b'{"op": "ping"}\n')
            except BrokenPipeError:
                pass  # refused as busy, and closed, before it asked: the refusal is still there to read
            answers.append(json.loads(client.makefile("rb").readline()))
        busy = [answer for answer in answers if not answer["ok"]]
        assert len(answers) - len(busy) == MAX_CONNECTIONS  # each held its slot until it closed
        assert all("busy" in answer["error"] and not answer["user_error"] for answer in busy)
        for client in clients:
            client.close()
        deadline = time.monotonic() + 5
        while not request_server(address, {"op": "ping"})["ok"]:  # the slots come back
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        for client in clients:
            client.close()
        if serving.is_alive():
            server.shutdown()
        server.server_close()


def test_a_query_meeting_a_full_server_answers_in_process(served):
    held = [unix_client(served.repo) for _ in range(MAX_CONNECTIONS)]
    try:
        assert ask(held[-1], {"op": "ping"})["ok"]  # accepted in order: every slot is taken now
        result = codesearch("query", "retry failed uploads", "--mode", "lexical", "--verbose",
                            "--repo", str(served.repo))
    finally:
        for connection in held:
            connection.close()
    deadline = time.monotonic() + 5
    while not request_server(socket_path(served.repo), {"op": "ping"})["ok"]:  # a slot is free again
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert result.returncode == 0 and "retry_failed_uploads" in result.stdout
    assert f"answered in-process (the server declined: the server is busy: {MAX_CONNECTIONS}" in result.stderr


def test_a_long_queries_file_goes_through_the_server_in_batches(served, tmp_path, monkeypatch):
    count = MAX_QUERIES_PER_REQUEST + 44
    queries = tmp_path / "queries.txt"
    queries.write_text("".join(f"retry failed uploads {number}\n" for number in range(count - 2))
                       + "upload checksum " * (MAX_QUERY_CHARS // 8) + "\nread settings\n")
    args = ["query", "--queries-file", str(queries), "--json", "-k", "2", "--mode", "lexical", "--verbose",
            "--repo", str(served.repo)]
    warm = codesearch(*args)
    assert warm.returncode == 0 and "answered by the running server" in warm.stderr, warm.stderr
    monkeypatch.setenv("CODESEARCH_NO_SERVER", "1")
    cold = codesearch(*args)
    assert warm.stdout == cold.stdout and len(warm.stdout.splitlines()) == count


# -- a server that does not answer ---------------------------------------------------------------


class SlowModel(StandInModel):
    def encode_queries(self, queries):
        if queries != ["warm up"]:
            time.sleep(1.5)  # longer than the client's first-byte wait, set to 1 s below
        return super().encode_queries(queries)


def test_a_slow_answer_is_acknowledged_so_the_client_keeps_waiting(tmp_path, monkeypatch):
    import codesearch.server.client

    monkeypatch.setattr(codesearch.server.client, "FIRST_BYTE_SECONDS", 1.0)
    server = ThreadServer(indexed_repo(tmp_path / "repo"), model=SlowModel).ready()
    try:
        started = time.monotonic()
        answer = try_server(server.repo, QueryRequest(["retry failed uploads"], mode="semantic"))
        assert answer, answer.reason
        assert time.monotonic() - started >= 1.5 and "retry failed uploads" in server.embedded
        with unix_client(server.repo) as connection:  # a quick answer comes without the space
            connection.sendall(b'{"op": "ping"}\n')
            assert connection.makefile("rb").readline().startswith(b"{")
    finally:
        server.stop()


def test_a_server_that_never_answers_costs_two_seconds_not_minutes(tmp_path):
    repo = indexed_repo(tmp_path / "repo")
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # accepts (the kernel does) and never answers,
    silent.bind(str(socket_path(repo)))  # as a stopped (SIGSTOP) or hung server does
    silent.listen(8)
    with silent:
        started = time.monotonic()
        result = codesearch("query", "retry failed uploads", "--mode", "lexical", "--verbose", "--repo", str(repo))
        elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "answered in-process (the server did not answer within 2 s)" in result.stderr
    assert "retry_failed_uploads" in result.stdout
    assert elapsed < 8, elapsed  # about 3.5 s: the 2 s wait, then a lexical query in a fresh process
