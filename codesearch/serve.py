"""A warm query server: one long-lived process keeps the models and the open indexes in memory and
answers `codesearch query` over a Unix domain socket, so a query costs milliseconds, not the seconds
it takes to import torch and load a model.

Protocol: one JSON object per line each way, any number of requests per connection.
  {"op": "query", "queries": [...], "k": 10, "mode": "hybrid", "languages": [], "include": [],
   "exclude": [], "model": null, "instruction": null, "trust_remote_code": false}
      -> {"ok": true, "repository": "/repo", "generation": 7,
          "answers": [{"query": "...", "results": [<present.hit_json fields> + code, context, id,
                                                     sources, exact_score]}]}
  {"op": "status"} -> {"ok": true, "repository": ..., "model": ..., "generation": ..., "chunks": ..., "pid": ...}
  {"op": "ping"}   -> {"ok": true, "pid": ...}
  {"op": "stop"}   -> {"ok": true, "pid": ...}, then the server exits (Unix socket only)
  A failure is {"ok": false, "error": "one line", "user_error": true|false}; a user error is what the
  in-process path would have raised as CodesearchError, anything else sends the client back in-process.
  On the TCP port every request also carries "token": the secret in the file `<socket>.token`.

Who may ask. The socket lives in the repository's `.codesearch/` (or, when that path is too long for a
socket address, in the user's runtime directory, else `codesearch-<uid>` in the temporary directory);
either folder is used only when it is a real folder owned by this user and closed to others, the
socket is 0600, and both ends check the other's uid (SO_PEERCRED) before a byte of a query is sent.
A TCP listener on 127.0.0.1 is opened only when a port is asked for; anyone on the machine can
connect to it, so each request must carry the token made at start-up (written 0600 beside the
socket, removed on exit). The first line that is not a well-formed request (not a JSON object, an
unknown op, a missing or wrong token) gets one error line and the connection is closed: the body of
an HTTP request a web page sends never runs. `trust_remote_code` is fixed when the server starts
(`serve --trust-remote-code`, then every query runs with it); a request asking for it from a server
started without it is refused with user_error false, so `codesearch query --trust-remote-code`
answers in-process, as it would with no server.

Bounds: a listen queue of 128; at most 64 connections at once per listener (one more gets an error
line and is closed); 256 queries per request and 10,000 characters per query (limits.py; the CLI
sends a longer queries file in batches); 1 MiB per request line. Every exception, a RecursionError
from a deeply nested line included, is answered with an error line.

Liveness: an answer that is not ready half a second after its request line was read is preceded by
a space (which JSON ignores), written then, while the work goes on; a quick answer goes out as it
always did, so an ordinary query pays nothing for this. A client that has no byte within 2 s (a
stopped process, or one too stuck to run its connection threads) answers in-process; once a byte
came, it waits as long as the work takes, up to 5 minutes (the first query for a model the server
has not loaded yet loads it; a busy server answers in turn).

One server per repository: a lock file next to the socket (never followed if it is a link) is held
for the server's life, so a second server refuses, and a socket file nobody holds the lock for is
stale and replaced. The index on disk is checked on every request (its generation, and the database
file's identity), so a refresh by `codesearch index` or the hook is picked up at once.

Nothing here forks: torch and faiss start OpenMP threads, and a forked child of such a process hangs.
SQLite connections belong to the thread that opened them, so all index and model work runs on one
worker thread, whatever thread a request arrives on.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import queue
import signal
import socket
import socketserver
import struct
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from codesearch.discover import INDEX_DIR
from codesearch.errors import CodesearchError
from codesearch.limits import MAX_QUERIES_PER_REQUEST, MAX_QUERY_CHARS
from codesearch.trust import UntrustedPath, open_private, private_directory, write_private_file

SOCKET_NAME = "serve.sock"
MAX_SOCKET_PATH = 100  # bytes; sun_path holds 108 on Linux and 104 on macOS, with a NUL
MAX_REQUEST_BYTES = 1 << 20
MAX_ANSWER_BYTES = MAX_REQUEST_BYTES * 64
MAX_CONNECTIONS = 64  # per listener, so strangers filling the TCP port leave the Unix socket free
LISTEN_BACKLOG = 128  # clients connecting at once wait in the queue instead of failing
CLIENT_IDLE_SECONDS = 60  # a connection that sends nothing for this long is closed
CONNECT_SECONDS = 1.0
FIRST_BYTE_SECONDS = 2.0  # silence this long means the server is stopped or hung
ACKNOWLEDGE_AFTER_SECONDS = 0.5  # a slower answer is preceded by a space, well inside the client's 2 s
ANSWER_SECONDS = 300.0  # generous: the first query for a model the server has not loaded yet loads it
OPS = ("query", "status", "ping", "stop")


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
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        return Path(base) / "codesearch"
    return Path(tempfile.gettempdir()) / f"codesearch-{os.getuid()}"


def _check_socket_folder(root: Path, socket_file: Path, serving: bool) -> None:
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
            _check_socket_folder(candidate, found, serving=False)
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


# -- what a query asks for and what comes back ---------------------------------------------------

@dataclass
class QueryRequest:
    queries: list[str]
    k: int = 10
    mode: str = "hybrid"
    languages: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    model: str | None = None
    instruction: str | None = None
    trust_remote_code: bool = False

    def as_json(self) -> dict:
        return {"op": "query", "queries": list(self.queries), "k": self.k, "mode": self.mode,
                "languages": list(self.languages), "include": list(self.include), "exclude": list(self.exclude),
                "model": self.model, "instruction": self.instruction, "trust_remote_code": self.trust_remote_code}

    @classmethod
    def from_json(cls, data: dict) -> "QueryRequest":
        """The request `data` describes; CodesearchError for anything out of bounds or of the wrong type."""
        from codesearch.search import MODES

        queries = data.get("queries")
        if not isinstance(queries, list) or not queries or not all(isinstance(q, str) and q.strip() for q in queries):
            raise CodesearchError("a query request needs a non-empty list of queries")
        if len(queries) > MAX_QUERIES_PER_REQUEST:
            raise CodesearchError(f"{len(queries)} queries in one request; at most {MAX_QUERIES_PER_REQUEST} are accepted")
        queries = [q.strip() for q in queries]
        longest = max(len(q) for q in queries)
        if longest > MAX_QUERY_CHARS:
            raise CodesearchError(f"a query is {longest} characters long; at most {MAX_QUERY_CHARS} are accepted")
        k, mode, trust = data.get("k", 10), data.get("mode", "hybrid"), data.get("trust_remote_code", False)
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise CodesearchError("-k must be a positive number of results")
        if mode not in MODES:
            raise CodesearchError(f"unknown --mode {mode!r:.40}; use one of: {', '.join(MODES)}")
        if not isinstance(trust, bool):
            raise CodesearchError("\"trust_remote_code\" must be true or false")
        return cls(queries, k, mode, _strings(data, "languages"), _strings(data, "include"),
                   _strings(data, "exclude"), _optional_string(data, "model"), _optional_string(data, "instruction"),
                   trust)

    @property
    def filters(self):
        from codesearch.search import Filters

        return Filters(tuple(self.languages), tuple(self.include), tuple(self.exclude))


def _strings(data: dict, key: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CodesearchError(f"\"{key}\" must be a list of strings")
    return tuple(value)


def _optional_string(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise CodesearchError(f"\"{key}\" must be a string or null")
    return value


@dataclass
class ServedAnswer:
    repository: Path
    generation: int
    hits: list  # one list of search.Hit per query, in the order asked


@dataclass
class NotServed:
    """Why no server answered, for --verbose; falsy, so `if served:` still asks "did a server answer"."""

    reason: str

    def __bool__(self) -> bool:
        return False


def result_json(hit) -> dict:
    """present.hit_json's fields plus what rebuilds the same Hit on the client (code, exact score)."""
    from codesearch.present import hit_json

    chunk = hit.chunk
    return {**hit_json(hit), "code": chunk.text, "context": chunk.context, "id": chunk.id,
            "sources": hit.sources, "exact_score": hit.score}


def hit_from_json(result: dict):
    from codesearch.search import Hit
    from codesearch.store import StoredChunk

    chunk = StoredChunk(result["id"], result["path"], result["start_line"], result["end_line"], result["symbol"],
                        result["kind"], result["language"], result["context"], result["code"])
    return Hit(chunk, result["exact_score"], dict(result.get("sources") or {}))


# -- the client ----------------------------------------------------------------------------------

class NoAnswer(OSError):
    """The server was not asked, or did not answer; the message says why."""


def try_server(path: str | os.PathLike, request: QueryRequest) -> ServedAnswer | NotServed:
    """The answer of a running server for the repository at `path`, or why the work is done in-process.

    In-process when no server runs there (no socket, or a stale one), when CODESEARCH_NO_SERVER is
    set, when the socket's folder or the process behind it is not this user's, when the server does
    not answer within FIRST_BYTE_SECONDS, or when it failed in a way in-process work may not; a user
    error (an unknown model, an empty index) is raised as the same CodesearchError the in-process
    path raises.
    """
    if os.environ.get("CODESEARCH_NO_SERVER", "").lower() in ("1", "true", "yes"):
        return NotServed("CODESEARCH_NO_SERVER is set")
    try:
        found = find_socket(path)
    except UntrustedPath as error:
        return NotServed(str(error))
    if found is None:
        return NotServed("no server running for this repository")
    hits, generation = [], 0
    try:
        for batch in _batches(request.queries):
            response = request_server(found, replace(request, queries=batch).as_json())
            if not response.get("ok"):
                if response.get("user_error"):
                    raise CodesearchError(response.get("error", "the server refused the query"))
                return NotServed(f"the server declined: {response.get('error')}")
            hits += [[hit_from_json(result) for result in answer["results"]] for answer in response["answers"]]
            generation = int(response.get("generation", 0))
    except NoAnswer as error:
        return NotServed(str(error))
    except (ConnectionRefusedError, FileNotFoundError):
        return NotServed("no server running for this repository (a stale socket)")
    except OSError as error:
        return NotServed(f"the server could not be reached: {error.strerror or error}")
    except (ValueError, KeyError, TypeError) as error:
        return NotServed(f"the server's answer was unusable: {type(error).__name__}: {error}")
    return ServedAnswer(Path(response["repository"]), generation, hits)


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


# -- the service: open indexes and loaded models -------------------------------------------------

class _Worker:
    """One daemon thread that runs every index and model call (SQLite connections are per thread)."""

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.busy = False
        threading.Thread(target=self._loop, name="codesearch-worker", daemon=True).start()

    def submit(self, function: Callable, *args) -> Future:
        future: Future = Future()
        self._jobs.put((future, function, args))
        return future

    def run(self, function: Callable, *args, waiting: Callable[[], object] | None = None):
        """function(*args) on the worker; `waiting()` is called once it has taken ACKNOWLEDGE_AFTER_SECONDS."""
        future = self.submit(function, *args)
        if waiting is not None and not wait([future], timeout=ACKNOWLEDGE_AFTER_SECONDS).done:
            waiting()
        return future.result()

    def _loop(self):
        while True:
            future, function, args = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            self.busy = True
            try:
                future.set_result(function(*args))
            except BaseException as error:  # handed to the waiting thread, which decides
                future.set_exception(error)
            finally:
                self.busy = False


class RemoteCodeRefused(Exception):
    """A request asked to run a model's own code on a server not started to allow it."""


@dataclass
class _OpenIndex:
    root: Path
    store: object
    identity: tuple[int, int]
    reloads: int = 0


@dataclass
class Service:
    """Keeps indexes open and models loaded between requests; safe to call from any thread."""

    load_embedder: Callable | None = None
    # Threads torch may use to embed a query on the CPU. One short query gains little from more, and
    # on a busy machine a multi-threaded one waits at every layer for a core: measured with minilm on
    # 2 loaded cores, 12 ms with one thread against about 1 s with two. Raise it for large models on
    # an idle machine; None leaves torch's default.
    threads: int | None = 1
    # Fixed when the server starts (`serve --trust-remote-code`): a request can never turn it on.
    trust_remote_code: bool = False
    _worker: _Worker = field(default_factory=_Worker)
    _indexes: dict = field(default_factory=dict)
    _models: dict = field(default_factory=dict)

    def open(self, path: str | os.PathLike) -> Path:
        """Open the index of the repository containing `path`; its root. Raises when there is none."""
        return self._worker.run(self._open, Path(path))

    def warm_up(self, root: Path) -> Future:
        """Load the index's model and vectors in the background, so the first query is fast too."""
        return self._worker.submit(self._warm_up, root)

    def query(self, root: Path, request: QueryRequest, waiting: Callable[[], object] | None = None) -> ServedAnswer:
        """The answer; `waiting()` is called if it takes more than ACKNOWLEDGE_AFTER_SECONDS."""
        if request.trust_remote_code and not self.trust_remote_code:
            raise RemoteCodeRefused("this server was started without --trust-remote-code and a request cannot "
                                    "turn it on; restart it with `codesearch serve --trust-remote-code`")
        return self._worker.run(self._query, root, request, waiting=waiting)

    def status(self, root: Path, count_stale: bool = False, waiting: Callable[[], object] | None = None) -> dict:
        return self._worker.run(self._status, root, count_stale, waiting=waiting)

    @property
    def busy(self) -> bool:
        return self._worker.busy

    # -- on the worker thread --------------------------------------------------------------------

    def _open(self, path: Path) -> Path:
        from codesearch.indexing import open_index

        root, store = open_index(path)
        root = root.resolve()
        if root in self._indexes:
            store.close()
        else:
            self._indexes[root] = _OpenIndex(root, store, _file_identity(store))
        return root

    def _fresh(self, root: Path) -> _OpenIndex:
        """The open index, reopened when the database file was replaced (a deleted and rebuilt index).

        A refresh in place needs nothing here: SQLite reads see every committed transaction, and the
        store reloads its FAISS file when the generation in the database moved on.
        """
        from codesearch.indexing import open_index

        opened = self._indexes[root]
        try:
            identity = _file_identity(opened.store)
        except OSError:
            identity = None
        if identity != opened.identity:
            _, store = open_index(root)  # raises "no index ..." when it is gone for good
            opened.store.close()
            opened.store, opened.identity, opened.reloads = store, _file_identity(store), opened.reloads + 1
        return opened

    def _warm_up(self, root: Path) -> None:
        manifest = self._fresh(root).store.manifest()
        if manifest.get("model"):
            self._query(root, QueryRequest(["warm up"], k=1))

    def _query(self, root: Path, request: QueryRequest) -> ServedAnswer:
        from codesearch.search import search

        store = self._fresh(root).store
        generation = store.generation
        manifest = store.manifest()
        if not manifest:
            raise CodesearchError(f"the index in {root} is empty; run `codesearch index`")
        spec = query_spec(manifest, request.model, request.instruction, self.trust_remote_code)
        vectors = [None] * len(request.queries)
        if request.mode != "lexical":
            vectors = list(self._embedder(spec).encode_queries(request.queries))
        filters = request.filters
        hits = [search(store, text, request.k, request.mode, vector, spec.dense_weight, filters)
                for text, vector in zip(request.queries, vectors)]
        return ServedAnswer(root, generation, hits)

    def _embedder(self, spec):
        # One loaded model per set of weights; a different query instruction shares them.
        key = replace(spec, query_instruction=None, code_query_instruction=None, dense_weight=0.0)
        embedder = self._models.get(key)
        if embedder is None:
            load = self.load_embedder
            if load is None:
                from codesearch.embed import load_embedder as load
            embedder = self._models[key] = load(spec)
            if self.threads and embedder.device == "cpu":
                import torch

                torch.set_num_threads(self.threads)  # here, on the one thread that runs the model
        return embedder if embedder.spec == spec else replace(embedder, spec=spec)

    def _status(self, root: Path, count_stale: bool) -> dict:
        opened = self._fresh(root)
        store = opened.store
        manifest = store.manifest()
        info = {"repository": str(root), "model": manifest.get("model"), "dimension": manifest.get("dimension"),
                "files": store.file_count(), "chunks": store.chunk_count(),
                "generation": manifest.get("generation"), "updated_at": manifest.get("updated_at"),
                "reopened": opened.reloads, "pid": os.getpid()}
        if count_stale:
            from codesearch.discover import discover_files

            known = store.file_fingerprints()
            current = {source.path: source.fingerprint for source in discover_files(root)}
            info["stale_files"] = (sum(1 for p, f in current.items() if known.get(p) != f)
                                   + sum(1 for p in known if p not in current))
        return info


def query_spec(manifest: dict, requested: str | None, instruction: str | None, trust_remote_code: bool):
    """The model spec to embed queries with: exactly what `codesearch query` in-process would use."""
    from codesearch.indexing import query_model

    return query_model(manifest, requested, instruction, trust_remote_code)


def _file_identity(store) -> tuple[int, int]:
    from codesearch.store import DATABASE_NAME

    status = os.stat(store.directory / DATABASE_NAME)
    return status.st_dev, status.st_ino


# -- the server ----------------------------------------------------------------------------------

def _error(message: str, user_error: bool) -> dict:
    return {"ok": False, "error": message, "user_error": user_error}


def _encoded(response: dict) -> bytes:
    """One answer line. ASCII escapes keep any text encodable (a lone surrogate from a file name);
    an answer that cannot be encoded at all becomes an error line, not a silently closed connection."""
    try:
        return json.dumps(response).encode("ascii") + b"\n"
    except (TypeError, ValueError, RecursionError) as error:
        failure = _error(f"internal error: the answer could not be encoded ({type(error).__name__})", False)
        return json.dumps(failure).encode("ascii") + b"\n"


class _Malformed(Exception):
    """Not a request this server takes: answered once, then the connection is closed."""


class _Handler(socketserver.StreamRequestHandler):
    timeout = CLIENT_IDLE_SECONDS

    def handle(self):
        while True:
            try:
                line = self.rfile.readline(MAX_REQUEST_BYTES + 1)
            except (OSError, ValueError):
                return
            if not line:
                return
            if len(line) > MAX_REQUEST_BYTES:
                response, go_on = _error("request too large", user_error=True), False
            else:
                response, go_on = self.server.dispatcher.respond(self.server.root, line, self.server.over_tcp,
                                                                 waiting=lambda: self._write(b" "))
            if not self._write(_encoded(response)) or not go_on:
                return

    def _write(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            return True
        except OSError:
            return False


class _Bounded:
    """What both listeners share: a deep accept queue, and at most MAX_CONNECTIONS handled at once."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, *args, **kwargs):
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def refusal(self, connection: socket.socket) -> str | None:
        return None

    def process_request(self, request, client_address):
        refusal = self.refusal(request)
        if refusal is None and not self.slots.acquire(blocking=False):
            refusal = f"the server is busy: {MAX_CONNECTIONS} connections are open"
        if refusal is not None:
            try:
                request.sendall(_encoded(_error(refusal, user_error=False)))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        print(f"codesearch: a connection failed: {sys.exc_info()[1]!r}", file=sys.stderr)


class _UnixServer(_Bounded, socketserver.ThreadingUnixStreamServer):
    def refusal(self, connection: socket.socket) -> str | None:
        problem = peer_problem(connection)  # the socket is 0600 already; this holds if its mode is ever changed
        return f"this server answers its owner only: {problem}" if problem else None


class _TcpServer(_Bounded, socketserver.ThreadingTCPServer):
    allow_reuse_address = True


class Dispatcher:
    """Turns request lines into response objects, for every listener of one server process."""

    def __init__(self, service: Service, roots: list[Path], stop: threading.Event, token: str | None = None):
        self.service, self.roots, self.stop, self.token = service, roots, stop, token

    def respond(self, root: Path | None, line: bytes, over_tcp: bool,
                waiting: Callable[[], object] | None = None) -> tuple[dict, bool]:
        """The response to one request line, and whether the connection may carry another request.

        `waiting()` is called when the answer has taken ACKNOWLEDGE_AFTER_SECONDS (see Liveness).
        """
        try:
            message = self._well_formed(line, over_tcp)
        except _Malformed as error:
            return _error(str(error), user_error=True), False
        try:
            return self._answer(root, message, over_tcp, waiting), True
        except CodesearchError as error:
            return _error(str(error), user_error=True), True
        except RemoteCodeRefused as error:  # the client may run the model's code in its own process
            return _error(str(error), user_error=False), True
        except Exception as error:  # the client falls back to in-process work
            return _error(f"internal error: {type(error).__name__}: {error}", user_error=False), True

    def _well_formed(self, line: bytes, over_tcp: bool) -> dict:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: a line of thousands of nested brackets
            message = None
        if not isinstance(message, dict):
            raise _Malformed("a request is one JSON object per line")
        op = message.get("op")
        if op not in OPS:
            named = f"unknown op {op!r:.40}" if isinstance(op, str) else "a request needs an \"op\""
            raise _Malformed(f"{named}; use query, status, ping or stop")
        if over_tcp and not self._carries_token(message.get("token")):
            raise _Malformed("a request on the TCP port needs the server's \"token\" "
                             "(in the file ending .token beside its socket)")
        return message

    def _carries_token(self, given) -> bool:
        return (isinstance(given, str) and self.token is not None
                and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self.token.encode("ascii")))

    def _answer(self, root: Path | None, message: dict, over_tcp: bool, waiting) -> dict:
        op = message["op"]
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "stop":
            if over_tcp:
                raise CodesearchError("stop is only accepted on the Unix socket")
            self.stop.set()
            return {"ok": True, "pid": os.getpid()}
        root = root or self._root_named(message.get("repo"))
        if op == "status":
            return {"ok": True, **self.service.status(root, bool(message.get("stale")), waiting)}
        request = QueryRequest.from_json(message)
        answer = self.service.query(root, request, waiting)
        return {"ok": True, "repository": str(answer.repository), "generation": answer.generation,
                "answers": [{"query": text, "results": [result_json(hit) for hit in hits]}
                            for text, hits in zip(request.queries, answer.hits)]}

    def _root_named(self, repo) -> Path:
        if repo is None and len(self.roots) == 1:
            return self.roots[0]
        if repo is None:
            raise CodesearchError("this server serves several repositories; name one with \"repo\"")
        if not isinstance(repo, str):
            raise CodesearchError("\"repo\" must be a path")
        wanted = Path(repo).resolve()
        for root in self.roots:
            if wanted == root or root in wanted.parents:
                return root
        raise CodesearchError(f"this server does not serve {repo}")


@dataclass
class _Listener:
    root: Path
    socket_file: Path
    lock_fd: int
    server: _UnixServer | None = None


def serve_forever(paths: list[Path], port: int | None = None, notice: Callable[[str], None] = lambda _: None,
                  service: Service | None = None) -> None:
    """Serve the repositories containing `paths` until SIGTERM, SIGINT or a stop request."""
    service = service or Service()
    stop = threading.Event()
    # Signal handlers can only be set from the main thread; tests run a server on another one.
    own_process = threading.current_thread() is threading.main_thread()
    roots: list[Path] = []
    for path in paths:
        root = service.open(path)
        if root not in roots:
            roots.append(root)
    import secrets  # here, not at the top: the client, on every query, needs none of its 3 ms of imports

    token = secrets.token_urlsafe(32) if port is not None else None
    listeners = []
    tcp = None
    try:
        for root in roots:
            listeners.append(_claim(root, token))
        dispatcher = Dispatcher(service, roots, stop, token)
        for listener in listeners:
            listener.server = _bind_unix(listener.socket_file, dispatcher, listener.root)
            threading.Thread(target=listener.server.serve_forever, name=f"serve {listener.root}", daemon=True).start()
        if port is not None:
            tcp = _bind_tcp(port, dispatcher)
            threading.Thread(target=tcp.serve_forever, name="serve tcp", daemon=True).start()
        previous = {signum: signal.signal(signum, lambda *_: stop.set())
                    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)} if own_process else {}
        for listener in listeners:
            notice(f"serving {listener.root} on {listener.socket_file}")
        if tcp is not None:
            notice(f"also listening on 127.0.0.1:{tcp.server_address[1]}; each request there needs the token "
                   f"in {token_path(listeners[0].socket_file)}")
        for root in roots:
            service.warm_up(root).add_done_callback(lambda done, root=root: _warmed(done, root, notice))
        while not stop.wait(0.5):  # a timeout, so the main thread runs the signal handlers
            gone = [listener.socket_file for listener in listeners if not listener.socket_file.exists()]
            if gone:  # the index folder was deleted (git clean -x): nobody can reach us any more
                notice(f"{gone[0]} was removed; stopping")
                break
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    finally:
        for server in [tcp] + [listener.server for listener in listeners]:
            if server is not None:
                server.shutdown()
                server.server_close()
        for listener in listeners:
            _release(listener)
    notice("stopped")
    if service.busy and own_process:
        # The worker is still loading a model; waiting for it would only delay the exit.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _warmed(done: Future, root: Path, notice: Callable[[str], None]) -> None:
    error = done.exception()
    if error is None:
        notice(f"ready: {root}")
    else:
        notice(f"could not warm up {root}: {error}")


def _claim(root: Path, token: str | None) -> _Listener:
    """Take the repository's server lock, or refuse; a socket file left by a dead server is removed."""
    socket_file = socket_path(root)
    _check_socket_folder(root, socket_file, serving=True)
    lock_file = lock_path(socket_file)
    try:
        fd = open_private(lock_file, os.O_RDWR | os.O_CREAT)  # a link planted as the lock file is refused
    except OSError as error:
        raise CodesearchError(f"cannot open {lock_file}: {error.strerror or error}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise CodesearchError(
            f"a codesearch server{f' (pid {owner})' if owner else ''} is already serving {root}; "
            f"stop it with `codesearch serve --stop --repo {root}`") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    listener = _Listener(root, socket_file, fd)
    try:
        socket_file.unlink(missing_ok=True)  # we hold the lock, so any socket or token file here is stale
        token_path(socket_file).unlink(missing_ok=True)
        if token is not None:
            write_private_file(token_path(socket_file), token.encode("ascii"))
    except OSError as error:
        _release(listener)
        raise CodesearchError(f"cannot prepare {socket_file}: {error.strerror or error}") from None
    return listener


def _release(listener: _Listener) -> None:
    if listener.server is not None:
        listener.socket_file.unlink(missing_ok=True)
    token_path(listener.socket_file).unlink(missing_ok=True)
    os.ftruncate(listener.lock_fd, 0)
    os.close(listener.lock_fd)


def _bind_unix(socket_file: Path, dispatcher: Dispatcher, root: Path) -> _UnixServer:
    previous = os.umask(0o177)  # the socket is created 0600: only its owner may ask
    try:
        server = _UnixServer(str(socket_file), _Handler)
    except OSError as error:
        raise CodesearchError(f"cannot listen on {socket_file}: {error.strerror or error}") from None
    finally:
        os.umask(previous)
    server.dispatcher, server.root, server.over_tcp = dispatcher, root, False
    return server


def _bind_tcp(port: int, dispatcher: Dispatcher) -> _TcpServer:
    try:
        server = _TcpServer(("127.0.0.1", port), _Handler)  # loopback only, never other interfaces
    except OSError as error:
        raise CodesearchError(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}") from None
    server.dispatcher, server.root, server.over_tcp = dispatcher, None, True
    return server
