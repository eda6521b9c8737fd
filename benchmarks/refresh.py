"""How much a refresh costs on a large real repository, against what `git status` costs there.

    python benchmarks/refresh.py [--package pytest==8.3.3] [--model minilm] [--repeats 5] [--profile]

Downloads the package's sdist from PyPI (`pip download --no-binary :all:`), commits it into a
temporary git repository, and prints:
  full index        `codesearch index --json --model minilm` from nothing
  no-op refresh     the same command again, nothing changed (embedded must be 0)
  one-file change   after editing one function body (embedded should be 1)
  git status        on the same repository
and the figure: no-op refresh ÷ git status (goal ≤ 2). The commands are timed as a user runs
them (a fresh process each); since that is mostly Python start-up, the refresh is also timed
in-process, split into its steps. --profile prints the top of a cProfile of the in-process no-op.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

GIT_IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", default="pytest==8.3.3", help="PyPI requirement whose sdist is the repository.")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--repeats", type=int, default=5, help="Runs per timing; the median is printed.")
    parser.add_argument("--profile", action="store_true", help="Print a cProfile of the in-process no-op refresh.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary repository and print where it is.")
    args = parser.parse_args()

    os.environ.update(GIT_IDENTITY)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    workdir = Path(tempfile.mkdtemp(prefix="codesearch-bench-"))
    try:
        repo = make_repository(args.package, workdir)
        run_benchmark(repo, args)
    finally:
        if args.keep:
            print(f"repository kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def make_repository(requirement: str, workdir: Path) -> Path:
    downloads = workdir / "download"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                    "--dest", str(downloads), requirement], check=True)
    archive = next(downloads.iterdir())
    unpacked = workdir / "unpacked"
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(unpacked)
    else:
        with tarfile.open(archive) as handle:
            handle.extractall(unpacked, filter="data")
    (top,) = list(unpacked.iterdir())
    repo = workdir / "repo"
    top.rename(repo)
    git(repo, "init", "--quiet")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--no-verify", "-m", f"import {requirement}")
    return repo


def run_benchmark(repo: Path, args) -> None:
    tracked = len(git(repo, "ls-files").splitlines())
    print(f"repository: {args.package}, {tracked} tracked files, in {repo}")

    seconds, full = timed_index(repo, "--model", args.model)
    print(f"full index          {seconds:8.2f} s   {full['files']} files, {full['chunks']} chunks, "
          f"{full['embedded']} embedded ({full['embedded'] / seconds:.1f} chunks/s overall)")

    noop_runs = [timed_index(repo) for _ in range(args.repeats)]
    noop = statistics.median(seconds for seconds, _ in noop_runs)
    print(f"no-op refresh       {noop:8.3f} s   embedded {max(report['embedded'] for _, report in noop_runs)} "
          f"(codesearch index --json, a fresh process; median of {args.repeats})")

    startup = median_time([sys.executable, "-c", "import codesearch.cli.main, codesearch.indexer.build"], repo, args.repeats)
    print(f"  python start-up   {startup:8.3f} s   (importing the CLI and the indexing pipeline, nothing else)")
    in_process = in_process_noop(repo, args.repeats)
    for step, value in in_process.items():
        print(f"  {step:<18}{value:8.3f} s")

    status = median_time(["git", "status"], repo, args.repeats)
    print(f"git status          {status:8.3f} s   (median of {args.repeats})")

    path, symbol = edit_one_function(repo)
    seconds, changed = timed_index(repo)
    print(f"one-file change     {seconds:8.3f} s   embedded {changed['embedded']}, reused {changed['reused']} "
          f"({symbol} in {path})")
    git(repo, "checkout", "--quiet", "--", path)
    seconds, reverted = timed_index(repo)
    print(f"revert that edit    {seconds:8.3f} s   embedded {reverted['embedded']}")

    print(f"figure: no-op refresh ÷ git status = {noop / status:.1f} as a user runs it (goal ≤ 2); "
          f"{in_process['in-process total'] / status:.1f} in-process")
    if args.profile:
        print_profile(repo)


def timed_index(repo: Path, *options: str) -> tuple[float, dict]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "codesearch", "index", "--json", *options], cwd=repo,
                            capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"codesearch index failed ({result.returncode}): {result.stderr.strip()}")
    return seconds, json.loads(result.stdout.strip().splitlines()[-1])


def median_time(command: list[str], cwd: Path, repeats: int) -> float:
    subprocess.run(command, cwd=cwd, capture_output=True)  # warm the page cache and git's index
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def in_process_noop(repo: Path, repeats: int) -> dict[str, float]:
    """The no-op refresh without Python start-up, and the steps it is made of."""
    from codesearch.source.discover import discover_files
    from codesearch.indexer.build import index_repository

    index_repository(repo)  # warm imports
    steps = {"in-process total": lambda: index_repository(repo),
             "discover_files": lambda: discover_files(repo),
             "stored fingerprints": lambda: _stored_fingerprints(repo)}
    result = {}
    for name, step in steps.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        result[name] = statistics.median(times)
    return result


def _stored_fingerprints(repo: Path):
    from codesearch.query.engine import Engine

    engine = Engine.open(repo)
    try:
        return engine.store.database.file_fingerprints()
    finally:
        engine.close()


def edit_one_function(repo: Path) -> tuple[str, str]:
    """Change one line inside the body of one top-level function of a tracked Python file."""
    from codesearch.source.chunk import chunk_file

    for path in sorted(git(repo, "ls-files", "*.py").splitlines()):
        if "/test" in f"/{path}":
            continue
        source = (repo / path).read_bytes()
        for piece in chunk_file(path, source):
            if piece.kind != "function" or piece.end_line - piece.start_line < 4:
                continue
            lines = source.decode("utf-8").splitlines(keepends=True)
            for number in range(piece.end_line - 1, piece.start_line, -1):
                line = lines[number]
                if line.strip().startswith("return ") and not line.rstrip().endswith(("\\", ",", "(")):
                    lines[number] = line.rstrip("\n") + "  # edited by the benchmark\n"
                    (repo / path).write_text("".join(lines), encoding="utf-8")
                    return path, piece.symbol
    sys.exit("found no function to edit")


def print_profile(repo: Path) -> None:
    from codesearch.indexer.build import index_repository

    profiler = cProfile.Profile()
    profiler.enable()
    index_repository(repo)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    print(out.getvalue())


def git(repo: Path, *arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=repo, capture_output=True, text=True, check=True).stdout


if __name__ == "__main__":
    main()
