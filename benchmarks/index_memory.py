"""Peak memory (RSS) of `codesearch index` with minilm on a large repository (issue 19, target 4).

    python benchmarks/index_memory.py --sdist Django-5.1.4.tar.gz [--embedded 400] [--full]

The sdist is unpacked into a scratch git repository (one commit). Two processes are measured, each
from a fresh interpreter, by its peak RSS (its own ru_maxrss; the pipeline also by its peaks of RssAnon, its
own memory, and RssFile, the mapped segment files' pages, sampled from /proc every 0.1 s):
  pipeline   index_repository on the whole repository with the product's real discovery, chunker,
             embedding keys, cache writes, FAISS and BM25, but a stand-in embedder that hands back
             random unit vectors at once: everything but the model, at the repository's full size;
  embedder   the real minilm embedder (the runtime `codesearch index` picks here) loaded and run over
             the EMBEDDED longest chunks of the files `index` would read (binary and minified files left
             out), the batches that need the most memory, and what it adds: its peak less the RSS
             before it was loaded (Linux: /proc/self/statm);
and an interpreter with the same imports only. Peak of a real run is estimated as pipeline + what the
embedder adds. `--refresh` also reports the pipeline's index time and disk, then edits one function of a
Python file and refreshes (time, embedded, bytes written from /proc/self/io), and refreshes once more with
nothing changed. `--full` also times and measures a real `codesearch index` (about 40 minutes on 2 CPU
cores for Django's 76,000 chunks), its size on disk, and two refreshes through the CLI with the real model
(one function added, then nothing changed), with the blocks they wrote (getrusage's ru_oublock).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, threading, time
if {source!r}:  # another copy of the package: an editable install would answer `import codesearch` first
    sys.meta_path[:] = [finder for finder in sys.meta_path if "editable" not in repr(finder).lower()]
sys.path.insert(0, {root!r})

# ru_maxrss counts the pages of mapped files (the segments' vectors and postings), which the kernel may drop
# and read again; the process's own memory is RssAnon. Both peaks are sampled every 0.1 s.
peaks = {{"RssAnon": 0, "RssFile": 0}}
def sample():
    while True:
        for line in open("/proc/self/status"):
            name = line.split(":")[0]
            if name in peaks:
                peaks[name] = max(peaks[name], int(line.split()[1]))
        time.sleep(0.1)
threading.Thread(target=sample, daemon=True).start()
import numpy as np
from pathlib import Path
from codesearch.embedding.batching import DocumentEncoder
from codesearch.indexer.build import index_repository
from codesearch.embedding.spec import resolve_model
from codesearch.embedding.load import load_embedder
from codesearch.embedding.weights import pin_model
what, repo, embedded = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
if what == "imports":
    import faiss, onnxruntime, tokenizers
    print(json.dumps({{"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}}))
    sys.exit(0)

class StandIn(DocumentEncoder):
    dim = 384
    def tokenize(self, texts):
        return list(texts)
    def encode_token_ids(self, texts, progress=None):
        vectors = np.random.default_rng(len(texts)).normal(size=(len(texts), self.dim)).astype(np.float32)
        if progress:
            progress(len(texts))
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

started = time.perf_counter()
result = {{}}
if what == "pipeline":
    report = index_repository(repo, model="minilm", rebuild=True, embedder_factory=lambda spec: StandIn())
    result = {{"chunks": report.chunks, "files": report.files, "embedded": report.embedded}}
    result["index_seconds"] = round(time.perf_counter() - started, 1)
    result["disk_mib"] = round(sum(p.stat().st_size for p in (repo / ".codesearch").rglob("*") if p.is_file()) / 2**20, 1)
    result["segments"] = sum(1 for p in (repo / ".codesearch").iterdir() if p.name.startswith("segment-"))
    from codesearch.index.database import IndexDatabase
    database = IndexDatabase.open(repo / ".codesearch")
    result["left_unembedded"] = database.unembedded_count()  # 0: every chunk has its vector in a segment
    database.db.close()
    if embedded:  # also a refresh after a one-function edit, and a no-op refresh, on the index just built
        def written():
            return int(dict(line.split(":") for line in open("/proc/self/io"))["write_bytes"])
        target = max((p for p in repo.rglob("*.py") if ".codesearch" not in p.parts and p.stat().st_size < 40_000),
                      key=lambda p: p.stat().st_size)
        target.write_text(target.read_text() + "\n\ndef added_for_the_benchmark(value):\n    return value * 2\n")
        for name in ("edit", "noop"):
            began, before = time.perf_counter(), written()
            refreshed = index_repository(repo, embedder_factory=lambda spec: StandIn())
            result[f"{{name}}_refresh"] = {{"seconds": round(time.perf_counter() - began, 2), "embedded": refreshed.embedded,
                                           "written_mib": round((written() - before) / 2**20, 2)}}
elif what == "embedder":
    from codesearch.source.chunk import PartBudget, chunk_file
    from codesearch.source.discover import discover_files
    from codesearch.indexer.read import source_bytes
    spec = pin_model(resolve_model("minilm"))
    budget = PartBudget.for_window(spec.max_length)
    texts = []
    for found in discover_files(repo):
        data = source_bytes(repo, found)  # as `index` reads it: binary and minified files are never embedded
        if data is not None:
            texts += [piece.embedding_text for piece in chunk_file(found.path, data, budget=budget)]
    texts = sorted(texts, key=len, reverse=True)[:embedded]
    import gc, os
    gc.collect()
    before = os.sysconf("SC_PAGE_SIZE") * int(open("/proc/self/statm").read().split()[1]) / 2**20
    embedder = load_embedder(spec)
    embedder.encode_documents(texts)
    result = {{"runtime": spec.runtime, "embedded": len(texts), "rss_before_load_mib": round(before)}}
result["seconds"] = round(time.perf_counter() - started, 1)
result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
result["peak_anon_mib"], result["peak_file_mib"] = round(peaks["RssAnon"] / 1024), round(peaks["RssFile"] / 1024)
print(json.dumps(result))
"""


def unpack(sdist: Path, destination: Path) -> Path:
    with tarfile.open(sdist) as archive:
        archive.extractall(destination, filter="data")
    (repo,) = [path for path in destination.iterdir() if path.is_dir()]
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@example.com"}
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "sdist"]):
        subprocess.run(["git", *command], cwd=repo, check=True, env=env)
    return repo


def generated(chunks: int, destination: Path) -> Path:
    """A git repository of about `chunks` generated Python functions, 34 to a file, in one commit."""
    import random

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from query_latency import fake_function

    rng, repo = random.Random(0), destination / f"generated-{chunks}"
    for file_number in range(max(1, chunks // 34)):
        folder = repo / f"pkg{file_number % 97}"
        folder.mkdir(parents=True, exist_ok=True)
        functions = [fake_function(rng, file_number * 34 + i)[1] for i in range(34)]
        (folder / f"module_{file_number}.py").write_text("\n\n\n".join(functions) + "\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@example.com"}
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "generated"]):
        subprocess.run(["git", *command], cwd=repo, check=True, env=env)
    return repo


def measured(command: list[str], env: dict, series: Path | None = None) -> tuple[dict, float]:
    """The child's JSON line and its peak RSS in MiB: its own ru_maxrss, else (a real `codesearch index`, run
    last) the largest of this process's children's. `series`: also write there, every 0.5 s, the seconds
    since the start and the child's RssAnon and RssFile in MiB (where in the run its memory peaks)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        started = time.monotonic()
        with open(series or os.devnull, "w") as samples:
            while process.poll() is None:
                if series is not None:
                    with contextlib.suppress(OSError):
                        status = dict(line.split(":", 1) for line in open(f"/proc/{process.pid}/status"))
                        samples.write(f"{time.monotonic() - started:.1f}\t{int(status['RssAnon'].split()[0]) // 1024}"
                                      f"\t{int(status['RssFile'].split()[0]) // 1024}\n")
                time.sleep(0.5)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode:
        raise SystemExit(f"{command[:4]} failed: {stderr[-2000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    answer = json.loads(lines[-1]) if lines else {}
    peak = answer.pop("peak_rss_mib", None)
    return answer, peak if peak is not None else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sdist", type=Path)
    source.add_argument("--generated", type=int, metavar="FUNCTIONS",
                        help="instead of an sdist, a generated repository of about FUNCTIONS functions (query_latency.py's "
                             "code-like text, 34 to a file; the index holds about 2.3 chunks per function): the "
                             "pipeline alone, at any size")
    parser.add_argument("--embedded", type=int, default=400)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--series", type=Path, metavar="FILE",
                        help="with --full: the real index's RssAnon and RssFile every 0.5 s, written to FILE")
    parser.add_argument("--refresh", action="store_true",
                        help="After the pipeline's index: a one-function edit and a no-op refresh, timed, with the bytes "
                             "they write (the stand-in embedder: the index work alone)")
    parser.add_argument("--source", type=Path, metavar="DIR",
                        help="run the codesearch package found in DIR instead (`git archive COMMIT codesearch | tar -x "
                             "-C DIR`), to compare two versions in one session")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="build in DIR (new or empty) and leave the repository and its index there, for "
                             "segments.py --queries-of")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CODESEARCH_NO_AUTOSTART": "1"}
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(str(args.keep)) if args.keep else tempfile.TemporaryDirectory()) as scratch:
        repo = unpack(args.sdist, Path(scratch)) if args.sdist else generated(args.generated, Path(scratch))
        print(f"{repo.name}: load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores", flush=True)
        child = [sys.executable, "-c", CHILD.format(root=str(args.source or ROOT), source=str(args.source or ""))]
        if args.generated:  # the model's share depends on the longest chunks, not on the repository's size
            pipeline, pipeline_peak = measured(child + ["pipeline", str(repo), "0"], env)
            print(f"pipeline       peak RSS {pipeline_peak:7.0f} MiB  {pipeline}", flush=True)
            return
        imports, imports_peak = measured(child + ["imports", str(repo), "0"], env)
        print(f"imports only   peak RSS {imports_peak:7.0f} MiB", flush=True)
        embedder, embedder_peak = measured(child + ["embedder", str(repo), str(args.embedded)], env)
        print(f"embedder       peak RSS {embedder_peak:7.0f} MiB  {embedder}", flush=True)
        pipeline, pipeline_peak = measured(child + ["pipeline", str(repo), "1" if args.refresh else "0"], env)
        print(f"pipeline       peak RSS {pipeline_peak:7.0f} MiB  {pipeline}", flush=True)
        added = embedder_peak - embedder["rss_before_load_mib"]
        print(f"the embedder adds {added:.0f} MiB to the RSS it found (peak - RSS before loading it); estimate "
              f"for a real index: {pipeline_peak + added:.0f} MiB (pipeline + what the embedder adds)")
        if args.full:
            # The pipeline's stand-in vectors sit in the embedding cache under minilm's keys: a real index must
            # start from nothing, or it would embed nothing.
            shutil.rmtree(repo / ".codesearch")
            started = time.perf_counter()
            report, peak = measured([sys.executable, "-m", "codesearch", "index", str(repo), "--rebuild", "--model",
                                     "minilm", "--json"], env, args.series)
            print(f"real index     peak RSS {peak:7.0f} MiB  {report}  {time.perf_counter() - started:.0f} s", flush=True)
            disk = sum(path.stat().st_size for path in (repo / ".codesearch").rglob("*") if path.is_file())
            print(f"real index     on disk {disk / 2**20:.1f} MiB ({disk / report['chunks']:.0f} B/chunk)", flush=True)
            # Refreshes through the CLI with the real model: one function added to a Python file, then nothing.
            target = max((path for path in repo.rglob("*.py") if ".codesearch" not in path.parts
                          and path.stat().st_size < 40_000), key=lambda path: path.stat().st_size)
            target.write_text(target.read_text() + "\n\ndef added_by_the_full_benchmark(value):\n    return value + 1\n")
            for name in ("one-function refresh", "no-op refresh"):
                blocks = resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock
                started = time.perf_counter()
                refreshed, _ = measured([sys.executable, "-m", "codesearch", "index", str(repo), "--json"], env)
                written = (resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock - blocks) * 512 / 2**20
                print(f"{name}: {time.perf_counter() - started:.2f} s (a whole process, the model loaded when "
                      f"something is embedded), embedded {refreshed.get('embedded')}, {written:.2f} MiB written",
                      flush=True)


if __name__ == "__main__":
    main()
