"""The command line: thin commands over the library, which never prints. Exit codes: 0 found, 1 nothing
found, 2 error (one line on stderr: the library's errors worded for a terminal, flags by their names;
terminal.py). The repository's commands are here; `org` is org.py, `hook` hooks.py, and every answer is
printed by present.py."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from codesearch import settings
from codesearch.cli.hooks import hook_app
from codesearch.cli.install import install_command
from codesearch.cli.navigate import register as register_navigation
from codesearch.cli.org import org_app
from codesearch.cli.terminal import (EXIT_FOUND, EXIT_NOT_FOUND, CommandGroup, TerminalProgress, read_queries,
                                     stderr_console, stop_writing_stdout)
from codesearch.errors import CodesearchError

if TYPE_CHECKING:
    from codesearch.query.api import Answer

app = typer.Typer(cls=CommandGroup, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Ask a git repository questions in plain language; get back the functions that answer.")
app.add_typer(hook_app, name="hook")


def _print_version(value: bool) -> None:
    if value:
        from codesearch import __version__

        print(f"codesearch {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")):
    """Ask a git repository questions in plain language; get back the functions that answer."""


ModelOption = typer.Option(None, "--model", "-m", help="Preset (bge-code-v1, minilm), hub id or local model "
                                                      "directory (default: $CODESEARCH_MODEL, else bge-code-v1).")
TrustOption = typer.Option(False, "--trust-remote-code", help="Allow the model's own Python code to run (off by default).")


@app.command()
def index(
    path: Path = typer.Argument(Path("."), help="A directory inside the git repository to index."),
    model: Optional[str] = ModelOption,
    rebuild: bool = typer.Option(False, "--rebuild", help="Start from scratch (also switches models)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Tokens per chunk the model sees."),
    trust_remote_code: bool = TrustOption,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary at the end."),
    images: Optional[bool] = typer.Option(None, "--images/--no-images", help="Also index the repository's images and "
                                          "rendered documentation pages (kept by later refreshes); --no-images drops them."),
    image_model: Optional[str] = typer.Option(None, "--image-model", help="Vision model for images (bge-vl-v1.5, "
                                              "bge-vl-screenshot, bge-vl-base or a directory; default: bge-vl-v1.5 "
                                              "on a GPU, bge-vl-base on a CPU)."),
    page_model: Optional[str] = typer.Option(None, "--page-model", help="Vision model for documentation pages "
                                             "(default: bge-vl-screenshot on a GPU, bge-vl-base on a CPU)."),
):
    """Build or refresh the index of a repository."""
    from codesearch.indexer.build import PictureOptions, index_repository

    console = stderr_console()
    # Naming a vision model asks for pictures.
    pictures = PictureOptions(True if images is None and (image_model or page_model) else images, image_model, page_model)
    with TerminalProgress(console, quiet=as_json) as progress:
        report = index_repository(path, model=model or settings.default_model(), rebuild=rebuild, progress=progress,
                                  max_length=max_length, trust_remote_code=trust_remote_code, pictures=pictures)
    if as_json:
        print(json.dumps(report.as_json()))
    else:
        console.print(f"indexed {report.files} files, {report.chunks} chunks "
                      f"({report.embedded} embedded, {report.reused} reused, {report.removed} files removed) "
                      f"with {report.model} in {report.seconds:.1f}s")
        for family in report.pictures:
            console.print(f"indexed {family.pictures} {family.kind}s from {family.files} files ({family.embedded} "
                          f"embedded, {family.skipped} skipped, {family.removed} removed) with {family.model}")


@app.command()
def query(
    text: Optional[str] = typer.Argument(None, help="The question, in plain language or as an identifier."),
    k: int = typer.Option(10, "-k", "--top", help="How many results."),
    repo: Path = typer.Option(Path("."), "--repo", help="The repository to search."),
    queries_file: Optional[Path] = typer.Option(None, "--queries-file", help="One query per line; one JSON line each."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, semantic or lexical."),
    lang: List[str] = typer.Option([], "--lang", help="Only these languages (repeatable)."),
    path_globs: List[str] = typer.Option([], "--path", help="Only paths matching GLOB; !GLOB excludes (repeatable)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Must match the index's model."),
    instruction: Optional[str] = typer.Option(None, "--instruction", help="Query instruction for decoder models."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per query."),
    output_format: str = typer.Option("text", "--format", help="text, json or vimgrep."),
    files_only: bool = typer.Option(False, "--files-only", "-l", help="Only the paths of matching files."),
    per_file: Optional[int] = typer.Option(None, "--per-file", help="At most N results from one file (0: no limit)."),
    offset: int = typer.Option(0, "--offset", help="Skip the first N results (a next page)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="With --json: whole results, best first, "
                                             "as many as fit about N tokens; next_offset says where the rest start."),
    context: int = typer.Option(0, "--context", "-C", help="Lines of context around the shown code."),
    trust_remote_code: bool = TrustOption,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Say whether a running server or this process answered."),
    org_dir: Optional[Path] = typer.Option(None, "--org", help="Search an organisation index (codesearch org index) instead of one repository."),
    repo_names: List[str] = typer.Option([], "--repo-name", help="With --org: only this repository (repeatable)."),
    ray_address: Optional[str] = typer.Option(None, "--ray", help="With --org: shards kept in memory by actors of the Ray cluster at ADDRESS."),
    kind: str = typer.Option("code", "--kind", help="What to search: code, image, page or all (pictures need "
                             "`codesearch index --images`)."),
    image: Optional[Path] = typer.Option(None, "--image", help="Ask with this image (and the words, if given): "
                                         "pictures that look like it."),
):
    """Search the index; print ranked functions with path, lines, symbol and score."""
    from codesearch.cli.present import FORMATS
    from codesearch.query.api import QueryRequest
    from codesearch.server.client import AUTOSTART_IDLE_SECONDS, NO_SERVER, try_server

    output_format = "json" if as_json else output_format
    if output_format not in FORMATS:
        raise CodesearchError(f"unknown --format {output_format!r}; use text, json or vimgrep")
    if org_dir is None and (repo_names or ray_address):
        raise CodesearchError(f"{'--repo-name' if repo_names else '--ray'} needs --org ORG_DIR")
    from codesearch.query.api import page

    page([], offset, max_tokens or 100)  # the paging options checked before any work
    if kind != "code" or image is not None:
        _query_pictures(text, queries_file, image, kind, repo, k + offset, path_globs, trust_remote_code,
                        output_format, files_only, context, offset, max_tokens, verbose)
    request = QueryRequest.from_options(read_queries(text, queries_file), paths=path_globs, k=k + offset, mode=mode,
                                        languages=tuple(lang), model=model, instruction=instruction,
                                        trust_remote_code=trust_remote_code,
                                        **_per_file(per_file, files_only)).checked()
    if org_dir is not None:
        from codesearch.cli.org import query_organisation

        answer = query_organisation(org_dir, request, repo_names, ray_address)
        _print_answer(request.queries, answer, output_format, files_only, context, offset, max_tokens)
        raise typer.Exit(EXIT_FOUND if any(hits[offset:] for hits in answer.hits) else EXIT_NOT_FOUND)
    answer = served = try_server(repo, request)
    if verbose:
        _say_who_answered(served)
    if not served:  # imported only now: a served query needs none of the in-process machinery
        answer = _query_in_process(repo, request)
    _print_answer(request.queries, answer, output_format, files_only, context, offset, max_tokens)  # then the server
    if not served and served.reason.startswith(NO_SERVER) and not trust_remote_code:
        from codesearch.server.client import start_server

        started = start_server(answer.repository)
        if verbose and started:
            stderr_console().print(f"codesearch: started a server for the next queries (pid {started}; it stops "
                                   f"after {AUTOSTART_IDLE_SECONDS // 60} idle minutes; CODESEARCH_NO_AUTOSTART=1 "
                                   f"turns this off)", soft_wrap=True)
    raise typer.Exit(EXIT_FOUND if any(hits[offset:] for hits in answer.hits) else EXIT_NOT_FOUND)


def _query_pictures(text, queries_file, image, kind, repo, k, path_globs, trust_remote_code, output_format,
                    files_only, context, offset, max_tokens, verbose) -> None:
    from codesearch.query.api import QueryRequest
    from codesearch.query.pictures import answer_with_pictures

    texts = read_queries(text, queries_file) if image is None or text or queries_file else [None]
    # The request of the words (a code answer's too), or of an image alone: its filters and k all the same.
    request = QueryRequest.from_options([query or "image" for query in texts], paths=path_globs, k=k,
                                        trust_remote_code=trust_remote_code).checked()
    from codesearch.query.pictures import checked_kind
    from codesearch.server.client import try_server

    checked_kind(kind, image is not None)
    image = image.resolve() if image is not None else None  # the server reads it, as this user
    # A running server keeps the vision models loaded; otherwise they load here, for this answer only.
    answer = served = try_server(repo, request, {"kind": kind, "image": str(image) if image else None,
                                                 "words": texts != [None]})
    if verbose:
        _say_who_answered(served)
    if not served:
        answer = answer_with_pictures(repo, request, texts, image, kind, _query_in_process)
    _print_answer([text or f"image {image}" for text in texts], answer, output_format, files_only, context, offset,
                  max_tokens)
    raise typer.Exit(EXIT_FOUND if any(hits[offset:] for hits in answer.hits) else EXIT_NOT_FOUND)


def _say_who_answered(served) -> None:
    stderr_console().print(f"codesearch: answered by the running server for {served.repository}" if served
                           else f"codesearch: answered in-process ({served.reason})", soft_wrap=True)


def _query_in_process(repo: Path, request) -> "Answer":
    """The answer from this process, after refreshing the files changed since the index (a few; more are
    left to a background refresh), with the one model both steps use."""
    from codesearch.embedding.load import LoadedModels
    from codesearch.indexer.freshness import bring_up_to_date
    from codesearch.query.engine import QUERY_THREADS, Engine

    models = LoadedModels(threads=QUERY_THREADS)
    engine = Engine.open(repo, embedder_for=models)
    try:
        freshness = bring_up_to_date(engine.root, engine.store, embedder_factory=models)
        answer = engine.query(request)
        answer.freshness = freshness
        return answer
    finally:
        engine.close()


def _per_file(asked: int | None, files_only: bool) -> dict:
    """--per-file as asked; with --files-only, one answer per file unless asked, so that k answers are k files."""
    if asked is None:
        return {"per_file": 1} if files_only else {}
    return {"per_file": asked}


def _print_answer(queries, answer, output_format: str, files_only: bool, context: int, offset: int = 0,
                  max_tokens: int | None = None) -> None:
    """The answer on stdout, flushed; a reader that went away has what it wanted (exit 0)."""
    from codesearch.cli import present

    try:
        present.print_answer(queries, answer, output_format, files_only, context, offset, max_tokens)
        sys.stdout.flush()
        for note in answer.notes() if output_format != "json" else ():  # JSON carries stale_files, embedded
            stderr_console().print(f"codesearch: {note}", soft_wrap=True)
    except BrokenPipeError:
        stop_writing_stdout()
        raise typer.Exit(EXIT_FOUND) from None


app.add_typer(org_app, name="org")
register_navigation(app)
app.command("install")(install_command)


@app.command()
def serve(
    repos: List[Path] = typer.Option([], "--repo", help="A repository to serve (repeatable; default: the current one)."),
    port: Optional[int] = typer.Option(None, "--port", help="Also listen on 127.0.0.1:PORT (never other interfaces)."),
    stop: bool = typer.Option(False, "--stop", help="Stop the server of these repositories (with --user: the "
                                                    "user's own) instead."),
    user: bool = typer.Option(False, "--user", help="Serve every repository of this user on one socket, opening "
                                                    "each index when first asked (what a query starts)."),
    threads: int = typer.Option(1, "--threads", help="CPU threads to embed a query; more only helps large models on an idle machine (0: torch's default)."),
    trust_remote_code: bool = TrustOption,
    idle_exit: Optional[float] = typer.Option(None, "--idle-exit", help="Exit after SECONDS without a request (what a server a query starts uses)."),
):
    """Keep the model and indexes in memory and answer `codesearch query` in milliseconds over a local socket."""
    from codesearch.server.client import stop_server
    from codesearch.server.serve import serve_forever
    from codesearch.server.service import Service

    if idle_exit is not None and not idle_exit > 0:  # NaN too
        raise CodesearchError("--idle-exit must be a positive number of seconds")
    console = stderr_console()
    if stop:
        stopped = [(path, stop_server(path)) for path in ([None] if user else repos or [Path(".")])]
        for path, pid in stopped:
            whose = f"for {path}" if path is not None else "of this user"
            console.print(f"codesearch: stopped the server (pid {pid}) {whose}" if pid
                          else f"codesearch: no server is running {whose}")
        raise typer.Exit(EXIT_FOUND if all(pid for _, pid in stopped) else EXIT_NOT_FOUND)
    notice = lambda message: console.print(f"codesearch: {message}")  # noqa: E731
    serve_forever([] if user else repos or [Path(".")], port=port, notice=notice, idle_exit=idle_exit, user=user,
                  service=Service(threads=threads, trust_remote_code=trust_remote_code, watch=True, notice=notice))


@app.command("mcp")
def mcp_command(
    repo: Path = typer.Option(Path("."), "--repo", help="The repository the agent searches."),
):
    """Serve coding agents over MCP on stdio: search, definitions, references, callers, callees, index_status."""
    from codesearch.server.mcp import run_stdio

    run_stdio(repo)


@app.command()
def chunks(
    files: List[Path] = typer.Argument(..., help="Source files to cut."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per chunk."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Cut as for this model's window (default: bge-code-v1's)."),
):
    """Show how files are cut into chunks (path, lines, symbol, kind, language)."""
    from codesearch.source.chunk import PartBudget, chunk_file

    budget = None
    if model is not None:
        from codesearch.embedding.spec import resolve_model

        budget = PartBudget.for_window(resolve_model(model).max_length)
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as error:
            raise CodesearchError(f"cannot read {file}: {error.strerror or error}") from None
        for piece in chunk_file(file.as_posix(), data, budget=budget):
            if as_json:
                print(json.dumps({"path": piece.path, "start_line": piece.start_line, "end_line": piece.end_line,
                                  "symbol": piece.symbol, "kind": piece.kind, "language": piece.language}))
            else:
                print(f"{piece.path}:{piece.start_line}-{piece.end_line}\t{piece.kind}\t{piece.symbol}\t{piece.language}")


@app.command()
def status(
    path: Path = typer.Argument(Path("."), help="A directory inside the indexed repository."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """What is indexed, with which model, and how fresh it is.

    A repository whose index holds nothing yet (its first build never finished) is "not indexed"
    ("indexed": false in JSON), exit 0; one with no index at all is an error like any other command's
    (exit 2), naming `codesearch index`."""
    from codesearch.query.engine import Engine

    engine = Engine.open(path)
    try:
        info = engine.status()
    finally:
        engine.close()
    from codesearch.server.client import server_status

    info["server"] = server_status(info["repository"])
    if as_json:
        print(json.dumps(info))
        return
    if not info["indexed"]:
        print(f"repository  {info['repository']}\nnot indexed (run `codesearch index` to build the index)")
        return
    updated = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["updated_at"])) if info["updated_at"] else "never"
    from codesearch.embedding.prompts import describe_prompts

    print(f"repository  {info['repository']}\nmodel       {info['model']} ({info['dimension']} dims)\n"
          f"prompts     {describe_prompts(info['prompts'])}\n"
          f"indexed     {info['files']} files, {info['chunks']} chunks\nupdated     {updated}\n"
          f"stale       {info['stale_files']} files changed since (run `codesearch index` to refresh)\n"
          + (_describe_embedding(info) if info["unembedded"] else "")
          + "".join(f"{family:<12}{about['pictures']} from {about['files']} files, with {about['model']}\n"
                    for family, about in info["pictures"].items())
          + f"server      {_describe_server(info['server'])}")


def _describe_embedding(info: dict) -> str:
    eta = info["embedding_eta_seconds"]
    return (f"embedded    {info['chunks'] - info['unembedded']} of {info['chunks']} chunks"
            + (f", about {eta // 60} min {eta % 60} s to go" if eta is not None else "")
            + " (the others are found by their words; `codesearch index` goes on if it was stopped)\n")


def _describe_server(server: dict) -> str:
    if server["running"]:
        idle, whose = server.get("idle_exit"), "this user's, for every repository; " if server.get("shared") else ""
        stop = "--user" if server.get("shared") else ""
        return f"running (pid {server['pid']}; {whose}" + (f"stops after {idle:g} s without a query)" if idle else
                                                           f"started by hand: `codesearch serve --stop {stop}` stops it)")
    if server["autostart"]:
        return "not running (the next query starts one; CODESEARCH_NO_AUTOSTART=1 turns that off)"
    return "not running (none is started for queries: CODESEARCH_NO_AUTOSTART or CODESEARCH_NO_SERVER is set)"


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # outside a command (inside one, click says "Aborted!")
        print("codesearch: interrupted", file=sys.stderr)
        sys.exit(130)
