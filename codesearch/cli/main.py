"""The command line: thin commands over the library, which never prints. Exit codes: 0 found, 1 nothing
found, 2 error (one line on stderr: the library's errors worded for a terminal, flags by their names)."""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import click
import typer
from typer.core import TyperGroup

from codesearch import settings
from codesearch.errors import BadRequest, CodesearchError
from codesearch.indexer.hooks import hook_app
from codesearch.limits import MAX_QUERY_CHARS

EXIT_FOUND, EXIT_NOT_FOUND, EXIT_ERROR = 0, 1, 2
# A request field, as the command line names it.
FLAGS = {"queries": "the query", "k": "-k", "mode": "--mode", "languages": "--lang", "include": "--path",
         "exclude": "--path", "model": "--model", "instruction": "--instruction"}


class _Commands(TyperGroup):
    """Runs a command and turns what went wrong into one line on stderr and exit status 2, so that the
    installed script and an in-process runner (typer's CliRunner) behave alike."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except CodesearchError as error:
            _fail(f"codesearch: error: {_worded(error)}")
        except Exception as error:  # last resort: one line, never a traceback, unless asked for
            if settings.debug() or (isinstance(error, OSError) and error.errno == errno.EPIPE):
                raise  # a closed pipe: click ends quietly
            from codesearch.index.database import is_damaged

            if is_damaged(error):
                _fail(f"codesearch: error: the index is damaged ({error}); run `codesearch index --rebuild`")
            _fail(f"codesearch: internal error: {type(error).__name__}: {error} (set CODESEARCH_DEBUG=1 for details)")


def _worded(error: CodesearchError) -> str:
    return error.worded(FLAGS.get(error.field, error.field)) if isinstance(error, BadRequest) else str(error)


def _fail(line: str):
    print(line, file=sys.stderr)
    raise typer.Exit(EXIT_ERROR)


app = typer.Typer(cls=_Commands, no_args_is_help=True, pretty_exceptions_enable=False,
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


CPU_CHUNKS_PER_SECOND = {"decoder": 0.5, "encoder": 70.0}  # measured on 2 cores: benchmarks/NOTES.md, README


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


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
):
    """Build or refresh the index of a repository."""
    from codesearch.indexer.build import index_repository

    console = _stderr()
    with _CliProgress(console, quiet=as_json) as progress:
        report = index_repository(path, model=model or settings.default_model(), rebuild=rebuild, progress=progress,
                                  max_length=max_length, trust_remote_code=trust_remote_code)
    if as_json:
        print(json.dumps(report.as_json()))
    else:
        console.print(f"indexed {report.files} files, {report.chunks} chunks "
                      f"({report.embedded} embedded, {report.reused} reused, {report.removed} files removed) "
                      f"with {report.model} in {report.seconds:.1f}s")


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
    context: int = typer.Option(0, "--context", "-C", help="Lines of context around the shown code."),
    trust_remote_code: bool = TrustOption,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Say whether a running server or this process answered."),
    org_dir: Optional[Path] = typer.Option(None, "--org", help="Search an organisation index (codesearch org index) instead of one repository."),
    repo_names: List[str] = typer.Option([], "--repo-name", help="With --org: only this repository (repeatable)."),
    ray_address: Optional[str] = typer.Option(None, "--ray", help="With --org: shards kept in memory by actors of the Ray cluster at ADDRESS."),
):
    """Search the index; print ranked functions with path, lines, symbol and score."""
    from codesearch.server.client import AUTOSTART_IDLE_SECONDS, NO_SERVER, try_server
    from codesearch.query.engine import QueryRequest

    output_format = "json" if as_json else output_format
    if output_format not in ("text", "json", "vimgrep"):
        raise CodesearchError(f"unknown --format {output_format!r}; use text, json or vimgrep")
    if org_dir is None and (repo_names or ray_address):
        raise CodesearchError(f"{'--repo-name' if repo_names else '--ray'} needs --org ORG_DIR")
    request = QueryRequest.from_options(_read_queries(text, queries_file), paths=path_globs, k=k, mode=mode,
                                        languages=tuple(lang), model=model, instruction=instruction,
                                        trust_remote_code=trust_remote_code).checked()
    if org_dir is not None:
        _query_organisation(org_dir, request, repo_names, ray_address, output_format, files_only, context)
    answer = served = try_server(repo, request)
    if verbose:
        _stderr().print(f"codesearch: answered by the running server for {served.repository}" if served
                        else f"codesearch: answered in-process ({served.reason})", soft_wrap=True)
    if not served:  # imported only now: a served query needs none of the in-process machinery
        from codesearch.query.engine import Engine

        engine = Engine.open(repo)
        try:
            answer = engine.query(request)
        finally:
            engine.close()
    try:
        _print_answer(request.queries, answer, output_format, files_only, context)
        sys.stdout.flush()  # the answer first; then the server for the next query
    except BrokenPipeError:
        _stop_writing_stdout()
        raise typer.Exit(EXIT_FOUND) from None
    if not served and served.reason.startswith(NO_SERVER) and not trust_remote_code:
        from codesearch.server.client import start_server

        started = start_server(answer.repository)
        if verbose and started:
            _stderr().print(f"codesearch: started a server for the next queries (pid {started}; it stops after "
                            f"{AUTOSTART_IDLE_SECONDS // 60} idle minutes; CODESEARCH_NO_AUTOSTART=1 turns this off)",
                            soft_wrap=True)
    raise typer.Exit(EXIT_FOUND if any(answer.hits) else EXIT_NOT_FOUND)


def _print_answer(queries, answer, output_format: str, files_only: bool, context: int) -> None:
    """Each query's hits, in the order asked, as the format says."""
    from codesearch.cli import present

    console = None
    for query_text, hits in zip(queries, answer.hits):
        if output_format == "json":
            print(present.query_json_line(query_text, hits), flush=True)
        elif files_only:
            print("\n".join(present.file_lines(hits)))
        elif output_format == "vimgrep":
            print("\n".join(present.vimgrep_lines(hits)))
        else:
            console = console or _stdout_console()
            if len(answer.hits) > 1:
                console.rule(query_text)
            present.print_hits(console, hits, answer.repository, context)


def _query_organisation(org_dir: Path, request, repo_names, ray_address, output_format: str, files_only: bool,
                        context: int) -> None:
    """`query --org`: every shard (or those of --repo-name) searched, fused once."""
    from codesearch.org import catalog as org
    from codesearch.cli import present

    if ray_address:
        from codesearch.org.ray_pipeline import require_ray, shard_retriever

        require_ray()
    search = org.OrganisationSearch(org_dir, repo_names)
    try:
        retrieve_all = shard_retriever(search, ray_address) if ray_address else None
        answer = search.query(request, retrieve_all)
    finally:
        search.close()
    try:
        console = None
        for query_text, hits in zip(request.queries, answer.hits):
            places = [(shard["repository"], Path(shard["root"])) for shard, _ in hits]
            if output_format == "json":
                print(org.query_json_line(query_text, hits), flush=True)
            elif files_only:
                print("\n".join(dict.fromkeys(str(root / hit.chunk.path) for (_, root), (_, hit) in zip(places, hits))))
            elif output_format == "vimgrep":
                print("\n".join(f"{root / hit.chunk.path}:{hit.chunk.start_line}:1: {hit.chunk.symbol}"
                                for (_, root), (_, hit) in zip(places, hits)))
            else:
                console = console or _stdout_console()
                if len(answer.hits) > 1:
                    console.rule(query_text)
                present.print_hits(console, [hit for _, hit in hits], Path(search.org_dir), context,
                                   repositories=places)
    except BrokenPipeError:
        _stop_writing_stdout()
        raise typer.Exit(EXIT_FOUND) from None
    raise typer.Exit(EXIT_FOUND if any(answer.hits) else EXIT_NOT_FOUND)


org_app = typer.Typer(no_args_is_help=True, help="An organisation's repositories in one index, built on Ray.")
app.add_typer(org_app, name="org")


@org_app.command("index")
def org_index(
    org_dir: Path = typer.Argument(..., help="The organisation index's folder (created if missing)."),
    repos: List[Path] = typer.Argument(None, help="Git repositories to add or refresh (default: those already in it)."),
    repos_file: Optional[Path] = typer.Option(None, "--repos-file", help="One repository path per line."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Preset, hub id or model folder (default: the "
                                                                     "index's own, else $CODESEARCH_MODEL, else bge-code-v1)."),
    ray_address: Optional[str] = typer.Option(None, "--ray", help="Join the Ray cluster at ADDRESS (default: a local Ray)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Embedding actors (default: one per GPU, else half the CPUs)."),
    shard_files: Optional[int] = typer.Option(None, "--shard-files", help="Split a repository past this many files into shards by path prefix (default: as before, else 5000)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary at the end."),
):
    """Index many git repositories into one organisation index, on Ray."""
    from codesearch.org.ray_pipeline import index_organisation, require_ray

    require_ray()
    paths = list(repos or [])
    if repos_file is not None:
        try:
            lines = repos_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise CodesearchError(f"cannot read repositories file {repos_file}: {error}") from None
        paths += [Path(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    console = _stderr()
    report = index_organisation(org_dir, paths, model=model or settings.default_model(), address=ray_address,
                                workers=workers, shard_files=shard_files,
                                notice=(lambda message: None) if as_json else
                                (lambda message: console.print(f"codesearch: {message}")))
    if as_json:
        print(json.dumps(report.as_json()))
    else:
        console.print(f"indexed {report.repositories} repositories in {report.shards} shards ({report.shards_updated} "
                      f"written; {report.chunks} chunks, {report.embedded} embedded, {report.reused} reused) with "
                      f"{report.model} on {report.workers} Ray workers in {report.seconds:.1f}s")


@org_app.command("status")
def org_status(
    org_dir: Path = typer.Argument(..., help="The organisation index's folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """The repositories and shards of an organisation index, their commits and generations, and what is stale."""
    from codesearch.org.catalog import organisation_status

    info = organisation_status(org_dir)
    if as_json:
        print(json.dumps(info))
        return
    print(f"organisation  {info['organisation']}\nmodel         {info['model']} ({info['dimension']} dims)\n"
          f"generation    {info['generation']}\nshards        {info['shards']} ({info['chunks']} chunks, "
          f"{info['stale_shards']} stale)")
    for repository in info["repositories"]:
        print(f"{repository['name']}  {repository['commit'][:12] or '(no commit)'}  {repository['root']}")
        for shard in repository["shards"]:
            where = ", ".join(prefix or "(all)" for prefix in shard["prefixes"][:3])
            more = f" +{len(shard['prefixes']) - 3}" if len(shard["prefixes"]) > 3 else ""
            print(f"  {shard['key']}  generation {shard['generation']}  {shard['files']} files  {shard['chunks']} "
                  f"chunks  {where}{more}  {('stale: ' + shard['stale']) if shard['stale'] else 'current'}")


@app.command()
def serve(
    repos: List[Path] = typer.Option([], "--repo", help="A repository to serve (repeatable; default: the current one)."),
    port: Optional[int] = typer.Option(None, "--port", help="Also listen on 127.0.0.1:PORT (never other interfaces)."),
    stop: bool = typer.Option(False, "--stop", help="Stop the server of these repositories instead."),
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
    console = _stderr()
    if stop:
        stopped = [(path, stop_server(path)) for path in repos or [Path(".")]]
        for path, pid in stopped:
            console.print(f"codesearch: stopped the server (pid {pid}) for {path}" if pid
                          else f"codesearch: no server is running for {path}")
        raise typer.Exit(EXIT_FOUND if all(pid for _, pid in stopped) else EXIT_NOT_FOUND)
    serve_forever(repos or [Path(".")], port=port, notice=lambda message: console.print(f"codesearch: {message}"),
                  service=Service(threads=threads, trust_remote_code=trust_remote_code),
                  idle_exit=idle_exit)


@app.command("mcp")
def mcp_command(
    repo: Path = typer.Option(Path("."), "--repo", help="The repository the agent searches."),
):
    """Serve coding agents over MCP on stdio: tools `search` and `index_status`."""
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
          f"server      {_describe_server(info['server'])}")


def _describe_server(server: dict) -> str:
    if server["running"]:
        idle = server.get("idle_exit")
        return f"running (pid {server['pid']}; " + (f"stops after {idle:g} s without a query)" if idle else
                                                    "started by hand: `codesearch serve --stop` stops it)")
    if server["autostart"]:
        return "not running (the next query starts one; CODESEARCH_NO_AUTOSTART=1 turns that off)"
    return "not running (none is started for queries: CODESEARCH_NO_AUTOSTART or CODESEARCH_NO_SERVER is set)"


def _stop_writing_stdout() -> None:
    """The reader went away (`codesearch query ... | head -1`): what it wanted, it got. Later writes,
    and Python's flush at exit, go to /dev/null instead of failing."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _stdout_console():
    from rich.console import Console

    class StdoutConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError  # rich would exit 1; main() ends quietly with 0

    return StdoutConsole(highlight=False)


def _read_queries(text: Optional[str], queries_file: Optional[Path]) -> list[str]:
    if queries_file is not None:
        try:
            lines = queries_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise CodesearchError(f"cannot read queries file {queries_file}: {error}") from None
        queries = [line.strip()[:MAX_QUERY_CHARS] for line in lines if line.strip()]
        if not queries:
            raise CodesearchError(f"queries file {queries_file} has no queries")
        return queries
    if text is None or not text.strip():
        raise CodesearchError("give a query, e.g. codesearch query \"where do we retry failed uploads\"")
    if len(text) > MAX_QUERY_CHARS:
        raise CodesearchError(f"the query is {len(text)} characters long; at most {MAX_QUERY_CHARS} are accepted")
    return [text.strip()]


class _CliProgress:
    """Shows an embedding progress bar with ETA on stderr, and notices."""

    def __init__(self, console, quiet: bool = False):
        self.console, self.quiet, self._bar, self._task = console, quiet, None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()

    def notice(self, message: str) -> None:
        # A notice quotes repository paths: taken literally (a path "a[/x].kt" is no markup), on one line.
        self.console.print(f"codesearch: {message}", markup=False, soft_wrap=True)

    def planned(self, to_embed: int, spec) -> None:
        from codesearch.embedding.weights import cpu_has_amx_bf16, default_device

        if to_embed and default_device() == "cpu":
            minutes = to_embed / CPU_CHUNKS_PER_SECOND[spec.backend] / 60
            if minutes > 2 and spec.backend == "decoder":
                self.console.print(f"codesearch: no GPU; embedding {to_embed} chunks with {spec.name} on the CPU "
                                   f"will take about {minutes:.0f} minutes (--model minilm builds a CPU index "
                                   f"about a hundred times faster)")
            elif minutes > 2 and spec.runtime == "onnx" and cpu_has_amx_bf16():
                self.console.print(f"codesearch: this CPU has AMX; CODESEARCH_RUNTIME=torch would embed these "
                                   f"{to_embed} chunks about twice as fast (in bf16, same answers), and each later "
                                   f"refresh of this index would take about 5 s longer to start")
        if self.quiet or not to_embed:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                             console=self.console, transient=True)
        self._bar.start()
        self._task = self._bar.add_task("embed", total=to_embed)

    def embedded(self, count: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, count)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # outside a command (inside one, click says "Aborted!")
        print("codesearch: interrupted", file=sys.stderr)
        sys.exit(130)
