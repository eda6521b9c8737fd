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

The socket lives in the repository's `.codesearch/` (or the user's runtime directory when that path is
too long for a socket address), readable by its owner only; a TCP listener on 127.0.0.1 is opened only
when a port is asked for. One server per repository: a lock file next to the socket is held for the
server's life, so a second server refuses, and a socket file nobody holds the lock for is stale and
replaced. The index on disk is checked on every request (its generation, and the database file's
identity), so a refresh by `codesearch index` or the hook is picked up at once.

Nothing here forks: torch and faiss start OpenMP threads, and a forked child of such a process hangs.
SQLite connections belong to the thread that opened them, so all index and model work runs on one
worker thread, whatever thread a request arrives on.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import queue
import signal
import socket
import socketserver
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from codesearch.discover import INDEX_DIR
from codesearch.errors import CodesearchError

SOCKET_NAME = "serve.sock"
MAX_SOCKET_PATH = 100  # bytes; sun_path holds 108 on Linux and 104 on macOS, with a NUL
MAX_REQUEST_BYTES = 1 << 20
CLIENT_IDLE_SECONDS = 60  # a connection that sends nothing for this long is closed
CONNECT_SECONDS = 1.0
ANSWER_SECONDS = 300.0  # generous: the first query for a model the server has not loaded yet loads it


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


def _runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        return Path(base) / "codesearch"
    return Path(tempfile.gettempdir()) / f"codesearch-{os.getuid()}"


def find_socket(path: str | os.PathLike) -> Path | None:
    """The socket of a server for the repository containing `path`, if its file exists.

    Walks up to the first directory holding `.git` (what git itself does, without importing it:
    this runs on every query and has to stay cheap); a miss just means in-process work.
    """
    directory = Path(path).absolute()
    if not directory.is_dir():
        return None  # let the in-process path explain what is wrong with it
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            found = socket_path(candidate)
            return found if found.exists() else None
    return None


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
        queries = data.get("queries")
        if not isinstance(queries, list) or not queries or not all(isinstance(q, str) and q.strip() for q in queries):
            raise CodesearchError("a query request needs a non-empty list of queries")
        request = cls([q.strip() for q in queries], int(data.get("k", 10)), str(data.get("mode", "hybrid")),
                      tuple(data.get("languages") or ()), tuple(data.get("include") or ()),
                      tuple(data.get("exclude") or ()), data.get("model"), data.get("instruction"),
                      bool(data.get("trust_remote_code", False)))
        from codesearch.search import MODES

        if request.mode not in MODES:
            raise CodesearchError(f"unknown --mode {request.mode!r}; use one of: {', '.join(MODES)}")
        if request.k <= 0:
            raise CodesearchError("-k must be a positive number of results")
        return request

    @property
    def filters(self):
        from codesearch.search import Filters

        return Filters(tuple(self.languages), tuple(self.include), tuple(self.exclude))


@dataclass
class ServedAnswer:
    repository: Path
    generation: int
    hits: list  # one list of search.Hit per query, in the order asked


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

def try_server(path: str | os.PathLike, request: QueryRequest) -> ServedAnswer | None:
    """The answer of a running server for the repository at `path`, or None to do the work in-process.

    None when no server runs there (no socket, or a stale one), when CODESEARCH_NO_SERVER is set, or
    when the server failed in a way in-process work may not; a user error (an unknown model, an empty
    index) is raised as the same CodesearchError the in-process path raises.
    """
    if os.environ.get("CODESEARCH_NO_SERVER", "").lower() in ("1", "true", "yes"):
        return None
    found = find_socket(path)
    if found is None:
        return None
    try:
        response = request_server(found, request.as_json())
    except (OSError, ValueError):
        return None
    if not response.get("ok"):
        if response.get("user_error"):
            raise CodesearchError(response.get("error", "the server refused the query"))
        return None
    return ServedAnswer(Path(response["repository"]), int(response.get("generation", 0)),
                        [[hit_from_json(result) for result in answer["results"]] for answer in response["answers"]])


def request_server(address: Path | tuple[str, int], message: dict, timeout: float = ANSWER_SECONDS) -> dict:
    """Send one request, return the decoded answer; OSError when nobody answers."""
    family = socket.AF_UNIX if isinstance(address, Path) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as connection:
        connection.settimeout(CONNECT_SECONDS)
        connection.connect(str(address) if family == socket.AF_UNIX else address)
        connection.settimeout(timeout)
        connection.sendall(json.dumps(message).encode("utf-8") + b"\n")
        with connection.makefile("rb") as reader:
            line = reader.readline(MAX_REQUEST_BYTES * 64)
    if not line:
        raise ConnectionError("the server closed the connection without answering")
    return json.loads(line)


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

    def run(self, function: Callable, *args):
        return self.submit(function, *args).result()

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
    _worker: _Worker = field(default_factory=_Worker)
    _indexes: dict = field(default_factory=dict)
    _models: dict = field(default_factory=dict)

    def open(self, path: str | os.PathLike) -> Path:
        """Open the index of the repository containing `path`; its root. Raises when there is none."""
        return self._worker.run(self._open, Path(path))

    def warm_up(self, root: Path) -> Future:
        """Load the index's model and vectors in the background, so the first query is fast too."""
        return self._worker.submit(self._warm_up, root)

    def query(self, root: Path, request: QueryRequest) -> ServedAnswer:
        return self._worker.run(self._query, root, request)

    def status(self, root: Path, count_stale: bool = False) -> dict:
        return self._worker.run(self._status, root, count_stale)

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
        spec = query_spec(manifest, request.model, request.instruction, request.trust_remote_code)
        vectors = [None] * len(request.queries)
        if request.mode != "lexical":
            vectors = list(self._embedder(spec).encode_queries(request.queries))
        filters = request.filters
        hits = [search(store, text, request.k, request.mode, vector, spec.dense_weight, filters)
                for text, vector in zip(request.queries, vectors)]
        return ServedAnswer(root, generation, hits)

    def _embedder(self, spec):
        # One loaded model per set of weights; a different query instruction shares them.
        key = replace(spec, query_instruction=None, dense_weight=0.0)
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
                self._send({"ok": False, "error": "request too large", "user_error": True})
                return
            response = self.server.dispatcher.respond(self.server.root, line, self.server.local_only)
            if not self._send(response):
                return

    def _send(self, response: dict) -> bool:
        try:
            self.wfile.write(json.dumps(response, ensure_ascii=False).encode("utf-8") + b"\n")
            self.wfile.flush()
            return True
        except OSError:
            return False


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Dispatcher:
    """Turns request lines into response objects, for every listener of one server process."""

    def __init__(self, service: Service, roots: list[Path], stop: threading.Event):
        self.service, self.roots, self.stop = service, roots, stop

    def respond(self, root: Path | None, line: bytes, local_only: bool) -> dict:
        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except ValueError:
            return {"ok": False, "error": "a request is one JSON object per line", "user_error": True}
        op = message.get("op")
        try:
            if op == "ping":
                return {"ok": True, "pid": os.getpid()}
            if op == "stop":
                if not local_only:
                    return {"ok": False, "error": "stop is only accepted on the Unix socket", "user_error": True}
                self.stop.set()
                return {"ok": True, "pid": os.getpid()}
            root = root or self._root_named(message.get("repo"))
            if op == "status":
                return {"ok": True, **self.service.status(root, bool(message.get("stale")))}
            if op == "query":
                request = QueryRequest.from_json(message)
                answer = self.service.query(root, request)
                return {"ok": True, "repository": str(answer.repository), "generation": answer.generation,
                        "answers": [{"query": text, "results": [result_json(hit) for hit in hits]}
                                    for text, hits in zip(request.queries, answer.hits)]}
            return {"ok": False, "error": f"unknown op {op!r}; use query, status, ping or stop", "user_error": True}
        except CodesearchError as error:
            return {"ok": False, "error": str(error), "user_error": True}
        except Exception as error:  # the client falls back to in-process work
            return {"ok": False, "error": f"internal error: {type(error).__name__}: {error}", "user_error": False}

    def _root_named(self, repo: str | None) -> Path:
        if repo is None and len(self.roots) == 1:
            return self.roots[0]
        if repo is None:
            raise CodesearchError("this server serves several repositories; name one with \"repo\"")
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
    roots: list[Path] = []
    for path in paths:
        root = service.open(path)
        if root not in roots:
            roots.append(root)
    listeners = []
    tcp = None
    try:
        for root in roots:
            listeners.append(_claim(root))
        dispatcher = Dispatcher(service, roots, stop)
        for listener in listeners:
            listener.server = _bind_unix(listener.socket_file, dispatcher, listener.root)
            threading.Thread(target=listener.server.serve_forever, name=f"serve {listener.root}", daemon=True).start()
        if port is not None:
            tcp = _bind_tcp(port, dispatcher)
            threading.Thread(target=tcp.serve_forever, name="serve tcp", daemon=True).start()
        previous = {signum: signal.signal(signum, lambda *_: stop.set())
                    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        for listener in listeners:
            notice(f"serving {listener.root} on {listener.socket_file}")
        if tcp is not None:
            notice(f"also listening on 127.0.0.1:{tcp.server_address[1]}")
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
    if service.busy:
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


def _claim(root: Path) -> _Listener:
    """Take the repository's server lock, or refuse; a socket file left by a dead server is removed."""
    socket_file = socket_path(root)
    socket_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_file = lock_path(socket_file)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
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
    socket_file.unlink(missing_ok=True)  # we hold the lock, so any socket file here is stale
    return _Listener(root, socket_file, fd)


def _release(listener: _Listener) -> None:
    if listener.server is not None:
        listener.socket_file.unlink(missing_ok=True)
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
    server.dispatcher, server.root, server.local_only = dispatcher, root, True
    return server


def _bind_tcp(port: int, dispatcher: Dispatcher) -> _TcpServer:
    try:
        server = _TcpServer(("127.0.0.1", port), _Handler)  # loopback only, never other interfaces
    except OSError as error:
        raise CodesearchError(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}") from None
    server.dispatcher, server.root, server.local_only = dispatcher, None, False
    return server
