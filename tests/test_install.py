"""`codesearch install AGENT` writes our MCP server entry into each agent's own config file, keeps everything
else in it, changes nothing when run again, removes only ours, writes nothing on --dry-run, and refuses files it
cannot parse and config paths that are symbolic links. Every test uses a temporary repository and home."""

from __future__ import annotations

import json
import os
import stat
import sys
import tomllib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from codesearch.cli import install as install_module
from codesearch.cli.install import apply, config_path, install_command, launcher, plan_install
from codesearch.cli.terminal import CommandGroup
from codesearch.errors import CodesearchError
from conftest import git

COMMAND = ["/opt/codesearch/bin/codesearch"]
CASES = [("claude-code", "project"), ("claude-code", "user"), ("codex", "project"), ("codex", "user"),
         ("cursor", "project"), ("cursor", "user"), ("gemini", "project"), ("gemini", "user"),
         ("opencode", "project"), ("opencode", "user"), ("vscode", "project")]
RELATIVE = {("claude-code", "project"): ".mcp.json", ("claude-code", "user"): ".claude.json",
            ("codex", "project"): ".codex/config.toml", ("codex", "user"): ".codex/config.toml",
            ("cursor", "project"): ".cursor/mcp.json", ("cursor", "user"): ".cursor/mcp.json",
            ("gemini", "project"): ".gemini/settings.json", ("gemini", "user"): ".gemini/settings.json",
            ("opencode", "project"): "opencode.json", ("opencode", "user"): ".config/opencode/opencode.json",
            ("vscode", "project"): ".vscode/mcp.json"}
SERVERS_KEY = {"claude-code": "mcpServers", "cursor": "mcpServers", "gemini": "mcpServers", "vscode": "servers",
               "opencode": "mcp", "codex": "mcp_servers"}
OTHER_SERVER = {"opencode": {"type": "local", "command": ["npx", "-y", "other"], "enabled": True},
                "vscode": {"type": "stdio", "command": "npx", "args": ["-y", "other"]}}
ids = [f"{agent}-{scope}" for agent, scope in CASES]


@pytest.fixture
def places(tmp_path):
    repo, home = tmp_path / "repo", tmp_path / "home"
    repo.mkdir()
    home.mkdir()
    git(repo, "init", "-q")
    return repo, home


def plan(agent, scope, repo, home, uninstall=False):
    return plan_install(agent, scope, repo if scope == "project" else None, home, uninstall, environ={},
                        command=COMMAND)


def target(agent, scope, repo, home) -> Path:
    return (repo if scope == "project" else home) / RELATIVE[agent, scope]


def entry(agent, scope, repo) -> dict:
    args = ["mcp", "--repo", str(repo)] if scope == "project" else ["mcp"]
    if agent == "opencode":
        return {"type": "local", "command": [*COMMAND, *args], "enabled": True}
    if agent == "vscode":
        return {"type": "stdio", "command": COMMAND[0], "args": args}
    return {"command": COMMAND[0], "args": args}


def parse(path: Path, agent: str) -> dict:
    text = path.read_text(encoding="utf-8")
    return tomllib.loads(text) if agent == "codex" else json.loads(text)


def other_settings(agent: str) -> tuple[str, dict]:
    """A config file holding another server and another setting, as text and as parsed."""
    if agent == "codex":
        text = ('# my Codex settings\nmodel = "o3"  # the model\n\n[mcp_servers.other]\ncommand = "npx"\n'
                'args = ["-y", "other"]\n\n[profiles.fast]\nmodel = "o4-mini"\n')
        return text, tomllib.loads(text)
    document = {"theme": "dark", SERVERS_KEY[agent]: {"other": OTHER_SERVER.get(agent, {"command": "npx",
                                                                                         "args": ["-y", "other"]})},
                "z_last": [1, 2, {"é": None}]}
    return json.dumps(document, indent=4, ensure_ascii=False) + "\n", document


def with_ours(agent, document: dict, ours: dict) -> dict:
    copied = json.loads(json.dumps(document))
    copied.setdefault(SERVERS_KEY[agent], {})["codesearch"] = ours
    return copied


@pytest.mark.parametrize("agent,scope", CASES, ids=ids)
def test_install_creates_the_missing_file_with_only_our_entry(places, agent, scope):
    repo, home = places
    changes = plan(agent, scope, repo, home)
    lines = apply(changes)
    path = target(agent, scope, repo, home)
    assert [change.path for change in changes] == [path]
    assert parse(path, agent) == {SERVERS_KEY[agent]: {"codesearch": entry(agent, scope, repo)}}
    assert path.read_text(encoding="utf-8").endswith("\n")
    assert len(lines) == 1 and lines[0].startswith("added ") and str(path) in lines[0]


@pytest.mark.parametrize("agent,scope", CASES, ids=ids)
def test_install_keeps_every_other_entry_and_setting(places, agent, scope):
    repo, home = places
    path = target(agent, scope, repo, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    original, document = other_settings(agent)
    path.write_text(original, encoding="utf-8")
    apply(plan(agent, scope, repo, home))
    written = path.read_text(encoding="utf-8")
    assert parse(path, agent) == with_ours(agent, document, entry(agent, scope, repo))
    if agent == "codex":
        assert "# my Codex settings" in written and '# the model' in written
    else:  # same key order, same indentation (4 here), the rest byte for byte
        assert written == json.dumps(with_ours(agent, document, entry(agent, scope, repo)), indent=4,
                                     ensure_ascii=False) + "\n"
    apply(plan(agent, scope, repo, home, uninstall=True))
    assert path.read_text(encoding="utf-8") == original


@pytest.mark.parametrize("agent,scope", CASES, ids=ids)
def test_a_second_install_changes_nothing_and_says_so(places, agent, scope):
    repo, home = places
    apply(plan(agent, scope, repo, home))
    path = target(agent, scope, repo, home)
    before, modified = path.read_bytes(), path.stat().st_mtime_ns
    changes = plan(agent, scope, repo, home)
    assert [(change.action, change.text) for change in changes] == [("unchanged", None)]
    [line] = apply(changes)
    assert line.startswith("unchanged: ") and str(path) in line
    assert path.read_bytes() == before and path.stat().st_mtime_ns == modified


@pytest.mark.parametrize("agent,scope", CASES, ids=ids)
def test_uninstall_removes_only_our_entry(places, agent, scope):
    repo, home = places
    path = target(agent, scope, repo, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    original, document = other_settings(agent)
    path.write_text(original, encoding="utf-8")
    apply(plan(agent, scope, repo, home))
    [line] = apply(plan(agent, scope, repo, home, uninstall=True))
    assert line.startswith("removed ") and str(path) in line
    assert parse(path, agent) == document
    [again] = apply(plan(agent, scope, repo, home, uninstall=True))
    assert again.startswith("unchanged: ") and "no " in again


@pytest.mark.parametrize("agent,scope", CASES, ids=ids)
def test_dry_run_writes_nothing(places, agent, scope):
    repo, home = places
    path = target(agent, scope, repo, home)
    [line] = apply(plan(agent, scope, repo, home), dry_run=True)
    assert line.startswith("would add ") and str(path) in line
    assert not path.exists()
    if path.parent not in (repo, home):
        assert not path.parent.exists(), "no folder is created on a dry run"
    apply(plan(agent, scope, repo, home))
    before = path.read_bytes()
    [line] = apply(plan(agent, scope, repo, home, uninstall=True), dry_run=True)
    assert line.startswith("would remove ")
    assert path.read_bytes() == before


@pytest.mark.parametrize("agent,scope", CASES, ids=ids)
def test_a_file_that_does_not_parse_is_refused_and_left_alone(places, agent, scope):
    repo, home = places
    path = target(agent, scope, repo, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    broken = "[mcp_servers\ncommand = \n" if agent == "codex" else '{\n  // a comment\n  "servers": {},\n}\n'
    path.write_text(broken, encoding="utf-8")
    for uninstall in (False, True):
        with pytest.raises(CodesearchError) as raised:
            plan(agent, scope, repo, home, uninstall)
        assert str(path) in str(raised.value) and "\n" not in str(raised.value)
    assert path.read_text(encoding="utf-8") == broken


@pytest.mark.parametrize("agent,scope", CASES, ids=ids)
def test_a_symlinked_config_file_is_refused(places, tmp_path, agent, scope):
    repo, home = places
    path = target(agent, scope, repo, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("{}\n", encoding="utf-8")
    path.symlink_to(elsewhere)
    with pytest.raises(CodesearchError, match="symbolic link"):
        plan(agent, scope, repo, home)
    assert elsewhere.read_text(encoding="utf-8") == "{}\n" and path.is_symlink()


@pytest.mark.parametrize("agent", ["cursor", "gemini", "vscode", "codex"])
def test_a_symlinked_folder_in_the_repository_is_refused(places, tmp_path, agent):
    repo, home = places
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / RELATIVE[agent, "project"]).parent.symlink_to(outside, target_is_directory=True)
    with pytest.raises(CodesearchError, match="symbolic link"):
        plan(agent, "project", repo, home)
    assert list(outside.iterdir()) == []


def test_the_file_keeps_its_permissions_and_a_stale_entry_is_replaced_keeping_the_users_keys(places):
    repo, home = places
    path = home / ".claude.json"
    stale = {"command": "/old/codesearch", "args": ["mcp"], "env": {"CODESEARCH_MODEL": "minilm"}}
    path.write_text(json.dumps({"numStartups": 3, "mcpServers": {"codesearch": stale}}, indent=2) + "\n")
    path.chmod(0o600)
    [line] = apply(plan("claude-code", "user", repo, home))
    assert line.startswith("replaced mcpServers.codesearch in ")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["mcpServers"]["codesearch"] == {**entry("claude-code", "user", repo),
                                                                        "env": {"CODESEARCH_MODEL": "minilm"}}
    assert os.listdir(home) == [".claude.json"], "no temporary file is left behind"


def test_opencode_v2_files_get_the_v2_shape(places):
    repo, home = places
    path = repo / "opencode.json"
    path.write_text(json.dumps({"mcp": {"servers": {"other": {"type": "local", "command": ["x"]}}}}, indent=2))
    apply(plan("opencode", "project", repo, home))
    servers = json.loads(path.read_text())["mcp"]["servers"]
    assert servers["codesearch"] == {"type": "local", "command": [*COMMAND, "mcp", "--repo", str(repo)]}
    assert list(servers) == ["other", "codesearch"]


def test_tab_indented_json_stays_tab_indented(places):
    repo, home = places
    path = repo / ".cursor" / "mcp.json"
    path.parent.mkdir()
    path.write_text('{\n\t"mcpServers": {}\n}\n')
    apply(plan("cursor", "project", repo, home))
    assert path.read_text().startswith('{\n\t"mcpServers": {\n\t\t"codesearch": {\n')


def test_a_codex_config_tomlkit_would_change_is_refused(places):
    repo, home = places
    path = home / ".codex" / "config.toml"
    path.parent.mkdir()
    dotted = 'mcp_servers.other.command = "npx"\nmodel = "o3"\n'
    path.write_text(dotted)
    with pytest.raises(CodesearchError, match="by hand"):
        plan("codex", "user", repo, home)
    assert path.read_text() == dotted


def test_user_files_follow_codex_home_and_xdg_config_home(tmp_path):
    environ = {"CODEX_HOME": str(tmp_path / "codex"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert config_path("codex", "user", None, tmp_path, environ) == tmp_path / "codex" / "config.toml"
    assert config_path("opencode", "user", None, tmp_path, environ) == tmp_path / "xdg" / "opencode" / "opencode.json"


def test_unsupported_choices_are_one_line_errors(places):
    repo, home = places
    for agent, scope, message in [("vscode", "user", "only --scope project"), ("emacs", "project", "unknown agent"),
                                  ("cursor", "global", "unknown --scope")]:
        with pytest.raises(CodesearchError, match=message) as raised:
            plan(agent, scope, repo, home)
        assert "\n" not in str(raised.value)


def test_the_launcher_is_the_script_next_to_this_python_else_python_dash_m(monkeypatch):
    here = Path(sys.executable).parent
    monkeypatch.setattr(install_module.shutil, "which", lambda name: str(here / name))
    assert launcher() == [os.path.abspath(here / "codesearch")]
    monkeypatch.setattr(install_module.shutil, "which", lambda name: "/somewhere/else/bin/codesearch")
    assert launcher() == [os.path.abspath(sys.executable), "-m", "codesearch"]
    monkeypatch.setattr(install_module.shutil, "which", lambda name: None)
    assert launcher() == [os.path.abspath(sys.executable), "-m", "codesearch"]


# -- the command line ----------------------------------------------------------------------------------------


def run(*args, home: Path):
    app = typer.Typer(cls=CommandGroup)
    app.callback()(lambda: None)
    app.command("install")(install_command)
    environment = {"HOME": str(home), "CODEX_HOME": None, "XDG_CONFIG_HOME": None}
    return CliRunner().invoke(app, ["install", *map(str, args)], env=environment, catch_exceptions=False)


def test_the_command_installs_once_reports_each_change_and_uninstalls(places):
    repo, home = places
    path = repo / ".cursor" / "mcp.json"
    dry = run("cursor", "--repo", repo, "--dry-run", home=home)
    assert dry.exit_code == 0 and dry.stdout.startswith("would add mcpServers.codesearch to ") and not path.exists()
    first = run("cursor", "--repo", repo, home=home)
    assert first.exit_code == 0 and first.stdout.count("\n") == 1 and str(path) in first.stdout
    assert json.loads(path.read_text())["mcpServers"]["codesearch"]["args"][-2:] == ["--repo", str(repo)]
    second = run("cursor", "--repo", repo, home=home)
    assert second.exit_code == 0 and second.stdout.startswith("unchanged: ")
    removed = run("cursor", "--repo", repo, "--uninstall", home=home)
    assert removed.exit_code == 0 and removed.stdout.startswith("removed mcpServers.codesearch from ")
    assert json.loads(path.read_text()) == {}


def test_the_command_writes_user_files_in_home_without_a_repo(places):
    repo, home = places
    result = run("gemini", "--scope", "user", home=home)
    assert result.exit_code == 0, result.output
    server = json.loads((home / ".gemini" / "settings.json").read_text())["mcpServers"]["codesearch"]
    assert server["args"][-1] == "mcp" and "--repo" not in server["args"]
    assert not (repo / ".gemini").exists()


def test_the_command_fails_in_one_line_without_a_traceback(places):
    repo, home = places
    (repo / ".mcp.json").write_text("{ not json")
    result = run("claude-code", "--repo", repo, home=home)
    assert result.exit_code == 2
    assert result.stderr.startswith("codesearch: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output and (repo / ".mcp.json").read_text() == "{ not json"
    not_a_repo = run("codex", "--repo", home, home=home)
    assert not_a_repo.exit_code == 2 and "not a git repository" in not_a_repo.stderr
