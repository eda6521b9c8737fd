"""A checkout that changes every file under a watching server: how the answers stand while it catches up.

    python benchmarks/checkout_storm.py [--files 20000] [--every 0.5] [--model minilm]

Makes a git repository of --files small Python files (one function each, 100 to a folder) on a branch `one`,
and a branch `two` where every file holds another function; indexes `one`; starts the user's server (a
runtime folder of its own) and asks it once, so that it opens the index and watches the tree. Then it runs
`git checkout two` and, through the server, asks for one of `two`'s functions by name every --every seconds,
until that function is found and every chunk has a vector. Prints, counted from the end of the checkout:
  - the first answer, and the stale_files it carried (the server leaves a change past its bound to a
    background refresh, and says so);
  - when the answers stopped lagging (stale_files 0: the new files' words are written), when the new function
    was first found, and when every chunk had its vector;
  - each query's seconds (median and maximum), and how many failed;
  - the background refreshes' reports (hook.log).
Then it checks the index against the tree, as a rebuild would have it: as many files and chunks as the tree
has functions, a sample of `two`'s functions each found first by name, and none of `one`'s found.
CHECKOUT_STORM_TRACE=1 also prints every answer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FOLDER_SIZE = 100


def function(branch: str, number: int) -> str:
    if branch == "one":
        return (f"def settle_ledger_{number}(entries, limit={number % 97 + 3}):\n"
                f'    """Add up the first entries of ledger {number}."""\n'
                f"    total = 0\n    for entry in entries[:limit]:\n        total += entry.amount\n"
                f"    return total\n")
    return (f"def reconcile_account_{number}(account, statements):\n"
            f'    """Match account {number} against its bank statements, newest first."""\n'
            f"    unmatched = [line for line in statements if line.account != account.number]\n"
            f"    return sorted(unmatched, key=lambda line: line.date, reverse=True)\n")


def write_branch(repo: Path, branch: str, files: int) -> None:
    for number in range(files):
        folder = repo / f"ledgers_{number // FOLDER_SIZE:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"ledger_{number}.py").write_text(function(branch, number), encoding="utf-8")


def git(repo: Path, *arguments: str) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *arguments],
                   cwd=repo, check=True, capture_output=True)


def ask(repo: Path, name: str, env: dict) -> dict:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "codesearch", "query", name, "--json", "-k", "1", "-v",
                             "--repo", str(repo)], capture_output=True, text=True, env=env)
    answer = {"seconds": time.perf_counter() - started, "failed": result.returncode not in (0, 1),
              "by_server": "answered by the running server" in result.stderr}
    if not answer["failed"] and result.stdout:
        found = json.loads(result.stdout)
        answer.update(found=bool(found["results"]) and found["results"][0]["symbol"] == name,
                      stale=found["stale_files"], embedded=found["embedded"])
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--give-up", type=float, default=3600, help="seconds after the checkout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        repo = Path(scratch) / "ledgers"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "one")
        write_branch(repo, "two", args.files)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "two")
        git(repo, "branch", "two")
        for path in repo.glob("ledgers_*/*.py"):
            path.unlink()
        write_branch(repo, "one", args.files)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "one")
        runtime = Path(scratch) / "run"
        runtime.mkdir(mode=0o700)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "CODESEARCH_NO_AUTOSTART": "1"}
        env.pop("CODESEARCH_NO_SERVER", None)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "codesearch", "index", "--model", args.model, str(repo)], env=env,
                       check=True, capture_output=True)
        print(f"{args.files} files indexed on branch one in {time.perf_counter() - started:.0f} s")
        server = subprocess.Popen([sys.executable, "-m", "codesearch", "serve", "--user"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        answers = []
        try:
            time.sleep(3)
            assert ask(repo, "settle_ledger_1", env).get("found"), "the server did not answer from branch one"
            asked = f"reconcile_account_{args.files // 2}"
            started = time.perf_counter()
            git(repo, "checkout", "-q", "two")
            checkout = time.perf_counter()  # what follows is counted from here, when a user would ask
            print(f"git checkout two: {checkout - started:.1f} s")
            while time.perf_counter() - checkout < args.give_up:
                answer = ask(repo, asked, env)
                answer["at"] = time.perf_counter() - checkout
                answers.append(answer)
                if answer.get("found") and answer.get("embedded") == 1.0 and answer.get("stale") == 0:
                    break
                time.sleep(args.every)
            sample = random.Random(0).sample(range(args.files), 20)
            found_two = sum(bool(ask(repo, f"reconcile_account_{number}", env).get("found")) for number in sample)
            found_one = sum(bool(ask(repo, f"settle_ledger_{number}", env).get("found")) for number in sample)
            status = subprocess.run([sys.executable, "-m", "codesearch", "status", "--json", str(repo)], env=env,
                                    capture_output=True, text=True)
            log = repo / ".codesearch" / "hook.log"
            refreshes = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
        finally:
            subprocess.run([sys.executable, "-m", "codesearch", "serve", "--stop", "--user"], env=env,
                           capture_output=True)
            server.wait(60)

    def first(condition) -> str:
        moment = next((answer["at"] for answer in answers if condition(answer)), None)
        return "never" if moment is None else f"{moment:.1f} s"

    if os.environ.get("CHECKOUT_STORM_TRACE"):
        for answer in answers:
            print(answer)
    answered = [answer for answer in answers if not answer["failed"]]
    # An answer before the server's watch has reported the checkout still stands on branch one, and says so
    # by nothing: the change is seen once an answer lags (stale_files), lacks vectors or finds the function.
    seen = next((answer["at"] for answer in answered
                 if answer.get("found") or answer.get("stale") or answer.get("embedded", 1.0) < 1.0), None)
    print(f"first answer after the checkout: {answers[0]['at']:.1f} s (stale_files {answers[0].get('stale')}, "
          f"found {answers[0].get('found')}); the change first seen by an answer: {first(lambda a: a['at'] == seen)}")
    print(f"stale_files reported: {sorted({answer.get('stale') for answer in answered}, reverse=True)[:6]}")
    print(f"answers current once seen (stale_files 0): "
          f"{first(lambda a: seen is not None and a['at'] >= seen and a.get('stale') == 0)}")
    print(f"the new function found first: {first(lambda answer: answer.get('found'))}")
    print(f"every chunk with its vector: "
          f"{first(lambda a: a.get('found') and a.get('embedded') == 1.0 and a.get('stale') == 0)}")
    seconds = [answer["seconds"] for answer in answers]
    print(f"{len(answers)} queries, {len(answers) - len(answered)} failed, "
          f"{sum(not answer['by_server'] for answer in answers)} not answered by the server; seconds each: median "
          f"{statistics.median(seconds):.2f}, max {max(seconds):.2f}")
    print(f"afterwards, by name: {found_two} of 20 of branch two's functions found first, {found_one} of 20 of "
          f"branch one's")
    for line in refreshes:
        print(f"hook.log: {line[:300]}")
    if status.returncode == 0:
        counts = json.loads(status.stdout)
        print(f"status: {counts.get('files')} files, {counts.get('chunks')} chunks (the tree: {args.files} of each)")
    else:
        print(f"status failed: {status.stderr.strip()}")


if __name__ == "__main__":
    main()
