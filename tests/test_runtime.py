"""MiniLM on ONNX Runtime: the same token ids and (to cosine 0.999) the same vectors as torch, its own
embedding keys, the runtime an index was built with used for its queries, and bad runtimes refused."""

import hashlib
import json

import numpy as np
import pytest

from codesearch.chunk import PartBudget, chunk_file
from codesearch.engine import query_spec
from codesearch.errors import CodesearchError
from codesearch.models import TOKENIZATION_RECIPE, resolve_model
from codesearch.weights import load_embedder, pin_model
from conftest import FIXTURES, assert_one_line_error, codesearch, make_repo


def fixture_chunks() -> list[str]:
    budget = PartBudget.for_window(256)
    return [piece.embedding_text for path in sorted((FIXTURES / "sample_repo").rglob("*.*")) if path.is_file()
            for piece in chunk_file(path.name, path.read_bytes(), budget=budget)]


def test_onnx_gives_torchs_token_ids_and_vectors():
    texts = fixture_chunks() + ["x" * 5000, "ünïcode  and\ttabs", "def f():\n    return 1\n"]
    torch_model = load_embedder(pin_model(resolve_model("minilm", runtime="torch")))
    onnx_model = load_embedder(pin_model(resolve_model("minilm", runtime="onnx")))
    assert onnx_model.tokenize(texts) == torch_model.tokenize(texts)
    documents = (onnx_model.encode_documents(texts) * torch_model.encode_documents(texts)).sum(axis=1)
    queries = ["retry failed uploads", "read a json settings file"]
    asked = (onnx_model.encode_queries(queries) * torch_model.encode_queries(queries)).sum(axis=1)
    assert documents.min() >= 0.999 and asked.min() >= 0.999
    assert np.allclose(np.linalg.norm(onnx_model.encode_documents(texts[:3]), axis=1), 1, atol=1e-5)


def test_the_runtime_is_in_the_embedding_key_and_torch_keys_are_unchanged():
    torch_spec, onnx_spec = resolve_model("minilm", runtime="torch"), resolve_model("minilm", runtime="onnx")
    int8_spec = resolve_model("minilm", runtime="onnx-int8")
    assert len({torch_spec.fingerprint, onnx_spec.fingerprint, int8_spec.fingerprint}) == 3
    # The key torch-built indexes had before runtimes existed: they are not re-embedded.
    parts = [torch_spec.name, "", "encoder", "mean", "256", "", "", "", TOKENIZATION_RECIPE]
    assert torch_spec.fingerprint == hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def test_an_index_is_queried_with_the_runtime_it_was_built_with():
    assert query_spec({"model": "minilm"}).runtime == "torch"  # built before runtimes existed
    assert query_spec({"model": "minilm", "runtime": "onnx-int8"}).runtime == "onnx-int8"


def test_a_runtime_that_cannot_run_the_model_is_refused(tiny_qwen2_dir, monkeypatch):
    with pytest.raises(CodesearchError, match="torch runtime"):
        resolve_model(str(tiny_qwen2_dir), runtime="onnx")
    assert resolve_model(str(tiny_qwen2_dir)).runtime == "torch"
    monkeypatch.setenv("CODESEARCH_RUNTIME", "tensorflow")
    with pytest.raises(CodesearchError, match="unknown runtime"):
        resolve_model("minilm")


def test_index_records_its_runtime_and_a_bad_one_is_one_line(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    monkeypatch.setenv("CODESEARCH_RUNTIME", "cuda-graphs")
    assert_one_line_error(codesearch("index", str(repo), "--model", "minilm"), "unknown runtime")
    monkeypatch.setenv("CODESEARCH_RUNTIME", "onnx")
    assert codesearch("index", str(repo), "--model", "minilm").returncode == 0
    manifest = json.loads((repo / ".codesearch" / "manifest.json").read_text())
    assert manifest["runtime"] == "onnx"
    monkeypatch.delenv("CODESEARCH_RUNTIME")
    result = codesearch("query", "retry failed uploads", "--json", "-k", "1", "--repo", str(repo))
    assert json.loads(result.stdout)["results"][0]["symbol"] == "retry_failed_uploads"
