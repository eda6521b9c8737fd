"""Cold CLI query vs warm server query on the same index, median of N queries each, in one run.

    python benchmarks/serve_latency.py                      # the fixture repository, minilm
    python benchmarks/serve_latency.py --repo PATH -n 30    # a real repository (indexed if it is not)
    python benchmarks/serve_latency.py --warm-only          # the two warm numbers only (A/B runs of a change)

Three numbers, all wall-clock per query:
  cold CLI     `codesearch query --json` with no server (imports torch, loads the model, searches)
  warm CLI     the same command while `codesearch serve` runs (process start + imports + one socket round trip)
  warm socket  one request over the server's socket from a client that is already running (an editor
               plugin, an agent bridge, the MCP server's own path): the server's answer time
Goal (issue 8): warm <= 100 ms with minilm on 2 cores. Other processes on the machine make all of
these noisy; the medians and the machine load are printed so a run can be judged.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codesearch.server.client import request_server  # noqa: E402
from codesearch.server.protocol import socket_path  # noqa: E402

QUERIES = [
    "retry failed uploads with backoff", "read a json settings file", "stop the http server gracefully",
    "compute a checksum of the payload", "queue of pending uploads", "parse the configuration",
    "create a new server", "where is the upload client", "send the files again after a failure",
    "hash the data with sha256", "shut down and wait for connections", "load defaults for missing keys",
    "mark an upload as done", "exponential delay between attempts", "test that retries stop",
    "first in first out list", "listen on an address", "merge user settings with defaults",
    "how are uploads stored", "what happens when the connection fails",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, help="an indexed (or indexable) git repository; default: the fixture")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("-n", type=int, default=20, help="queries per path (median of these)")
    parser.add_argument("--server-threads", type=int, help="the server's --threads (default: the server's default, 1)")
    parser.add_argument("--warm-only", action="store_true", help="skip the cold CLI (seconds per query)")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    env.pop("CODESEARCH_NO_SERVER", None)
    with tempfile.TemporaryDirectory() as scratch:
        repo = args.repo.resolve() if args.repo else fixture_repo(Path(scratch) / "repo")
        if not (repo / ".codesearch" / "index.sqlite").exists():
            run(["index", str(repo), "--model", args.model], env, check=True)
        queries = [QUERIES[i % len(QUERIES)] for i in range(args.n)]
        print(f"repository {repo}, model {args.model}, {args.n} queries per path, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f} at start", flush=True)

        cold = [] if args.warm_only else [timed(lambda q=q: run(["query", q, "--json", "--repo", str(repo)],
                                                                {**env, "CODESEARCH_NO_SERVER": "1"}))
                                          for q in queries]
        if cold:
            report("cold CLI", cold)

        threads = [] if args.server_threads is None else ["--threads", str(args.server_threads)]
        server = start_server(repo, env, threads)
        try:
            warm_cli = [timed(lambda q=q: run(["query", q, "--json", "--repo", str(repo)], env)) for q in queries]
            report("warm CLI", warm_cli)
            address = socket_path(repo)
            warm_socket = [timed(lambda q=q: answered(request_server(address, {"op": "query", "queries": [q], "k": 10})))
                           for q in queries]
            report("warm socket", warm_socket)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
        if cold:
            print(f"ratio cold/warm: {statistics.median(cold) / statistics.median(warm_cli):.0f}x (CLI), "
                  f"{statistics.median(cold) / statistics.median(warm_socket):.0f}x (socket)")
        print(f"load average {os.getloadavg()[0]:.1f} at end")
        print(json.dumps({"cold_cli_ms": ms(cold) if cold else None, "warm_cli_ms": ms(warm_cli), "warm_socket_ms": ms(warm_socket),
                          "n": args.n, "model": args.model, "server_threads": args.server_threads}))


def fixture_repo(destination: Path) -> Path:
    shutil.copytree(ROOT / "fixtures" / "sample_repo", destination)
    git_env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
               "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "fixture"]):
        subprocess.run(["git", *command], cwd=destination, check=True, env=git_env)
    return destination


def run(arguments: list[str], env: dict, check: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "codesearch", *arguments], capture_output=True, text=True, env=env)
    if result.returncode not in (0, 1) or (check and result.returncode):
        raise SystemExit(f"codesearch {' '.join(arguments)} failed: {result.stderr}")
    return result


def start_server(repo: Path, env: dict, options: list[str]) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "codesearch", "serve", "--repo", str(repo), *options], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    for line in server.stderr:  # "ready" once the model is loaded and one query has run
        if "ready:" in line or time.monotonic() > deadline:
            break
    else:
        raise SystemExit(f"the server exited {server.wait()}")
    return server


def answered(response: dict) -> dict:
    if not response.get("ok"):  # an error comes back fast, and would pass for a fast answer
        raise SystemExit(f"the server did not answer: {response.get('error')}")
    return response


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def report(label: str, samples: list[float]) -> None:
    print(f"{label:12} median {ms(samples):9.1f} ms   (min {min(samples) * 1000:.1f}, "
          f"max {max(samples) * 1000:.1f}, n={len(samples)})", flush=True)


if __name__ == "__main__":
    main()
