"""The memory of one server per user against one server per repository, for the same queries.

    python benchmarks/user_server_memory.py REPO [REPO ...]   # indexed repositories, minilm

Starts `codesearch serve --user` (in a runtime folder of its own), asks one hybrid question in each
repository through it, and reads its resident memory (VmRSS); then one `serve --repo` per repository, the
same questions, and the sum of theirs. Each server is stopped at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def codesearch(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codesearch", *args], capture_output=True, text=True, env=env)


def ask_all(repos: list[str], env: dict) -> None:
    for repo in repos:
        answered = codesearch("query", "read the configuration file", "-v", "--repo", repo, env=env)
        assert "answered by the running server" in answered.stderr, answered.stderr


def main() -> None:
    repos = [str(Path(repo).resolve()) for repo in sys.argv[1:]]
    with tempfile.TemporaryDirectory() as runtime:
        os.chmod(runtime, 0o700)
        env = {**os.environ, "XDG_RUNTIME_DIR": runtime, "CODESEARCH_NO_AUTOSTART": "1"}
        env.pop("CODESEARCH_NO_SERVER", None)
        user = subprocess.Popen([sys.executable, "-m", "codesearch", "serve", "--user"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)
            ask_all(repos, env)
            shared = rss_mib(user.pid)
        finally:
            codesearch("serve", "--stop", "--user", env=env)
            user.wait(30)
        servers = [subprocess.Popen([sys.executable, "-m", "codesearch", "serve", "--repo", repo], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for repo in repos]
        try:
            time.sleep(3)
            ask_all(repos, env)
            each = [rss_mib(server.pid) for server in servers]
        finally:
            for repo in repos:
                codesearch("serve", "--stop", "--repo", repo, env=env)
            for server in servers:
                server.wait(30)
    print(f"{len(repos)} repositories: one server per user {shared:.0f} MiB ({shared / each[0]:.2f}x one server "
          f"holding one of them); one per repository {sum(each):.0f} MiB in all "
          f"({', '.join(f'{value:.0f}' for value in each)})")


if __name__ == "__main__":
    main()
