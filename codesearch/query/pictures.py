"""Questions about pictures: a repository's images and documentation pages (indexer/pictures.py), asked in
words, with an image, or with both (composed retrieval), and answers of several kinds fused into one list.

Within a family the vision model's ranking and BM25's over the pages' words are fused by rank, as are the
kinds of a mixed answer (`--kind all`): scores from different models are never compared, only the places
they give (reciprocal rank fusion, Cormack et al. 2009, with its k = 60).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from codesearch.errors import BadRequest, CodesearchError, IndexMissing
from codesearch.index.store import FAMILY_FOLDERS as FOLDERS
from codesearch.index.store import families_present
from codesearch.query.api import Answer, Filters, Hit, QueryRequest

if TYPE_CHECKING:
    from PIL.Image import Image

KINDS = ("code", "image", "page", "all")
RANK_CONSTANT = 60
POOL = 100  # candidates each ranking gives, at least


def checked_kind(kind: str, image: bool = False) -> str:
    if kind not in KINDS:
        raise BadRequest("kind", f"unknown {{name}} {kind!r:.40}; use one of: {', '.join(KINDS)}")
    if image and kind == "code":
        raise BadRequest("kind", "a query with an image searches pictures: give --kind image, page or all")
    return kind


def picture_kinds(kind: str, index_directory: Path) -> list[str]:
    """The families a query of `kind` searches: the one asked (which must be indexed), or every one kept."""
    present = families_present(index_directory)
    if kind in FOLDERS and kind not in present:
        raise IndexMissing(f"this index has no {FOLDERS[kind]}; run `codesearch index --images` first")
    return [kind] if kind in FOLDERS else present


def picture_status(index_directory: Path) -> dict:
    """Per family kept: its model, files and pictures."""
    from codesearch.index.store import IndexStore

    found = {}
    for kind in picture_kinds("all", index_directory):
        store = IndexStore.open(index_directory / FOLDERS[kind])
        try:
            found[FOLDERS[kind]] = {"model": store.database.manifest().get("model"),
                                    "files": store.database.file_count(), "pictures": store.database.chunk_count()}
        finally:
            store.close()
    return found


class PictureSearch:
    """One family's open index and its vision model, answering questions in words and pictures."""

    def __init__(self, index_directory: Path, kind: str, embedder_for: Callable | None = None,
                 trust_remote_code: bool = False):
        from codesearch.index.store import IndexStore

        self.kind = kind
        self.store = IndexStore.open(index_directory / FOLDERS[kind])
        self._embedder_for, self._trust = embedder_for, trust_remote_code

    def close(self) -> None:
        self.store.close()

    def search(self, text: str | None, picture: Image | None, k: int, filters: Filters = Filters()) -> list[Hit]:
        """The k best pictures for words, a picture, or both: the model's ranking fused by rank with BM25's
        over the pictures' words (when words were given)."""
        from codesearch.index.terms import query_terms

        manifest = self.store.database.manifest()
        if not manifest or not manifest.get("dimension"):
            return []
        pool = max(POOL, 4 * k)
        allowed = self.store.database.chunk_ids(filters.allows_path) if filters else None
        if allowed is not None and not len(allowed):
            return []
        vector = self._embedder(manifest).encode_queries([text], [picture])[0]
        rankings = {"dense": self.store.vector_index().search(vector, pool, allowed)}
        terms = query_terms(text) if text else []
        if terms:
            rankings["lexical"] = self.store.lexical_index().search(terms, pool, allowed)
        fused = fuse_by_rank(rankings)[:k]
        chunks = self.store.database.chunks_by_id(chunk_id for chunk_id, _, _ in fused)
        return [Hit(chunks[chunk_id], score, sources) for chunk_id, score, sources in fused if chunk_id in chunks]

    def _embedder(self, manifest: dict):
        from codesearch.embedding.vision import resolve_vision_model

        spec = resolve_vision_model(manifest["model"], trust_remote_code=self._trust)
        if self._embedder_for is None:
            from codesearch.embedding.vision import load_vision_embedder

            self._embedder_for = load_vision_embedder
        return self._embedder_for(spec)


def fuse_by_rank(rankings: dict[str, Sequence[tuple[int, float]]]) -> list[tuple[int, float, dict]]:
    """(id, fused score, {ranking: place}) best first: each ranking adds 1 / (RANK_CONSTANT + place)."""
    scores: dict[int, float] = {}
    places: dict[int, dict] = {}
    for name, ranking in rankings.items():
        for place, (found, _) in enumerate(ranking, 1):
            scores[found] = scores.get(found, 0.0) + 1.0 / (RANK_CONSTANT + place)
            places.setdefault(found, {})[name] = place
    ordered = sorted(scores, key=lambda found: (-scores[found], found))
    return [(found, scores[found], places[found]) for found in ordered]


def fuse_kinds(answers: dict[str, list[Hit]], k: int) -> list[Hit]:
    """Answers of several kinds (code, image, page) as one list, by rank alone."""
    by_key = {}
    rankings = {}
    for kind, hits in answers.items():
        rankings[kind] = [((kind, number), hit.score) for number, hit in enumerate(hits)]
        by_key.update({(kind, number): hit for number, hit in enumerate(hits)})
    fused = []
    for key, score, _ in fuse_by_rank(rankings)[:k]:
        hit = by_key[key]
        fused.append(Hit(hit.chunk, score, {**hit.sources, "kind": key[0]}, hit.index_number, hit.repository))
    return fused


MAX_QUERY_IMAGE_BYTES = 32 << 20


def answer_with_pictures(repo: Path, request: QueryRequest, texts: list[str | None], image: Path | None,
                         kind: str, code_answer: Callable[[Path, QueryRequest], Answer],
                         embedder_for: Callable | None = None) -> Answer:
    """Each question's k best pictures of the families `kind` names, fused by rank with the code's answer when
    `kind` is all and the question is words alone (`code_answer` gives it). `embedder_for(spec)`: the vision
    model (default: loaded for this answer; a long-lived process passes vision_models(its own cache))."""
    from codesearch.index.store import index_dir
    from codesearch.source.discover import repository_root

    checked_kind(kind, image is not None)
    picture = read_query_image(image) if image is not None else None
    root = repository_root(repo)
    directory = index_dir(root)
    kinds = picture_kinds(kind, directory)
    code = code_answer(repo, request) if kind == "all" and picture is None else None
    embedder_for = embedder_for or vision_models({})
    searches = [PictureSearch(directory, found, embedder_for, request.trust_remote_code) for found in kinds]
    try:
        answer = (Answer(root, 0) if code is None else
                  Answer(root, code.generation, freshness=code.freshness, embedded=code.embedded))
        for number, text in enumerate(texts):
            answers = {"code": code.hits[number]} if code is not None else {}
            for search in searches:
                answers[search.kind] = search.search(text, picture, request.k, request.filters)
            answer.hits.append(fuse_kinds(answers, request.k) if len(answers) > 1 else next(iter(answers.values())))
        return answer
    finally:
        for search in searches:
            search.close()


def vision_models(models: dict) -> Callable:
    """spec -> its model, each loaded once into `models`: images and pages embedded with one model share it."""
    def embedder_for(spec):
        from codesearch.embedding.vision import load_vision_embedder

        if spec not in models:
            models[spec] = load_vision_embedder(spec)
        return models[spec]

    return embedder_for


def read_query_image(path: Path):
    """The picture a user asks with: their own file, read whole up to a bound and decoded as pictures are."""
    from codesearch.source.media import decode_picture
    from codesearch.trust import read_regular_file

    try:  # the user's own path: a link is followed, a fifo never waited on
        data = read_regular_file(Path(path).resolve(), MAX_QUERY_IMAGE_BYTES + 1)
    except OSError as error:
        raise CodesearchError(f"cannot read image {path}: {error.strerror or error}") from None
    if len(data) > MAX_QUERY_IMAGE_BYTES:
        raise CodesearchError(f"image {path} is larger than {MAX_QUERY_IMAGE_BYTES >> 20} MiB")
    try:
        return decode_picture(data)
    except CodesearchError as error:
        raise CodesearchError(f"cannot use image {path}: {error}") from None
