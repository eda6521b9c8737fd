"""Documentation pages (Markdown, reStructuredText, HTML) as screenshots, rendered in child processes.

A page is drawn as a reader sees it: converted to HTML, laid out by weasyprint (no script engine: a page's
scripts never run) into 1024x768 CSS px pages, each drawn by pdfium at a pixel a CSS px. The layout says which
headings fall on which page, so each picture knows its heading and its source line.

Every document is someone else's input, and a layout engine, a font library and a PDF renderer are large C
programs: they run in children that a hang or a crash takes down alone (killed after `timeout`, replaced by a
fresh one), in a bounded address space, with fontconfig confined to the system's fonts, and weasyprint fetches
only through media.repository_resource (the repository's own images and stylesheets, data: URIs). Nothing is
written, and no code of the repository runs (docutils alone reads reStructuredText: no Sphinx, no conf.py).
Children are fresh interpreters, started as chunk_process starts its own (a `spawn` that does not import the
caller's __main__ again), stdin closed; they exit when the parent goes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

from codesearch.errors import CodesearchError, first_line
from codesearch.source.media import (Picture, media_kind, pdf_pictures, pictures_of_image, png_bytes, printable,
                                     repository_resource, shown_url, weasyprint_fetcher)

# Screen-shaped (4:3) pages 1024 px wide: the width of a documentation site's column at a legible 16 px, and one
# screenful of it per picture, as screenshot retrievers (DSE, ColQwen, Qwen2.5-VL) were trained on; 970 visual
# tokens for Qwen2.5-VL at 28 px, within the processors' default pixel budgets, so nothing is shrunk further.
PAGE_WIDTH, PAGE_HEIGHT = 1024, 768
PAGE_MARGIN = 32
HEADING_AT_TOP = PAGE_MARGIN + 48  # a heading whose box starts this high (CSS px) is the page's own
MAX_DOCUMENT_BYTES = 2 << 20
MAX_PAGES = 50
CHILD_MEMORY = 2 << 30  # address space; rendering Django's docs peaks at 232 MB RSS
LOOKAHEAD = 4  # answers held per child while an earlier document renders
START_SECONDS = 60.0  # for a child to import weasyprint and lay out a first page (about 1 s)
RENDER_FUNCTION = "codesearch.source.pages:render_document"
FORMATS = {".md": "markdown", ".markdown": "markdown", ".rst": "rst", ".html": "html", ".htm": "html"}
PAGE_CSS = f"""
@page {{ size: {PAGE_WIDTH}px {PAGE_HEIGHT}px !important; margin: {PAGE_MARGIN}px 40px !important }}
html {{ font-family: sans-serif; font-size: 16px; line-height: 1.45; color: #1f2328; background: white }}
body {{ margin: 0; overflow-wrap: break-word }}
img, svg, video, object, embed {{ max-width: 100% }}
pre {{ white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f8fa; padding: 8px 12px; font-size: 13px }}
code, pre, tt, kbd, samp {{ font-family: monospace }}
table {{ border-collapse: collapse }} th, td {{ border: 1px solid #d0d7de; padding: 3px 8px }}
blockquote {{ color: #59636e; border-left: 3px solid #d0d7de; margin-left: 0; padding-left: 12px }}
"""
_CHILD_MAIN = ("import sys; from multiprocessing.connection import Connection; "
               "connection = Connection(int(sys.argv[1])); sys.path[:], root, function, parent = connection.recv(); "
               "from codesearch.source.pages import serve; serve(connection, root, function, parent)")
_CODE_DIRECTIVES = {"code", "code-block", "sourcecode", "console", "doctest", "literalinclude", "productionlist"}
_UNDRAWN_DIRECTIVES = {"toctree", "index", "highlight", "module", "currentmodule", "tabularcolumns", "only",
                       "default-role", "automodule", "autoclass", "autofunction", "ifconfig", "testsetup"}


def render_pages(root: Path, documents: Iterable[tuple[str, bytes]], *, workers: int = 1, timeout: float = 30.0,
                 rst_suffixes: tuple[str, ...] = (),
                 function: str = RENDER_FUNCTION) -> Iterator[tuple[str, list[Picture], list[str]]]:
    """(path, its pictures, one-line notices) for each (repository path, bytes), in order, rendered by up to
    `workers` children; a document that takes over `timeout` seconds is skipped with a notice, its child killed.

    Pages by suffix (PAGE_SUFFIXES, and `rst_suffixes` read as reStructuredText, as Django's docs/*.txt);
    images too (IMAGE_SUFFIXES: pictures_of_image, run in a child, so an SVG's drawing is timed and bounded).
    `function` ("module:function") renders one document in the child; the tests name a slow or crashing one."""
    renderers = [PageRenderer(root, timeout, function) for _ in range(max(1, workers))]
    idle = deque(renderers)
    entries: deque = deque()  # [path, (pictures, notices) once known], in the documents' order
    working: dict[PageRenderer, list] = {}  # a busy child -> its document's entry
    failure: list[str] = []  # why no child could start: every document left is skipped

    def settle_one() -> None:
        renderer = _first_done(list(working))
        working.pop(renderer)[1] = renderer.collect()
        idle.append(renderer)

    try:
        for path, data in documents:
            form, answer = _refusal(path, data, rst_suffixes)
            if answer is None and failure:
                answer = [], [f"{printable(path)}: not rendered ({failure[0]})"]
            # A long document holds back the answers after it, not the children: they go on with the next
            # ones, up to a few answers per child held.
            while answer is None and (not idle or len(entries) >= LOOKAHEAD * len(renderers)):
                settle_one()
                while entries and entries[0][1] is not None:
                    yield (entries[0][0], *entries.popleft()[1])
            entries.append([path, answer])
            if answer is None:
                renderer = idle.popleft()
                try:
                    renderer.submit(path, data, form)
                    working[renderer] = entries[-1]
                except OSError as error:
                    idle.append(renderer)
                    failure.append(f"the page renderer did not start: {first_line(error)}")
                    entries[-1][1] = [], [f"{printable(path)}: not rendered ({failure[0]})"]
            while entries and entries[0][1] is not None:
                yield (entries[0][0], *entries.popleft()[1])
        while entries:
            while entries[0][1] is None:
                settle_one()
            yield (entries[0][0], *entries.popleft()[1])
    finally:
        for renderer in renderers:
            renderer.close()


def _first_done(busy: list[PageRenderer]) -> PageRenderer:
    """The first of the busy children to answer, or die; else, once its time is up, the one due first."""
    from multiprocessing.connection import wait

    due = min(busy, key=lambda renderer: renderer._deadline)
    ready = wait([renderer._connection for renderer in busy], max(0.0, due._deadline - time.monotonic()))
    return next((renderer for renderer in busy if renderer._connection in ready), due)


def _refusal(path: str, data: bytes, rst_suffixes: tuple[str, ...]) -> tuple[str, tuple | None]:
    """(the document's format, None), or ("", its answer) when it is refused before any child sees it."""
    if media_kind(path) == "image":
        return "image", None
    lowered = path.lower()
    form = "rst" if any(lowered.endswith(suffix.lower()) for suffix in rst_suffixes) else next(
        (name for suffix, name in FORMATS.items() if lowered.endswith(suffix)), "")
    if not form:
        return "", ([], [f"{printable(path)}: not a page (Markdown, reStructuredText, HTML) or an image; skipped"])
    if len(data) > MAX_DOCUMENT_BYTES:
        return "", ([], [f"{printable(path)}: {len(data) / (1 << 20):.1f} MiB, over the "
                         f"{MAX_DOCUMENT_BYTES >> 20} MiB rendered; skipped"])
    return form, None


class PageRenderer:
    """One child that renders a document at a time; killed when it overruns, restarted with the next one."""

    def __init__(self, root: Path, timeout: float, function: str = RENDER_FUNCTION):
        self.root, self.timeout, self.function = str(root), timeout, function
        self._process: subprocess.Popen | None = None
        self._connection, self._path, self._deadline = None, "", 0.0

    def submit(self, path: str, data: bytes, form: str) -> None:
        """Send a document (starting a child when none runs); OSError when no child will start."""
        for attempt in range(2):  # a child that died between documents (killed from outside) is replaced once
            try:
                if self._connection is None:
                    self._start()
                self._connection.send((path, data, form))
                break
            except (OSError, EOFError, ValueError) as error:
                self.close()
                if attempt:
                    raise OSError(first_line(error)) from None
        self._path, self._deadline = path, time.monotonic() + self.timeout

    def collect(self) -> tuple[list[Picture], list[str]]:
        """The document's (pictures, notices); a notice alone when the child overran its time or died."""
        shown = printable(self._path)
        try:
            if not self._connection.poll(max(0.0, self._deadline - time.monotonic())):
                self.close()
                return [], [f"{shown}: rendering took over {self.timeout:g} s; skipped"]
            pictures, notices = self._connection.recv()
            return list(pictures), list(notices)
        except (EOFError, OSError):
            returncode = None
            try:  # its end of the connection closed as it died
                returncode = self._process.wait(timeout=5) if self._process else None
            except subprocess.TimeoutExpired:
                pass
            self.close()
            return [], [f"{shown}: the page renderer died rendering it ({_exit_reason(returncode)}); skipped"]

    def close(self) -> None:
        connection, process = self._connection, self._process
        self._connection, self._process = None, None
        if connection is not None:
            connection.close()
        if process is not None:
            process.kill()  # nothing when it has exited already
            process.wait()

    def _start(self) -> None:
        import socket
        from multiprocessing.connection import Connection

        if not sys.executable:
            raise OSError("no Python executable to run it")
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD_MAIN, str(theirs.fileno())], pass_fds=[theirs.fileno()], cwd="/",
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._connection = Connection(ours.detach())
        self._connection.send(([entry for entry in sys.path if entry], self.root, self.function, os.getpid()))
        if not self._connection.poll(START_SECONDS) or self._connection.recv() != "ready":
            raise OSError(f"it did not answer within {START_SECONDS:g} s")


def _exit_reason(returncode: int | None) -> str:
    import signal

    if returncode is None or returncode >= 0:
        return "it stopped answering" if returncode is None else f"exit status {returncode}"
    return signal.Signals(-returncode).name if -returncode in signal.valid_signals() else f"signal {-returncode}"


def serve(connection, root: str, function: str, parent: int) -> None:
    """The child: (path, bytes, format) in, (pictures, notices) out, until the parent closes the connection."""
    import importlib
    import logging
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes the child
    _exit_with_parent(parent)
    _limit_memory(CHILD_MEMORY)
    _confine_fontconfig()
    _lenient_docutils()
    for logger in ("weasyprint", "weasyprint.progress"):  # what it would log of a refusal is our notice
        logging.getLogger(logger).setLevel(logging.CRITICAL + 1)
    render_document("/", "warm-up.md", b"# Warm\n\nup `code`\n", "markdown")  # imports, fontconfig: not timed
    module_name, function_name = function.split(":")
    render = getattr(importlib.import_module(module_name), function_name)
    connection.send("ready")
    while True:
        try:
            path, data, form = connection.recv()
        except EOFError:
            return
        try:
            answer = render(root, path, data, form)
        except MemoryError:
            answer = [], [f"{printable(path)}: ran out of memory rendering it; skipped"]
        except Exception as error:  # a converter's or weasyprint's failure on odd input
            answer = [], [f"{printable(path)}: could not be rendered ({first_line(error)}); skipped"]
        connection.send(answer)


def _exit_with_parent(parent: int) -> None:
    """A watch that ends the child once its parent is gone (killed, say), even in the middle of a document."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _limit_memory(limit: int) -> None:
    """At most `limit` bytes of address space, and no core file left by a crash."""
    try:
        import resource

        for kind, value in ((resource.RLIMIT_AS, limit), (resource.RLIMIT_CORE, 0)):
            hard = resource.getrlimit(kind)[1]
            resource.setrlimit(kind, (value if hard == resource.RLIM_INFINITY else min(value, hard), hard))
    except (ImportError, ValueError, OSError):
        pass  # no such limits here, or not allowed: the child runs without them


def _confine_fontconfig() -> None:
    """Fontconfig reads the system's font folders and rules alone: the user's (~/.fonts, the XDG data and config
    folders: a home folder may be the repository) name a path under /dev/null, which no one, root included, can
    create, so none is read and no cache is written there. A FONTCONFIG_FILE the user set is theirs to keep.
    (A configuration of our own cannot be given in memory: fontconfig opens /proc/self/fd/N by its target.)"""
    for name in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        os.environ[name] = "/dev/null/codesearch"


def render_document(root: str, path: str, data: bytes, form: str) -> tuple[list[Picture], list[str]]:
    """The pictures of one document (its pages, or an image's one picture) and notices; run in a child."""
    import weasyprint

    if form == "image":
        pictures, notice = pictures_of_image(path, data)
        return pictures, [notice] if notice else []
    text = data.decode("utf-8-sig", errors="replace")
    html, headings, title = {"markdown": _markdown_html, "rst": _rst_html, "html": _html_with_anchors}[form](text)
    real_root = os.path.realpath(root)
    refused: dict[str, str] = {}

    def serve_resource(url: str) -> tuple[bytes, str]:
        try:
            return repository_resource(real_root, url)
        except (CodesearchError, OSError, ValueError) as error:
            refused.setdefault(url, first_line(error))
            raise ValueError(refused[url]) from None

    base_url = Path(real_root, os.path.dirname(path)).as_uri().rstrip("/") + "/"
    document = weasyprint.HTML(string=html, base_url=base_url, url_fetcher=weasyprint_fetcher(serve_resource),
                               media_type="screen").render(stylesheets=[weasyprint.CSS(string=PAGE_CSS)],
                                                           presentational_hints=True)
    shown = printable(path)
    notices = [f"{shown}: {printable(shown_url(url, real_root), 100)} not fetched ({reason})"
               for url, reason in refused.items()]
    if len(document.pages) > MAX_PAGES:
        notices.append(f"{shown}: {len(document.pages)} pages; the first {MAX_PAGES} kept")
        document = document.copy(document.pages[:MAX_PAGES])
    places = _page_places(document.pages, headings, title or path.rsplit("/", 1)[-1])
    drawn = pdf_pictures(document.write_pdf(), MAX_PAGES)
    return [Picture(path, "page", number, line, heading, words, png_bytes(image))
            for number, ((line, heading), (image, words)) in enumerate(zip(places, drawn), 1)], notices


def _page_places(pages, headings: dict[str, tuple[int, str]], title: str) -> list[tuple[int, str]]:
    """(line, heading) of each page: the heading at its top, else the last one on an earlier page, else
    (1, the document's title). `headings`: anchor id -> (source line, heading text)."""
    places, current = [], (1, title)
    for page in pages:
        on_page = sorted((box[1], heading) for anchor, box in page.anchors.items()
                         if (heading := headings.get(anchor)) is not None)
        at_top = [heading for top, heading in on_page if top <= HEADING_AT_TOP]
        places.append(at_top[0] if at_top else current)
        if on_page:
            current = on_page[-1][1]
    return places


def _markdown_html(text: str) -> tuple[str, dict[str, tuple[int, str]], str | None]:
    """(HTML, anchor -> (line, heading), title) of Markdown. Raw HTML is kept, as GitHub shows a README (its
    <img width>, <details>, <p align>): it cannot do more than an .html file, rendered here as it is, can."""
    from markdown_it import MarkdownIt

    markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    tokens = markdown.parse(text)
    headings: dict[str, tuple[int, str]] = {}
    title = None
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.map and index + 1 < len(tokens):
            anchor = f"codesearch-heading-{len(headings)}"
            token.attrSet("id", anchor)
            inline = tokens[index + 1]
            words = "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))
            headings[anchor] = (token.map[0] + 1, " ".join((words or inline.content).split())[:200])
            if title is None and token.tag == "h1":
                title = headings[anchor][1]
    return markdown.renderer.render(tokens, markdown.options, {}), headings, title


def _rst_html(text: str) -> tuple[str, dict[str, tuple[int, str]], str | None]:
    """(HTML, anchor -> (line, heading), title) of reStructuredText, by docutils with no file or URL read
    (include, raw, csv-table :file: and :url: off), no message shown or printed, and no configuration file."""
    import io

    from docutils import nodes
    from docutils.core import publish_doctree, publish_from_doctree
    from docutils.writers import html5_polyglot

    settings = {"file_insertion_enabled": False, "raw_enabled": False, "report_level": 5, "halt_level": 5,
                "warning_stream": io.StringIO(), "_disable_config": True, "doctitle_xform": False,
                "sectsubtitle_xform": False, "syntax_highlight": "none", "input_encoding": "unicode",
                "output_encoding": "unicode", "traceback": True, "stylesheet_path": ["minimal.css"],
                "stylesheet_dirs": [os.path.dirname(html5_polyglot.__file__)]}  # not '.', the working folder
    document = publish_doctree(text, settings_overrides=settings)
    headings: dict[str, tuple[int, str]] = {}
    for section in document.findall(nodes.section):
        heading = section.next_node(nodes.title)
        anchor = f"codesearch-heading-{len(headings)}"
        # On the <h2>, not the <section>: a section's box may start at the foot of the page before its title's.
        (heading if heading is not None else section)["ids"].append(anchor)
        line = (heading.line - 1) if heading is not None and heading.line else (section.line or 1)  # its underline
        headings[anchor] = (max(1, line), " ".join((heading.astext() if heading is not None else "").split())[:200])
    title = next(iter(headings.values()))[1] if headings else None
    return publish_from_doctree(document, writer_name="html5", settings_overrides=settings), headings, title


def _html_with_anchors(text: str) -> tuple[str, dict[str, tuple[int, str]], str | None]:
    """(HTML, anchor -> (line, heading), title) of an HTML file, each heading given an id where it has none.
    A pattern, not a parser: a heading's text is read up to 2000 characters, so no input makes it slow, and an
    id put in a comment or a script by mistake changes nothing drawn (a script never runs)."""
    import html

    headings: dict[str, tuple[int, str]] = {}
    pieces, done, line, counted = [], 0, 1, 0
    for match in re.finditer(r"<(h[1-6])\b([^>]*)>(.{0,2000}?)</\1\s*>", text, re.IGNORECASE | re.DOTALL):
        line += text.count("\n", counted, match.start())
        counted = match.start()
        words = " ".join(html.unescape(re.sub(r"<[^>]*>", " ", match.group(3))).split())[:200]
        named = re.search(r"""(?:^|\s)id\s*=\s*["']?([^"'\s>]+)""", match.group(2))
        anchor = named.group(1) if named else f"codesearch-heading-{len(headings)}"
        if not named:
            pieces += [text[done:match.start() + 3], f' id="{anchor}"']
            done = match.start() + 3
        headings.setdefault(anchor, (line, words))
    title = re.search(r"<title\b[^>]*>(.{0,500}?)</title", text, re.IGNORECASE | re.DOTALL)
    named = " ".join(html.unescape(title.group(1)).split()) if title else ""
    first = next((words for _line, words in headings.values()), None)
    return "".join(pieces) + text[done:], headings, named or first


def _lenient_docutils() -> None:
    """Sphinx's roles and directives (:ref:, :class:, code-block, versionadded, ...) are not docutils': unknown
    ones show their text, where docutils would drop the block or print the markup. None of Sphinx runs."""
    from docutils import nodes
    from docutils.parsers.rst import Directive, directives, roles

    class AnyOption(dict):
        def __getitem__(self, _name):
            return directives.unchanged

        def __bool__(self):
            return True

    class ShownDirective(Directive):
        optional_arguments, final_argument_whitespace, has_content, option_spec = 1, True, True, AnyOption()

        def run(self):
            if self.name in _UNDRAWN_DIRECTIVES:
                return []
            if self.name in _CODE_DIRECTIVES:
                return [nodes.literal_block("", "\n".join(self.content))] if self.content else []
            shown = [nodes.paragraph("", "", nodes.strong(text=f"{self.name} {self.arguments[0]}"))] \
                if self.arguments else []
            if self.content:
                box = nodes.container()
                self.state.nested_parse(self.content, self.content_offset, box)
                shown.append(box)
            return shown

    def shown_role(name, rawtext, text, lineno, inliner, options=None, content=None):
        target = re.match(r"(?s)(.+?)\s*<[^<>]*>$", text)
        words = target.group(1) if target else text.lstrip("!")
        if words.startswith("~"):
            words = words[1:].rsplit(".", 1)[-1]
        return [(nodes.inline if name in ("ref", "doc", "term") else nodes.literal)(rawtext, words)], []

    known_role, known_directive = roles.role, directives.directive

    def role(name, language, lineno, reporter):
        found, messages = known_role(name, language, lineno, reporter)
        return (found, messages) if found else (shown_role, [])

    def directive(name, language, document):
        if name in _CODE_DIRECTIVES:  # docutils' own code directive refuses Sphinx's options and drops the block
            return ShownDirective, []
        found, messages = known_directive(name, language, document)
        return (found, messages) if found else (ShownDirective, [])

    roles.role, directives.directive = role, directive
