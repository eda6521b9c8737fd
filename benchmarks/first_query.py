"""The first query and the later ones, as a user meets them, before and after issue 19 (target 1).

    python benchmarks/first_query.py [--repo PATH] [-n 7]

The repository (default: the fixture) is cloned twice into a scratch folder and indexed with minilm,
once on torch (CODESEARCH_RUNTIME=torch: every index before ONNX Runtime; in bf16 on a CPU with AMX) and
once with this machine's default runtime (ONNX Runtime on a CPU). Wall-clock times of whole `codesearch
query --json` processes, taken in turn (torch, default, torch, ...) so load changes hit both alike;
medians of n:
  torch cold     no server, nothing started: what a query of a torch-built index cost before (its queries
                 were run by torch) and costs now (without a GPU, by ONNX Runtime in fp32)
  default cold   no server, nothing started (CODESEARCH_NO_AUTOSTART=1): the first query now
  default later  the first query with auto-start on starts a server; once it answers, the later queries
  python         `python -c pass`, the floor any CLI process pays here
Then both indexes answer every query in-process and the answers are compared: the same results in the
same order (path, lines, symbol), and the largest score difference.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serve_latency import QUERIES, fixture_repo  # noqa: E402

from codesearch.server.client import request_server  # noqa: E402
from codesearch.server.protocol import socket_path  # noqa: E402


def run(arguments: list, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "codesearch", *map(str, arguments)], capture_output=True,
                            text=True, env=env)
    if result.returncode not in (0, 1):
        raise SystemExit(f"codesearch {' '.join(map(str, arguments))} failed: {result.stderr}")
    return result


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def server_answers(repo: Path) -> bool:
    try:
        return bool(request_server(socket_path(repo), {"op": "ping"}, timeout=5).get("ok"))
    except OSError:
        return False


def report(label: str, samples: list[float]) -> None:
    print(f"{label:14} median {statistics.median(samples) * 1000:7.0f} ms  (min {min(samples) * 1000:.0f}, "
          f"max {max(samples) * 1000:.0f}, n={len(samples)})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, help="a git repository (cloned, never touched); default: the fixture")
    parser.add_argument("-n", type=int, default=7)
    args = parser.parse_args()
    base_env = {key: value for key, value in os.environ.items() if not key.startswith("CODESEARCH_")}
    base_env["HF_HUB_OFFLINE"] = "1"
    quiet = {**base_env, "CODESEARCH_NO_AUTOSTART": "1"}
    with tempfile.TemporaryDirectory() as scratch:
        source = args.repo.resolve() if args.repo else fixture_repo(Path(scratch) / "source")
        repos = {}
        for runtime in ("torch", "default"):
            repos[runtime] = Path(scratch) / runtime
            subprocess.run(["git", "clone", "-q", str(source), str(repos[runtime])], check=True)
            env = {**quiet, "CODESEARCH_RUNTIME": "torch"} if runtime == "torch" else quiet
            started = time.perf_counter()
            summary = json.loads(run(["index", repos[runtime], "--model", "minilm", "--json"], env).stdout)
            print(f"indexed {runtime}: {summary['chunks']} chunks in {time.perf_counter() - started:.0f} s", flush=True)
        manifest = json.loads((repos["default"] / ".codesearch" / "manifest.json").read_text())
        print(f"default runtime here: {manifest.get('runtime')}; {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f} at start", flush=True)

        samples = {"torch cold": [], "default cold": [], "python": []}
        for number in range(args.n):
            query = QUERIES[number % len(QUERIES)]
            samples["torch cold"].append(timed(lambda: run(["query", query, "--json", "--repo", repos["torch"]], quiet)))
            samples["default cold"].append(timed(lambda: run(["query", query, "--json", "--repo", repos["default"]],
                                                             quiet)))
            samples["python"].append(timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True)))
        first = timed(lambda: run(["query", QUERIES[0], "--json", "--repo", repos["default"]], base_env))
        ready = time.perf_counter()
        while not server_answers(repos["default"]) and time.perf_counter() - ready < 120:
            time.sleep(0.05)
        print(f"first query with auto-start {first * 1000:.0f} ms; its server answered "
              f"{(time.perf_counter() - ready) * 1000:.0f} ms after", flush=True)
        try:
            later = [timed(lambda q=query: run(["query", q, "--json", "--repo", repos["default"]], base_env))
                     for query in QUERIES[1:args.n + 1]]
        finally:
            run(["serve", "--stop", "--repo", repos["default"]], base_env)
        for label, values in samples.items():
            report(label, values)
        report("default later", later)
        print(f"ratio torch cold / default cold {statistics.median(samples['torch cold']) / statistics.median(samples['default cold']):.1f}x; "
              f"load average {os.getloadavg()[0]:.1f} at end", flush=True)

        same, largest = 0, 0.0
        for query in QUERIES:
            answers = [json.loads(run(["query", query, "--json", "-k", "10", "--repo", repos[runtime]], quiet).stdout
                                  or '{"results": []}')["results"] for runtime in ("torch", "default")]
            keys = [[(hit["path"], hit["start_line"], hit["end_line"], hit["symbol"]) for hit in hits] for hits in answers]
            same += keys[0] == keys[1]
            largest = max([largest] + [abs(a["score"] - b["score"]) for a, b in zip(*answers)])
        print(f"answers identical (top 10, in order) for {same} of {len(QUERIES)} queries; "
              f"largest score difference {largest:.2e}")


if __name__ == "__main__":
    main()
