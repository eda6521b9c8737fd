"""`codesearch index` end to end on a real repository, one runtime beside another (issue 19, target 2).

    python benchmarks/index_speed.py [--package pytest==8.3.3] [--runtimes onnx,default] [--rounds 3]

Commits a PyPI sdist into a temporary git repository (as refresh.py does), then, round after round and
alternating the order, deletes its .codesearch and times `codesearch index --json --model minilm` in a
fresh process under each runtime (`default`: what this machine picks unasked; otherwise the value of
CODESEARCH_RUNTIME). Each run embeds every chunk: the embedding cache lives in .codesearch. In the
last round, each runtime's one-file refresh (one function edited, then the same command) is timed too,
since a runtime's start-up is paid by every refresh. Prints per runtime the median seconds, chunks/s, the ratio
to the first runtime, and the runtime and dtype the index recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refresh import GIT_IDENTITY, edit_one_function, git, make_repository  # noqa: E402


def timed_index(repo: Path, runtime: str) -> tuple[float, dict]:
    env = {key: value for key, value in os.environ.items() if key != "CODESEARCH_RUNTIME"}
    if runtime != "default":
        env["CODESEARCH_RUNTIME"] = runtime
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "codesearch", "index", "--json", "--model", "minilm"], cwd=repo,
                            capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"codesearch index failed under {runtime} ({result.returncode}): {result.stderr.strip()}")
    return seconds, json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", default="pytest==8.3.3")
    parser.add_argument("--runtimes", default="onnx,default", help="comma list; the first is the baseline")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runtimes = args.runtimes.split(",")
    os.environ.update(GIT_IDENTITY)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["CODESEARCH_NO_AUTOSTART"] = "1"
    workdir = Path(tempfile.mkdtemp(prefix="codesearch-speed-"))
    try:
        repo = make_repository(args.package, workdir)
        print(f"{args.package}: {len(git(repo, 'ls-files').splitlines())} tracked files; {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
        seconds: dict[str, list[float]] = {runtime: [] for runtime in runtimes}
        recorded, refreshes = {}, {}
        for round_number in range(args.rounds):
            for runtime in runtimes if round_number % 2 == 0 else runtimes[::-1]:
                shutil.rmtree(repo / ".codesearch", ignore_errors=True)
                took, report = timed_index(repo, runtime)
                seconds[runtime].append(took)
                manifest = json.loads((repo / ".codesearch" / "manifest.json").read_text())
                recorded[runtime] = (report["embedded"], manifest.get("runtime"), manifest.get("dtype"))
                print(f"round {round_number + 1}: {runtime:<10} {took:7.1f} s, {report['embedded']} chunks embedded",
                      flush=True)
                if round_number == args.rounds - 1:  # this runtime's index is there: one edit, one refresh
                    path, _ = edit_one_function(repo)
                    refreshes[runtime] = timed_index(repo, runtime)[0]
                    git(repo, "checkout", "--quiet", "--", path)
        print(f"load average {os.getloadavg()[0]:.1f} at end")
        base = statistics.median(seconds[runtimes[0]])
        for runtime in runtimes:
            median = statistics.median(seconds[runtime])
            chunks, built_with, dtype = recorded[runtime]
            print(f"{runtime:<10} median {median:7.1f} s  {chunks / median:6.1f} chunks/s  {base / median:4.2f}x "
                  f"{runtimes[0]}  (index records {built_with}, {dtype}); one-file refresh {refreshes[runtime]:.2f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
