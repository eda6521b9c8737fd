"""A repository's images and documentation pages as pictures (source/media.py, source/pages.py), every file
hostile: each bad file gives one notice and leaves the others as they were, nothing is fetched from the network
(a server on 127.0.0.1 counts every request), and nothing outside the repository is read (a red picture beside
it, and a link to it, must never show)."""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from codesearch.errors import CodesearchError
from codesearch.source.media import MAX_SIDE, decode_picture, media_kind, pictures_of_image
from codesearch.source.pages import render_pages

RED, GREEN = (255, 0, 0), (0, 200, 0)


def encoded(image: Image.Image, kind: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def noise(size=(300, 300)) -> Image.Image:
    return Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))


def picture(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "RGB" and max(image.size) <= MAX_SIDE
    return image


def shows(png: bytes, colour: tuple[int, int, int]) -> bool:
    """Whether some pixels are (about) this colour."""
    return any(count > 20 and all(abs(a - b) < 30 for a, b in zip(pixel, colour))
               for count, pixel in picture(png).getcolors(1 << 20) or [])


def png_declaring(width: int, height: int) -> bytes:
    """A PNG of 80 bytes whose header declares width x height pixels: a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 that answers everything with a red PNG and records each request."""
    hits: list[str] = []
    red = encoded(Image.new("RGB", (50, 50), RED))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(red)

        def log_message(self, *_arguments):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def repository(tmp_path):
    """A repository with a green image, beside a red one outside it that a link inside leads to."""
    root = tmp_path / "repo"
    (root / "img").mkdir(parents=True)
    (root / "docs").mkdir()
    Image.new("RGB", (200, 100), GREEN).save(root / "img" / "green.png")
    Image.new("RGB", (200, 100), RED).save(tmp_path / "outside.png")
    (tmp_path / "outside.css").write_text("body { background: red }")
    os.symlink(tmp_path / "outside.png", root / "img" / "link.png")
    return root


# -- images --------------------------------------------------------------------------------------------------


def test_media_kind_is_read_from_the_suffix():
    assert [media_kind(name) for name in ("a/B.PNG", "x.svg", "README.md", "doc.RST", "i.htm", "a.py", "png")] \
        == ["image", "image", "page", "page", "page", None, None]


def test_an_image_becomes_one_rgb_picture_within_max_side_alpha_on_white():
    image = Image.new("RGBA", (3000, 1000), (0, 0, 0, 0))
    image.paste((0, 0, 255, 255), (0, 0, 1500, 1000))
    pictures, notice = pictures_of_image("docs/img/queryFlow_v2.png", encoded(image))
    assert notice is None and len(pictures) == 1
    found = pictures[0]
    assert (found.kind, found.number, found.line, found.title) == ("image", 0, 1, "queryFlow_v2.png")
    assert found.text == "docs img query Flow v 2"
    drawn = picture(found.png)
    assert drawn.size == (MAX_SIDE, MAX_SIDE // 3)
    assert drawn.getpixel((10, 10)) == (0, 0, 255) and drawn.getpixel((MAX_SIDE - 10, 10)) == (255, 255, 255)
    assert decode_picture(encoded(noise(), "JPEG")).mode == "RGB"


@pytest.mark.parametrize("declared", [(50_000, 50_000), (7_000, 7_000), (1, 60_000_000)])
def test_a_decompression_bomb_is_refused_from_its_header(declared):
    bomb = png_declaring(*declared)
    assert len(bomb) < 100
    pictures, notice = pictures_of_image("bomb.png", bomb)
    assert pictures == [] and notice.startswith("bomb.png: the image declares") and "decompression bomb" in notice
    with pytest.raises(CodesearchError, match="megapixels"):
        decode_picture(bomb)


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
def test_a_truncated_or_corrupt_image_is_a_notice(kind):
    whole = encoded(noise(), kind)
    assert pictures_of_image(f"a.{kind}", whole)[1] is None
    pictures, notice = pictures_of_image(f"a.{kind}", whole[: len(whole) // 2])
    assert pictures == [] and "truncated" in notice and "\n" not in notice
    assert pictures_of_image("b.png", b"\x89PNG\r\n\x1a\n" + os.urandom(500))[0] == []
    assert "not a PNG" in pictures_of_image("c.png", b"%!PS-Adobe-3.0 EPSF-3.0\n")[1]  # never handed to Ghostscript


@pytest.mark.parametrize("kind", ["GIF", "WEBP"])
def test_an_animation_gives_its_first_frame(kind):
    frames = [Image.new("RGB", (64, 64), colour) for colour in (RED, (0, 0, 255))]
    data = encoded(frames[0], kind, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    pictures, notice = pictures_of_image(f"a.{kind.lower()}", data)
    assert notice is None and shows(pictures[0].png, RED) and not shows(pictures[0].png, (0, 0, 255))


def test_an_svg_is_drawn_without_its_script_and_without_fetching(server, tmp_path):
    url, hits = server
    Image.new("RGB", (50, 50), RED).save(tmp_path / "outside.png")
    svg = f"""<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="100"
        height="50"><style>@import url("{url}/svg.css"); rect {{ fill: url({url}/fill.png) }}</style>
        <rect width="100" height="50" style="fill: rgb(0, 200, 0)"/><script>alert(1)</script>
        <image href="{url}/image.png" width="100" height="50"/>
        <image xlink:href="file://{tmp_path}/outside.png" width="100" height="50"/>
        <image href="../outside.png" width="100" height="50"/>
        <foreignObject width="100" height="50"><iframe xmlns="http://www.w3.org/1999/xhtml" src="{url}/frame"/>
        </foreignObject></svg>""".encode()
    pictures, notice = pictures_of_image("diagram.svg", svg)
    assert notice is None
    drawn = picture(pictures[0].png)
    assert drawn.size == (512, 256)  # a small drawing is drawn larger
    assert shows(pictures[0].png, GREEN) and not shows(pictures[0].png, RED)
    assert hits == []


@pytest.mark.parametrize("svg, reason", [
    (b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b'<svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>', "read from elsewhere"),
    (b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>'
     b'<svg xmlns="http://www.w3.org/2000/svg"/>', "read from elsewhere"),
    (b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
     b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><svg xmlns="http://www.w3.org/2000/svg"><text>&c;</text>'
     b'</svg>', "billion-laughs"),
    (b'<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="400"/>', "100000x400 px canvas"),
    (b'<svg xmlns="http://www.w3.org/2000/svg">' + b'<rect width="1" height="1"/>' * 50_001 + b"</svg>",
     "over 50000 elements"),
    (b'<svg xmlns="http://www.w3.org/2000/svg">' + b"<!-- padding -->" * 300_000 + b"</svg>", "MiB"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><g id="g0"><rect width="1" height="1"/></g>'
     + b"".join(b'<g id="g%d">' % level + b'<use href="#g%d"/>' % (level - 1) * 10 + b"</g>" for level in range(1, 8))
     + b"</svg>", "<use> copies"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><g id="a"><use href="#a"/></g></svg>', "copies itself"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><rect', "well-formed"),
    (b'<html><svg xmlns="http://www.w3.org/2000/svg"/></html>', "no <svg> root"),
])
def test_a_hostile_or_huge_svg_is_refused_with_a_notice(svg, reason):
    started = time.monotonic()
    pictures, notice = pictures_of_image("bad.svg", svg)
    assert pictures == [] and reason in notice and notice.startswith("bad.svg: ") and "\n" not in notice
    assert time.monotonic() - started < 5


def test_decode_picture_refuses_with_a_one_line_reason():
    with pytest.raises(CodesearchError, match="not a PNG, JPEG, GIF, WebP or SVG image"):
        decode_picture(b"hello")
    with pytest.raises(CodesearchError, match="MiB"):
        decode_picture(b"\0" * (65 << 20))


# -- pages ---------------------------------------------------------------------------------------------------


def test_hostile_pages_fetch_nothing_read_nothing_outside_and_render_the_rest(repository, server):
    url, hits = server
    words = "Words of a paragraph that fill the page. " * 40
    html = f"""<html><head><title>Hostile page</title><base href="{url}/base/">
        <link rel="stylesheet" href="{url}/style.css"><link rel="import" href="{url}/import.html">
        <link rel="stylesheet" href="file://{repository.parent}/outside.css">
        <style>@import url({url}/imported.css); @font-face {{ font-family: Remote; src: url({url}/font.woff) }}
        body {{ font-family: Remote, sans-serif }}</style>
        <script>document.body.innerHTML = "scripted"; fetch("{url}/script")</script></head>
        <body><h1>Hostile page</h1><p>{words}</p><iframe src="{url}/frame"></iframe><img src="{url}/img.png">
        <object data="{url}/object.png"></object><embed src="{url}/embed.png"><img src="/etc/passwd"></body></html>"""
    markdown = (f"# Links out\n\n![a](../../outside.png) ![b](/etc/passwd) ![c](../img/link.png) "
                f"![d]({url}/md.png) ![e](../img/green.png)\n\n{words}\n")
    with_image = f"# Same\n\n![green](../img/green.png)\n\n{words}\n"
    without_image = f"# Same\n\n![green](../img/missing.png)\n\n{words}\n"
    evil_svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="80" height="40"><script>alert(1)</script>'
                f'<image href="{url}/svg.png" width="80" height="40"/><rect width="40" height="40" fill="#00c800"/>'
                f"</svg>")
    (repository / "img" / "evil.svg").write_text(evil_svg)
    documents = [("docs/hostile.html", html.encode()), ("docs/links.md", markdown.encode()),
                 ("docs/with.md", with_image.encode()), ("docs/without.md", without_image.encode()),
                 ("docs/svg.md", b"# SVG\n\n![s](../img/evil.svg)\n"), ("img/evil.svg", evil_svg.encode()),
                 ("notes.txt", b"plain"), ("docs/huge.md", b"#" * (3 << 20))]
    before = sorted(os.walk(repository))
    answers = {path: (pictures, notices) for path, pictures, notices in
               render_pages(repository, documents, workers=2)}
    assert list(answers) == [path for path, _data in documents]
    assert hits == [] and sorted(os.walk(repository)) == before

    pictures, notices = answers["docs/hostile.html"]
    assert pictures and pictures[0].title == "Hostile page" and "Words of a paragraph" in pictures[0].text
    assert "scripted" not in " ".join(picture.text for picture in pictures)
    assert len(notices) == len(set(notices)) and all("\n" not in notice for notice in notices)
    refused = " ".join(notices)
    for resource in ("style.css", "imported.css", "font.woff", "img.png", "/etc/passwd", "outside.css"):
        assert resource in refused
    assert not any(shows(found.png, RED) for found in pictures)

    pictures, notices = answers["docs/links.md"]
    assert sorted(notice.split(" not fetched ")[0] for notice in notices) == sorted(
        f"docs/links.md: {name}" for name in (repository.parent / "outside.png", "/etc/passwd", "img/link.png",
                                              f"{url}/md.png"))
    assert "outside the repository" in notices[0] and "link" in " ".join(notices)
    assert shows(pictures[0].png, GREEN) and not any(shows(found.png, RED) for found in pictures)

    assert shows(answers["docs/with.md"][0][0].png, GREEN) and not shows(answers["docs/without.md"][0][0].png, GREEN)
    assert answers["docs/svg.md"][1] == [] and shows(answers["docs/svg.md"][0][0].png, GREEN)
    (image,), notices = answers["img/evil.svg"]
    assert notices == [] and image.kind == "image" and shows(image.png, GREEN)
    assert answers["notes.txt"][0] == [] and "not a page" in answers["notes.txt"][1][0]
    assert answers["docs/huge.md"] == ([], ["docs/huge.md: 3.0 MiB, over the 2 MiB rendered; skipped"])


def test_each_page_knows_the_heading_at_or_before_its_top(repository):
    paragraph = "A sentence in a long section about one thing. " * 60
    lines = ["# Alpha", "", paragraph, "", paragraph, "", '<div style="break-before: page"></div>', "",
             "## Bravo", "", paragraph, "", "Short.", "", "## Charlie", "", paragraph, "", paragraph, ""]
    source = "\n".join(lines).encode()
    (_path, pictures, notices), = render_pages(repository, [("docs/guide.md", source)])
    assert notices == [] and len(pictures) >= 4
    assert [found.number for found in pictures] == list(range(1, len(pictures) + 1))
    heading_lines = {"Alpha": 1, "Bravo": lines.index("## Bravo") + 1, "Charlie": lines.index("## Charlie") + 1}
    current = "Alpha"
    for found in pictures:
        first = found.text.split(" ")[0]
        expected = first if first in heading_lines else current  # pdfium's text: the page's words, in order
        assert (found.title, found.line) == (expected, heading_lines[expected]), found.number
        current = [name for name in heading_lines if name in found.text.split(" ")][-1:] or [current]
        current = current[0]
    assert {found.title for found in pictures} == set(heading_lines)
    assert picture(pictures[0].png).size == (1024, 768)


def test_restructuredtext_reads_no_file_and_shows_sphinx_markup_as_text(repository, tmp_path):
    (tmp_path / "secret.txt").write_text("TOP SECRET CONTENT")
    source = f""".. include:: {tmp_path}/secret.txt

.. raw:: html
   :file: {tmp_path}/secret.txt

.. csv-table:: Secrets
   :file: {tmp_path}/secret.txt

=====
Title
=====

See :class:`~django.db.models.Model` and :ref:`the guide <guide>`.

Second part
===========

.. code-block:: python
   :emphasize-lines: 1

   shown = "code"
""".encode()
    (_path, pictures, notices), = render_pages(repository, [("docs/page.rst", source)])
    text = " ".join(found.text for found in pictures)
    assert "SECRET" not in text and "Model and the guide" in text and 'shown = "code"' in text
    assert (pictures[0].title, pictures[0].line, notices) == ("Title", 10, [])


def misbehaving_render(root, path, data, form):
    """render_document, but for the tests' documents that hang, crash or eat memory (run in the child)."""
    from codesearch.source.pages import render_document

    if path == "hang.md":
        time.sleep(120)
    if path == "crash.md":
        os.kill(os.getpid(), signal.SIGSEGV)
    if path == "slow.md":
        time.sleep(2)
    if path == "hog.md":
        return [], [str(len(bytearray(3 << 30)))]
    return render_document(root, path, data, form)


def test_a_hang_a_crash_or_a_memory_hog_is_a_notice_and_a_fresh_child_goes_on(repository):
    documents = [("hang.md", b"# Hang\n"), ("after.md", b"# After\n"), ("crash.md", b"# Crash\n"),
                 ("hog.md", b"# Hog\n"), ("last.md", b"# Last\n")]
    started = time.monotonic()
    answers = list(render_pages(repository, documents, timeout=3,
                                function="test_media_sources:misbehaving_render"))
    assert [path for path, _pictures, _notices in answers] == [path for path, _data in documents]
    assert answers[0][1:] == ([], ["hang.md: rendering took over 3 s; skipped"])
    assert answers[2][1:] == ([], ["crash.md: the page renderer died rendering it (SIGSEGV); skipped"])
    assert answers[3][1:] == ([], ["hog.md: ran out of memory rendering it; skipped"])
    for index, title in ((1, "After"), (4, "Last")):
        assert answers[index][2] == [] and answers[index][1][0].title == title
    assert time.monotonic() - started < 30


def test_a_long_document_holds_back_the_answers_after_it_but_not_the_children(repository):
    documents = [("slow.md", b"# Slow\n")] + [(f"quick{number}.md", b"# Quick\n") for number in range(20)]
    started = time.monotonic()
    answers = list(render_pages(repository, documents, workers=2, function="test_media_sources:misbehaving_render"))
    assert [path for path, _pictures, _notices in answers] == [path for path, _data in documents]
    assert all(len(pictures) == 1 and notices == [] for _path, pictures, notices in answers)
    assert time.monotonic() - started < 10


def test_a_document_over_its_time_is_skipped(repository):
    answers = list(render_pages(repository, [("a.md", b"# A\n\ntext\n"), ("b.md", b"# B\n")], timeout=0.01))
    assert answers == [("a.md", [], ["a.md: rendering took over 0.01 s; skipped"]),
                       ("b.md", [], ["b.md: rendering took over 0.01 s; skipped"])]


def running(pid: int) -> bool:
    """Whether the process runs (a zombie nobody has waited for yet has ended)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_the_children_die_with_their_parent(repository, tmp_path):
    """A parent killed mid-document (SIGKILL: nothing of it runs) leaves no renderer behind."""
    script = f"""
import sys
from pathlib import Path
sys.path[:0] = {[str(Path(__file__).parent)] + sys.path!r}
from codesearch.source.pages import PageRenderer
renderer = PageRenderer(Path({str(repository)!r}), 60, "test_media_sources:misbehaving_render")
renderer.submit("hang.md", b"", "markdown")
print(renderer._process.pid, flush=True)
sys.stdin.read()
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not running(child):
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the renderer outlived its parent")
