"""The organisation index on Ray: `codesearch org index` as a Ray pipeline, and shards held by Ray actors
for `codesearch query --org --ray`. Ray is imported here only, and only when one of these runs
(`pip install 'codesearch[distributed]'`).

One run, under the organisation's lock:
  1. plan      a Ray task per repository: git lists its files (as `codesearch index` does), a repository
               past SHARD_FILES files is cut by path prefix; shards whose files, model or chunker
               changed since the catalog are the run's work, the others stay as they are;
  2. chunk     a Ray task per stale shard: tree-sitter cuts its files; the rows (text, no vectors) stay in
               the object store as one Arrow table per shard;
  3. embed     Ray Data over those tables: a task drops every row the organisation's cache already holds
               (and repeats within a batch); only the misses reach a fixed pool of actors running the
               product's embedder, one GPU each on a GPU cluster (num_gpus=1), CPU actors otherwise, in
               batches of the size the embedder is fastest at; a task after them writes the vectors into
               the cache. Only counts come back to the driver;
  4. write     a Ray task per stale shard writes its new folder (write_shard: the product's store and
               generation writer) from its rows and the cache, on the worker;
  5. switch    the driver replaces the catalog, at once.
Vectors go from actor to cache to writer, never through the driver. A worker that dies is retried a few
times (actors restart, tasks rerun: each step only writes new names); a run that still fails leaves the
previous catalog and its folders as they were, and the next run reuses every vector already cached.

ORG_DIR and the repositories must be at the same paths on every node (a shared file system) when the
cluster has more than one.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from codesearch.errors import CodesearchError
from codesearch.org.catalog import (CATALOG_NAME, SHARD_FILES, SHARDS_DIR, Catalog, OrganisationLock, open_cache,
                                    organisation_dir, read_catalog, remove_unnamed_folders, switch_catalog)
from codesearch.org.shards import (CHUNK_COLUMNS, ShardPlan, chunk_rows, embedding_text, manifest_for, plan_repository,
                                   repository_names, shard_key, shard_record, stale_reason, write_shard)

if TYPE_CHECKING:
    from codesearch.embedding.spec import ModelSpec
    from codesearch.org.search import OrganisationSearch

RAY_MISSING = "this command needs Ray: pip install 'codesearch[distributed]'"
# A worker that dies (a preempted node, out of memory) is retried this often before the run fails.
RETRIES = 2
# How long the pool waits for its actors: loading bge-code-v1's 3 GB of weights takes a while.
ACTOR_START_SECONDS = 600


def require_ray():
    """The ray module, or a one-line error naming the extra that installs it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise CodesearchError(RAY_MISSING) from None
    return ray


@dataclass
class OrgIndexReport:
    workers: int
    repositories: int
    shards: int
    shards_updated: int
    chunks: int
    embedded: int
    reused: int
    seconds: float
    model: str
    generation: int
    stages: dict = field(default_factory=dict)  # seconds per step: plan, chunk+embed, write

    def as_json(self) -> dict:
        return {"executor": "ray", "workers": self.workers, "repositories": self.repositories, "shards": self.shards,
                "shards_updated": self.shards_updated, "chunks": self.chunks, "embedded": self.embedded,
                "reused": self.reused, "seconds": round(self.seconds, 3), "model": self.model,
                "generation": self.generation, "stages": {name: round(value, 3) for name, value in self.stages.items()}}


def index_organisation(org_dir: str | os.PathLike, repositories: Sequence[str | os.PathLike] = (),
                       model: str | None = None, address: str | None = None, workers: int | None = None,
                       shard_files: int | None = None, embedder_factory: Callable | None = None,
                       notice: Callable[[str], None] = lambda message: None) -> OrgIndexReport:
    """Index `repositories` (and every repository the catalog already holds) into ORG_DIR on Ray:
    `address` joins a cluster, None starts a local one; `shard_files` is where a repository is split (default:
    what the catalog used, else SHARD_FILES). `embedder_factory(spec)` stands in for the
    product's loader (tests)."""
    from codesearch.source.discover import repository_root

    ray = require_ray()
    started = time.perf_counter()
    if workers is not None and workers < 1:
        raise CodesearchError("--workers must be at least 1")
    if shard_files is not None and shard_files < 1:
        raise CodesearchError("--shard-files must be at least 1")
    roots = list(dict.fromkeys(str(repository_root(path)) for path in repositories))
    org_dir = Path(os.path.abspath(org_dir))
    _refuse_inside_repositories(org_dir, roots)
    if not roots and not os.path.lexists(org_dir / CATALOG_NAME):
        raise CodesearchError("give the repositories to index: codesearch org index ORG_DIR REPO...")
    org_dir = organisation_dir(org_dir, create=True)
    with OrganisationLock(org_dir):
        catalog = read_catalog(org_dir)
        known = catalog.repositories()
        for root in known:
            if not os.path.isdir(root):
                raise CodesearchError(f"repository {known[root]!r} of the organisation index is gone ({root}); "
                                      f"restore it, or build the organisation into a new folder")
        roots = list(known) + [root for root in roots if root not in known]
        _refuse_inside_repositories(org_dir, roots)
        if not roots:
            raise CodesearchError("give the repositories to index: codesearch org index ORG_DIR REPO...")
        names = repository_names(roots, known)
        shard_files = shard_files or (catalog.shard_files if catalog.shards else SHARD_FILES)
        started_here = _connect(ray, address)
        try:
            return _run(ray, org_dir, catalog, roots, names, model or catalog.model or None, workers, shard_files,
                        embedder_factory, notice, started)
        except Exception as error:
            if isinstance(error, CodesearchError) and not isinstance(error, ray.exceptions.RayError):
                raise
            raise CodesearchError(f"the run failed ({_first_line(error)}); the previous organisation index is "
                                  f"intact, and the next run reuses every vector embedded so far") from None
        finally:
            if started_here:
                ray.shutdown()


def _run(ray, org_dir, catalog, roots, names, model, workers, shard_files, embedder_factory, notice, started):
    from codesearch.source.chunk import CHUNKER_VERSION
    from codesearch.embedding.spec import resolve_model

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    workers = workers or gpus or max(1, int(resources.get("CPU", 1)) // 2)
    tasks = _tasks(ray)
    spec = ray.get(tasks.pin.options(num_gpus=1 if gpus else 0).remote(resolve_model(model)))
    stages = {"start": time.perf_counter() - started}
    planned = ray.get([tasks.plan.remote(root, names[root], shard_files) for root in roots])
    stages["plan"] = time.perf_counter() - started - sum(stages.values())
    plans = [plan for repository in planned for plan in repository]
    records = {shard["key"]: shard for shard in catalog.shards}
    stale = [plan for plan in plans
             if stale_reason(records.get(plan.key), plan, catalog, spec.fingerprint, org_dir)]
    if catalog.shard_files != shard_files and catalog.shards:
        notice(f"repositories are now split past {shard_files} files (was {catalog.shard_files})")
    # Leftovers of a killed run: folders no catalog names.
    current = [shard["folder"] for shard in catalog.shards]
    remove_unnamed_folders(org_dir, set(current) | set(catalog.previous_folders))
    run = catalog.run + 1
    embedded = 0
    written: dict[str, dict] = {}
    if stale:
        notice(f"{len(stale)} of {len(plans)} shards to write, on {workers} embedding "
               f"{'GPU' if gpus else 'CPU'} worker{'s' if workers > 1 else ''}")
        tables = [tasks.chunk.remote(plan, spec) for plan in stale]
        embedded, dimension = _embed_misses(ray, org_dir, tables, spec, embedder_factory, workers, gpus, resources)
        stages["chunk+embed"] = time.perf_counter() - started - sum(stages.values())
        manifest = manifest_for(spec, dimension or catalog.dimension)
        writes = [tasks.write.options(max_retries=RETRIES).remote(str(org_dir), plan, table, manifest, run)
                  for plan, table in zip(stale, tables)]
        written = {result["shard"]: result for result in ray.get(writes)}
        stages["write"] = time.perf_counter() - started - sum(stages.values())
    shards = [shard_record(plan, written[plan.key], run) if plan.key in written else records[plan.key]
              for plan in plans]
    report = OrgIndexReport(workers, len(roots), len(shards), len(written), sum(shard["chunks"] for shard in shards),
                            embedded, sum(result["chunks"] for result in written.values()) - embedded, 0.0,
                            spec.name, catalog.run, stages)
    if written or [shard["key"] for shard in shards] != [shard["key"] for shard in catalog.shards]:
        dimension = next((result["dimension"] for result in written.values() if result.get("dimension")),
                         catalog.dimension)
        switch_catalog(org_dir, Catalog(
            model=spec.name, model_fingerprint=spec.fingerprint, chunker_version=CHUNKER_VERSION,
            dimension=dimension, run=run, shard_files=shard_files, updated_at=time.time(), shards=shards,
            previous_folders=current))
        report.generation = run
    report.seconds = time.perf_counter() - started
    return report


def _embed_misses(ray, org_dir: Path, tables, spec: ModelSpec, embedder_factory, workers: int, gpus: int,
                  resources: dict) -> tuple[int, int]:
    """Embed every chunk text of `tables` the organisation's cache lacks, into the cache; (how many, dimension)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.wait_for_min_actors_s = ACTOR_START_SECONDS
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    threads = 0 if gpus else max(1, int(resources.get("CPU", 1)) // workers)
    # One claim per text across the run, so that two shards holding the same file (a fork, a vendored
    # copy) send it to the embedders once.
    claims = ray.remote(num_cpus=0)(_Claims).remote()
    # The cache lookups and writes around the pool are SQLite reads and writes that take no CPU of their
    # own: asking for one would deadlock a node whose every CPU is held by an embedding actor (2 CPUs,
    # --workers 2), the pool waiting for its input and the input for a CPU.
    misses = ray.data.from_arrow_refs(tables).map_batches(
        _cache_misses, fn_kwargs={"org_dir": str(org_dir), "claims": claims}, batch_size=None, batch_format="pyarrow",
        num_cpus=0)
    with warnings.catch_warnings():  # bounded restarts are still passed as ray_remote_args in Ray 2.60
        warnings.simplefilter("ignore")
        vectors = misses.map_batches(
            EmbeddingWorker, fn_constructor_kwargs={"spec": spec, "org_dir": str(org_dir),
                                                    "factory": embedder_factory, "threads": threads},
            compute=ray.data.ActorPoolStrategy(size=workers), batch_size=4096 if gpus else 256,
            batch_format="numpy", num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1,
            max_restarts=RETRIES, max_task_retries=RETRIES)
    stored = vectors.map_batches(_store_vectors, fn_kwargs={"org_dir": str(org_dir)}, batch_size=None, num_cpus=0,
                                 batch_format="numpy")
    embedded = dimension = 0
    for batch in stored.iter_batches(batch_size=None, batch_format="numpy"):
        embedded += int(batch["embedded"].sum())
        dimension = max(dimension, int(batch["dimension"].max(initial=0)))
    return embedded, dimension


class EmbeddingWorker:
    """One embedding actor: the product's embedder, loaded once, run on the batches that reach it."""

    def __init__(self, spec: ModelSpec, org_dir: str, factory: Callable | None, threads: int):
        if threads and factory is None:
            import torch

            torch.set_num_threads(threads)  # Ray schedules the actor on one CPU; the model may use the node's share
        if factory is None:
            from codesearch.embedding.load import load_embedder

            factory = load_embedder
        self.embedder = factory(spec)
        self.org_dir = Path(org_dir)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        keys, texts = list(batch["key"]), list(batch["text"])
        # Another batch may have carried the same text (a fork's copy) and been stored since this one was planned.
        cache = open_cache(self.org_dir)
        try:
            cached = cache.cached_vectors(keys)
        finally:
            cache.close()
        wanted = [position for position, key in enumerate(keys) if key not in cached]
        vectors = self.embedder.encode_documents([texts[position] for position in wanted])
        return {"key": np.asarray([keys[position] for position in wanted], dtype=object),
                "vector": vectors.reshape(len(wanted), -1).astype(np.float32)}


class _Claims:
    """The texts some batch of this run has taken on to embed, by cache key."""

    def __init__(self):
        self.claimed: set[str] = set()

    def claim(self, keys: list[str]) -> list[str]:
        """Those of `keys` no one claimed before, now claimed."""
        fresh = [key for key in keys if key not in self.claimed]
        self.claimed.update(fresh)
        return fresh


def _cache_misses(table, org_dir: str, claims):
    """The rows of one shard's table whose vectors the cache lacks and no other batch has claimed, one per
    distinct text: (key, text)."""
    import pyarrow
    import ray

    keys = table.column("key").to_pylist()
    cache = open_cache(Path(org_dir))
    try:
        cached = cache.cached_vectors(sorted(set(keys)))
    finally:
        cache.close()
    unclaimed = set(ray.get(claims.claim.remote(sorted(set(keys) - set(cached)))))
    wanted = []
    for position, key in enumerate(keys):
        if key in unclaimed:
            unclaimed.discard(key)
            wanted.append(position)
    rows = table.take(pyarrow.array(wanted, type=pyarrow.int64())).to_pylist() if wanted else []
    return pyarrow.table({"key": pyarrow.array([row["key"] for row in rows], pyarrow.string()),
                          "text": pyarrow.array([embedding_text(row) for row in rows], pyarrow.string())})


def _store_vectors(batch: dict, org_dir: str) -> dict:
    import numpy as np

    count = len(batch["key"])
    if count:
        cache = open_cache(Path(org_dir))
        try:
            cache.cache_vectors(list(batch["key"]), np.asarray(batch["vector"], dtype=np.float32))
        finally:
            cache.close()
    dimension = int(np.asarray(batch["vector"]).shape[-1]) if count else 0
    return {"embedded": np.asarray([count]), "dimension": np.asarray([dimension])}


def _tasks(ray):
    """The Ray tasks of a run, made only once Ray is there (importing this module must not need it)."""
    from types import SimpleNamespace

    return SimpleNamespace(pin=ray.remote(_pin_model), plan=ray.remote(_plan_shards), chunk=ray.remote(_chunk_table),
                           write=ray.remote(_write_shard))


def _pin_model(spec: ModelSpec) -> ModelSpec:
    from codesearch.embedding.weights import pin_model

    return pin_model(spec)  # where the embedding actors run: their dtype goes into every key


def _plan_shards(root: str, name: str, shard_files: int) -> list:
    return plan_repository(root, name, shard_files)


def _chunk_table(plan: ShardPlan, spec: ModelSpec):
    import pyarrow

    columns = chunk_rows(plan, spec)
    return pyarrow.table({name: pyarrow.array(columns[name], pyarrow.int64() if name in ("start_line", "end_line")
                                              else pyarrow.string()) for name in CHUNK_COLUMNS})


def _write_shard(org_dir: str, plan: ShardPlan, table, manifest: dict, run: int) -> dict:
    return write_shard(Path(org_dir), plan, table.to_pydict(), manifest, run)


def _connect(ray, address: str | None) -> bool:
    """Join the cluster at `address`, or start a local Ray; True when this call started it."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=True,
                 logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise CodesearchError(f"cannot start {where}: {str(error).splitlines()[0] if str(error) else error}") from None
    return True


# -- queries: shards held by actors ----------------------------------------------------------------------------


def shard_retriever(search: OrganisationSearch, address: str) -> Callable:
    """retrieve_all(query) for OrganisationSearch.query: each shard's candidates from an actor of the Ray cluster
    at `address` that keeps the shard open, as the warm server keeps an index. Actors are named after the
    shard's folder and outlive this process, so the next query finds them warm; those of folders the
    catalog no longer names are stopped."""
    ray = require_ray()
    _connect(ray, address)
    namespace = "codesearch-" + shard_key(str(search.org_dir), ())
    holder = ray.remote(num_cpus=0)(ShardHolder)
    wanted = {shard["folder"] for shard in search.shards}
    actors = [holder.options(name=shard["folder"], namespace=namespace, lifetime="detached", get_if_exists=True)
              .remote(str(search.org_dir / SHARDS_DIR / shard["folder"])) for shard in search.shards]
    current = {shard["folder"] for shard in search.catalog.shards}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") == namespace and entry["name"] not in current | wanted:
            ray.kill(ray.get_actor(entry["name"], namespace=namespace))

    def retrieve_all(query) -> list:
        return ray.get([actor.candidates.remote(query) for actor in actors])

    return retrieve_all


class ShardHolder:
    """One shard, open in an actor: it answers a query with its candidates, everything fusion reads
    afterwards recorded beside them (retrieve.retrieve), so the driver fuses them as if found there."""

    def __init__(self, folder: str):
        from codesearch.index.store import IndexStore

        self.store = IndexStore.open(Path(folder))

    def candidates(self, query):
        from codesearch.query.retrieve import retrieve

        return retrieve(self.store, query, record_units=True)


def _first_line(error: BaseException) -> str:
    """What went wrong, in one line: a task's own exception rather than Ray's wrapping of it."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException) and cause is not error:
        return _first_line(cause)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def _refuse_inside_repositories(org_dir: Path, roots: Sequence[str]) -> None:
    """ORG_DIR is written to; an indexed repository never is."""
    for root in roots:
        if org_dir == Path(root) or Path(root) in org_dir.parents:
            raise CodesearchError(f"{org_dir} is inside the repository {root}; codesearch never writes into an "
                                  f"indexed repository: put the organisation index elsewhere")
