"""How fast a documentation tree renders into page pictures, and how fast images decode (source/pages.py, media.py).

    python benchmarks/render_pages.py --root DJANGO_SDIST --under docs --rst-suffix .txt \
        [--workers 2] [--limit 100] [--images DJANGO_SDIST]

Pages: every Markdown, reStructuredText and HTML file under ROOT/UNDER (and files ending in an --rst-suffix,
read as reStructuredText: Django's docs are .txt), in path order, the first LIMIT of them, rendered by
render_pages with WORKERS children. Printed: documents/s and pages/s (wall clock, the children's start
included), the pages per document, the notices, peak RSS (the parent's: this process, which imports no
renderer; the largest child's: getrusage of the waited children), and CPU seconds a page, which another
load on the machine does not change as it changes the wall clock.
Images: every image under IMAGES (.git and .codesearch skipped) decoded in this process by pictures_of_image
(PNG written out included), images/s and megapixels/s, after the pages, so the parent's RSS above is without
Pillow or weasyprint.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codesearch.source.media import IMAGE_SUFFIXES, PAGE_SUFFIXES  # noqa: E402
from codesearch.source.pages import render_pages  # noqa: E402

SKIPPED_FOLDERS = {".git", ".codesearch", "node_modules", "__pycache__"}


def files_under(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    found = []
    for directory, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if name not in SKIPPED_FOLDERS)
        found += [Path(directory, name) for name in sorted(names) if name.lower().endswith(suffixes)]
    return found


def peak_rss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def bench_pages(root: Path, under: str, rst_suffixes: tuple[str, ...], workers: int, limit: int | None,
                timeout: float) -> None:
    paths = files_under(root / under, PAGE_SUFFIXES + rst_suffixes)[:limit]
    documents = [(path.relative_to(root).as_posix(), path.read_bytes()) for path in paths]
    print(f"pages: {len(documents)} documents, {sum(len(data) for _path, data in documents) / 1e6:.1f} MB, "
          f"{workers} workers, timeout {timeout:g} s")
    pages, notices, empty, png_bytes = [], [], 0, 0
    started = time.perf_counter()
    for _path, pictures, found in render_pages(root, documents, workers=workers, timeout=timeout,
                                               rst_suffixes=rst_suffixes):
        pages.append(len(pictures))
        notices += found
        empty += not pictures
        png_bytes += sum(len(picture.png) for picture in pictures)  # counted, not kept: a tree's would be GBs
    seconds = time.perf_counter() - started
    print(f"  {seconds:.1f} s: {len(documents) / seconds:.2f} documents/s, {sum(pages) / seconds:.2f} pages/s "
          f"({sum(pages)} pages, {sum(pages) / max(1, len(pages)):.1f} a document, most {max(pages, default=0)}; "
          f"{empty} documents without pages; PNG {png_bytes / max(1, sum(pages)) / 1024:.0f} KiB a page)")
    kinds = Counter(notice.split(": ", 1)[1].split(" (")[0] if " not fetched " not in notice else "not fetched"
                    for notice in notices)
    print(f"  notices: {len(notices)} {dict(kinds.most_common(6))}")
    for notice in notices[:5]:
        print(f"    {notice}")
    print(f"  peak RSS: parent {peak_rss_mib(resource.RUSAGE_SELF):.0f} MiB, "
          f"largest child {peak_rss_mib(resource.RUSAGE_CHILDREN):.0f} MiB")
    children, parent = cpu_seconds(resource.RUSAGE_CHILDREN), cpu_seconds(resource.RUSAGE_SELF)
    print(f"  CPU: children {children:.0f} s ({1000 * children / max(1, sum(pages)):.0f} ms a page, "
          f"{children / seconds:.2f} cores busy of the wall time), parent {parent:.1f} s")


def bench_images(folder: Path) -> None:
    import io

    from PIL import Image

    from codesearch.source.media import pictures_of_image

    paths = files_under(folder, IMAGE_SUFFIXES)
    images = [(path.relative_to(folder).as_posix(), path.read_bytes()) for path in paths]
    kinds = Counter(path.rsplit(".", 1)[-1].lower() for path, _data in images)
    started = time.perf_counter()
    made, refused, megapixels = 0, [], 0.0
    for path, data in images:
        pictures, notice = pictures_of_image(path, data)
        made += len(pictures)
        refused += [notice] if notice else []
        for found in pictures:
            width, height = Image.open(io.BytesIO(found.png)).size
            megapixels += width * height / 1e6
    seconds = time.perf_counter() - started
    print(f"images: {len(images)} files {dict(kinds)} in {seconds:.2f} s: {len(images) / seconds:.1f} images/s, "
          f"{megapixels / seconds:.1f} output megapixels/s; {made} pictures, {len(refused)} refused")
    for notice in refused[:5]:
        print(f"    {notice}")
    svgs = [(path, data) for path, data in images if path.lower().endswith(".svg")]
    if svgs:
        started = time.perf_counter()
        for path, data in svgs:
            pictures_of_image(path, data)
        seconds = time.perf_counter() - started
        print(f"  of which SVG (weasyprint and pdfium, in this process, imports warm): {len(svgs)} in {seconds:.2f} s, "
              f"{len(svgs) / seconds:.1f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--under", default=".")
    parser.add_argument("--rst-suffix", action="append", default=[], help="also read files ending so as rST")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--images", type=Path, default=None, help="a folder whose images to decode")
    arguments = parser.parse_args()
    bench_pages(arguments.root, arguments.under, tuple(arguments.rst_suffix), arguments.workers, arguments.limit,
                arguments.timeout)
    if arguments.images:
        bench_images(arguments.images)


if __name__ == "__main__":
    main()
