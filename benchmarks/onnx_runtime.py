"""MiniLM on torch (fp32, and bf16 where the CPU has AMX) vs ONNX Runtime (fp32 and int8) on real chunks:
chunks/s side by side, and how close the vectors are (issue 19, targets 1 and 2).

    python benchmarks/onnx_runtime.py [--source DIR] [--chunks 200] [--runs 5] [--threads 2]
                                      [--budgets 512,4096] [--runtimes onnx]

Chunks come from DIR (default: this repository's own source) cut by the product's chunker at MiniLM's
window, a fixed random sample of them. Each run embeds the same chunks with every runtime, in turn
(alternating, so a change in the machine's load hits all of them alike), through the product's own
Embedder.encode_documents (tokenization in a second thread included). The medians of the runs and their
ratios to torch fp32 are printed, then each runtime's cosine to torch fp32's vectors (min, mean) on those
chunks and on 20 queries, and whether the token ids are identical. oneDNN builds its bf16 kernels for each
new batch shape, so the first runs of torch-bf16 pay for that; a long index pays it once. `--budgets` adds
each ONNX runtime again with other padded-token budgets per batch (`onnx@4096`) beside the product's own;
`--runtimes` keeps only the runtimes named (torch fp32, the reference for the cosines, always runs).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codesearch.source.chunk import PartBudget, chunk_file  # noqa: E402
from codesearch.source.discover import discover_files  # noqa: E402
from codesearch.embedding.spec import resolve_model  # noqa: E402
from codesearch.embedding.load import load_embedder  # noqa: E402
from codesearch.embedding.weights import pin_model  # noqa: E402
from codesearch.hardware import cpu_has_amx_bf16  # noqa: E402
from dataclasses import replace  # noqa: E402

# (name, runtime, dtype the documents are computed in)
VARIANTS = [("torch", "torch", "float32"), ("torch-bf16", "torch", "bfloat16"), ("onnx", "onnx", "float32"),
            ("onnx-int8", "onnx-int8", "float32")]
QUERIES = ["retry failed uploads with backoff", "read a json settings file", "where are scores fused",
           "stop the server when idle", "open a file without following links", "hash the model weights",
           "tokenize the next slice in a thread", "which languages are supported", "the lock file of a server",
           "parse a query file", "exponential delay", "write the index atomically", "load the model on a gpu",
           "mean pooling of token states", "check the peer uid of a socket", "cut a function into parts",
           "BM25 over functions", "delete a damaged database", "git ls-files", "print results as vimgrep"]


def real_chunks(source: Path, count: int, seed: int = 0) -> list[str]:
    budget = PartBudget.for_window(resolve_model("minilm", runtime="torch").max_length)
    texts = []
    for found in discover_files(source):
        try:
            data = (source / found.path).read_bytes()
        except OSError:
            continue
        texts += [piece.embedding_text for piece in chunk_file(found.path, data, budget=budget)]
    random.Random(seed).shuffle(texts)
    return texts[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=ROOT, help="a git repository to take chunks from")
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--budgets", default="", help="other token budgets for the ONNX runtimes, comma-separated")
    parser.add_argument("--runtimes", default="", help="only these runtimes (and torch), comma-separated")
    args = parser.parse_args()
    texts = real_chunks(args.source.resolve(), args.chunks)
    embedders = {}
    variants = [variant for variant in VARIANTS if variant[2] != "bfloat16" or cpu_has_amx_bf16()]
    if args.runtimes:
        variants = [variant for variant in variants if variant[0] in {"torch", *args.runtimes.split(",")}]
    budgets = [int(budget) for budget in args.budgets.split(",") if budget]
    variants += [(f"{name}@{budget}", runtime, dtype, budget) for budget in budgets
                 for name, runtime, dtype in variants if runtime.startswith("onnx")]
    names = [name for name, *_ in variants]
    for name, runtime, dtype, *budget in variants:
        started = time.perf_counter()
        spec = replace(resolve_model("minilm", runtime=runtime), dtype=dtype)
        embedders[name] = load_embedder(pin_model(spec)).use_threads(args.threads)
        if budget:
            embedders[name].token_budget = budget[0]
        print(f"{name:10} loaded in {time.perf_counter() - started:.2f} s, {embedders[name].token_budget} tokens "
              f"a batch", flush=True)
    print(f"{len(texts)} chunks from {args.source}, {args.threads} threads, {args.runs} runs, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    seconds = {runtime: [] for runtime in names}
    vectors = {}
    for embedder in embedders.values():
        embedder.encode_documents(texts[:16])  # warm-up: first-call allocations, thread pools
    for run in range(args.runs):
        for runtime in (names if run % 2 == 0 else names[::-1]):
            started = time.perf_counter()
            vectors[runtime] = embedders[runtime].encode_documents(texts)
            seconds[runtime].append(time.perf_counter() - started)
        print(f"run {run + 1}: " + ", ".join(f"{runtime} {len(texts) / seconds[runtime][-1]:.1f}"
                                             for runtime in names) + " chunks/s", flush=True)
    base = statistics.median(seconds["torch"])
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    for runtime in names:
        median = statistics.median(seconds[runtime])
        cosine = (vectors[runtime] * vectors["torch"]).sum(axis=1)
        queries = (embedders[runtime].encode_queries(QUERIES) * embedders["torch"].encode_queries(QUERIES)).sum(axis=1)
        same_ids = embedders[runtime].tokenize(texts) == embedders["torch"].tokenize(texts)
        print(f"{runtime:10} median {len(texts) / median:6.1f} chunks/s  {base / median:4.2f}x torch   cosine to "
              f"torch: chunks min {cosine.min():.7f} mean {cosine.mean():.7f}, queries min {queries.min():.7f}; "
              f"token ids identical: {same_ids}")


if __name__ == "__main__":
    main()
