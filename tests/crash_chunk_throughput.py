"""Chunking throughput of chunk_file in this process against the chunker in a child process (chunk_files),
over the source files under the folders given: python tests/crash_chunk_throughput.py DIR... [--rounds N].

Files are read first, so only chunking is timed. Both ways start warm (each process has loaded its grammars)
and take turns, round after round; the best round of each is printed, as wall time and as CPU time (this
process and the child together). The child's start (Python, the chunker's imports, one file) is timed apart:
the grammars it loads, a process chunking in place loads as well.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

from codesearch.source.chunk import PartBudget, chunk_file
from codesearch.source.chunk_process import ChunkingProcess
from codesearch.source.discover import looks_binary
from codesearch.source.languages import spec_for_path


def _cpu(process) -> float:
    """CPU seconds of this process and of the child (read from /proc: it has not exited yet)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return own.ru_utime + own.ru_stime + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    files = []
    for folder in arguments.folders:
        for directory, _subfolders, names in os.walk(folder):
            for name in sorted(names):
                path = Path(directory, name)
                if spec_for_path(name) is None or path.is_symlink():
                    continue
                data = path.read_bytes()
                if 0 < len(data) <= 1_000_000 and not looks_binary(data):
                    files.append((path.relative_to(folder).as_posix(), data))
    budget = PartBudget.for_window(256)
    print(f"{len(files)} files, {sum(len(data) for _, data in files) / 1e6:.1f} MB")
    with ChunkingProcess(budget) as child:
        started = time.perf_counter()
        list(child.chunk([("start.py", b"def start():\n    return 1\n")]))
        print(f"child start, with one file: {time.perf_counter() - started:.3f} s")
        ways = {"chunk_file, in this process": lambda: [chunk_file(path, data, budget=budget) for path, data in files],
                "chunk_files, in a child process": lambda: list(child.chunk(files))}
        for run in ways.values():
            run()  # both load every grammar the files need
        best: dict[str, tuple[float, float, int]] = {}
        for _round in range(arguments.rounds):
            for way, run in ways.items():
                wall, cpu = time.perf_counter(), _cpu(child._process)
                chunks = sum(map(len, run()))
                wall, cpu = time.perf_counter() - wall, _cpu(child._process) - cpu
                best[way] = min(best.get(way, (wall, cpu, chunks)), (wall, cpu, chunks))
                print(f"  round {_round}: {way:32s} wall {wall:6.2f} s  CPU {cpu:6.2f} s", flush=True)
    for way, (wall, cpu, chunks) in best.items():
        print(f"{way:32s} {chunks} chunks  wall {wall:6.2f} s ({chunks / wall:5.0f} chunks/s)  "
              f"CPU {cpu:6.2f} s ({chunks / cpu:5.0f} chunks/s)")


if __name__ == "__main__":
    main()
