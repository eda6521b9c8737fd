#!/usr/bin/env python3
"""Markdown tables from score.py summaries (--out JSON): one column per run, one row per language.

Usage: python benchmarks/mined/tables.py A.json B.json ... [--metric nDCG@10] [--mine mine-stats.json]
                                          [--queries 'OUT/symbols/*.jsonl']
Prints nDCG@10 (or --metric) by language and style, the overall MRR@10 / R@1 / R@10, the timings,
with --queries one row per query kind (the `kind` field mine_sets.py writes), and, with --mine,
the number of queries per language and repository.
"""

from __future__ import annotations

import argparse
import glob
import json
from collections import defaultdict
from pathlib import Path

METRICS = ("MRR@10", "R@1", "R@5", "R@10", "nDCG@10")


def cell(agg: dict | None, metric: str) -> str:
    if not agg or agg.get(metric) is None:
        return "-"
    return f"{agg[metric]:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("summaries", nargs="+")
    ap.add_argument("--metric", default="nDCG@10", choices=METRICS)
    ap.add_argument("--mine", help="mine-stats.json written by mine.py")
    ap.add_argument("--queries", nargs="+", default=[], help="query files (globs) whose `kind` adds rows")
    args = ap.parse_args()
    runs = []
    for fn in args.summaries:
        p = Path(fn)
        if p.is_file():
            runs.append(json.loads(p.read_text(encoding="utf-8")))
    if not runs:
        raise SystemExit("no summaries found")
    names = [r["name"] for r in runs]
    langs = sorted({l for r in runs for l in r["by_language"]})
    styles = sorted({s for r in runs for s in r["by_style"]})
    n_of = {l: max(r["by_language"].get(l, {}).get("n", 0) for r in runs) for l in langs}
    repos_of = defaultdict(set)
    for r in runs:
        for q in r["queries"]:
            repos_of[q["language"]].add(q["repo"])

    m = args.metric
    print(f"| {m} | queries | repos | " + " | ".join(names) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in names) + " |")
    print(f"| **all** | {runs[0]['overall']['n']} | {len({q['repo'] for q in runs[0]['queries']})} | "
          + " | ".join(f"**{cell(r['overall'], m)}**" for r in runs) + " |")
    for l in langs:
        print(f"| {l} | {n_of[l]} | {len(repos_of[l])} | "
              + " | ".join(cell(r["by_language"].get(l), m) for r in runs) + " |")
    for s in styles:
        n = max(r["by_style"].get(s, {}).get("n", 0) for r in runs)
        print(f"| style:{s} | {n} | | " + " | ".join(cell(r["by_style"].get(s), m) for r in runs) + " |")
    kind_of = {}
    for fn in (f for pattern in args.queries for f in sorted(glob.glob(pattern))):
        for line in Path(fn).read_text(encoding="utf-8").splitlines():
            if line.strip():
                q = json.loads(line)
                kind_of[q["id"]] = q.get("kind", "-")
    kinds = sorted(set(kind_of.values()))
    # With several kinds, each language's mix of them would hide its scores: split them too.
    groups = [(k, None) for k in kinds] + ([(k, lang) for k in kinds for lang in langs] if len(kinds) > 1 else [])
    for kind, lang in groups:
        rows = [[q for q in r["queries"] if kind_of.get(q["id"]) == kind and lang in (None, q["language"])]
                for r in runs]
        if not any(rows):
            continue
        means = [sum(q["metrics"][m] for q in qs) / len(qs) if qs else None for qs in rows]
        print(f"| kind:{kind}{'/' + lang if lang else ''} | {max(map(len, rows))} | | "
              + " | ".join("-" if v is None else f"{v:.3f}" for v in means) + " |")
    print()
    print("| all queries | " + " | ".join(METRICS) + " | index s (total) | query ms/q |")
    print("| --- | " + " | ".join("---" for _ in METRICS) + " | --- | --- |")
    for r in runs:
        t = r["totals"]
        idx = f"{t['index_seconds']:.0f}" if t.get("index_seconds") is not None else "(reused)"
        qms = f"{t['query_ms_per_query']:.1f}" if t.get("query_ms_per_query") is not None else "-"
        print(f"| {r['name']} | " + " | ".join(cell(r["overall"], x) for x in METRICS) + f" | {idx} | {qms} |")
    errors = [(r["name"], repo, e) for r in runs for repo, p in r["repos"].items() for e in p.get("errors", [])]
    for name, repo, e in errors:
        print(f"\nerror in {name}, {repo}: {e}")
    if args.mine:
        stats = json.loads(Path(args.mine).read_text(encoding="utf-8"))
        scored = {q["repo"] for r in runs for q in r["queries"]}
        stats = {k: v for k, v in stats.items() if k in scored}
        print("\n| repository | language | queries | candidates | with doc | dropped: duplicate | leaked | junk | < 3 lines |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for repo, s in stats.items():
            junk = sum(v for k, v in s.items() if k.startswith("drop_") and k not in
                       ("drop_duplicate", "drop_leaked", "drop_under_3_lines"))
            print(f"| {repo} | {s['language']} | {s.get('queries', 0)} | {s.get('candidates', 0)} | "
                  f"{s.get('with_doc', 0)} | {s.get('drop_duplicate', 0)} | {s.get('drop_leaked', 0)} | {junk} | "
                  f"{s.get('drop_under_3_lines', 0)} |")


if __name__ == "__main__":
    main()
