"""The package's shape, read from its source: floors that only import downwards, no circles, no private
name used outside its module, small modules, and a short top level. Every import counts, those inside
functions and under TYPE_CHECKING too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "codesearch"
# Lowest first: a module may import from its own floor or a lower one.
FLOORS = ["", "source", "index", "embedding", "indexer", "query", "org", "server", "cli"]
TOP_LEVEL_MODULES = 6
MAX_MODULE_LINES = 450


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imports_of(path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import of codesearch in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.split(".")[0] == "codesearch"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "codesearch":
            assert node.level == 0, f"{path.name}: a relative import"
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.append((submodule, []) if submodule in modules else (node.module, [alias.name]))
    return found


def floor(module: str) -> int:
    """A package's modules stand on its floor; top-level modules on the ground; `python -m codesearch` on top."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return len(FLOORS)
    return FLOORS.index(parts[1]) if len(parts) >= 2 and parts[1] in FLOORS else 0


def import_graph() -> dict[str, dict[str, list[str]]]:
    modules = module_files()
    graph = {}
    for module, path in modules.items():
        edges: dict[str, list[str]] = {}
        for imported, names in imports_of(path, modules):
            assert imported in modules, f"{module} imports {imported}, which does not exist"
            edges.setdefault(imported, []).extend(names)
        graph[module] = edges
    return graph


def test_every_import_goes_down_a_floor_or_stays_on_its_own():
    upward = [f"{module} -> {imported}" for module, edges in import_graph().items() for imported in edges
              if floor(imported) > floor(module)]
    assert upward == []


def test_the_imports_have_no_circle():
    graph = import_graph()
    state: dict[str, str] = {}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in graph[module]:
            if imported == module or imported == "codesearch":
                continue
            if state.get(imported) == "open":
                circles.append(" -> ".join(path[path.index(imported):] + [imported]))
            elif imported not in state:
                visit(imported, path + [imported])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_no_private_name_is_imported_from_another_module():
    crossing = [f"{module} imports {name} from {imported}" for module, edges in import_graph().items()
                for imported, names in edges.items() for name in names if name.startswith("_") and name != "__version__"]
    assert crossing == []


def test_modules_are_small_and_the_top_level_is_short():
    modules = module_files()
    long = {module: lines for module, path in modules.items()
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}
    top_level = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top_level) <= TOP_LEVEL_MODULES, top_level
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"} == set(FLOORS[1:])
