"""The client of the warm query server (serve.py), which every `codesearch query` imports: asking the
server of a repository (over protocol.py's wire), or saying why the work is done in-process; starting
one for the next queries, stopping one, and whether one runs.

Liveness. A client that has no byte within 2 s (a stopped server, or one too stuck to run its
connection threads) answers in-process; once a byte came, it waits as long as the work takes, up to 5
minutes (the first query for a model the server has not loaded yet loads it; a busy server answers in
turn).

This module is on the path of every query: it imports nothing heavy.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from codesearch import settings
from codesearch.errors import CodesearchError
from codesearch.query.api import Answer, QueryRequest
from codesearch.server.protocol import (MAX_QUERIES_PER_REQUEST, MAX_REQUEST_BYTES, find_socket, find_user_socket,
                                        freshness_from_message, hits_from_message, peer_problem, request_message)
from codesearch.trust import UntrustedPath

MAX_ANSWER_BYTES = MAX_REQUEST_BYTES * 64
CONNECT_SECONDS = 1.0
FIRST_BYTE_SECONDS = 2.0  # silence this long means the server is stopped or hung
ANSWER_SECONDS = 300.0  # generous: the first query for a model the server has not loaded yet loads it
AUTOSTART_IDLE_SECONDS = 600  # a server a query started exits after this long without a request
NO_SERVER = "no server running for this repository"


# -- asking --------------------------------------------------------------------------------------

@dataclass
class NotServed:
    """Why no server answered, for --verbose; falsy, so `if served:` still asks "did a server answer"."""

    reason: str

    def __bool__(self) -> bool:
        return False


class NoAnswer(OSError):
    """The server was not asked, or did not answer; the message says why."""


def try_server(path: str | os.PathLike, request: QueryRequest, pictures: dict | None = None) -> Answer | NotServed:
    """The answer of a running server for the repository at `path`, or why the work is done in-process.

    In-process when no server runs there (no socket, or a stale one), when CODESEARCH_NO_SERVER is
    set, when the socket's folder or the process behind it is not this user's, when the server does
    not answer within FIRST_BYTE_SECONDS, or when it failed in a way in-process work may not; a user
    error (an unknown model, an empty index) is raised as the same CodesearchError the in-process
    path raises. `pictures` asks about pictures (protocol.picture_fields).
    """
    if settings.server_disabled():
        return NotServed("CODESEARCH_NO_SERVER is set")
    naming = {}
    try:
        found = find_socket(path)
        if found is None:  # the user's own server, when one runs, serves every repository
            found, naming = find_user_socket(), {"repo": str(Path(path).absolute())}
    except UntrustedPath as error:
        return NotServed(str(error))
    if found is None:
        return NotServed(NO_SERVER)
    hits, generation = [], 0
    try:
        for batch in _batches(list(request.queries)):
            response = request_server(found, {**request_message(replace(request, queries=batch), pictures), **naming})
            if not response.get("ok"):
                if response.get("user_error"):
                    raise CodesearchError(response.get("error", "the server refused the query"))
                return NotServed(f"the server declined: {response.get('error')}")
            hits += hits_from_message(response)
            generation = int(response.get("generation", 0))
    except NoAnswer as error:
        return NotServed(str(error))
    except (ConnectionRefusedError, FileNotFoundError):
        return NotServed(f"{NO_SERVER} (a stale socket)")
    except OSError as error:
        return NotServed(f"the server could not be reached: {error.strerror or error}")
    except (ValueError, KeyError, TypeError) as error:
        return NotServed(f"the server's answer was unusable: {type(error).__name__}: {error}")
    return Answer(Path(response["repository"]), generation, hits, freshness=freshness_from_message(response),
                  embedded=float(response.get("embedded", 1.0)))


def _batches(queries: list[str]) -> Iterator[list[str]]:
    """The queries in runs the server accepts: few enough, and well inside its line limit."""
    batch, size = [], 0
    for text in queries:
        cost = len(json.dumps(text)) + 2
        if batch and (len(batch) == MAX_QUERIES_PER_REQUEST or size + cost > MAX_REQUEST_BYTES // 2):
            yield batch
            batch, size = [], 0
        batch.append(text)
        size += cost
    if batch:
        yield batch


def request_server(address: Path | tuple[str, int], message: dict, timeout: float = ANSWER_SECONDS,
                   token: str | None = None) -> dict:
    """Send one request, return the decoded answer; OSError when nobody (or nobody trusted) answers.

    `token` is needed on the TCP port only (protocol.read_token); on the Unix socket the peer's uid is checked
    instead, before the request is sent.
    """
    family = socket.AF_UNIX if isinstance(address, Path) else socket.AF_INET
    if token is not None:
        message = {**message, "token": token}
    with socket.socket(family, socket.SOCK_STREAM) as connection:
        connection.settimeout(CONNECT_SECONDS)
        connection.connect(str(address) if family == socket.AF_UNIX else address)
        problem = peer_problem(connection) if family == socket.AF_UNIX else None
        if problem:
            raise NoAnswer(f"not asking the server at {address}: {problem}")
        connection.settimeout(FIRST_BYTE_SECONDS)
        try:
            try:
                connection.sendall(json.dumps(message).encode("ascii") + b"\n")
            except BrokenPipeError:
                pass  # refused (busy) and closed before it read the request: the refusal is there to read
            first = connection.recv(1)
        except TimeoutError:
            raise NoAnswer(f"the server did not answer within {FIRST_BYTE_SECONDS:g} s") from None
        connection.settimeout(timeout)
        with connection.makefile("rb") as reader:
            line = first + reader.readline(MAX_ANSWER_BYTES)
    if not line.strip():
        raise ConnectionError("the server closed the connection without answering")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise ValueError("the server's answer is not a JSON object")
    return answer


def start_server(root: Path) -> int | None:
    """Start the user's own server (`codesearch serve --user --idle-exit`), detached, unless
    CODESEARCH_NO_AUTOSTART (or CODESEARCH_NO_SERVER) is set; its pid, or None. One serves every
    repository the user queries: each model is loaded once, and an index is opened when first asked for.

    Nothing waits for it: the query that started it was answered in-process, the next one finds its
    socket. Two queries starting one each at once are harmless: the second server finds the first's
    lock and exits. `-P` keeps the repository (the working directory) off the server's import path.
    """
    if settings.autostart_disabled():
        return None
    import subprocess
    import sys

    command = [sys.executable, "-P", "-m", "codesearch", "serve", "--user", "--idle-exit", str(AUTOSTART_IDLE_SECONDS)]
    try:
        return subprocess.Popen(command, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True).pid
    except OSError:
        return None


def server_status(path: str | os.PathLike) -> dict:
    """Whether a server answers for the repository at `path` (its pid, and after how many idle seconds
    it exits, None for never), and whether a query would start one."""
    info = {"running": False, "pid": None, "idle_exit": None, "autostart": not settings.autostart_disabled(),
            "shared": False}
    try:
        found, shared = find_socket(path), False
        if found is None:
            found, shared = find_user_socket(), True
        if found is not None:
            answer = request_server(found, {"op": "ping"}, timeout=FIRST_BYTE_SECONDS)
            if answer.get("ok"):
                info.update(running=True, pid=answer.get("pid"), idle_exit=answer.get("idle_exit"), shared=shared)
    except (OSError, ValueError, CodesearchError):
        pass
    return info


def stop_server(path: str | os.PathLike | None) -> int | None:
    """Ask the server for the repository at `path` (None: the user's own server) to exit; its pid, or None
    when none was running."""
    found = find_socket(path) if path is not None else find_user_socket()
    if found is None:
        return None
    try:
        pid = int(request_server(found, {"op": "stop"}, timeout=10).get("pid", 0)) or None
    except (OSError, ValueError):
        return None
    for _ in range(100):  # the server removes its socket on the way out
        if not found.exists():
            break
        time.sleep(0.05)
    return pid
