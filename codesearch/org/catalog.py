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

This module is the folder, its cache, its catalog and its lock; shards.py plans and writes shards,
search.py answers queries over them, ray_pipeline.py runs a build on a cluster. None but the last has Ray in it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codesearch.errors import CodesearchError
from codesearch.trust import PrivateLock, private_directory, read_regular_file, remove_path, write_private_file

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


# -- the organisation's folder, cache and catalog --------------------------------------------------------------


def open_cache(org_dir: Path):
    """The organisation's embedding cache: an index database of the usual layout, used for its cache only."""
    from codesearch.index.store import checked_directory
    from codesearch.index.database import IndexDatabase

    directory = checked_directory(org_dir / CACHE_DIR, create=True)
    return IndexDatabase.open(directory, create=True)


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
