"""Call sites found by `codesearch callers` against jedi's references, on real Python packages.

    python benchmarks/navigation_accuracy.py [--packages flask==3.1.0,requests==2.32.3,click==8.1.8]
                                             [--targets 40] [--model minilm]

Each package's sdist is committed into a temporary git repository and indexed. Targets: up to --targets
functions and methods defined (a `def` line) in the package's own code (not tests or docs), drawn with a
fixed seed among those with at least one call site jedi finds. For each, the truth is jedi's references (Script.get_references,
project scope) that are calls (the name followed by "("), the definition itself left out; ours are the call
sites `codesearch callers` lists for that definition (query/navigate.py), and those `callers --all` lists
(ambiguous calls among more than two definitions too). Prints per package and overall the precision and
recall of call sites (path and line), micro-averaged, for both.
jedi (a maintained library on PyPI) is needed by this script only.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refresh import make_repository  # noqa: E402

SKIPPED = re.compile(r"(^|/)(tests?|docs?|examples?)/")


def jedi_targets(repo: Path, project) -> list:
    import jedi

    found = []
    for path in sorted(repo.rglob("*.py")):
        relative = path.relative_to(repo).as_posix()
        if SKIPPED.search(relative):
            continue
        script = jedi.Script(path=str(path), project=project)
        lines = path.read_text(encoding="utf-8").split("\n")
        found += [(relative, name) for name in script.get_names(all_scopes=True, definitions=True)
                  if name.type == "function" and not name.name.startswith("__")
                  and re.match(rf"\s*(async\s+)?def\s+{re.escape(name.name)}\b", lines[name.line - 1])]
    return found


def jedi_calls(repo: Path, project, relative: str, name) -> set[tuple[str, int]]:
    import jedi

    script = jedi.Script(path=str(repo / relative), project=project)
    calls = set()
    for reference in script.get_references(name.line, name.column, scope="project"):
        if reference.is_definition() or reference.module_path is None:
            continue
        path = Path(reference.module_path)
        try:
            line = path.read_text(encoding="utf-8").split("\n")[reference.line - 1]
        except (OSError, IndexError, UnicodeDecodeError):
            continue
        if line[reference.column + len(name.name):].lstrip().startswith("("):
            calls.add((path.relative_to(repo).as_posix(), reference.line))
    return calls


def our_calls(graph, relative: str, name, everything: bool = False) -> set[tuple[str, int]]:
    """The call sites `codesearch callers` lists for the target (with --all when `everything`)."""
    trees = graph.callers(name.name, everything=everything)
    tree = next((tree for tree in trees if tree.chunk.path == relative
                 and tree.chunk.start_line <= name.line <= tree.chunk.end_line), None)
    return {(child.site.chunk.path, child.site.line) for child in tree.children} if tree else set()


def score(requirement: str, count: int, model: str, verbose: bool = False) -> tuple[int, ...]:
    import jedi

    from codesearch.index.store import IndexStore, index_dir
    from codesearch.indexer.build import index_repository
    from codesearch.query.navigate import CodeGraph

    with tempfile.TemporaryDirectory() as scratch:
        repo = make_repository(requirement, Path(scratch))
        index_repository(repo, model=model)
        # A src layout's package is imported by its tests as installed: jedi must find it there.
        project = jedi.Project(str(repo), added_sys_path=[str(repo / "src")] if (repo / "src").is_dir() else [])
        candidates = jedi_targets(repo, project)
        random.Random(0).shuffle(candidates)
        store = IndexStore.open(index_dir(repo))
        graph = CodeGraph(store.database)
        found = truth = both = all_found = all_both = 0
        taken = 0
        try:
            for relative, name in candidates:
                expected = jedi_calls(repo, project, relative, name)
                if not expected:
                    continue
                ours = our_calls(graph, relative, name)
                every = our_calls(graph, relative, name, everything=True)
                all_found, all_both = all_found + len(every), all_both + len(every & expected)
                if verbose and ours != expected:
                    print(f"  {relative}:{name.line} {name.name}: missed {sorted(expected - ours)[:6]} "
                          f"extra {sorted(ours - expected)[:6]}")
                found, truth, both = found + len(ours), truth + len(expected), both + len(ours & expected)
                taken += 1
                if taken >= count:
                    break
        finally:
            store.close()
    report(requirement, taken, found, truth, both, all_found, all_both)
    return found, truth, both, all_found, all_both


def report(label: str, taken, found: int, truth: int, both: int, all_found: int, all_both: int) -> None:
    print(f"{label:22} targets {taken:>3}  call sites: jedi {truth:4}, ours {found:4}, both {both:4}  "
          f"precision {both / max(found, 1):.3f}  recall {both / max(truth, 1):.3f};  with --all: "
          f"ours {all_found:4}, precision {all_both / max(all_found, 1):.3f}, "
          f"recall {all_both / max(truth, 1):.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packages", default="flask==3.1.0,requests==2.32.3,click==8.1.8")
    parser.add_argument("--targets", type=int, default=40)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--verbose", action="store_true", help="print each target's missed and extra sites")
    args = parser.parse_args()
    totals = [score(requirement, args.targets, args.model, args.verbose) for requirement in args.packages.split(",")]
    report("all", "", *(sum(column) for column in zip(*totals)))


if __name__ == "__main__":
    main()
