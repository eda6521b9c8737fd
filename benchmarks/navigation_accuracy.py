"""Call sites found by `codesearch callers` against jedi's references, on real Python packages.

    python benchmarks/navigation_accuracy.py [--packages flask==3.1.0,requests==2.32.3,click==8.1.8]
                                             [--targets 40] [--model minilm]

Each package's sdist is committed into a temporary git repository and indexed. Targets: up to --targets
functions and methods defined (a `def` line) in the package's own code (not tests or docs), drawn with a
fixed seed among those with at least one call site jedi finds. For each, the truth is jedi's own answer at
every place the name is called (`name(` in any Python file of the repository, `x.name(` too): the sites
where its goto (following imports) reaches the target's definition, definitions left out (jedi's goto on
an overriding `def` gives the base's). `--truth references` takes Script.get_references (project scope)
instead, calls only, with its search's limits lifted; `references-limited` with them (the truth before
2026-12-05), which parses at most 30 files holding the name and loses most of a common name's callers.
Ours are the call sites `codesearch callers` lists for that definition (query/navigate.py), and those
`callers --all` lists (ambiguous calls among more than two definitions too). Prints per package and
overall the precision and recall of call sites (path and line), micro-averaged, for both.
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
    """The calls of the target that jedi's references give: its search of the project for files holding the
    name, each occurrence there resolved by its goto."""
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


class EverySite:
    """The calls of a target by jedi's goto at every place its name is called in the repository's Python
    files: what get_references would give without its bounds (its search parses at most 30 files holding
    the name, and its one inference state answers nothing once it has executed 200 functions: most calls
    on a pytest fixture's object were lost so)."""

    def __init__(self, repo: Path, project) -> None:
        self.repo, self.project = repo, project
        self.texts = {path.relative_to(repo).as_posix(): path.read_text(encoding="utf-8", errors="replace")
                      for path in sorted(repo.rglob("*.py"))}

    def calls(self, relative: str, name) -> set[tuple[str, int]]:
        import jedi

        pattern = re.compile(rf"\b({re.escape(name.name)})\s*\(")
        target = (str((self.repo / relative).resolve()), name.line)
        calls = set()
        for path, text in self.texts.items():
            if name.name not in text:
                continue
            for number, line in enumerate(text.split("\n"), 1):
                for match in pattern.finditer(line):
                    if (path, number) in calls or re.search(r"\bdef\s*$", line[:match.start(1)]):
                        continue  # a definition, the target's own or an override (goto gives the base's)
                    # A Script of its own for each site: one Script's inference state stops inferring once
                    # it has executed 200 functions (jedi's recursion guard), and answers nothing after.
                    script = jedi.Script(text, path=str(self.repo / path), project=self.project)
                    try:
                        found = script.goto(number, match.start(1), follow_imports=True)
                    except Exception:  # noqa: BLE001 - jedi's own failure on odd code: no answer for that site
                        continue
                    if any(d.module_path and (str(Path(d.module_path).resolve()), d.line) == target for d in found):
                        calls.add((path, number))
        return calls


def our_calls(graph, relative: str, name, everything: bool = False) -> set[tuple[str, int]]:
    """The call sites `codesearch callers` lists for the target (with --all when `everything`)."""
    trees = graph.callers(name.name, everything=everything)
    tree = next((tree for tree in trees if tree.chunk.path == relative
                 and tree.chunk.start_line <= name.line <= tree.chunk.end_line), None)
    return {(child.site.chunk.path, child.site.line) for child in tree.children} if tree else set()


def lift_jedi_limits() -> None:
    """jedi's references search parses at most 30 files holding the name, and opens at most 2,000, for an
    editor's latency; the truth wants every file."""
    from jedi.inference import references

    references._PARSED_FILE_LIMIT = references._OPENED_FILE_LIMIT = 10 ** 9


def score(requirement: str, count: int, model: str, verbose: bool = False, truth_of: str = "goto") -> tuple[int, ...]:
    import jedi

    from codesearch.index.store import IndexStore, index_dir
    from codesearch.indexer.build import index_repository
    from codesearch.query.navigate import CodeGraph

    with tempfile.TemporaryDirectory() as scratch:
        repo = make_repository(requirement, Path(scratch))
        index_repository(repo, model=model)
        # A src layout's package is imported by its tests as installed: jedi must find it there, before a copy
        # of the same package installed in this environment (jedi would put an added path after those).
        source = [str(repo / "src")] if (repo / "src").is_dir() else []
        project = jedi.Project(str(repo), sys_path=source + jedi.get_default_environment().get_sys_path())
        candidates = jedi_targets(repo, project)
        random.Random(0).shuffle(candidates)
        store = IndexStore.open(index_dir(repo))
        graph = CodeGraph(store.database)
        every_site = EverySite(repo, project) if truth_of == "goto" else None
        found = truth = both = all_found = all_both = 0
        taken = 0
        try:
            for relative, name in candidates:
                expected = (every_site.calls(relative, name) if every_site
                             else jedi_calls(repo, project, relative, name))
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
    parser.add_argument("--truth", choices=("goto", "references", "references-limited"), default="goto",
                        help="jedi's goto at every call of the name (the default); its get_references with its "
                             "search's file limits lifted; or with them, the truth before 2026-12-05")
    args = parser.parse_args()
    if args.truth == "references":
        lift_jedi_limits()
    totals = [score(requirement, args.targets, args.model, args.verbose, args.truth)
              for requirement in args.packages.split(",")]
    report("all", "", *(sum(column) for column in zip(*totals)))


if __name__ == "__main__":
    main()
