"""The wire between the warm query server (serve.py) and its clients (client.py): where a repository's
server listens, who may be trusted at either end, and a request and its answer as JSON lines.

Protocol: one JSON object per line each way, any number of requests per connection.
  {"op": "query", "queries": [...], "k": 10, "mode": "hybrid", "languages": [], "include": [],
   "exclude": [], "model": null, "instruction": null, "trust_remote_code": false}
      -> {"ok": true, "repository": "/repo", "generation": 7, "stale_files": 0, "stale_reason": "",
          "embedded": 1.0, "answers": [{"query": "...", "results": [query.api.hit_json(hit, exact=True), ...]}]}
  {"op": "status"} -> {"ok": true, <engine.Engine.status fields>, "reopened": ..., "pid": ...}
  {"op": "ping"}   -> {"ok": true, "pid": ...}
  {"op": "stop"}   -> {"ok": true, "pid": ...}, then the server exits (Unix socket only)
  A failure is {"ok": false, "error": "one line", "user_error": true|false}; a user error is what the
  in-process path would have raised as CodesearchError, anything else sends the client back in-process.
  On the TCP port every request also carries "token": the secret in the file `<socket>.token`.

Where. The socket lives in the repository's `.codesearch/` (or, when that path is too long for a socket
address, in the user's runtime directory, else `codesearch-<uid>` in the temporary directory); either
folder is used only when it is a real folder owned by this user and closed to others, and the client
checks the server's uid (SO_PEERCRED) before a byte of a query is sent. The user's own server (`serve
--user`, what a query starts) listens on `user.sock` in that runtime folder; its requests name their
repository with "repo", and it opens that index on demand.

Every query imports this module: it imports nothing heavy.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import tempfile
from pathlib import Path

from codesearch import settings
from codesearch.errors import BadRequest
from codesearch.indexer.freshness import Freshness
from codesearch.query.api import PER_FILE, Answer, Hit, QueryRequest, hit_from_json, hit_json
from codesearch.source.discover import INDEX_DIR
from codesearch.trust import open_private, private_directory

SOCKET_NAME = "serve.sock"
USER_SOCKET_NAME = "user.sock"
MAX_SOCKET_PATH = 100  # bytes; sun_path holds 108 on Linux and 104 on macOS, with a NUL
MAX_REQUEST_BYTES = 1 << 20
MAX_QUERIES_PER_REQUEST = 256  # one server request; the client sends a longer --queries-file in batches


# -- where the socket is ------------------------------------------------------------------------

def socket_path(root: Path) -> Path:
    """The socket of the server for the repository at `root` (its working tree root)."""
    candidate = Path(root) / INDEX_DIR / SOCKET_NAME
    if len(os.fsencode(str(candidate))) <= MAX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha256(os.fsencode(str(root))).hexdigest()[:20]
    return _runtime_dir() / f"{digest}.sock"


def user_socket_path() -> Path:
    """The socket of the user's own server (`serve --user`), which opens any of the user's indexes on demand."""
    return _runtime_dir() / USER_SOCKET_NAME


def find_user_socket() -> Path | None:
    """The user's server's socket, if its file exists; UntrustedPath when its folder could be someone else's."""
    found = user_socket_path()
    if not found.exists():
        return None
    private_directory(found.parent, strict=True)
    return found


def lock_path(socket_file: Path) -> Path:
    return socket_file.with_name(socket_file.name + ".lock")


def token_path(socket_file: Path) -> Path:
    return socket_file.with_name(socket_file.name + ".token")


def _runtime_dir() -> Path:
    base = settings.runtime_dir()
    if base and Path(base).is_dir():
        return Path(base) / "codesearch"
    return Path(tempfile.gettempdir()) / f"codesearch-{os.getuid()}"


def check_socket_folder(root: Path | None, socket_file: Path, serving: bool) -> None:
    """Raise UntrustedPath unless the socket's folder is a real folder of this user's that others cannot write.

    Anyone who can write into it could plant a link as the lock file, or a server of their own. The
    runtime folder is made here when serving, and must be closed to others entirely; `.codesearch/`
    came with the index, whose own rules (trust.private_directory) apply.
    """
    folder = socket_file.parent
    if root is not None and folder == Path(root) / INDEX_DIR:
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


# -- a request and its answer as messages -----------------------------------------------------------

def request_message(request: QueryRequest, pictures: dict | None = None) -> dict:
    """A query request; `pictures` ({"kind", "image", "words"}, see picture_fields) asks about pictures."""
    return {"op": "query", "queries": list(request.queries), "k": request.k, "mode": request.mode,
            "languages": list(request.languages), "include": list(request.include), "exclude": list(request.exclude),
            "model": request.model, "instruction": request.instruction, "trust_remote_code": request.trust_remote_code,
            "per_file": request.per_file, **(pictures or {})}


def picture_fields(data: dict) -> tuple[str, Path | None, bool] | None:
    """(kind, image, whether the queries are words) of a request about pictures; None for one about code. The
    image is a path the asking user named, absolute (the server runs as that user and reads it as they would);
    without words, the queries only stand for the one image."""
    kind, image, words = data.get("kind", "code"), data.get("image"), data.get("words", True)
    if not isinstance(kind, str):
        raise BadRequest("kind", "\"{name}\" must be a string")
    if image is not None and (not isinstance(image, str) or not Path(image).is_absolute()):
        raise BadRequest("image", "\"{name}\" must be an absolute path")
    if not isinstance(words, bool) or (not words and image is None):
        raise BadRequest("words", "\"{name}\" must be true or false, and false only with an image")
    return None if kind == "code" and image is None else (kind, Path(image) if image else None, words)


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
                        _optional_string(data, "instruction"), trust, data.get("per_file", PER_FILE))


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


def answer_message(queries, answer: Answer) -> dict:
    """The server's answer to a query request: each hit exactly, so the client rebuilds the same Hit."""
    return {"ok": True, "repository": str(answer.repository), "generation": answer.generation,
            "stale_files": answer.freshness.stale_files, "stale_reason": answer.freshness.reason,
            "embedded": answer.embedded,
            "answers": [{"query": text, "results": [hit_json(hit, exact=True) for hit in hits]}
                        for text, hits in zip(queries, answer.hits)]}


def freshness_from_message(message: dict) -> Freshness:
    """How the index the answer came from stood against the working tree, from an answer_message."""
    return Freshness(int(message.get("stale_files") or 0), reason=str(message.get("stale_reason") or ""))


def hits_from_message(message: dict) -> list[list[Hit]]:
    """Each query's hits, from an answer_message."""
    return [[hit_from_json(result) for result in answer["results"]] for answer in message["answers"]]
