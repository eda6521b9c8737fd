"""The organisation index on a simulated cluster: two Ray nodes on this machine, each declaring one GPU.

No GPU is used (the tests' FakeEmbedder runs in the actors); what is checked is the placement the issue
asks for: one embedding actor per GPU, so on a two-node, one-GPU-per-node cluster one actor per node.
A module of its own: it needs its own Ray session, which cannot be started beside test_org's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FakeEmbedder
from test_org import FILES, QUESTIONS, make_files_repo

TESTS = Path(__file__).resolve().parent

pytestmark = pytest.mark.distributed


class NodeRecordingEmbedder(FakeEmbedder):
    """The FakeEmbedder, writing down which node each embedding actor was started on."""

    record: Path | None = None

    def __init__(self, spec):
        import ray

        super().__init__(spec)
        with open(self.record, "a") as file:
            file.write(json.dumps({"node": ray.get_runtime_context().get_node_id(),
                                   "gpus": ray.get_runtime_context().get_accelerator_ids().get("GPU", [])}) + "\n")


def test_two_nodes_with_one_gpu_each_get_one_embedding_actor_each(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from codesearch.query.api import QueryRequest
    from codesearch.org.search import OrganisationSearch
    from codesearch.org.ray_pipeline import index_organisation

    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the nodes' workers import this module and conftest
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
    cluster.add_node(num_cpus=1, num_gpus=1)
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        cluster.wait_for_nodes()
        repos = [make_files_repo(tmp_path / name, FILES[name]) for name in ("payments", "imaging", "notifier")]
        record = tmp_path / "actors.jsonl"

        def factory(spec, record=record):
            NodeRecordingEmbedder.record = record
            return NodeRecordingEmbedder(spec)

        report = index_organisation(tmp_path / "org", repos, model="minilm", address=cluster.address,
                                    embedder_factory=factory)
        actors = [json.loads(line) for line in record.read_text().splitlines()]
        assert report.workers == 2  # one per GPU the cluster declares
        assert len({actor["node"] for actor in actors}) == 2, actors
        assert all(len(actor["gpus"]) == 1 for actor in actors), actors
        search = OrganisationSearch(tmp_path / "org", embedder_for=FakeEmbedder)
        try:
            answer = search.query(QueryRequest([question for question, _, _ in QUESTIONS[:3]], k=1))
        finally:
            search.close()
        assert [(hit.repository, hit.chunk.path) for [hit] in answer.hits] == \
               [(repository, path) for _, repository, path in QUESTIONS[:3]]
    finally:
        ray.shutdown()
        cluster.shutdown()
