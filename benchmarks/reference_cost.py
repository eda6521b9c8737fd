"""What capturing references (calls, type uses, bases, imports) costs the chunker, on one core (issue 30).

    python benchmarks/reference_cost.py [CORPUS] [--rounds 5]

CORPUS: a folder of repositories (default: the dev corpus, ../evalcorpus). Every file a language's query
reads is cut in this process, one core, twice per round, in turn: as shipped, and with every reference
pattern of the query disabled (tree-sitter's Query.disable_pattern; a pattern is one when its text captures
`@reference.`) and no reference collected. Twice over: by the chunker alone (`chunk_file`), and by what
`codesearch index` runs on each core for each file (`chunk_with_terms`: the chunks and their BM25 terms).
Prints the CPU seconds of each (median over rounds), chunks/s, and the ratio; the issue's target is at most
1.25 (25 % slower).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codesearch.index.terms import chunk_with_terms  # noqa: E402
from codesearch.source import chunk as chunking  # noqa: E402
from codesearch.source.discover import discover_files  # noqa: E402
from codesearch.source.languages import load_language, query_source, spec_for_source  # noqa: E402


def without_references(spec):
    """The spec's Language and a Query of its own, its reference patterns disabled."""
    from tree_sitter import Query

    loaded = load_language(spec)
    if loaded is None:
        return None
    language, _shipped = loaded
    source = query_source(spec)
    query = Query(language, source)
    text = source.encode("utf-8")
    for pattern in range(query.pattern_count):
        # A pattern's span runs on to the next one, over the comments between them.
        lines = text[query.start_byte_for_pattern(pattern):query.end_byte_for_pattern(pattern)].split(b"\n")
        if any(b"@reference." in line for line in lines if not line.lstrip().startswith(b";")):
            query.disable_pattern(pattern)
    return language, query


def files_of(corpus: Path) -> list[tuple[str, bytes]]:
    found = []
    for repo in sorted(path for path in corpus.iterdir() if (path / ".git").exists()):
        for source in discover_files(repo):
            data = (repo / source.path).read_bytes()
            spec = spec_for_source(source.path, data)
            if spec is not None and load_language(spec) is not None:
                found.append((f"{repo.name}/{source.path}", data))
    return found


def cut_all(files: list[tuple[str, bytes]], cut) -> tuple[float, int]:
    started, chunks = time.process_time(), 0
    for path, data in files:
        chunks += len(cut(path, data))
    return time.process_time() - started, chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, nargs="?", default=ROOT.parent / "evalcorpus")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    files = files_of(args.corpus)
    shipped_load, shipped_collect = chunking.load_language, chunking.collect_references
    bare = {}

    def load_bare(spec):
        if spec not in bare:
            bare[spec] = without_references(spec)
        return bare[spec]

    print(f"{len(files)} files of {args.corpus.name}, {args.rounds} rounds, CPU seconds (median):")
    for work, cut in (("the chunker", chunking.chunk_file), ("the indexer's work per file", chunk_with_terms)):
        timings: dict[str, list[float]] = {"with references": [], "without": []}
        counts = {}
        for _ in range(args.rounds):
            for label, values in timings.items():
                chunking.load_language = shipped_load if label == "with references" else load_bare
                chunking.collect_references = shipped_collect if label == "with references" else (lambda *_: [])
                seconds, counts[label] = cut_all(files, cut)
                values.append(seconds)
        chunking.load_language, chunking.collect_references = shipped_load, shipped_collect
        print(f"{work}:")
        for label, values in timings.items():
            median = statistics.median(values)
            print(f"  {label:<16} {median:7.2f} s  {counts[label] / median:8.0f} chunks/s")
        print(f"  ratio {statistics.median(timings['with references']) / statistics.median(timings['without']):.2f}")


if __name__ == "__main__":
    main()
