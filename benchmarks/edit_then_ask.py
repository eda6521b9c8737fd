"""Edit, then ask: does the first query after a save find the new function, and what does it cost?

    python benchmarks/edit_then_ask.py INDEXED_REPO [--trials 20]

On a copy of an indexed repository (minilm): through the user's server (`serve --user`, a runtime folder of
its own), each trial saves a new function in a new file, waits 1 s, and asks for it by name with
`codesearch query`; then without a server (CODESEARCH_NO_SERVER=1), each trial saves one and times the whole
`codesearch query` process that must refresh it first. Prints how many trials found the function, and the
median and maximum seconds of the in-process queries.
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


def ask(repo: Path, name: str, env: dict) -> tuple[bool, float, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "codesearch", "query", name, "--json", "-k", "1", "-v",
                             "--repo", str(repo)], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    results = json.loads(result.stdout)["results"] if result.returncode in (0, 1) and result.stdout else []
    return bool(results) and results[0]["symbol"] == name, seconds, result.stderr


def save(repo: Path, name: str) -> None:
    (repo / f"{name}.py").write_text(f"def {name}(ledger):\n    return sorted(ledger, key=len)\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", type=Path)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        repo = Path(scratch) / args.repo.name
        shutil.copytree(args.repo, repo, symlinks=True)
        runtime = Path(scratch) / "run"
        runtime.mkdir(mode=0o700)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "CODESEARCH_NO_AUTOSTART": "1"}
        env.pop("CODESEARCH_NO_SERVER", None)
        server = subprocess.Popen([sys.executable, "-m", "codesearch", "serve", "--user"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        found = 0
        try:
            time.sleep(3)
            ask(repo, "warm_up", env)  # the server opens the index and starts watching
            for trial in range(args.trials):
                name = f"reconcile_server_{trial}"
                save(repo, name)
                time.sleep(1.0)
                hit, _, stderr = ask(repo, name, env)
                found += hit and "answered by the running server" in stderr
        finally:
            subprocess.run([sys.executable, "-m", "codesearch", "serve", "--stop", "--user"], env=env,
                           capture_output=True)
            server.wait(30)
        print(f"through the user's server, saved 1 s before asking: found in {found} of {args.trials} trials")
        env = {**env, "CODESEARCH_NO_SERVER": "1"}
        timings, hits = [], 0
        for trial in range(max(5, args.trials // 4)):
            name = f"reconcile_here_{trial}"
            save(repo, name)
            hit, seconds, _ = ask(repo, name, env)
            hits += hit
            timings.append(seconds)
        print(f"in-process, the first query after the save (one file refreshed first): found in {hits} of "
              f"{len(timings)}; median {statistics.median(timings):.2f} s, max {max(timings):.2f} s")


if __name__ == "__main__":
    main()
