"""A repository's images as pictures for a vision model, decoded with the bounds a hostile file calls for.

Every image in a repository is someone else's input. Pillow opens a file lazily, so a decompression bomb (a few
KiB that declare a gigapixel) is refused from its header; only the formats a picture can be are tried (Pillow
would hand an EPS to Ghostscript); what comes out is RGB, alpha laid on white, at most MAX_SIDE a side.
An SVG is drawn by weasyprint, which runs no script and fetches only through the fetcher it is given: the file
is checked first (no entity read from elsewhere or made of others, a bounded tree and count of what its <use>
copies draw), stripped of scripts, foreign objects and references other than to itself or an inline raster.
The end of this module is what pages.py shares: what a page may fetch, and drawing a PDF's pages.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from codesearch.errors import CodesearchError, first_line
from codesearch.trust import is_repository_path, read_regular_file, resolve_inside

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")
PAGE_SUFFIXES = (".md", ".markdown", ".rst", ".html", ".htm")
# 1344 = 28 x 48 = 14 x 96 = 16 x 84 = 336 x 4 = 448 x 3: whole patches for Qwen2-VL/2.5-VL (28 px once merged),
# ViT/14 and ViT/16, and whole CLIP-336 and SigLIP-448 tiles, so a model's processor need not blur a picture a
# second time; 1.8 megapixels at most, and a 1024 px wide page fits whole.
MAX_SIDE = 1344
MAX_IMAGE_BYTES = 64 << 20
MAX_PIXELS = 40_000_000  # declared pixels decoded at all: an 8K photo or a long screenshot; 160 MB as RGBA
RASTER_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")  # what Pillow may try; a camera's JPEG opens as MPO
RASTER_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "GIF": "image/gif",
                "WEBP": "image/webp"}
SVG_MAX_BYTES = 4 << 20
SVG_MAX_SIDE = 20_000  # declared width or height, CSS px
SVG_MAX_ELEMENTS = 50_000
SVG_MAX_DEPTH = 200
SVG_MAX_DRAWN = 200_000  # elements drawn once each <use> counts as the tree it copies: <use> of <use> multiplies
SVG_MAX_CHARACTERS = 16 << 20  # text and attributes once entities are expanded
SVG_MAX_ENTITIES = 64  # Illustrator declares a dozen namespace entities; none may refer to another
SVG_MIN_SIDE = 512  # a small drawing is drawn larger: vectors scale without blur, and a 16 px icon says little
TEXT_CHARACTERS = 2000
MAX_RESOURCE_BYTES = 16 << 20  # one image or stylesheet a page uses
CSS_PIXEL_POINTS = 0.75  # weasyprint writes 1 CSS px as 0.75 PDF pt
_SVG_URL = "codesearch:drawing.svg"  # the one URL the fetcher of a lone SVG serves
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_NEVER_DRAWN = {"script", "foreignObject", "iframe", "object", "embed", "audio", "video", "handler", "listener"}
_INLINE_RASTER = re.compile(r"data:image/(png|jpe?g|gif|webp)[;,]", re.IGNORECASE)
_LENGTH = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(px|pt|pc|mm|cm|in|em|ex|%)?\s*$")
_UNIT_PIXELS = {None: 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0,
                "em": 16.0, "ex": 8.0}


@dataclass(frozen=True)
class Picture:
    path: str  # repository path (posix, relative) of the file it came from
    kind: str  # "image" or "page"
    number: int  # page number within its document, from 1; 0 for an image
    line: int  # 1-based line of the heading at or before the page's top; 1 for an image
    title: str  # the page's heading (else the document's title, else the file name); an image's file name
    text: str  # words for the lexical side: a page's visible text; an image's path words
    png: bytes  # RGB, longest side <= MAX_SIDE


def media_kind(path: str) -> str | None:
    """"image", "page" or None, by the path's suffix (any case)."""
    lowered = path.lower()
    return "image" if lowered.endswith(IMAGE_SUFFIXES) else "page" if lowered.endswith(PAGE_SUFFIXES) else None


def pictures_of_image(path: str, data: bytes) -> tuple[list[Picture], str | None]:
    """([the image's Picture], None), or ([], a one-line notice of why it was skipped)."""
    try:
        png = png_bytes(decode_picture(data))
    except CodesearchError as error:
        return [], f"{printable(path)}: {error}; skipped"
    except MemoryError:
        return [], f"{printable(path)}: ran out of memory decoding it; skipped"
    return [Picture(path, "image", 0, 1, path.rsplit("/", 1)[-1], path_words(path), png)], None


def decode_picture(data: bytes):
    """A PNG, JPEG, GIF or WebP (first frame) or SVG as an RGB PIL image, longest side at most MAX_SIDE.

    Also how a query's own image (--image FILE) is read, so it is bounded the same way. Raises CodesearchError
    with a one-line reason for anything refused or broken."""
    if len(data) > MAX_IMAGE_BYTES:
        raise CodesearchError(f"the image is {len(data) / (1 << 20):.0f} MiB, over the {MAX_IMAGE_BYTES >> 20} MiB "
                              f"read at all")
    image = rasterise_svg(data) if looks_like_svg(data) else _decode_raster(data)
    return _fitted(image)


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)  # a page as small as at 6 (129 KiB), in a third of the time
    return buffer.getvalue()


def path_words(path: str) -> str:
    """The words of a path without its suffix: `docs/img/queryFlow_v2.png` -> `docs img query Flow v 2`."""
    stem = path.rsplit(".", 1)[0] if "." in path.rsplit("/", 1)[-1] else path
    return " ".join(re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", stem))[:TEXT_CHARACTERS]


def printable(text: str, limit: int = 160) -> str:
    """`text` on one line, control characters written as escapes, cut at `limit` characters."""
    shown = "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def looks_like_svg(data: bytes) -> bool:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<") and re.search(rb"<(?:[A-Za-z_][\w.-]*:)?svg[\s>/]", data[:65536]) is not None


def _decode_raster(data: bytes):
    import warnings

    from PIL import Image, ImageFile, ImageOps

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow warns above it and refuses at twice it; ours refuses above it
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # importing weasyprint sets it: a truncated file would be padded grey
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=RASTER_FORMATS)
            _check_declared_size(image)
            if image.format in ("JPEG", "MPO"):
                image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # decodes at 1/2, 1/4 or 1/8 scale when that still fits
            image.load()  # the first frame of an animated GIF or WebP
            return ImageOps.exif_transpose(image) if image.getexif().get(0x0112, 1) != 1 else image
    except CodesearchError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise CodesearchError(f"the image declares over {MAX_PIXELS // 1_000_000} megapixels (a decompression "
                              f"bomb, or too large to decode)") from None
    except Image.UnidentifiedImageError:
        raise CodesearchError("not a PNG, JPEG, GIF, WebP or SVG image") from None
    except MemoryError:
        raise CodesearchError("ran out of memory decoding the image") from None
    except Exception as error:  # a broken file fails in many ways: OSError, SyntaxError, struct.error, zlib.error
        raise CodesearchError(f"the image is broken or truncated ({first_line(error)})") from None


def _check_declared_size(image) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS or min(width, height) < 1:
        raise CodesearchError(f"the image declares {width}x{height} pixels, not 1 to {MAX_PIXELS // 1_000_000} "
                              f"megapixels (a decompression bomb, or too large to decode)")


def _fitted(image):
    """RGB, alpha (or a transparent colour) laid on white, longest side at most MAX_SIDE."""
    from PIL import Image

    if image.mode not in ("RGB", "RGBA", "L", "LA") or "transparency" in image.info:
        transparent = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)  # scaled before compositing: less to lay
    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("RGB")


def checked_image(data: bytes) -> tuple[bytes, str]:
    """(bytes, media type) of an image safe to give weasyprint: an SVG checked and stripped (checked_svg), or
    a raster Pillow opens among RASTER_FORMATS within MAX_PIXELS. weasyprint itself would try any format Pillow
    knows, and a raster that fails as an SVG."""
    if looks_like_svg(data):
        return checked_svg(data), "image/svg+xml"
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data), formats=RASTER_FORMATS)
    except Exception:
        raise CodesearchError("not a PNG, JPEG, GIF, WebP or SVG image") from None
    _check_declared_size(image)
    return data, RASTER_TYPES[image.format]


def checked_svg(data: bytes) -> bytes:
    """The SVG, refused when hostile (see _svg_tree) and stripped of what must not be drawn or fetched."""
    from xml.etree.ElementTree import tostring

    return tostring(_svg_tree(data)[0])


def rasterise_svg(data: bytes):
    """The SVG drawn by weasyprint at its declared size, its longest side brought within SVG_MIN_SIDE..MAX_SIDE."""
    from xml.etree import ElementTree

    root, width, height, has_view_box = _svg_tree(data)
    if not has_view_box:  # without one, a larger canvas would show the drawing at its size, in a corner
        root.set("viewBox", f"0 0 {width:g} {height:g}")
    scale = min(MAX_SIDE, max(SVG_MIN_SIDE, width, height)) / max(width, height)
    width, height = max(1.0, round(width * scale)), max(1.0, round(height * scale))
    root.attrib.update(width=f"{width:g}", height=f"{height:g}")
    drawing = ElementTree.tostring(root)

    def serve(url: str) -> tuple[bytes, str]:
        if url == _SVG_URL:
            return drawing, "image/svg+xml"
        if _INLINE_RASTER.match(url):
            return checked_image(data_uri(url)[1])
        raise ValueError("an SVG drawn alone fetches nothing but its inline rasters")

    import weasyprint

    html = f'<img src="{_SVG_URL}" style="display:block;width:{width:g}px;height:{height:g}px">'
    css = f"@page {{ size: {width:g}px {height:g}px; margin: 0 }} html, body {{ margin: 0; background: white }}"
    try:
        pdf = weasyprint.HTML(string=html, base_url=_SVG_URL, url_fetcher=weasyprint_fetcher(serve)).write_pdf(
            stylesheets=[weasyprint.CSS(string=css)])
        return next(pdf_pictures(pdf, 1))[0]
    except Exception as error:
        raise CodesearchError(f"the SVG could not be drawn ({first_line(error)})") from None


def _svg_tree(data: bytes):
    """(root element, declared width and height in CSS px, whether it has a viewBox) of an SVG that passed the
    checks, stripped. Checked in a first pass by expat with handlers that refuse an entity read from elsewhere or
    one that names another (billion laughs), a parameter entity, too deep or too large a tree; only then parsed
    into a tree. No external DTD or entity is ever read: expat reads none without a handler that fetches."""
    from xml.etree import ElementTree
    from xml.parsers import expat

    if len(data) > SVG_MAX_BYTES:
        raise CodesearchError(f"the SVG is {len(data) / (1 << 20):.1f} MiB, over the {SVG_MAX_BYTES >> 20} MiB drawn")
    counts = {"elements": 0, "depth": 0, "characters": 0, "entities": 0}

    def refuse(reason: str):
        raise CodesearchError(f"the SVG {reason}")

    def entity(name, is_parameter, value, base, system_id, public_id, notation):
        counts["entities"] += 1
        if is_parameter or value is None or system_id or notation:
            refuse(f"declares the entity {printable(name, 40)} read from elsewhere")
        if "&" in value or "%" in value:
            refuse(f"declares the entity {printable(name, 40)} made of other entities (a billion-laughs bomb)")
        if counts["entities"] > SVG_MAX_ENTITIES or len(value) > 4096:
            refuse("declares too many or too large entities")

    def start(name, attributes):
        counts["elements"] += 1
        counts["depth"] += 1
        if counts["elements"] == 1 and name.rsplit(" ", 1)[-1] != "svg":
            refuse("has no <svg> root")
        if counts["elements"] > SVG_MAX_ELEMENTS or counts["depth"] > SVG_MAX_DEPTH:
            refuse(f"has over {SVG_MAX_ELEMENTS} elements or is nested over {SVG_MAX_DEPTH} deep")
        characters("".join(attributes.values()))

    def end(_name):
        counts["depth"] -= 1

    def characters(text):
        counts["characters"] += len(text)
        if counts["characters"] > SVG_MAX_CHARACTERS:
            refuse(f"expands to over {SVG_MAX_CHARACTERS >> 20} M characters")

    def external(*_reference):
        refuse("refers to an entity outside the file")

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.EntityDeclHandler = entity
    parser.ExternalEntityRefHandler = external
    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(data, True)
        root = ElementTree.fromstring(data)
    except (expat.ExpatError, ElementTree.ParseError) as error:
        raise CodesearchError(f"the SVG is not well-formed XML ({first_line(error)})") from None
    _strip(root)
    _check_drawn(root)
    width, height, has_view_box = _svg_size(root)
    return root, width, height, has_view_box


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _strip(root) -> None:
    """Scripts and foreign content out; every reference but one to this file or to an inline raster dropped."""
    for parent in list(root.iter()):
        for child in list(parent):
            if _local(child.tag) in _NEVER_DRAWN:
                parent.remove(child)
        for name in list(parent.attrib):
            value = parent.attrib[name].strip()
            if name in ("href", _XLINK_HREF) and not (value.startswith("#") or _INLINE_RASTER.match(value)):
                del parent.attrib[name]
            elif name == "{http://www.w3.org/XML/1998/namespace}base" or _local(name).lower().startswith("on"):
                del parent.attrib[name]


def _check_drawn(root) -> None:
    """Refuses an SVG whose <use> elements would draw over SVG_MAX_DRAWN elements, or refer in a circle.

    Each element's cost (itself, its children, and what a <use> copies) is counted once, so a tree of <use>
    of <use> that would draw 10^10 elements is measured in time linear in the file."""
    by_id = {element.get("id"): element for element in root.iter() if element.get("id")}
    cost: dict[int, int] = {}
    counting: set[int] = set()

    def drawn(element) -> int:
        key = id(element)
        if key in cost:
            return cost[key]
        if key in counting:
            raise CodesearchError("the SVG has a <use> that copies itself")
        counting.add(key)
        total = 1 + sum(drawn(child) for child in element)
        if _local(element.tag) == "use":
            target = by_id.get((element.get("href") or element.get(_XLINK_HREF) or "").strip().lstrip("#"))
            total += drawn(target) if target is not None else 0
        counting.discard(key)
        cost[key] = min(total, SVG_MAX_DRAWN + 1)
        return cost[key]

    try:
        total = drawn(root)
    except RecursionError:
        raise CodesearchError("the SVG's <use> elements copy each other too deeply") from None
    if total > SVG_MAX_DRAWN:
        raise CodesearchError(f"the SVG draws over {SVG_MAX_DRAWN} elements once its <use> copies are counted")


def _svg_size(root) -> tuple[float, float, bool]:
    """The declared width and height (CSS px; from the viewBox or 300x150 where not given), refused when absurd."""
    def length(name: str) -> float | None:
        match = _LENGTH.match(root.get(name) or "")
        if not match or match.group(2) == "%":
            return None
        return float(match.group(1)) * _UNIT_PIXELS[match.group(2)]

    width, height = length("width"), length("height")
    if (width or 0) > SVG_MAX_SIDE or (height or 0) > SVG_MAX_SIDE:
        raise CodesearchError(f"the SVG declares a {width or 0:.0f}x{height or 0:.0f} px canvas, over "
                              f"{SVG_MAX_SIDE} px a side")
    box = [float(part) for part in re.findall(r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?", root.get("viewBox", ""))]
    has_view_box = len(box) == 4 and box[2] > 0 and box[3] > 0
    ratio = box[2] / box[3] if has_view_box else None
    if width and height:
        return width, height, has_view_box
    if ratio and (width or height):
        return (width, width / ratio, True) if width else (height * ratio, height, True)
    if ratio:  # a viewBox in map units: only its shape counts
        scale = min(1.0, SVG_MAX_SIDE / max(box[2], box[3]))
        return box[2] * scale, box[3] * scale, True
    return width or 300.0, height or 150.0, False


def data_uri(url: str) -> tuple[str, bytes]:
    """(media type, bytes) of a data: URI."""
    import base64
    from urllib.parse import unquote_to_bytes

    header, _, payload = url[5:].partition(",")
    media_type = header.split(";", 1)[0].strip().lower() or "text/plain"
    if header.lower().endswith(";base64"):
        return media_type, base64.b64decode(payload, validate=False)
    return media_type, unquote_to_bytes(payload)


def repository_resource(real_root: str, url: str) -> tuple[bytes, str]:
    """(bytes, media type) of what a page may use: a data: image or stylesheet, or an image or stylesheet of the
    repository (`real_root`, links resolved) as a regular file reached through no link, within
    MAX_RESOURCE_BYTES. Anything else (the network, a path outside, a font) raises CodesearchError: why."""
    from urllib.parse import unquote, urlsplit

    if url.startswith("data:"):
        media_type, body = data_uri(url)
        if media_type == "text/css":
            return body, media_type
        if media_type.startswith("image/"):
            return checked_image(body)
        raise CodesearchError(f"a data: URI of type {media_type} is not used")
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise CodesearchError("only the repository's own files are read; nothing is fetched from the network")
    relative = os.path.relpath(unquote(parts.path), real_root)
    if not is_repository_path(relative):
        raise CodesearchError("outside the repository")
    stylesheet = relative.lower().endswith(".css")
    if not stylesheet and not relative.lower().endswith(IMAGE_SUFFIXES):
        raise CodesearchError("only images and stylesheets are read")
    real = resolve_inside(real_root, relative)
    if real is None:
        raise CodesearchError("a link that leads outside the repository")
    if real != os.path.join(real_root, relative):
        raise CodesearchError("reached through a symbolic link")
    try:
        body = read_regular_file(real, MAX_RESOURCE_BYTES + 1)
    except OSError as error:
        raise CodesearchError(f"cannot be read: {error.strerror or error}") from None
    if len(body) > MAX_RESOURCE_BYTES:
        raise CodesearchError(f"over {MAX_RESOURCE_BYTES >> 20} MiB")
    return (body, "text/css") if stylesheet else checked_image(body)


def shown_url(url: str, real_root: str) -> str:
    """A refused URL as a notice names it: a data: URI by its type, a file inside the repository by its path."""
    from urllib.parse import unquote, urlsplit

    if url.startswith("data:"):
        return url.split(",", 1)[0][:60] + ",..."
    if url.startswith("file:"):
        local = unquote(urlsplit(url).path)
        return os.path.relpath(local, real_root) if local.startswith(real_root + "/") else local
    return url


def weasyprint_fetcher(serve: Callable[[str], tuple[bytes, str]]):
    """The URL fetcher weasyprint is given: every URL it would open goes to `serve`, which returns (bytes, media
    type) or raises to refuse (weasyprint then leaves the resource out and goes on). Nothing else is opened: the
    response names no file, which weasyprint would otherwise read again itself, following links."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class Response(URLFetcherResponse):
        path = None

    class Fetcher(URLFetcher):
        def fetch(self, url, headers=None):
            body, media_type = serve(url)
            return Response(url, body, {"Content-Type": media_type})

    return Fetcher()


def pdf_pictures(pdf: bytes, pages: int) -> Iterator[tuple[object, str]]:
    """(RGB PIL image, visible text) of each of the first `pages` pages, drawn at one pixel a CSS px unless that
    would pass MAX_SIDE (a page size a hostile stylesheet chose), then smaller."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        for index in range(min(len(document), pages)):
            page = document[index]
            width, height = page.get_size()
            scale = min(1 / CSS_PIXEL_POINTS, MAX_SIDE / max(width, height, 1.0))
            image = page.render(scale=scale, may_draw_forms=False).to_pil().convert("RGB")
            text = page.get_textpage().get_text_range()
            yield image, " ".join(text.split())[:TEXT_CHARACTERS]
    finally:
        document.close()
