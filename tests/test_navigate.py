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
    repo = tmp_path_factory.mktemp("navigate") / "repo"
    repo.mkdir()
    (repo / "config.py").write_text(CONFIG)
    (repo / "app.py").write_text(APP)
    (repo / "tools.js").write_text(TOOLS_JS)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "app")
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
    for args in (("refs", "x", "--kind", "bogus"), ("callers", "x", "--depth", "0"), ("defs", "x", "--lang", "cobol")):
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
