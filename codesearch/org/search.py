"""Queries over an organisation's index: its shards (all, or those of the named repositories) opened as one
query engine, whose fusion puts BM25 on organisation-wide term statistics (query/fuse.py); each hit names
its repository. The shards' candidates are retrieved here, or by Ray actors that keep them open
(ray_pipeline.shard_retriever)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from codesearch.errors import CodesearchError
from codesearch.org.catalog import SHARDS_DIR, organisation_dir, read_catalog
from codesearch.query.api import Answer, Query, QueryRequest
from codesearch.query.engine import Engine


class OrganisationSearch:
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
        self.engine = Engine(self.org_dir, self.stores, embedder_for, [shard["repository"] for shard in self.shards])

    def close(self) -> None:
        for store in self.stores:
            store.close()

    def query(self, request: QueryRequest, retrieve_all: Callable[[Query], list] | None = None) -> Answer:
        """The k best answers to each query across the shards, each hit naming its repository (and the
        answer each repository's root). `retrieve_all(query)` returns every shard's candidates in shard
        order (ray_pipeline's actors); by default they are retrieved here."""
        answer = self.engine.query(request, retrieve_all)
        answer.generation = self.catalog.run
        answer.roots = {shard["repository"]: Path(shard["root"]) for shard in self.shards}
        return answer
