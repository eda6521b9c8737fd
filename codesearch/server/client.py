"""The client of the warm query server (serve.py), which every `codesearch query` imports: where a
repository's server listens, the protocol, and asking it, or saying why the work is done in-process.

Protocol: one JSON object per line each way, any number of requests per connection.
  {"op": "query", "queries": [...], "k": 10, "mode": "hybrid", "languages": [], "include": [],
   "exclude": [], "model": null, "instruction": null, "trust_remote_code": false}
      -> {"ok": true, "repository": "/repo", "generation": 7,
          "answers": [{"query": "...", "results": [<present.hit_json fields> + code, context, id,
                                                     sources, exact_score]}]}
  {"op": "status"} -> {"ok": true, <engine.Engine.status fields>, "reopened": ..., "pid": ...}
  {"op": "ping"}   -> {"ok": true, "pid": ...}
  {"op": "stop"}   -> {"ok": true, "pid": ...}, then the server exits (Unix socket only)
  A failure is {"ok": false, "error": "one line", "user_error": true|false}; a user error is what the
  in-process path would have raised as CodesearchError, anything else sends the client back in-process.
  On the TCP port every request also carries "token": the secret in the file `<socket>.token`.

Where. The socket lives in the repository's `.codesearch/` (or, when that path is too long for a socket
address, in the user's runtime directory, else `codesearch-<uid>` in the temporary directory); either
folder is used only when it is a real folder owned by this user and closed to others, and the client
checks the server's uid (SO_PEERCRED) before a byte of a query is sent.

Liveness. A client that has no byte within 2 s (a stopped server, or one too stuck to run its
connection threads) answers in-process; once a byte came, it waits as long as the work takes, up to 5
minutes (the first query for a model the server has not loaded yet loads it; a busy server answers in
turn).

This module is on the path of every query: it imports nothing heavy, and neither does engine.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from codesearch import settings
from codesearch.source.discover import INDEX_DIR
from codesearch.query.engine import Answer, QueryRequest
from codesearch.errors import BadRequest, CodesearchError
from codesearch.limits import MAX_QUERIES_PER_REQUEST
from codesearch.trust import UntrustedPath, open_private, private_directory

SOCKET_NAME = "serve.sock"
MAX_SOCKET_PATH = 100  # bytes; sun_path holds 108 on Linux and 104 on macOS, with a NUL
MAX_REQUEST_BYTES = 1 << 20
MAX_ANSWER_BYTES = MAX_REQUEST_BYTES * 64
CONNECT_SECONDS = 1.0
FIRST_BYTE_SECONDS = 2.0  # silence this long means the server is stopped or hung
ANSWER_SECONDS = 300.0  # generous: the first query for a model the server has not loaded yet loads it
AUTOSTART_IDLE_SECONDS = 600  # a server a query started exits after this long without a request
NO_SERVER = "no server running for this repository"


# -- where the socket is ------------------------------------------------------------------------

def socket_path(root: Path) -> Path:
    """The socket of the server for the repository at `root` (its working tree root)."""
    candidate = Path(root) / INDEX_DIR / SOCKET_NAME
    if len(os.fsencode(str(candidate))) <= MAX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha256(os.fsencode(str(root))).hexdigest()[:20]
    return _runtime_dir() / f"{digest}.sock"


def lock_path(socket_file: Path) -> Path:
    return socket_file.with_name(socket_file.name + ".lock")


def token_path(socket_file: Path) -> Path:
    return socket_file.with_name(socket_file.name + ".token")


def _runtime_dir() -> Path:
    base = settings.runtime_dir()
    if base and Path(base).is_dir():
        return Path(base) / "codesearch"
    return Path(tempfile.gettempdir()) / f"codesearch-{os.getuid()}"


def check_socket_folder(root: Path, socket_file: Path, serving: bool) -> None:
    """Raise UntrustedPath unless the socket's folder is a real folder of this user's that others cannot write.

    Anyone who can write into it could plant a link as the lock file, or a server of their own. The
    runtime folder is made here when serving, and must be closed to others entirely; `.codesearch/`
    came with the index, whose own rules (trust.private_directory) apply.
    """
    folder = socket_file.parent
    if folder == Path(root) / INDEX_DIR:
        private_directory(folder)
    else:
        private_directory(folder, create=serving, strict=True)


def find_socket(path: str | os.PathLike) -> Path | None:
    """The socket of a server for the repository containing `path`, if its file exists.

    Walks up to the first directory holding `.git` (what git itself does, without importing it:
    this runs on every query and has to stay cheap); a miss just means in-process work. Raises
    UntrustedPath when the socket's folder could be someone else's.
    """
    directory = Path(path).absolute()
    if not directory.is_dir():
        return None  # let the in-process path explain what is wrong with it
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            found = socket_path(candidate)
            if not found.exists():
                return None
            check_socket_folder(candidate, found, serving=False)
            return found
    return None


def peer_problem(connection: socket.socket, expected_uid: int | None = None) -> str | None:
    """Why the process at the other end of a Unix socket is not to be trusted; None when it runs as us.

    Python exposes SO_PEERCRED on Linux only (getpeereid and LOCAL_PEERCRED are missing); elsewhere
    the check is skipped and the private folder and the socket's 0600 mode are the guard.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    expected = os.getuid() if expected_uid is None else expected_uid
    _pid, uid, _gid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return None if uid == expected else f"the other end of the socket runs as uid {uid}, not {expected}"


def read_token(socket_file: Path) -> str | None:
    """The secret a request on the server's TCP port must carry; None when it listens on none."""
    try:
        fd = open_private(token_path(socket_file), os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(256).decode("ascii", "replace").strip()


# -- the protocol: a request and its answer as JSON lines ------------------------------------------

def request_message(request: QueryRequest) -> dict:
    return {"op": "query", "queries": list(request.queries), "k": request.k, "mode": request.mode,
            "languages": list(request.languages), "include": list(request.include), "exclude": list(request.exclude),
            "model": request.model, "instruction": request.instruction, "trust_remote_code": request.trust_remote_code}


def request_from_message(data: dict) -> QueryRequest:
    """The request a message describes, its fields of the right JSON types (BadRequest names the one that
    is not); what they say is for QueryRequest.checked to judge."""
    queries = data.get("queries")
    if not isinstance(queries, list) or not all(isinstance(query, str) for query in queries):
        raise BadRequest("queries", "\"{name}\" must be a list of strings")
    if len(queries) > MAX_QUERIES_PER_REQUEST:  # a bound of the server's; a client sends more in batches
        raise BadRequest("queries", f"{len(queries)} queries in one request; at most {MAX_QUERIES_PER_REQUEST} "
                                    f"are accepted")
    trust = data.get("trust_remote_code", False)
    if not isinstance(trust, bool):
        raise BadRequest("trust_remote_code", "\"{name}\" must be true or false")
    return QueryRequest(queries, data.get("k", 10), data.get("mode", "hybrid"), _strings(data, "languages"),
                        _strings(data, "include"), _strings(data, "exclude"), _optional_string(data, "model"),
                        _optional_string(data, "instruction"), trust)


def _strings(data: dict, key: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRequest(key, "\"{name}\" must be a list of strings")
    return tuple(value)


def _optional_string(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(key, "\"{name}\" must be a string or null")
    return value


def result_json(hit) -> dict:
    """present.hit_json's fields plus what rebuilds the same Hit on the client (code, exact score)."""
    from codesearch.cli.present import hit_json

    chunk = hit.chunk
    return {**hit_json(hit), "code": chunk.text, "context": chunk.context, "id": chunk.id,
            "sources": hit.sources, "exact_score": hit.score}


def hit_from_json(result: dict):
    from codesearch.index.database import StoredChunk
    from codesearch.query.fuse import Hit

    chunk = StoredChunk(result["id"], result["path"], result["start_line"], result["end_line"], result["symbol"],
                        result["kind"], result["language"], result["context"], result["code"])
    return Hit(chunk, result["exact_score"], dict(result.get("sources") or {}))


# -- asking --------------------------------------------------------------------------------------

@dataclass
class NotServed:
    """Why no server answered, for --verbose; falsy, so `if served:` still asks "did a server answer"."""

    reason: str

    def __bool__(self) -> bool:
        return False


class NoAnswer(OSError):
    """The server was not asked, or did not answer; the message says why."""


def try_server(path: str | os.PathLike, request: QueryRequest) -> Answer | NotServed:
    """The answer of a running server for the repository at `path`, or why the work is done in-process.

    In-process when no server runs there (no socket, or a stale one), when CODESEARCH_NO_SERVER is
    set, when the socket's folder or the process behind it is not this user's, when the server does
    not answer within FIRST_BYTE_SECONDS, or when it failed in a way in-process work may not; a user
    error (an unknown model, an empty index) is raised as the same CodesearchError the in-process
    path raises.
    """
    if settings.server_disabled():
        return NotServed("CODESEARCH_NO_SERVER is set")
    try:
        found = find_socket(path)
    except UntrustedPath as error:
        return NotServed(str(error))
    if found is None:
        return NotServed(NO_SERVER)
    hits, generation = [], 0
    try:
        for batch in _batches(list(request.queries)):
            response = request_server(found, request_message(replace(request, queries=batch)))
            if not response.get("ok"):
                if response.get("user_error"):
                    raise CodesearchError(response.get("error", "the server refused the query"))
                return NotServed(f"the server declined: {response.get('error')}")
            hits += [[hit_from_json(result) for result in answer["results"]] for answer in response["answers"]]
            generation = int(response.get("generation", 0))
    except NoAnswer as error:
        return NotServed(str(error))
    except (ConnectionRefusedError, FileNotFoundError):
        return NotServed(f"{NO_SERVER} (a stale socket)")
    except OSError as error:
        return NotServed(f"the server could not be reached: {error.strerror or error}")
    except (ValueError, KeyError, TypeError) as error:
        return NotServed(f"the server's answer was unusable: {type(error).__name__}: {error}")
    return Answer(Path(response["repository"]), generation, hits)


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

    `token` is needed on the TCP port only (read_token); on the Unix socket the peer's uid is checked
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
    """Start `codesearch serve --idle-exit` for the repository at `root`, detached, unless
    CODESEARCH_NO_AUTOSTART (or CODESEARCH_NO_SERVER) is set; its pid, or None.

    Nothing waits for it: the query that started it was answered in-process, the next one finds its
    socket. Two queries starting one each at once are harmless: the second server finds the first's
    lock and exits. `-P` keeps the repository (the working directory) off the server's import path.
    """
    if settings.autostart_disabled():
        return None
    import subprocess
    import sys

    command = [sys.executable, "-P", "-m", "codesearch", "serve", "--repo", str(root),
               "--idle-exit", str(AUTOSTART_IDLE_SECONDS)]
    try:
        return subprocess.Popen(command, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True).pid
    except OSError:
        return None


def server_status(path: str | os.PathLike) -> dict:
    """Whether a server answers for the repository at `path` (its pid, and after how many idle seconds
    it exits, None for never), and whether a query would start one."""
    info = {"running": False, "pid": None, "idle_exit": None, "autostart": not settings.autostart_disabled()}
    try:
        found = find_socket(path)
        if found is not None:
            answer = request_server(found, {"op": "ping"}, timeout=FIRST_BYTE_SECONDS)
            if answer.get("ok"):
                info.update(running=True, pid=answer.get("pid"), idle_exit=answer.get("idle_exit"))
    except (OSError, ValueError, CodesearchError):
        pass
    return info


def stop_server(path: str | os.PathLike) -> int | None:
    """Ask the server for the repository at `path` to exit; its pid, or None when none was running."""
    found = find_socket(path)
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
