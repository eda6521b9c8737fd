"""A warm query server: one long-lived process keeps the models and the open indexes in memory
(service.py) and answers `codesearch query` over a Unix domain socket, so a query costs milliseconds,
not the seconds it takes to import torch and load a model. The wire is protocol.py, the client client.py.

Who may ask. The socket (protocol.socket_path) is 0600 in a folder only this user can use, and the
server checks each peer's uid (SO_PEERCRED) as the client checks the server's. A TCP listener on
127.0.0.1 is opened only when a port is asked for; anyone on the machine can connect to it, so each
request must carry the token made at start-up (written 0600 beside the socket, removed on exit). The
first line that is not a well-formed request (not a JSON object, an unknown op, a missing or wrong
token) gets one error line and the connection is closed: the body of an HTTP request a web page sends
never runs. `trust_remote_code` is fixed when the server starts (`serve --trust-remote-code`, then
every query runs with it); a request asking for it from a server started without it is refused with
user_error false, so `codesearch query --trust-remote-code` answers in-process, as it would with no
server.

Bounds: a listen queue of 128; at most 64 connections at once per listener (one more gets an error
line and is closed); 256 queries per request and 1 MiB per request line (protocol.py), 10,000
characters per query (query.api); the CLI sends a longer queries file in batches. Every exception, a
RecursionError from a deeply nested line included, is answered with an error line.

Liveness: an answer that is not ready half a second after its request line was read is preceded by
a space (which JSON ignores), written then, while the work goes on; a quick answer goes out as it
always did, so an ordinary query pays nothing for this.

Started by a query (client.start_server): `serve --user --idle-exit SECONDS`, the user's own server for every
repository (indexes opened as requests name them, closed after INDEX_IDLE_SECONDS unused), detached; it
exits once that long passes without a request, as build tools' daemons do; it runs as the user who asked, under the same
rules as one started by hand. It writes the index only as `codesearch index` does, under the writers'
lock, to refresh the files that changed in the working tree (service.py); it never waits for that lock.

One server per socket (a repository's, or the user's): a lock file next to it (never followed if it is a
link) is held for the server's life, so a second server refuses, and a socket file nobody holds the lock for is
stale and replaced. The index on disk is checked on every request (its generation, and the database
file's identity), so a refresh by `codesearch index` or the hook is picked up at once.

Nothing here forks: torch and faiss start OpenMP threads, and a forked child of such a process hangs.
Errors are worded for the protocol's clients: a bad field (errors.BadRequest) is named by its JSON key.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from codesearch.errors import CodesearchError
from codesearch.server.protocol import (MAX_REQUEST_BYTES, answer_message, check_socket_folder, lock_path, peer_problem,
                                        picture_fields, request_from_message, socket_path, token_path,
                                        user_socket_path)
from codesearch.server.service import RemoteCodeRefused, Service
from codesearch.trust import open_private, write_private_file

INDEX_IDLE_SECONDS = 600  # the user's server closes an index (and stops watching its tree) unused this long

MAX_CONNECTIONS = 64  # per listener, so strangers filling the TCP port leave the Unix socket free
LISTEN_BACKLOG = 128  # clients connecting at once wait in the queue instead of failing
CLIENT_IDLE_SECONDS = 60  # a connection that sends nothing for this long is closed
OPS = ("query", "status", "ping", "stop")


# -- the server ----------------------------------------------------------------------------------

def _error(message: str, user_error: bool) -> dict:
    return {"ok": False, "error": message, "user_error": user_error}


def encode_response(response: dict) -> bytes:
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
            if not self._write(encode_response(response)) or not go_on:
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
                request.sendall(encode_response(_error(refusal, user_error=False)))
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

    def __init__(self, service: Service, roots: list[Path], stop: threading.Event, token: str | None = None,
                 idle_exit: float | None = None, on_demand: bool = False):
        self.service, self.roots, self.stop, self.token, self.idle_exit = service, roots, stop, token, idle_exit
        self.on_demand = on_demand  # the user's own server: any repository a request names is opened
        self.last_request = time.monotonic()

    def idle_for(self) -> float:
        return 0.0 if self.service.busy else time.monotonic() - self.last_request

    def respond(self, root: Path | None, line: bytes, over_tcp: bool,
                waiting: Callable[[], object] | None = None) -> tuple[dict, bool]:
        """The response to one request line, and whether the connection may carry another request.

        `waiting()` is called when the answer has taken ACKNOWLEDGE_AFTER_SECONDS (see Liveness).
        """
        try:
            message = self._well_formed(line, over_tcp)
        except _Malformed as error:
            return _error(str(error), user_error=True), False
        self.last_request = time.monotonic()  # well-formed requests only keep a server alive
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
            return {"ok": True, "pid": os.getpid(), "idle_exit": self.idle_exit}
        if op == "stop":
            if over_tcp:
                raise CodesearchError("stop is only accepted on the Unix socket")
            self.stop.set()
            return {"ok": True, "pid": os.getpid()}
        root = root or self._root_named(message.get("repo"))
        if op == "status":
            return {"ok": True, **self.service.status(root, bool(message.get("stale")), waiting),
                    "idle_exit": self.idle_exit}
        request = request_from_message(message).checked()
        pictures = picture_fields(message)
        if pictures is not None:
            kind, image, words = pictures
            texts = list(request.queries) if words else [None] * len(request.queries)
            answer = self.service.pictures(root, request, texts, image, kind, waiting)
        else:
            answer = self.service.query(root, request, waiting)
        return answer_message(request.queries, answer)

    def _root_named(self, repo) -> Path:
        if self.on_demand:
            if not isinstance(repo, str) or not Path(repo).is_absolute():
                raise CodesearchError("name the repository with \"repo\": an absolute path")
            return self.service.open(Path(repo))  # a user error when it has no index, as in-process
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
    root: Path | None  # None: the user's own server
    socket_file: Path
    lock_fd: int
    server: _UnixServer | None = None


def serve_forever(paths: list[Path], port: int | None = None, notice: Callable[[str], None] = lambda _: None,
                  service: Service | None = None, idle_exit: float | None = None, user: bool = False) -> None:
    """Serve the repositories containing `paths` until SIGTERM, SIGINT, a stop request, or (`idle_exit`)
    that many seconds without a request. `user`: serve every repository of this user on the user's socket
    instead, each index opened when a request first names it and closed after INDEX_IDLE_SECONDS unused."""
    if user and (paths or port is not None):
        raise CodesearchError("the user's server serves every repository on its own socket: give no --repo or --port")
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
    # Handlers first: a server that answers a ping must already stop cleanly on a signal. A handler runs on
    # the main thread between two of its bytecodes, possibly while that thread holds the lock inside `stop`
    # (Event.wait re-takes it on waking), where Event.set would wait on that lock for ever; appending to a
    # list takes no lock, and the loop below sees it within its timeout. They stay through the clean-up (a
    # second signal then must not kill it half-way, its socket left behind); after it, the signals are ignored.
    signalled: list[int] = []
    if own_process:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda signum, _: signalled.append(signum))
    try:
        for root in roots:
            listeners.append(_claim(root, socket_path(root), token))
        if user:
            listeners.append(_claim(None, user_socket_path(), token))
        dispatcher = Dispatcher(service, roots, stop, token, idle_exit, on_demand=user)
        for listener in listeners:
            listener.server = bind_unix(listener.socket_file, dispatcher, listener.root)
            threading.Thread(target=listener.server.serve_forever, name=f"serve {listener.root}", daemon=True).start()
        if port is not None:
            tcp = bind_tcp(port, dispatcher)
            threading.Thread(target=tcp.serve_forever, name="serve tcp", daemon=True).start()
        for listener in listeners:
            notice(f"serving {listener.root or 'every repository of this user'} on {listener.socket_file}")
        if tcp is not None:
            notice(f"also listening on 127.0.0.1:{tcp.server_address[1]}; each request there needs the token "
                   f"in {token_path(listeners[0].socket_file)}")
        for root in roots:
            service.warm_up(root).add_done_callback(lambda done, root=root: _warmed(done, root, notice))
        while not signalled and not stop.wait(0.5):  # a timeout, so the main thread runs the signal handlers
            gone = [listener.socket_file for listener in listeners if not listener.socket_file.exists()]
            if gone:  # the index folder was deleted (git clean -x): nobody can reach us any more
                notice(f"{gone[0]} was removed; stopping")
                break
            if idle_exit is not None and dispatcher.idle_for() > idle_exit:
                notice(f"no request for {idle_exit:g} s; stopping")
                break
            if user:
                service.close_idle(INDEX_IDLE_SECONDS)
    finally:
        service.stop_watching()
        for server in [tcp] + [listener.server for listener in listeners]:
            if server is not None:
                server.shutdown()
                server.server_close()
        for listener in listeners:
            _release(listener)
    notice("stopped")
    if own_process:
        # Not left to the handlers: Python's finalisation gives a signal with a Python handler its default
        # action back, and one more SIGHUP or SIGTERM then would kill a process that stopped cleanly.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
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


def _claim(root: Path | None, socket_file: Path, token: str | None) -> _Listener:
    """Take the lock of the server for `root` (None: the user's own), or refuse; a socket file left by a dead
    server is removed."""
    check_socket_folder(root, socket_file, serving=True)
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
            f"a codesearch server{f' (pid {owner})' if owner else ''} is already serving "
            f"{root or 'this user'}; stop it with `codesearch serve --stop {f'--repo {root}' if root else '--user'}`"
        ) from None
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


def bind_unix(socket_file: Path, dispatcher: Dispatcher, root: Path) -> _UnixServer:
    """A listener on the Unix socket `socket_file` for the repository at `root`; serve_forever runs it."""
    previous = os.umask(0o177)  # the socket is created 0600: only its owner may ask
    try:
        server = _UnixServer(str(socket_file), _Handler)
    except OSError as error:
        raise CodesearchError(f"cannot listen on {socket_file}: {error.strerror or error}") from None
    finally:
        os.umask(previous)
    server.dispatcher, server.root, server.over_tcp = dispatcher, root, False
    return server


def bind_tcp(port: int, dispatcher: Dispatcher) -> _TcpServer:
    """A listener on 127.0.0.1:`port` for every repository served; its requests carry the token."""
    try:
        server = _TcpServer(("127.0.0.1", port), _Handler)  # loopback only, never other interfaces
    except OSError as error:
        raise CodesearchError(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}") from None
    server.dispatcher, server.root, server.over_tcp = dispatcher, None, True
    return server
