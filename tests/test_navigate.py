"""Code navigation through the CLI: defs, refs, callers and callees over the index's code graph, resolved by
name and narrowed by what each file can see; kept current by the refresh like every other answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import codesearch, git

CONFIG = '''import json


def parse_config(path):
    with open(path) as handle:
        return json.load(handle)


class Settings(Base):
    def load(self, path):
        return parse_config(path)
'''
APP = '''from config import parse_config, Settings


def main():
    settings = Settings()
    data = parse_config("app.json")
    return start(data)


def start(data):
    return main_loop(data)
'''
TOOLS_JS = '''import { parseConfig } from "./config.js";

export function boot(path) {
  return parseConfig(path).then(start);
}
'''


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return indexed_repository(tmp_path_factory.mktemp("navigate") / "repo",
                              {"config.py": CONFIG, "app.py": APP, "tools.js": TOOLS_JS})


def indexed_repository(repo: Path, files: dict[str, str]) -> Path:
    """A repository of these files in one commit, indexed with minilm."""
    repo.mkdir()
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "files")
    codesearch("index", str(repo), "--model", "minilm", check=True)
    return repo


def lines(repo: Path, *args: str) -> list[dict]:
    result = codesearch(*args, "--json", cwd=repo)
    assert result.returncode in (0, 1), result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_defs_finds_a_definition_bare_or_qualified(repo):
    assert [(d["path"], d["start_line"], d["kind"]) for d in lines(repo, "defs", "parse_config")] == [
        ("config.py", 4, "function")]
    assert [d["symbol"] for d in lines(repo, "defs", "Settings.load")] == ["Settings.load"]
    assert lines(repo, "defs", "Other.load") == []
    assert codesearch("defs", "no_such_name", cwd=repo).returncode == 1


def test_refs_lists_every_site_with_its_enclosing_definition_and_resolution(repo):
    sites = {(s["path"], s["line"], s["kind"], s["in"]["symbol"], s["resolved"])
             for s in lines(repo, "refs", "parse_config")}
    assert sites == {("app.py", 1, "import", "app.py", "imported"), ("app.py", 6, "call", "main", "imported"),
                     ("config.py", 11, "call", "Settings.load", "same file")}
    assert {s["path"] for s in lines(repo, "refs", "parse_config", "--kind", "call", "--path", "app.py")} == {"app.py"}


def test_a_library_call_through_an_imported_module_is_not_a_call_of_a_local_namesake(repo):
    # json.load is json's, not Settings.load
    assert [s["resolved"] for s in lines(repo, "refs", "load", "--kind", "call")] == ["not defined here"]
    assert lines(repo, "callers", "Settings.load")[0]["children"] == []


def test_callers_and_callees_are_trees(repo):
    (tree,) = lines(repo, "callers", "parse_config", "--depth", "2")
    assert {child["symbol"] for child in tree["children"]} == {"main", "Settings.load"}
    (tree,) = lines(repo, "callees", "main", "--depth", "2")
    children = {child["symbol"]: child for child in tree["children"]}
    assert set(children) == {"Settings", "parse_config", "start"}
    assert {grandchild["symbol"] for grandchild in children["start"]["children"]} == {"main_loop"}
    assert children["start"]["children"][0]["kind"] == "external"
    text = codesearch("callers", "parse_config", cwd=repo).stdout
    assert "  main  app.py:4  via app.py:6 [imported]" in text


def test_navigation_follows_the_working_tree(repo, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, symlinks=True)
    (copy / "extra.py").write_text("from config import parse_config\n\n\ndef reload():\n    return parse_config('x')\n")
    assert "reload" in {child["symbol"] for child in lines(copy, "callers", "parse_config")[0]["children"]}


def test_bad_options_are_one_line_errors(repo):
    # The command line's own errors too (typer 0.28 raises them from its copy of click): an unknown option of
    # the program or of a command, an unknown command, a missing argument, a value of the wrong type.
    for args in (("refs", "x", "--kind", "bogus"), ("callers", "x", "--depth", "0"), ("defs", "x", "--lang", "cobol"),
                 ("--bogus",), ("status", "--bogus"), ("bogus",), ("hook", "bogus"), ("defs",),
                 ("callers", "x", "--depth", "zz")):
        result = codesearch(*args, cwd=repo)
        assert result.returncode == 2 and result.stderr.startswith("codesearch: error:") and \
            len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_impact_reaches_the_callers_of_what_a_line_defines(repo):
    reached = [(r["symbol"], r["distance"]) for r in lines(repo, "impact", "config.py:5")]
    assert reached == [("parse_config", 0), ("main", 1), ("Settings.load", 1)]
    assert codesearch("impact", "nowhere.py", cwd=repo).returncode == 1


def test_the_map_ranks_what_is_called_most_and_fits_its_budget(repo):
    entries = lines(repo, "map")
    assert entries[0]["symbol"] == "parse_config"  # called from two files
    assert len(lines(repo, "map", "--max-tokens", "20")) < len(entries)
    focused = lines(repo, "map", "--focus", "tools.js")
    assert focused[0]["path"] == "tools.js"


def test_an_index_built_without_the_code_graph_asks_to_be_rebuilt(repo, tmp_path):
    import shutil
    import sqlite3

    copy = tmp_path / "old"
    shutil.copytree(repo, copy, symlinks=True)
    database = sqlite3.connect(copy / ".codesearch" / "index.sqlite")
    with database:
        database.execute("UPDATE manifest SET value = '4' WHERE key = 'chunker_version'")
    database.close()
    result = codesearch("callers", "parse_config", cwd=copy)
    assert result.returncode == 2 and "run `codesearch index` to rebuild it" in result.stderr, result.stderr


# -- resolution narrowed by what the code can see, without type-checking ----------------------------------------

STORE = '''import os
import json as _json
from werkzeug.exceptions import abort


class Base:
    def save(self):
        return os.path.join("a", "b")

    def get(self, key):
        return key


class Child(Base):
    def run(self):
        self.save()
        return super().get("k")

    def get(self, key):
        return _json.dumps(key)


class Other:
    def save(self):
        return abort(404)

    def get(self, key):
        return None


def use(thing, cache):
    Child().run()
    cache.save()
    return thing.get("x")
'''
PATHS = '''def abort(code):
    return code


def join(*parts):
    return "/".join(parts)


def dumps(value):
    return str(value)
'''
HELPERS_JS = '''const { render } = require("./view.js");
const vary = require("vary");

res.set = res.header = function header(field) {
  vary(this, field);
  return render(field);
};
'''
VIEW_JS = '''exports.render = function render(template) {
  return template;
};

function vary(response, field) {
  return field;
}
'''


@pytest.fixture(scope="module")
def resolving(tmp_path_factory) -> Path:
    return indexed_repository(tmp_path_factory.mktemp("resolving") / "repo",
                              {"store.py": STORE, "paths.py": PATHS, "helpers.js": HELPERS_JS, "view.js": VIEW_JS})


def calls(repo: Path, name: str) -> dict[int, str]:
    return {site["line"]: site["resolved"] for site in lines(repo, "refs", name, "--kind", "call")}


def callers_of(repo: Path, name: str, *options: str) -> set[str]:
    return {child["symbol"] for tree in lines(repo, "callers", name, *options) for child in tree["children"]}


def test_self_and_super_mean_the_enclosing_class_and_its_bases(resolving):
    assert calls(resolving, "save")[16] == "same class"  # self.save() in Child: Base's, not Other's
    assert "Child.run" in callers_of(resolving, "Base.save")
    assert "Child.run" not in callers_of(resolving, "Other.save")
    assert callers_of(resolving, "Base.get") == {"Child.run"}  # super().get(): the base's, not Child's own


def test_a_constructed_object_is_its_class(resolving):
    assert calls(resolving, "run")[32] == "same file"
    assert callers_of(resolving, "Child.run") == {"use"}


def test_a_library_module_or_import_is_no_local_namesake(resolving):
    # os.path.join is the library's, not the local `join`; `abort` imported from werkzeug is werkzeug's
    assert calls(resolving, "join")[8] == "not defined here"
    assert calls(resolving, "abort")[25] == "not defined here"
    assert calls(resolving, "dumps") == {20: "not defined here"}  # through `import json as _json`


def test_a_call_on_an_object_of_unknown_class_is_ambiguous_and_left_out_of_callers_unless_asked(resolving):
    assert calls(resolving, "get")[34] == "ambiguous"  # thing.get(): three classes define get
    assert "use" not in callers_of(resolving, "Other.get")
    assert "use" in callers_of(resolving, "Other.get", "--all")
    assert calls(resolving, "save")[33] == "ambiguous"  # cache.save(): two candidates, still listed
    assert "use" in callers_of(resolving, "Other.save")
    # callees lists an ambiguous call's candidates but follows them only when asked
    followed = {options: {child["symbol"]: child["children"] for child in
                          lines(resolving, "callees", "use", "--depth", "2", *options)[0]["children"]}
                for options in ((), ("--all",))}
    assert followed[()]["Child.get"] == [] and followed[("--all",)]["Child.get"][0]["symbol"] == "dumps"


def test_javascript_require_is_an_import_and_chained_assignments_define_the_outer_name(resolving):
    assert [d["symbol"] for d in lines(resolving, "defs", "set")] == ["res.set"]
    assert calls(resolving, "render") == {6: "imported"}
    assert calls(resolving, "vary") == {5: "not defined here"}  # the package's, not view.js's function


# -- paging, as `codesearch query` and the MCP tools page ----------------------------------------------------


def test_navigation_pages_by_offset_and_token_budget(repo):
    every = lines(repo, "refs", "parse_config")
    (first,) = lines(repo, "refs", "parse_config", "--max-tokens", "100")
    assert first["total"] == len(every) and first["results"] == every[:len(first["results"])]
    assert first["next_offset"] == len(first["results"]) < len(every)
    (rest,) = lines(repo, "refs", "parse_config", "--max-tokens", "10000", "--offset", str(first["next_offset"]))
    assert first["results"] + rest["results"] == every and rest["next_offset"] is None
    assert lines(repo, "refs", "parse_config", "--offset", "1") == every[1:]
    (trees,) = lines(repo, "callers", "parse_config", "--max-tokens", "100")
    assert trees["results"][0]["symbol"] == "parse_config" and trees["next_offset"] is None
    (reached,) = lines(repo, "impact", "config.py:5", "--max-tokens", "100", "--offset", "1")
    assert reached["results"][0]["distance"] == 1 and reached["total"] == 3
    (found,) = lines(repo, "defs", "parse_config", "--max-tokens", "100")
    assert found["results"][0]["path"] == "config.py"
    assert codesearch("refs", "parse_config", "--offset", "9", cwd=repo).returncode == 1


def test_bad_paging_options_are_one_line_errors(repo):
    for args, needle in ((("refs", "x", "--max-tokens", "100"), "--max-tokens needs --json"),
                         (("refs", "x", "--json", "--max-tokens", "50"), "--max-tokens must be at least 100"),
                         (("callers", "x", "--offset", "-1"), "--offset must be 0 or more")):
        result = codesearch(*args, cwd=repo)
        assert result.returncode == 2 and needle in result.stderr and \
            len(result.stderr.strip().splitlines()) == 1, result.stderr
