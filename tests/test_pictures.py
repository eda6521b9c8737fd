"""A repository's images and documentation pages in its index (indexer/pictures.py) and questions about them
(query/pictures.py): families beside the code, refreshed by what changed, answered by words, by an image, or
fused by rank with the code. The vision model here is a stand-in whose vectors come from the pixels (or the
words), so that what is found can be told in advance; tests/test_vision_models.py runs the real architectures."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import anyio
import numpy as np
import pytest

from conftest import FakeEmbedder, git, make_repo

PIL = pytest.importorskip("PIL.Image")


class PixelEmbedder:
    """Vectors from a picture's pixels or a question's words: the same picture always finds itself."""

    dim = 24
    batch_size = 4

    def __init__(self, spec=None):
        self.spec = spec
        self.candidates = 0

    @staticmethod
    def _vector(seed: bytes) -> np.ndarray:
        vector = np.random.default_rng(int(hashlib.sha1(seed).hexdigest()[:12], 16)).standard_normal(24)
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    def encode_candidates(self, pictures):
        self.candidates += len(pictures)
        return np.stack([self._vector(picture.convert("RGB").tobytes()) for picture in pictures])

    def encode_queries(self, texts, pictures=None):
        pictures = pictures or [None] * len(texts)
        return np.stack([self._vector(picture.convert("RGB").tobytes() if picture is not None else text.encode())
                         for text, picture in zip(texts, pictures)])


def png(color: tuple[int, int, int], size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    PIL.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


GUIDE = """# Guide

Some words about the project.

## Installation

Run the installer and configure the TLS certificates.

## Deployment topology

Three servers behind a load balancer.
"""


@pytest.fixture
def repository(tmp_path):
    root = make_repo(tmp_path / "repo")
    (root / "docs").mkdir()
    (root / "docs" / "guide.md").write_text(GUIDE, encoding="utf-8")
    (root / "docs" / "diagram.png").write_bytes(png((200, 30, 30)))
    (root / "assets").mkdir()
    (root / "assets" / "logo.png").write_bytes(png((10, 10, 220)))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "pictures")
    return root


@pytest.fixture(autouse=True)
def local_vision_model(monkeypatch):
    """Every vision model name resolves to a spec that needs no weights (the stand-in embeds)."""
    from codesearch.embedding import vision

    monkeypatch.setattr(vision, "pin_vision_model", lambda spec: replace(spec, weights="test", dtype="float32"))


def build(root, wanted=True, embedder=None, **options):
    from codesearch.indexer.build import PictureOptions, index_repository

    embedder = embedder or PixelEmbedder()
    return index_repository(root, model="minilm", embedder_factory=FakeEmbedder, pictures=PictureOptions(
        wanted, image_model="bge-vl-base", page_model="bge-vl-base", embedder_factory=lambda spec: embedder),
        **options), embedder


def ask(root, texts, kind="image", image=None, k=5):
    from codesearch.query.api import QueryRequest
    from codesearch.query.pictures import answer_with_pictures

    request = QueryRequest([text or "image" for text in texts], k=k).checked()

    def code_answer(repo, asked):
        from codesearch.query.engine import Engine

        engine = Engine.open(repo, embedder_for=FakeEmbedder)
        try:
            return engine.query(asked)
        finally:
            engine.close()

    return answer_with_pictures(root, request, texts, image, kind, code_answer, lambda spec: PixelEmbedder(spec))


def test_images_and_pages_are_indexed_beside_the_code_each_in_its_family(repository):
    report, embedder = build(repository)
    families = {family.kind: family for family in report.pictures}
    assert families["image"].files == 2 and families["image"].pictures == 2
    assert families["page"].files == 2 and families["page"].pictures >= 2  # docs/guide.md and the README
    assert (repository / ".codesearch" / "images").is_dir() and (repository / ".codesearch" / "pages").is_dir()
    assert embedder.candidates == families["image"].embedded + families["page"].embedded
    assert report.as_json()["images"]["pictures"] == 2


def test_a_refresh_embeds_only_what_changed_and_forgets_what_went(repository):
    build(repository)
    report, embedder = build(repository, wanted=None)  # a plain refresh keeps the families
    assert embedder.candidates == 0 and {family.kind for family in report.pictures} == {"image", "page"}
    (repository / "assets" / "logo.png").write_bytes(png((0, 200, 0)))
    (repository / "docs" / "diagram.png").unlink()
    report, embedder = build(repository, wanted=None)
    images = next(family for family in report.pictures if family.kind == "image")
    assert embedder.candidates == 1 and images.removed == 1 and images.pictures == 1


def test_an_index_without_pictures_keeps_none_and_no_images_drops_them(repository):
    report, _ = build(repository, wanted=None)
    assert report.pictures == [] and not (repository / ".codesearch" / "images").exists()
    build(repository)
    report, _ = build(repository, wanted=False)
    assert report.pictures == [] and not (repository / ".codesearch" / "pages").exists()


def test_an_image_finds_itself_and_words_find_the_page_that_has_them(repository, tmp_path):
    build(repository)
    query_image = tmp_path / "asked.png"
    query_image.write_bytes((repository / "assets" / "logo.png").read_bytes())
    answer = ask(repository, [None], kind="image", image=query_image)
    assert answer.hits[0][0].chunk.path == "assets/logo.png" and answer.hits[0][0].chunk.kind == "image"
    answer = ask(repository, ["TLS certificates installer"], kind="page")
    top = answer.hits[0][0].chunk
    assert top.path == "docs/guide.md" and top.kind == "page" and top.context.startswith("page ")


def test_all_kinds_are_fused_by_rank_into_one_answer(repository):
    build(repository)
    answer = ask(repository, ["TLS certificates installer"], kind="all", k=20)
    kinds = {hit.sources["kind"] for hit in answer.hits[0]}
    assert {"code", "page", "image"} <= kinds
    scores = [hit.score for hit in answer.hits[0]]
    assert scores == sorted(scores, reverse=True)
    assert max(scores) <= 1 / 61 + 1e-12  # a reciprocal rank, never a model's raw score


def test_a_kind_not_indexed_is_one_clear_error(repository):
    from codesearch.errors import IndexMissing

    build(repository, wanted=None)
    with pytest.raises(IndexMissing, match="--images"):
        ask(repository, ["diagram"], kind="image")


def test_an_index_without_pictures_imports_no_vision_code(repository):
    script = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from conftest import FakeEmbedder\n"
        "from codesearch.indexer.build import index_repository\n"
        f"index_repository({str(repository)!r}, model='minilm', embedder_factory=FakeEmbedder)\n"
        "heavy = [name for name in ('PIL', 'weasyprint', 'pypdfium2', 'codesearch.embedding.vision') if name in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parent.parent,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_through_the_command_line_with_a_real_clip_and_real_pages(repository, tiny_clip_dir, tmp_path, monkeypatch):
    """`index --images` with the CLIP architecture (a tiny random one) and the real renderer, then questions in
    words, with an image, and of every kind, as JSON."""
    import json

    from conftest import codesearch

    monkeypatch.undo()  # the real pin: the folder's digest
    model = str(tiny_clip_dir)
    result = codesearch("index", str(repository), "--model", "minilm", "--image-model", model, "--page-model", model)
    assert result.returncode == 0, result.stderr
    assert "images from 2 files" in result.stderr and "pages from 2 files" in result.stderr
    query_image = tmp_path / "asked.png"
    query_image.write_bytes((repository / "docs" / "diagram.png").read_bytes())
    result = codesearch("query", "--repo", str(repository), "--kind", "image", "--image", str(query_image), "--json")
    assert result.returncode == 0, result.stderr
    top = json.loads(result.stdout)["results"][0]
    assert top["path"] == "docs/diagram.png" and top["kind"] == "image"  # the same pixels: cosine 1
    result = codesearch("query", "--repo", str(repository), "Deployment topology", "--kind", "page", "--json")
    pages = json.loads(result.stdout)["results"]
    assert {"heading", "page"} <= set(pages[0]) and any(hit["path"] == "docs/guide.md" for hit in pages)
    result = codesearch("query", "--repo", str(repository), "load balancer", "--kind", "all", "--json", "-k", "20")
    assert {hit["kind"] for hit in json.loads(result.stdout)["results"]} >= {"page", "image"}
    status = codesearch("status", str(repository), "--json")
    assert json.loads(status.stdout)["pictures"]["images"]["pictures"] == 2
    result = codesearch("query", "--repo", str(repository), "x", "--kind", "video")
    assert result.returncode == 2 and "kind" in result.stderr
    said = anyio.run(ask_mcp, repository, {"query": "", "kind": "image", "image": str(query_image), "k": 3})
    assert json.loads(said.content[0].text)["results"][0]["path"] == "docs/diagram.png"
    in_process = codesearch("query", "--repo", str(repository), "load balancer", "--kind", "all", "--json")
    from test_serve import start_server, stop_process

    server = start_server(repository, tmp_path / "serve.log")
    try:  # the server keeps the vision model: the same answers, from it
        served = codesearch("query", "--repo", str(repository), "--kind", "image", "--image", str(query_image),
                            "--json", "-v")
        assert "answered by the running server" in served.stderr, served.stderr
        assert json.loads(served.stdout)["results"][0]["path"] == "docs/diagram.png"
        both = codesearch("query", "--repo", str(repository), "load balancer", "--kind", "all", "--json")
        assert [(hit["path"], hit["kind"]) for hit in json.loads(both.stdout)["results"]] == \
            [(hit["path"], hit["kind"]) for hit in json.loads(in_process.stdout)["results"]]
        missing = codesearch("query", "--repo", str(repository), "--kind", "image", "--image", str(tmp_path / "none.png"))
        assert missing.returncode == 2 and "cannot read image" in missing.stderr
    finally:
        stop_process(server)


async def ask_mcp(repository, arguments):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from conftest import clean_env

    params = StdioServerParameters(command=sys.executable, args=["-m", "codesearch", "mcp", "--repo", str(repository)],
                                   env=clean_env())
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await session.call_tool("search", arguments)


def test_a_vision_model_that_cannot_be_had_leaves_no_family_and_a_plain_refresh_only_a_notice(repository, tmp_path):
    from codesearch.errors import CodesearchError
    from codesearch.indexer.build import PictureOptions, index_repository

    missing = str(tmp_path / "no-such-model")
    with pytest.raises(CodesearchError, match="no-such-model"):
        index_repository(repository, model="minilm", embedder_factory=FakeEmbedder,
                         pictures=PictureOptions(True, image_model=missing, page_model=missing))
    assert not (repository / ".codesearch" / "images").exists()
    build(repository)  # now with a model that can be had

    class Notices:
        said: list = []

        def __getattr__(self, name):
            return lambda *args: self.said.append(args[0]) if name == "notice" else None

    from codesearch.embedding import vision

    def gone(spec):
        raise CodesearchError(f"vision model {spec.source!r} is not in the local cache")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vision, "pin_vision_model", gone)
        report = index_repository(repository, model="minilm", embedder_factory=FakeEmbedder, progress=Notices())
    assert report.pictures == [] and any("were not refreshed" in said for said in Notices.said)
