"""An organisation's index: many repositories in one folder (ORG_DIR), searched as one.

ORG_DIR holds
  catalog.json   which shards make the organisation now: per shard its repository, the commit and file
                 state it was built from, the run (generation) that wrote it and its folder; the model
                 and its fingerprint. Replaced whole (trust.write_private_file): the one switch a run makes.
  shards/S-gN/   one shard as written by run N, in exactly the layout of a repository's `.codesearch/`
                 (IndexStore opens it); a shard is a repository, or one path-prefix slice of a big one.
  cache/         the organisation's embedding cache (an index database whose chunk tables stay empty),
                 keyed by the exact embedded text: a fork or a vendored copy is embedded once.
  lock           held by a run from start to switch.

A run writes new shard folders beside the old ones and switches the catalog last, so a run killed at any
point leaves the previous catalog and every folder it names whole. Folders of the catalog before the
current one are kept too (a query that read it a moment ago still finds them); older ones are removed.

This module has no Ray in it: planning, chunking, the shard writer and the query fan-out are plain
functions that org_ray.py runs on a cluster, and that a query calls in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from codesearch.errors import CodesearchError
from codesearch.trust import PrivateLock, private_directory, read_regular_file, remove_path, write_private_file

if TYPE_CHECKING:
    from codesearch.query.engine import QueryRequest
    from codesearch.query.fuse import Hit

CATALOG_NAME = "catalog.json"
CATALOG_FORMAT = 1
CATALOG_LIMIT_BYTES = 64 << 20
SHARDS_DIR = "shards"
CACHE_DIR = "cache"
LOCK_NAME = "lock"
# A repository with more indexable files than this is split by path prefix into shards of at most this
# many files: a shard is one writer task's work and one unit of query fan-out, and 5,000 files (about
# 30,000 functions) keep both to seconds. Smaller repositories are one shard each.
SHARD_FILES = 5000
_SHARD_FOLDER = re.compile(r"[0-9a-f]{16}-g\d+")
_REPOSITORY_NAME = re.compile(r"[A-Za-z0-9._+@-]{1,128}")


# -- shards: what a repository is cut into ---------------------------------------------------------------------


@dataclass(frozen=True)
class ShardPlan:
    """One shard as the repository is now: its files with their fingerprints, and a digest of them."""

    key: str  # stable identity: the repository's root and the shard's prefixes
    repository: str  # the repository's name in the organisation
    root: str
    prefixes: tuple[str, ...]  # "" is the whole repository; "dir/" a folder; otherwise one file
    commit: str
    files: tuple[tuple[str, str], ...]  # (path, fingerprint), sorted

    @property
    def state(self) -> str:
        digest = hashlib.sha256()
        for path, fingerprint in self.files:
            digest.update(f"{path}\0{fingerprint}\n".encode("utf-8", "surrogatepass"))
        return digest.hexdigest()[:32]


def plan_repository(root: str, name: str, shard_files: int = SHARD_FILES) -> list[ShardPlan]:
    """The shards of one repository as it is now (git decides its files, as for `codesearch index`)."""
    from codesearch.source.discover import discover_files

    files = [(source.path, source.fingerprint) for source in discover_files(Path(root))]
    commit = head_commit(root)
    return [ShardPlan(shard_key(root, prefixes), name, root, prefixes, commit, tuple(part))
            for prefixes, part in split_by_prefix(sorted(files), shard_files)]


def split_by_prefix(files: Sequence[tuple[str, str]], limit: int, prefix: str = "") -> list[tuple[tuple[str, ...], list]]:
    """Sorted files cut into groups of at most `limit`, each named by path prefixes: whole folders (and
    the single files beside them) packed in path order, a folder over the limit cut the same way inside."""
    if len(files) <= limit and not prefix:
        return [(("",), list(files))]
    entries: dict[str, list] = {}
    for item in files:
        rest = item[0][len(prefix):]
        head = rest.split("/", 1)[0] + ("/" if "/" in rest else "")
        entries.setdefault(prefix + head, []).append(item)
    groups: list[tuple[tuple[str, ...], list]] = []
    names: list[str] = []
    members: list = []
    for name, part in entries.items():
        if len(part) > limit and name.endswith("/"):
            groups += split_by_prefix(part, limit, name)
            continue
        if members and len(members) + len(part) > limit:
            groups.append((tuple(names), members))
            names, members = [], []
        names.append(name)
        members = members + part
    if members:
        groups.append((tuple(names), members))
    return groups


def shard_key(root: str, prefixes: Sequence[str]) -> str:
    return hashlib.sha256("\0".join([root, *prefixes]).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def head_commit(root: str) -> str:
    """The commit checked out, "" for a repository with none yet."""
    from codesearch.source.discover import GIT

    result = subprocess.run([*GIT, "rev-parse", "--verify", "-q", "HEAD"], cwd=root, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def repository_names(roots: Sequence[str], known: dict[str, str]) -> dict[str, str]:
    """root -> name in the organisation: a repository keeps the name the catalog gave it; a new one is
    named after its folder, with -2, -3, ... where that name is taken."""
    names = dict(known)
    taken = set(names.values())
    for root in roots:
        if root in names:
            continue
        base = re.sub(r"[^A-Za-z0-9._+@-]", "_", Path(root).name)[:100] or "repository"
        name, number = base, 2
        while name in taken:
            name, number = f"{base}-{number}", number + 1
        names[root] = name
        taken.add(name)
    return names


# -- chunking and writing a shard (run by the workers) -----------------------------------------------------------


CHUNK_COLUMNS = ("shard", "path", "start_line", "end_line", "symbol", "kind", "language", "context", "text", "key")


def chunk_rows(plan: ShardPlan, spec) -> dict[str, list]:
    """Every chunk of the shard's files, as columns (CHUNK_COLUMNS); `key` is the embedding cache key, the
    same as `codesearch index` computes (model fingerprint and exact embedded text)."""
    from codesearch.source import chunk as chunking
    from codesearch.source.discover import SourceFile
    from codesearch.indexer.build import _embedding_key, chunks_of_files

    budget = chunking.PartBudget.for_window(spec.max_length)
    columns: dict[str, list] = {name: [] for name in CHUNK_COLUMNS}
    root = Path(plan.root)
    sources = [SourceFile(path, fingerprint) for path, fingerprint in plan.files]
    for _, pieces in chunks_of_files(root, sources, budget):
        for piece in pieces:
            for name in CHUNK_COLUMNS[1:-1]:
                columns[name].append(getattr(piece, name))
            columns["shard"].append(plan.key)
            columns["key"].append(_embedding_key(spec, piece))
    return columns


def embedding_text(row: dict) -> str:
    from codesearch.source.chunk import Chunk

    return _chunk(row, Chunk).embedding_text


def _chunk(row: dict, chunk_class):
    return chunk_class(str(row["path"]), int(row["start_line"]), int(row["end_line"]), str(row["symbol"]),
                       str(row["kind"]), str(row["language"]), str(row["text"]), str(row["context"]))


def shard_folder(org_dir: Path, key: str, run: int) -> Path:
    return org_dir / SHARDS_DIR / f"{key}-g{run}"


def write_shard(org_dir: Path, plan: ShardPlan, rows: dict[str, list], manifest: dict, run: int) -> dict:
    """Write the shard's folder for run `run` from its chunk rows, with the vectors the organisation's cache
    holds for them, through the same store and generation writer as `codesearch index`. Touches no catalog."""
    import numpy as np

    from codesearch.source.chunk import Chunk
    from codesearch.index.store import IndexStore

    folder = shard_folder(org_dir, plan.key, run)
    remove_path(folder)  # a killed run's half-written copy of this very folder
    chunks_by_path: dict[str, tuple[list, list]] = {path: ([], []) for path, _ in plan.files}
    for position in range(len(rows["key"])):
        row = {name: rows[name][position] for name in CHUNK_COLUMNS}
        chunks, keys = chunks_by_path[str(row["path"])]
        chunks.append(_chunk(row, Chunk))
        keys.append(str(row["key"]))
    needed = sorted({key for _, keys in chunks_by_path.values() for key in keys})
    cache = open_cache(org_dir)
    store = IndexStore.open(folder, create=True)
    try:
        for start in range(0, len(needed), 4096):
            batch = needed[start : start + 4096]
            found = cache.cached_vectors(batch)
            missing = [key for key in batch if key not in found]
            if missing:
                raise CodesearchError(f"shard {plan.repository} ({plan.key}): {len(missing)} chunks have no vector "
                                      f"in the organisation's cache; run `codesearch org index` again")
            vectors = np.stack([found[key] for key in batch])
            store.cache_vectors(batch, vectors)
            manifest = {**manifest, "dimension": manifest.get("dimension") or int(vectors.shape[1])}
        if not manifest.get("dimension"):
            raise CodesearchError(f"nothing to index in {plan.root}: no source files found")
        fingerprints = dict(plan.files)
        with store.lock():
            store.replace_files(manifest, {path: (fingerprints[path], chunks, keys)
                                           for path, (chunks, keys) in chunks_by_path.items()}, [], rebuild=True)
        return {"shard": plan.key, "folder": folder.name, "files": store.file_count(), "chunks": store.chunk_count(),
                "dimension": manifest["dimension"]}
    finally:
        store.close()
        cache.close()


# -- the organisation's folder, cache and catalog --------------------------------------------------------------


def open_cache(org_dir: Path):
    """The organisation's embedding cache: an index database of the usual layout, used for its cache only."""
    from codesearch.index.store import checked_directory
    from codesearch.index.database import Metadata

    directory = checked_directory(org_dir / CACHE_DIR, create=True)
    return Metadata.open(directory, create=True)


def organisation_dir(path: Path, create: bool = False) -> Path:
    """ORG_DIR once it is codesearch's own (a private folder of this user); its shards folder too."""
    path = Path(os.path.abspath(path))
    if not create and not os.path.lexists(path / CATALOG_NAME):
        if not os.path.lexists(path):
            raise CodesearchError(f"{path} does not exist; build it with `codesearch org index {path} REPO...`")
        raise CodesearchError(f"{path} is no organisation index (no {CATALOG_NAME}); "
                              f"build it with `codesearch org index {path} REPO...`")
    private_directory(path, create=create)
    if create:
        private_directory(path / SHARDS_DIR, create=True)
    return path


@dataclass
class Catalog:
    model: str = ""
    model_fingerprint: str = ""
    chunker_version: int = 0
    dimension: int = 0
    run: int = 0  # the generation: how many runs have switched this catalog
    shard_files: int = SHARD_FILES  # the size past which a repository was split
    updated_at: float = 0.0
    shards: list[dict] = field(default_factory=list)  # see ShardRecord.as_dict
    previous_folders: list[str] = field(default_factory=list)  # the folders the catalog before this one named

    def as_json(self) -> str:
        return json.dumps({"format": CATALOG_FORMAT, **asdict(self)}, indent=1, sort_keys=True) + "\n"

    def repositories(self) -> dict[str, str]:
        """root -> name of every repository in the catalog."""
        return {shard["root"]: shard["repository"] for shard in self.shards}


def read_catalog(org_dir: Path) -> Catalog:
    """The catalog in ORG_DIR; an empty one when none was switched yet."""
    path = org_dir / CATALOG_NAME
    if not os.path.lexists(path):
        return Catalog()
    try:
        data = json.loads(read_regular_file(path, CATALOG_LIMIT_BYTES))
        if not isinstance(data, dict) or data.get("format") != CATALOG_FORMAT:
            raise ValueError("unknown format")
        data.pop("format")
        catalog = Catalog(**data)
        for shard in catalog.shards:
            if not _SHARD_FOLDER.fullmatch(str(shard.get("folder"))) or not _REPOSITORY_NAME.fullmatch(
                    str(shard.get("repository"))):
                raise ValueError("a shard names an unexpected folder or repository")
        return catalog
    except (OSError, ValueError, TypeError) as error:
        raise CodesearchError(f"the catalog of {org_dir} is damaged ({error}); "
                              f"rebuild it with `codesearch org index` into a new folder") from None


def switch_catalog(org_dir: Path, catalog: Catalog) -> None:
    """Make `catalog` the organisation's, at once; then remove shard folders neither it nor the catalog
    before it names (only names of the shape codesearch writes)."""
    write_private_file(org_dir / CATALOG_NAME, catalog.as_json().encode("utf-8"))
    remove_unnamed_folders(org_dir, {shard["folder"] for shard in catalog.shards} | set(catalog.previous_folders))


def remove_unnamed_folders(org_dir: Path, keep: set[str]) -> None:
    shards = org_dir / SHARDS_DIR
    for name in os.listdir(shards):
        base = name.split(".tmp", 1)[0]
        if name not in keep and _SHARD_FOLDER.fullmatch(base):
            remove_path(shards / name)


class OrganisationLock:
    """One run at a time per ORG_DIR; a second waits `timeout` seconds, then gives up with a clear line."""

    def __init__(self, org_dir: Path, timeout: float = 10.0):
        self._lock, self._timeout, self._org_dir = PrivateLock(org_dir / LOCK_NAME), timeout, org_dir

    def __enter__(self):
        if not self._lock.acquire(self._timeout):
            raise CodesearchError(f"another codesearch run is updating {self._org_dir}; try again when it finishes")
        return self

    def __exit__(self, *exc):
        self._lock.release()


def stale_reason(record: dict | None, plan: ShardPlan, catalog: Catalog, fingerprint: str, org_dir: Path) -> str:
    """Why a shard must be written again ("" when its folder is current)."""
    from codesearch.source.chunk import CHUNKER_VERSION

    if record is None:
        return "new"
    if catalog.model_fingerprint != fingerprint:
        return "model settings changed"
    if catalog.chunker_version != CHUNKER_VERSION:
        return "chunker changed"
    if record.get("state") != plan.state:
        return "files changed"
    if not os.path.isdir(org_dir / SHARDS_DIR / record["folder"]):
        return "folder missing"
    return ""


def shard_record(plan: ShardPlan, written: dict, run: int) -> dict:
    return {"key": plan.key, "repository": plan.repository, "root": plan.root, "prefixes": list(plan.prefixes),
            "commit": plan.commit, "state": plan.state, "generation": run, "folder": written["folder"],
            "files": written["files"], "chunks": written["chunks"]}


# -- status --------------------------------------------------------------------------------------------------


def organisation_status(org_dir: Path, check_stale: bool = True) -> dict:
    """The repositories and shards of the organisation index, their commits and generations, the model, and
    (check_stale) which shards no longer match their repository's files."""
    org_dir = organisation_dir(org_dir)
    catalog = read_catalog(org_dir)
    stale: dict[str, str] = {}
    if check_stale:
        for root, name in catalog.repositories().items():
            if not os.path.isdir(root):
                stale.update({shard["key"]: "repository missing" for shard in catalog.shards if shard["root"] == root})
                continue
            plans = {plan.key: plan for plan in plan_repository(root, name, catalog.shard_files)}
            for shard in catalog.shards:
                if shard["root"] != root:
                    continue
                plan = plans.get(shard["key"])
                stale[shard["key"]] = ("split differently" if plan is None else
                                       stale_reason(shard, plan, catalog, catalog.model_fingerprint, org_dir))
    repositories: dict[str, dict] = {}
    for shard in catalog.shards:
        entry = repositories.setdefault(shard["repository"], {"name": shard["repository"], "root": shard["root"],
                                                               "commit": shard["commit"], "shards": []})
        entry["shards"].append({"key": shard["key"], "prefixes": shard["prefixes"], "generation": shard["generation"],
                                "files": shard["files"], "chunks": shard["chunks"],
                                **({"stale": stale.get(shard["key"], "")} if check_stale else {})})
    return {"organisation": str(org_dir), "model": catalog.model, "dimension": catalog.dimension,
            "generation": catalog.run, "updated_at": catalog.updated_at, "repositories": list(repositories.values()),
            "shards": len(catalog.shards), "chunks": sum(shard["chunks"] for shard in catalog.shards),
            **({"stale_shards": sum(1 for reason in stale.values() if reason)} if check_stale else {})}


# -- query fan-out ----------------------------------------------------------------------------------------------


@dataclass
class OrgAnswer:
    hits: list[list[tuple[dict, Hit]]]  # per query: (the shard's catalog record, hit), best first


class OrganisationSearch:
    """The shards of an organisation index (all, or those of the named repositories), opened for queries:
    each shard retrieves its candidates, and fusion runs once over all of them, BM25 put on organisation-wide
    term statistics (ranking.fuse)."""

    def __init__(self, org_dir: Path, repositories: Sequence[str] = (), embedder_for: Callable | None = None):
        from codesearch.index.store import IndexStore

        self.org_dir = organisation_dir(org_dir)
        catalog = read_catalog(self.org_dir)
        if not catalog.shards:
            raise CodesearchError(f"the organisation index in {self.org_dir} holds no repository yet")
        known = sorted({shard["repository"] for shard in catalog.shards})
        unknown = [name for name in repositories if name not in known]
        if unknown:
            raise CodesearchError(f"no repository named {unknown[0]!r} in {self.org_dir}; known: "
                                  f"{', '.join(known[:20])}{' ...' if len(known) > 20 else ''}")
        self.catalog = catalog
        self.shards = [shard for shard in catalog.shards if not repositories or shard["repository"] in repositories]
        self.stores = []
        try:
            for shard in self.shards:
                self.stores.append(IndexStore.open(self.org_dir / SHARDS_DIR / shard["folder"]))
        except BaseException:
            self.close()
            raise
        self._embedder_for = embedder_for

    def close(self) -> None:
        for store in self.stores:
            store.close()

    def query(self, request: QueryRequest, retrieve_all: Callable | None = None) -> OrgAnswer:
        """The k best answers to each query across the shards. `retrieve_all(query)` returns every shard's
        candidates in shard order (org_ray's actors); by default they are retrieved here."""
        from codesearch.query.engine import _damage_named, query_spec
        from codesearch.query.fuse import dense_weight, fuse
        from codesearch.query.retrieve import Query, retrieve

        request = request.checked()
        with _damage_named(self.stores[0]):
            manifest = self.stores[0].manifest()
        spec = query_spec(manifest, request.model, request.instruction, request.trust_remote_code)
        vectors = [None] * len(request.queries)
        if request.mode != "lexical":
            vectors = list(self._embedder(spec).encode_queries(request.queries))
        weight = dense_weight(manifest.get("model"))
        answers = []
        for text, vector in zip(request.queries, vectors):
            query = Query(text, request.k, request.mode, vector, request.filters)
            if retrieve_all is not None:
                sets = retrieve_all(query)
            else:
                sets = []
                for store in self.stores:
                    with _damage_named(store):
                        sets.append(retrieve(store, query))
            hits = fuse(sets, text, request.k, weight)
            answers.append([(self.shards[hit.index_number], hit) for hit in hits])
        return OrgAnswer(answers)

    def _embedder(self, spec):
        if self._embedder_for is None:
            from codesearch.embedding.weights import load_embedder

            self._embedder_for = load_embedder
        return self._embedder_for(spec)


def hit_json(shard: dict, hit: Hit) -> dict:
    from codesearch.cli import present

    return {"repository": shard["repository"], **present.hit_json(hit)}


def query_json_line(query: str, hits: Iterable[tuple[dict, Hit]]) -> str:
    return json.dumps({"query": query, "results": [hit_json(shard, hit) for shard, hit in hits]}, ensure_ascii=False)


def manifest_for(spec, dimension: int) -> dict:
    from codesearch.indexer.build import _manifest

    return {**_manifest(spec, dimension), "updated_at": time.time()}
