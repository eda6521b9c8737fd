"""The chunker in a child process, which a grammar's crash or hang takes down alone.

A grammar is C code run on untrusted files: a segfault in it would end the indexer, and a loop in its scanner,
which no parse budget sees, would stall it. chunk_files runs chunk.chunk_file in a child process instead.
"""

from __future__ import annotations

import subprocess
import sys
from collections import deque
from contextlib import ExitStack
from typing import Callable, Iterable, Iterator

from codesearch.source.chunk import Chunk, PartBudget, chunk_file, line_windows
from codesearch.source.languages import spec_for_source

BATCH_FILES = 64  # files sent to the child in one message (one message back per file)
BATCH_BYTES = 4 << 20
FILE_SECONDS = 30.0  # a file whose chunks take longer hangs its grammar; real files take milliseconds
START_SECONDS = 60.0  # for the child to import the chunker (about 0.1 s)
CHILD_MEMORY = 4 << 30  # the child's address space: a grammar that allocates without end fails alone
_CHILD_MAIN = ("import sys; from multiprocessing.connection import Connection; "
               "connection = Connection(int(sys.argv[1])); sys.path[:], function = connection.recv(); "
               "from codesearch.source.chunk_process import serve; serve(connection, function)")


def chunk_files(files: Iterable[tuple[str, bytes | None]], budget: PartBudget | None = None,
                notice: Callable[[str], None] | None = None, workers: int = 1,
                function: str = "codesearch.source.chunk:chunk_file") -> Iterator[list[Chunk]]:
    """chunk_file (or `function`, "module:function", which cuts as it does) of each (path, source), in order, run
    in up to `workers` child processes, each given batches of files in turn; a source of None has no chunks.

    A file that crashes or hangs a child becomes line windows, with a one-line notice, and a new child goes
    on with the next files. A child starts with the first batch it is given, so a few files start one."""
    with ExitStack() as stack:
        idle = deque(stack.enter_context(ChunkingProcess(budget, notice, function)) for _ in range(max(1, workers)))
        busy: deque = deque()  # each holding one batch sent, oldest first: results come back in order
        for batch in _batches(files):
            if not idle:
                chunker = busy.popleft()
                yield from chunker.collect()
                idle.append(chunker)
            chunker = idle.popleft()
            chunker.submit(batch)
            busy.append(chunker)
        while busy:
            yield from busy.popleft().collect()


def _batches(files: Iterable[tuple[str, bytes | None]]) -> Iterator[list[tuple[str, bytes | None]]]:
    batch: list[tuple[str, bytes | None]] = []
    size = 0
    for path, source in files:
        batch.append((path, source))
        size += len(source or b"")
        if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class ChunkingProcess:
    """A child process that runs chunk_file, restarted when a file kills it (see chunk_files).

    `function` names what the child runs in chunk_file's place ("module:function", called with a path, a
    source and budget=), and `file_seconds` how long one file may take; the tests change both."""

    def __init__(self, budget: PartBudget | None = None, notice: Callable[[str], None] | None = None,
                 function: str = "codesearch.source.chunk:chunk_file", file_seconds: float = FILE_SECONDS):
        self.budget = budget or PartBudget()
        self.notice = notice or (lambda message: None)
        self.function = function
        self.file_seconds = file_seconds
        self._process: subprocess.Popen | None = None
        self._connection = None
        self._answers = None  # polls the connection: cheaper than Connection.poll, which builds a selector each time
        self._ready = False
        self._in_process = False  # no child could be started: chunk here, as chunk_file does

    def __enter__(self) -> "ChunkingProcess":
        return self

    def __exit__(self, *_exception) -> None:
        self.close()

    def chunk(self, files: Iterable[tuple[str, bytes | None]]) -> Iterator[list[Chunk]]:
        for batch in _batches(files):
            self.submit(batch)
            yield from self.collect()

    def close(self) -> None:
        """Ends the child, busy or not (it holds nothing to save)."""
        connection, process = self._connection, self._process
        self._connection, self._process, self._ready = None, None, False
        if connection is not None:
            connection.close()
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait()

    def submit(self, batch: list[tuple[str, bytes | None]]) -> None:
        """Send a batch to the child (started when needed); collect() gives its files' chunks, in order."""
        self._batch = batch
        self._results: list[list[Chunk] | None] = [[] if source is None else None for _path, source in batch]
        self._pending = [index for index, result in enumerate(self._results) if result is None]
        self._sent = self._send([batch[index] for index in self._pending]) if self._pending else None

    def collect(self) -> list[list[Chunk]]:
        batch, results, pending, connection = self._batch, self._results, self._pending, self._sent
        while pending:
            if connection is None:
                for index in pending:
                    results[index] = chunk_file(*batch[index], budget=self.budget)
                break
            for done, index in enumerate(pending):
                try:
                    if not self._answers.poll(self.file_seconds * 1000):
                        raise TimeoutError
                    rows = connection.recv()
                except (EOFError, OSError) as failure:  # TimeoutError is an OSError
                    results[index] = self._lost(*batch[index], hung=isinstance(failure, TimeoutError))
                    pending = pending[done + 1 :]
                    connection = self._send([batch[index] for index in pending]) if pending else None
                    break
                results[index] = [Chunk(*row) for row in rows]
            else:
                pending = []
        return results

    def _send(self, files: list[tuple[str, bytes]]):
        """The connection to a child that has been sent these files; None when no child can run."""
        for _attempt in range(2):  # a child that died between batches (killed from outside) is replaced once
            if self._in_process:
                return None
            try:
                connection = self._connection or self._start()
                connection.send((self.budget, files))
                if not self._ready:
                    if not connection.poll(START_SECONDS) or connection.recv() != "ready":
                        raise OSError("it did not answer")
                    self._ready = True
                return connection
            except (EOFError, OSError, ValueError) as error:
                failure = str(error) or "it exited"
                self.close()
        self._in_process = True
        self.notice(f"chunking in this process: the chunking process did not start ({failure})")
        return None

    def _start(self):
        import select
        import socket
        from multiprocessing.connection import Connection

        if not sys.executable:
            raise OSError("no Python executable to run it")
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD_MAIN, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._connection = Connection(ours.detach())
        self._answers = select.poll()
        self._answers.register(self._connection.fileno(), select.POLLIN)
        self._connection.send((sys.path, self.function))
        return self._connection

    def _lost(self, path: str, source: bytes, hung: bool) -> list[Chunk]:
        """Line windows of the file the child died on (or hung on, and was killed for), and a notice."""
        returncode = None
        if not hung and self._process is not None:
            try:  # its end of the connection closed as it died
                returncode = self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.close()
        spec = spec_for_source(path, source)
        name = spec.name if spec else "text"
        if hung:
            what = f"took more than {self.file_seconds:g} s"
        elif returncode is not None and returncode < 0:
            what = f"crashed ({_signal_name(-returncode)})"
        else:
            what = f"crashed (exit status {returncode})"
        self.notice(f"{_one_line(path)}: parsing it as {name} {what}; indexed as plain text")
        return line_windows(path, source.decode("utf-8", errors="replace"), name)


def _one_line(path: str) -> str:
    """The path with its control characters (a newline, a terminal escape) written as escapes."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in path)


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def serve(connection, function: str) -> None:
    """The child: batches of (path, source) in, one list of chunk rows out per file, until the parent closes."""
    import importlib
    import signal

    import tree_sitter  # noqa: F401 - imported before the first file's time starts

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes the child
    _limit_memory(CHILD_MEMORY)
    module_name, function_name = function.split(":")
    cut = getattr(importlib.import_module(module_name), function_name)
    connection.send("ready")
    while True:
        try:
            budget, files = connection.recv()
        except EOFError:
            return
        for path, source in files:
            connection.send([(chunk.path, chunk.start_line, chunk.end_line, chunk.symbol, chunk.kind, chunk.language,
                              chunk.text, chunk.context, chunk.references, chunk.terms)
                             for chunk in cut(path, source, budget=budget)])


def _limit_memory(limit: int) -> None:
    """At most `limit` bytes of address space, and no core file left behind in the user's folder by a crash."""
    try:
        import resource

        for kind, value in ((resource.RLIMIT_AS, limit), (resource.RLIMIT_CORE, 0)):
            _soft, hard = resource.getrlimit(kind)
            resource.setrlimit(kind, (value if hard == resource.RLIM_INFINITY else min(value, hard), hard))
    except (ImportError, ValueError, OSError):
        pass  # no such limits here (Windows), or not allowed: the child runs without them
