"""An organisation's shards: what a repository is cut into (ShardPlan), chunking a shard and writing its
folder (run by the workers of ray_pipeline.py), whether a shard is stale, and the organisation's status."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from codesearch.errors import CodesearchError
from codesearch.org.catalog import SHARD_FILES, SHARDS_DIR, Catalog, open_cache, organisation_dir, read_catalog
from codesearch.trust import remove_path


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
    from codesearch.indexer.read import chunks_of_files, embedding_key

    budget = chunking.PartBudget.for_window(spec.max_length)
    columns: dict[str, list] = {name: [] for name in CHUNK_COLUMNS}
    root = Path(plan.root)
    sources = [SourceFile(path, fingerprint) for path, fingerprint in plan.files]
    for _, pieces in chunks_of_files(root, sources, budget):
        for piece in pieces:
            for name in CHUNK_COLUMNS[1:-1]:
                columns[name].append(getattr(piece, name))
            columns["shard"].append(plan.key)
            columns["key"].append(embedding_key(spec, piece))
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
            store.database.cache_vectors(batch, vectors)
            manifest = {**manifest, "dimension": manifest.get("dimension") or int(vectors.shape[1])}
        if not manifest.get("dimension"):
            raise CodesearchError(f"nothing to index in {plan.root}: no source files found")
        fingerprints = dict(plan.files)
        with store.lock():
            store.replace_files(manifest, {path: (fingerprints[path], chunks, keys)
                                           for path, (chunks, keys) in chunks_by_path.items()}, [], rebuild=True)
        return {"shard": plan.key, "folder": folder.name, "files": store.database.file_count(),
                "chunks": store.database.chunk_count(), "dimension": manifest["dimension"]}
    finally:
        store.close()
        cache.close()


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


def manifest_for(spec, dimension: int) -> dict:
    from codesearch.indexer.read import index_manifest

    return {**index_manifest(spec, dimension), "updated_at": time.time()}
