"""What the chunking process runs in the tests in chunk_file's place: a file that asks for it kills or stalls
the process, as a grammar that crashes or hangs on it would (tests/test_chunk.py)."""

from __future__ import annotations

import os
import signal
import time

from codesearch.source.chunk import chunk_file


def chunk_or_fail(path: str, source: bytes, budget=None):
    if b"SEGFAULT" in source:
        os.kill(os.getpid(), signal.SIGSEGV)
    if b"STALL" in source:
        time.sleep(600)
    return chunk_file(path, source, budget=budget)
