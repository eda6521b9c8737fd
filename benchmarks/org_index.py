"""The dev eval's repositories as one organisation: `codesearch org index` on a local Ray with 1 and 2
embedding workers, against `codesearch index` on each repository one after another, in the same run.

    .venv/bin/python benchmarks/org_index.py --corpus ../evalcorpus --model minilm [--repos N]

The repositories are cloned into a scratch folder first (the corpus, and the indexes in it, are never
touched), so every run starts cold: no index, no embedding cache. Prints, per way of indexing: seconds,
overhead against the sequential run, peak memory (the sum of the resident sets of this process and all
its descendants: the codesearch processes, or Ray's raylet, GCS and workers, sampled every 0.2 s), and
what was embedded. `--repos N` takes the N smallest repositories (by files git lists) only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def descendants_rss() -> int:
    """Bytes resident in this process and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    total, stack = 0, [os.getpid()]
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/status") as handle:
                total += next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


class PeakMemory:
    def __enter__(self):
        self.peak, self._stop = descendants_rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, descendants_rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def clone_corpus(corpus: Path, names: list[str], scratch: Path) -> list[Path]:
    clones = []
    for name in names:
        target = scratch / name
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(corpus / name), str(target)], check=True)
        clones.append(target)
    return clones


def sequential(clones: list[Path], model: str) -> dict:
    started, embedded, chunks = time.perf_counter(), 0, 0
    with PeakMemory() as memory:
        for clone in clones:
            result = subprocess.run([sys.executable, "-m", "codesearch", "index", str(clone), "--model", model, "--json"],
                                    capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if result.returncode != 0:
                raise SystemExit(f"codesearch index {clone} failed: {result.stderr.strip()}")
            report = json.loads(result.stdout)
            embedded, chunks = embedded + report["embedded"], chunks + report["chunks"]
    return {"seconds": time.perf_counter() - started, "peak_bytes": memory.peak, "chunks": chunks, "embedded": embedded}


def organisation(clones: list[Path], model: str, workers: int, org_dir: Path) -> dict:
    from codesearch.org.ray_pipeline import index_organisation

    started = time.perf_counter()
    with PeakMemory() as memory:
        report = index_organisation(org_dir, clones, model=model, workers=workers).as_json()
    return {**report, "seconds": time.perf_counter() - started, "peak_bytes": memory.peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="the dev corpus (get_corpus.py --split dev)")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--repos", type=int, default=0, help="only the N smallest repositories (0: all)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    arguments = parser.parse_args()

    names = sorted((path.name for path in arguments.corpus.iterdir() if (path / ".git").exists()),
                   key=lambda name: (len(subprocess.run(["git", "-C", str(arguments.corpus / name), "ls-files"],
                                                        capture_output=True, text=True).stdout.splitlines()), name))
    if arguments.repos:
        names = names[: arguments.repos]
    scratch = Path(tempfile.mkdtemp(prefix="org-bench-"))
    try:
        clones = clone_corpus(arguments.corpus, names, scratch / "repos")
        print(f"{len(clones)} repositories: {', '.join(names)}; model {arguments.model}; {arguments.cpus} CPUs, no GPU")
        baseline = sequential(clones, arguments.model)
        for clone in clones:  # the sequential run's indexes are not the organisation's business
            shutil.rmtree(clone / ".codesearch")
        print(f"codesearch index, one after another: {baseline['seconds']:.1f} s, peak {baseline['peak_bytes'] / 2**20:.0f} MiB, "
              f"{baseline['chunks']} chunks, {baseline['embedded']} embedded")

        import ray

        started = time.perf_counter()
        ray.init(address="local", num_cpus=arguments.cpus, include_dashboard=False, log_to_driver=False)
        print(f"local Ray start: {time.perf_counter() - started:.1f} s (not counted below)")
        for workers in arguments.workers:
            run = organisation(clones, arguments.model, workers, scratch / f"org-{workers}")
            overhead = run["seconds"] / baseline["seconds"] - 1
            print(f"org index, {workers} worker{'s' if workers > 1 else ''}: {run['seconds']:.1f} s "
                  f"({overhead:+.0%} against sequential), peak {run['peak_bytes'] / 2**20:.0f} MiB, {run['chunks']} chunks, "
                  f"{run['embedded']} embedded, {run['reused']} reused; steps {run['stages']}")
        rerun = organisation(clones, arguments.model, arguments.workers[-1], scratch / f"org-{arguments.workers[-1]}")
        print(f"org index again, nothing changed: {rerun['seconds']:.1f} s, {rerun['shards_updated']} shards written")
        ray.shutdown()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
