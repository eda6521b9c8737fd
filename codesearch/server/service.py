"""Open indexes and loaded models kept between requests, for the long-lived front ends (the socket
server and the MCP server): an Engine per repository and one model per set of weights.

SQLite connections belong to the thread that opened them, so every index and model call runs on one
worker thread, whatever thread a request arrives on. An index whose database file was replaced (deleted
and rebuilt) is reopened; a refresh in place needs nothing (SQLite reads see every commit, and the store
reloads its generation files when the generation moved on).

Answers follow the working tree (indexer/freshness.py): with `watch`, each open repository is watched
(watch.py) and a batch of changes is refreshed on the worker at once, so a query after a save finds it
done; without, or when watching failed, the tree is checked before each answer. An answer says how many
changed files it does not reflect.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from codesearch.indexer.freshness import Freshness, bring_up_to_date
from codesearch.query.api import Answer, QueryRequest
from codesearch.query.engine import Engine
from codesearch.server.watch import TreeWatch

ACKNOWLEDGE_AFTER_SECONDS = 0.5  # a slower answer is preceded by a space, well inside the client's 2 s


class RemoteCodeRefused(Exception):
    """A request asked to run a model's own code on a server not started to allow it."""


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


@dataclass
class _OpenIndex:
    engine: Engine
    identity: tuple[int, int]
    reloads: int = 0
    watch: TreeWatch | None = None
    check: bool = True  # the working tree may have changed since the last check: check before answering
    freshness: Freshness = field(default_factory=Freshness)  # how the last check left the index
    last_used: float = field(default_factory=time.monotonic)

    def needs_check(self) -> bool:
        # A lag left to a background refresh is checked again until it is gone.
        return self.check or self.watch is None or not self.watch.watching or self.freshness.stale_files > 0


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
    watch: bool = False  # watch each open repository's working tree (the servers do; tests mostly not)
    notice: Callable[[str], None] = lambda _: None
    _worker: _Worker = field(default_factory=_Worker)
    _indexes: dict = field(default_factory=dict)
    _models: object = None
    _vision: object = None  # spec -> vision model (query.pictures.vision_models), once a picture is asked about

    def __post_init__(self):
        from codesearch.embedding.load import LoadedModels

        self._models = LoadedModels(self.load_embedder, self.threads)

    def open(self, path: str | os.PathLike) -> Path:
        """Open the index of the repository containing `path`; its root. Raises when there is none."""
        return self._worker.run(self._open, Path(path))

    def warm_up(self, root: Path) -> Future:
        """Load the index's model and vectors in the background, so the first query is fast too."""
        return self._worker.submit(self._warm_up, root)

    def query(self, root: Path, request: QueryRequest, waiting: Callable[[], object] | None = None) -> Answer:
        """The answer; `waiting()` is called if it takes more than ACKNOWLEDGE_AFTER_SECONDS. Every query
        runs with the server's own trust_remote_code."""
        if request.trust_remote_code and not self.trust_remote_code:
            raise RemoteCodeRefused("this server was started without --trust-remote-code and a request cannot "
                                    "turn it on; restart it with `codesearch serve --trust-remote-code`")
        request = replace(request, trust_remote_code=self.trust_remote_code)
        return self._worker.run(self._answer, root, request, waiting=waiting)

    def pictures(self, root: Path, request: QueryRequest, texts: list, image: Path | None, kind: str,
                 waiting: Callable[[], object] | None = None) -> Answer:
        """A question about the repository's pictures (query.pictures.answer_with_pictures), on the worker, with
        the vision models this server keeps loaded; a question of every kind fuses in the code's answer."""
        if request.trust_remote_code and not self.trust_remote_code:
            raise RemoteCodeRefused("this server was started without --trust-remote-code and a request cannot "
                                    "turn it on; restart it with `codesearch serve --trust-remote-code`")
        request = replace(request, trust_remote_code=self.trust_remote_code)

        def run() -> Answer:
            from codesearch.query.pictures import answer_with_pictures, vision_models

            if self._vision is None:
                self._vision = vision_models({})
            return answer_with_pictures(root, request, texts, image, kind,
                                        lambda _, asked: self._answer(root, asked), self._vision)
        return self._worker.run(run, waiting=waiting)

    def navigate(self, root: Path, ask: Callable, filters=None):
        """ask(CodeGraph) over the index brought up to date, on the worker: defs, refs, callers, callees."""
        from codesearch.query.api import Filters
        from codesearch.query.navigate import CodeGraph

        def run():
            self._up_to_date(root)
            return ask(CodeGraph(self._fresh(root).engine.store.database, filters or Filters()))
        return self._worker.run(run)

    def status(self, root: Path, count_stale: bool = False, waiting: Callable[[], object] | None = None) -> dict:
        return self._worker.run(self._status, root, count_stale, waiting=waiting)

    @property
    def busy(self) -> bool:
        return self._worker.busy

    def close_idle(self, seconds: float) -> None:
        """Close the indexes no request used for `seconds` (their watches stop); a later request reopens one."""
        if any(time.monotonic() - opened.last_used > seconds for opened in list(self._indexes.values())):
            self._worker.submit(self._close_idle, seconds)

    def stop_watching(self) -> None:
        for opened in list(self._indexes.values()):
            if opened.watch is not None:
                opened.watch.stop()

    # -- on the worker thread --------------------------------------------------------------------

    def _open(self, path: Path) -> Path:
        engine = self._engine(path)
        root = engine.root.resolve()
        if root in self._indexes:
            engine.close()
        else:
            engine.root = root
            opened = self._indexes[root] = _OpenIndex(engine, _file_identity(engine))
            if self.watch:
                opened.watch = TreeWatch(root, lambda: self._changed(root), self.notice).start()
        return root

    def _changed(self, root: Path) -> None:
        """On the watch's thread: the tree changed, so refresh now, before anyone asks."""
        opened = self._indexes.get(root)
        if opened is not None:  # not closed as idle meanwhile
            opened.check = True
            self._worker.submit(self._up_to_date, root)

    def _up_to_date(self, root: Path) -> Freshness:
        opened = self._fresh(root)
        if opened.needs_check():
            opened.check = False  # first: a change seen during the refresh sets it again
            opened.freshness = bring_up_to_date(root, opened.engine.store, embedder_factory=self._models)
        return opened.freshness

    def _answer(self, root: Path, request: QueryRequest) -> Answer:
        freshness = self._up_to_date(root)
        answer = self._fresh(root).engine.query(request)
        answer.freshness = freshness
        return answer

    def _engine(self, path: Path) -> Engine:
        return Engine.open(path, embedder_for=self._models)

    def _close_idle(self, seconds: float) -> None:
        for root, opened in list(self._indexes.items()):
            if time.monotonic() - opened.last_used > seconds:
                if opened.watch is not None:
                    opened.watch.stop()
                opened.engine.close()
                del self._indexes[root]

    def _fresh(self, root: Path) -> _OpenIndex:
        """The open index, reopened when the database file was replaced (a deleted and rebuilt index)."""
        if root not in self._indexes:  # closed as idle since the request named it
            self._open(root)
        opened = self._indexes[root]
        opened.last_used = time.monotonic()
        try:
            identity = _file_identity(opened.engine)
        except OSError:
            identity = None
        if identity != opened.identity:
            engine = self._engine(root)  # raises "... is not indexed" when it is gone for good
            engine.root = root
            opened.engine.close()
            opened.engine, opened.identity, opened.reloads = engine, _file_identity(engine), opened.reloads + 1
        return opened

    def _warm_up(self, root: Path) -> None:
        engine = self._fresh(root).engine
        if engine.store.database.manifest().get("model"):
            engine.query(QueryRequest(["warm up"], k=1, trust_remote_code=self.trust_remote_code))

    def _status(self, root: Path, count_stale: bool) -> dict:
        opened = self._fresh(root)
        return {**opened.engine.status(count_stale), "reopened": opened.reloads, "pid": os.getpid()}


def _file_identity(engine: Engine) -> tuple[int, int]:
    from codesearch.index.store import DATABASE_NAME

    status = os.stat(engine.store.directory / DATABASE_NAME)
    return status.st_dev, status.st_ino
