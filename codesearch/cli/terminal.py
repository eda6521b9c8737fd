"""The terminal the commands run on: exit codes (0 found, 1 nothing found, 2 error), the command group
that words every error as one line on stderr, the consoles, a reader that closed the pipe, the progress
bar of an index build, and reading the user's queries."""

from __future__ import annotations

import errno
import importlib
import os
import sys
from pathlib import Path
from typing import Optional

import click
import typer
from typer.core import TyperGroup

from codesearch import settings
from codesearch.errors import BadRequest, CodesearchError

EXIT_FOUND, EXIT_NOT_FOUND, EXIT_ERROR = 0, 1, 2
# A request field, as the command line names it.
FLAGS = {"queries": "the query", "k": "-k", "mode": "--mode", "languages": "--lang", "include": "--path",
         "exclude": "--path", "model": "--model", "instruction": "--instruction", "per_file": "--per-file"}
CPU_CHUNKS_PER_SECOND = {"decoder": 0.5, "encoder": 70.0}  # measured on 2 cores: benchmarks/NOTES.md, README


# The click that typer runs on: typer 0.28 carries a copy of its own (typer._click), whose exceptions are not
# the click package's.
_CLICK = importlib.import_module(TyperGroup.__mro__[1].__module__.rsplit(".", 1)[0] + ".exceptions")
# Exceptions a command ends with that typer itself reports (an exit status, an abort).
_PASSED_ON = (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException,
              _CLICK.ClickException, *(getattr(_CLICK, name) for name in ("Exit", "Abort") if hasattr(_CLICK, name)))


class CommandGroup(TyperGroup):
    """Runs a command and turns what went wrong into one line on stderr and exit status 2, so that the
    installed script and an in-process runner (typer's CliRunner) behave alike."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _CLICK.UsageError as error:  # an option of the group itself (`codesearch --bogus`)
            _usage_failure(error)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _CLICK.UsageError as error:  # an unknown command or option, a missing or malformed argument
            _usage_failure(error)
        except _PASSED_ON:
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


def _usage_failure(error) -> None:
    if isinstance(error, getattr(_CLICK, "NoArgsIsHelpError", ())):
        raise error  # `codesearch` alone: its help, as typer prints it
    command = error.ctx.command_path if error.ctx else "codesearch"
    _fail(f"codesearch: error: {error.format_message()} (see `{command} --help`)")


def _fail(line: str):
    print(line, file=sys.stderr)
    raise typer.Exit(EXIT_ERROR)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def stdout_console():
    from rich.console import Console

    class StdoutConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError  # rich would exit 1; main() ends quietly with 0

    return StdoutConsole(highlight=False)


def stop_writing_stdout() -> None:
    """The reader went away (`codesearch query ... | head -1`): what it wanted, it got. Later writes,
    and Python's flush at exit, go to /dev/null instead of failing."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def read_queries(text: Optional[str], queries_file: Optional[Path]) -> list[str]:
    """The query given on the command line, or one per non-empty line of `queries_file`."""
    from codesearch.query.api import MAX_QUERY_CHARS  # here: --version and the hooks' commands need none of it

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


class TerminalProgress:
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
        from codesearch.hardware import cpu_has_amx_bf16, default_device

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

    def planned_pictures(self, family: str, files: int) -> None:
        """A bar of its own for a family's files (images, pages): read, rendered and embedded together."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self.quiet or not files:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn(family), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                             console=self.console, transient=True)
        self._bar.start()
        self._task = self._bar.add_task(family, total=files)

    def pictures_done(self, files: int) -> None:
        self.embedded(files)
