"""`codesearch install AGENT`: write the MCP server entry that starts `codesearch mcp` into a coding agent's
own configuration file (the project's, or the user's), keep everything else in that file as it was, and say
what changed. plan_install works out the new file without writing; apply writes it (atomically) or, with
--dry-run, only says what it would do."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import typer

from codesearch.errors import CodesearchError, first_line

NAME = "codesearch"
# Per agent: (project file, user file, format). A user file under $VAR/ is in that variable's folder when it is
# set, else in the agent's default folder in the home directory (DEFAULT_FOLDERS); other user files in the home.
AGENTS = {
    # https://code.claude.com/docs/en/mcp (scopes): .mcp.json at the project root, ~/.claude.json for the user;
    # both {"mcpServers": {NAME: {"command", "args"}}}, the user's at the top level of ~/.claude.json.
    "claude-code": (".mcp.json", ".claude.json", "mcpServers"),
    # https://developers.openai.com/codex/mcp and /codex/config-reference: [mcp_servers.NAME] command, args in
    # $CODEX_HOME/config.toml (~/.codex), or in a project's .codex/config.toml (read only in trusted projects).
    "codex": (".codex/config.toml", "$CODEX_HOME/config.toml", "toml"),
    # https://cursor.com/docs/mcp: .cursor/mcp.json in the project, ~/.cursor/mcp.json globally; "mcpServers".
    "cursor": (".cursor/mcp.json", ".cursor/mcp.json", "mcpServers"),
    # https://geminicli.com/docs/tools/mcp-server/ and /docs/cli/configuration: "mcpServers" in
    # .gemini/settings.json (project) or ~/.gemini/settings.json (user).
    "gemini": (".gemini/settings.json", ".gemini/settings.json", "mcpServers"),
    # https://opencode.ai/docs/config: opencode.json, $XDG_CONFIG_HOME/opencode/opencode.json. V1's "mcp": {NAME:
    # {"type": "local", "command": [...], "enabled": true}} (https://opencode.ai/v1/docs/mcp-servers/), which V2 reads
    # (https://opencode.ai/docs/migrate-v1/); V2's "mcp": {"servers": {NAME: ...}} (/docs/mcp-servers/) where used.
    "opencode": ("opencode.json", "$XDG_CONFIG_HOME/opencode/opencode.json", "opencode"),
    # https://code.visualstudio.com/docs/copilot/reference/mcp-configuration: .vscode/mcp.json, {"servers": {NAME:
    # {"type": "stdio", "command", "args"}}}; the user's is in a per-platform, per-profile folder: not written here.
    "vscode": (".vscode/mcp.json", None, "vscode"),
}
DEFAULT_FOLDERS = {"$CODEX_HOME": ".codex", "$XDG_CONFIG_HOME": ".config"}
NOTES = {("claude-code", "project"): "Claude Code asks you to approve the servers of .mcp.json before it starts them",
         ("codex", "project"): "Codex reads .codex/config.toml only in projects you have marked as trusted",
         ("gemini", "project"): "Gemini CLI reads .gemini/settings.json only in folders you trust"}


@dataclass
class Change:
    """What installing (or uninstalling) does to one file. text is its new content, None when unchanged."""

    path: Path
    action: str  # add, replace, remove, unchanged (ours already as it should be) or absent (nothing to remove)
    where: str  # our entry's place in the file, e.g. mcpServers.codesearch
    entry: dict | None
    text: str | None


def launcher() -> list[str]:
    """The command that starts codesearch in this environment: its installed script where that script is the
    one next to this Python, else this Python with -m (a script found elsewhere may be another installation)."""
    found, here = shutil.which(NAME), os.path.dirname(os.path.abspath(sys.executable))
    if found and os.path.dirname(os.path.abspath(found)) == here:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", NAME]


def config_path(agent: str, scope: str, root: Path | None, home: Path, environ: Mapping[str, str]) -> Path:
    project, user, _ = _agent(agent, scope)
    if scope == "project":
        if root is None:
            raise CodesearchError("--scope project needs the repository")
        return root / project
    variable, _, rest = user.partition("/") if user.startswith("$") else ("", "", user)
    return Path(variable and environ.get(variable[1:]) or home / DEFAULT_FOLDERS.get(variable, "")) / rest


def plan_install(agent: str, scope: str, root: Path | None, home: Path, uninstall: bool = False,
                 environ: Mapping[str, str] | None = None, command: list[str] | None = None) -> list[Change]:
    """The change to `agent`'s configuration file for `scope` (root: the repository, for the project scope;
    home: the user's home directory), read and worked out but not written. environ: where CODEX_HOME and
    XDG_CONFIG_HOME are looked up (none by default); command: what starts codesearch (launcher() by default)."""
    path = config_path(agent, scope, root, home, environ or {})
    _refuse_links(path, root if scope == "project" else path.parent)
    args = [*(command or launcher()), "mcp", *(["--repo", str(root)] if scope == "project" else [])]
    style = AGENTS[agent][2]
    return [(_edit_toml if style == "toml" else _edit_json)(path, _read(path), style, args, uninstall)]


def apply(changes: list[Change], dry_run: bool = False) -> list[str]:
    """Write each change (unless dry_run) and return one line per change saying what was (or would be) done."""
    lines = []
    for change in changes:
        if change.text is not None and not dry_run:
            _write(change.path, change.text)
        if change.text is None:
            lines.append(f"unchanged: {change.path} " + (f"has no {change.where} to remove" if change.action == "absent"
                                                         else f"already has {change.where} as it should be"))
            continue
        done, verb, preposition = {"add": ("added", "add", "to"), "replace": ("replaced", "replace", "in"),
                                   "remove": ("removed", "remove", "from")}[change.action]
        entry = f": {json.dumps(change.entry, ensure_ascii=False)}" if change.action != "remove" else ""
        lines.append(f"{'would ' + verb if dry_run else done} {change.where} {preposition} {change.path}{entry}")
    return lines


def _agent(agent: str, scope: str) -> tuple:
    if agent not in AGENTS:
        raise CodesearchError(f"unknown agent {agent!r}; use one of {', '.join(AGENTS)}")
    if scope not in ("project", "user"):
        raise CodesearchError(f"unknown --scope {scope!r}; use project or user")
    if AGENTS[agent][1] is None and scope == "user":
        raise CodesearchError(f"{agent}: only --scope project is supported (VS Code keeps the user's mcp.json in a "
                              f"per-platform, per-profile folder: run `MCP: Open User Configuration` there to add it)")
    return AGENTS[agent]


def _refuse_links(path: Path, top: Path) -> None:
    """A config file (or, in the project, a folder on the way to it) that is a symbolic link would send the write
    elsewhere: a cloned repository may hold `.cursor -> ~/somewhere`. Refused, never followed."""
    current = path
    while True:
        if current.is_symlink():
            raise CodesearchError(f"refusing to write {path}: {current} is a symbolic link (to "
                                  f"{os.readlink(current)}); edit the file it points to by hand")
        if current.parent == top or current.parent == current or top not in current.parents:
            return
        current = current.parent


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise CodesearchError(f"{path} is not UTF-8 text; left it as it is") from None
    except OSError as error:
        raise CodesearchError(f"cannot read {path}: {error.strerror or error}") from None


def _entry(style: str, args: list[str], v2: bool = False) -> dict:
    if style == "opencode":
        return {"type": "local", "command": args, **({} if v2 else {"enabled": True})}
    return {**({"type": "stdio"} if style == "vscode" else {}), "command": args[0], "args": args[1:]}


def _edit_json(path: Path, text: str | None, style: str, args: list[str], uninstall: bool) -> Change:
    try:
        document = json.loads(text) if text and text.strip() else {}
    except json.JSONDecodeError as error:
        keys = {"mcpServers": "mcpServers", "vscode": "servers", "opencode": "mcp"}[style]
        raise CodesearchError(f"{path} is not plain JSON (line {error.lineno}: {error.msg}; comments are not "
                              f"rewritten here); left it as it is: add \"{NAME}\": "
                              f"{json.dumps(_entry(style, args))} under \"{keys}\" by hand") from None
    if not isinstance(document, dict):
        raise CodesearchError(f"{path} does not hold a JSON object; left it as it is")
    mcp = document.get("mcp")
    v2 = style == "opencode" and isinstance(mcp, dict) and isinstance(mcp.get("servers"), dict) \
        and "type" not in mcp["servers"]  # V2's mcp.servers, not a V1 server named "servers"
    keys = {"mcpServers": ["mcpServers"], "vscode": ["servers"], "opencode": ["mcp", "servers"][:2 if v2 else 1]}[style]
    entry, where = _entry(style, args, v2), ".".join([*keys, NAME])
    chain = [document]
    for key in keys:
        node = chain[-1].get(key)
        if node is None and uninstall:
            return Change(path, "absent", where, None, None)
        node = chain[-1].setdefault(key, {})
        if not isinstance(node, dict):
            raise CodesearchError(f"{'.'.join(keys)} in {path} is not a JSON object; left the file as it is")
        chain.append(node)
    servers, current = chain[-1], chain[-1].get(NAME)
    if uninstall:
        if NAME not in servers:
            return Change(path, "absent", where, None, None)
        del servers[NAME]
        for parent, key in reversed(list(zip(chain[:-1], keys))):  # a container left empty goes as well
            if not parent[key]:
                del parent[key]
        action = "remove"
    else:
        # Keys of ours are set; any the user added to the entry (env, timeout, ...) stay.
        wanted = {**current, **entry} if isinstance(current, dict) else entry
        if wanted == current:
            return Change(path, "unchanged", where, entry, None)
        servers[NAME], action = wanted, "add" if current is None else "replace"
    new = json.dumps(document, indent=_indent(text or ""), ensure_ascii=False) + "\n"
    return Change(path, action, where, entry, new)


def _indent(text: str) -> int | str:
    """The file's own indentation: the whitespace before its first indented line (spaces counted, tabs kept)."""
    found = re.search(r"\n([ \t]+)\S", text)
    return 2 if not found else found.group(1) if "\t" in found.group(1) else len(found.group(1))


def _edit_toml(path: Path, text: str | None, style: str, args: list[str], uninstall: bool) -> Change:
    try:
        import tomlkit
    except ImportError:
        raise CodesearchError("writing Codex's config.toml needs the tomlkit package: pip install tomlkit") from None
    text = text or ""
    try:
        document = tomlkit.parse(text)
    except tomlkit.exceptions.TOMLKitError as error:
        raise CodesearchError(f"{path} is not valid TOML ({first_line(error)}); left it as it is") from None
    before, entry, where = document.unwrap(), _entry(style, args), f"mcp_servers.{NAME}"
    servers = document.get("mcp_servers")
    if servers is not None and not isinstance(before.get("mcp_servers"), dict):
        raise CodesearchError(f"mcp_servers in {path} is not a table; left the file as it is")
    current = (before.get("mcp_servers") or {}).get(NAME)
    expected = json.loads(json.dumps(before, default=str))  # the document as it should parse afterwards
    if uninstall:
        if current is None:
            return Change(path, "absent", where, None, None)
        del servers[NAME]
        del expected["mcp_servers"][NAME]
        if not expected["mcp_servers"] and isinstance(servers, tomlkit.items.Table) and servers.is_super_table():
            del document["mcp_servers"], expected["mcp_servers"]
        action = "remove"
    else:
        wanted = {**current, **entry} if isinstance(current, dict) else entry
        if wanted == current:
            return Change(path, "unchanged", where, entry, None)
        if servers is None:
            document["mcp_servers"] = tomlkit.table(is_super_table=True)
            servers = document["mcp_servers"]
        if not isinstance(current, dict):
            table = tomlkit.inline_table() if isinstance(servers, tomlkit.items.InlineTable) else tomlkit.table()
            table.update(entry)
            if not isinstance(table, tomlkit.items.InlineTable):
                table.add(tomlkit.nl())  # a blank line before whatever table follows
            servers[NAME] = table
        else:
            for key, value in entry.items():
                servers[NAME][key] = value
        expected.setdefault("mcp_servers", {})[NAME] = wanted
        action = "add" if current is None else "replace"
    new = tomlkit.dumps(document)
    if new.endswith("\n\n") and not text.endswith("\n\n"):
        new = new[:-1]
    # tomlkit can misplace a table among dotted keys; never write a file that would mean something else.
    if json.loads(json.dumps(tomlkit.parse(new).unwrap(), default=str)) != expected:
        raise CodesearchError(f"cannot change {path} without changing its other settings; left it as it is: "
                              f"edit [{where}] by hand")
    return Change(path, action, where, entry, new)


def _write(path: Path, text: str) -> None:
    """Write atomically: a temporary file in the same folder, then os.replace, with the old file's permissions."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        umask = os.umask(0o022)
        os.umask(umask)
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~umask
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise CodesearchError(f"cannot write {path}: {error.strerror or error}") from None


def install_command(
    agent: str = typer.Argument(..., help="claude-code, codex, cursor, gemini, opencode or vscode."),
    scope: str = typer.Option("project", "--scope", help="project: the repository's own config file, which "
                              "starts codesearch on that repository; user: the agent's file in your home directory."),
    uninstall: bool = typer.Option(False, "--uninstall", help="Remove codesearch's entry (and nothing else)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would change; write nothing."),
    repo: Path = typer.Option(Path("."), "--repo", help="The repository (for --scope project)."),
):
    """Add codesearch's MCP server to a coding agent's own configuration file, or remove it (--uninstall).

    Every other entry and setting in the file is kept; running it again changes nothing.

    With --scope user the entry has no --repo: the server searches the folder the agent starts it in,
    which is the folder you run Claude Code, Codex CLI, Gemini CLI or opencode from.
    Cursor does not document which folder it starts servers in: use --scope project for Cursor.
    VS Code: --scope project only.
    """
    from codesearch.source.discover import repository_root

    _agent(agent, scope)
    root = repository_root(repo) if scope == "project" else None
    changes = plan_install(agent, scope, root, Path.home(), uninstall, environ=os.environ)
    print("\n".join(apply(changes, dry_run)))
    if not dry_run and (agent, scope) in NOTES and any(change.action in ("add", "replace") for change in changes):
        print(f"note: {NOTES[agent, scope]}", file=sys.stderr)
