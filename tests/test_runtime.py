"""MiniLM on ONNX Runtime: the same token ids and (to cosine 0.999) the same vectors as torch, its own
embedding keys, the runtime queries use (an index's own, or ONNX Runtime's fp32 for a minilm index torch
built), the runtime and dtype a machine chooses and an index keeps, and bad runtimes refused."""

import hashlib
import json

import numpy as np
import pytest

from codesearch.source.chunk import PartBudget, chunk_file
from codesearch.query.engine import query_spec
from codesearch.errors import CodesearchError
from codesearch.embedding.spec import TOKENIZATION_RECIPE, resolve_model
from codesearch.embedding.load import load_embedder
from codesearch.embedding.weights import pin_model
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


def test_an_onnx_model_that_gave_back_its_memory_embeds_the_same_after():
    texts = fixture_chunks()[:6]
    model = load_embedder(pin_model(resolve_model("minilm", runtime="onnx")))
    before = model.encode_documents(texts)
    model.release_memory()
    assert model._session is None
    assert np.allclose(model.encode_documents(texts), before, atol=1e-6)


def test_the_runtime_is_in_the_embedding_key_and_torch_keys_are_unchanged():
    torch_spec, onnx_spec = resolve_model("minilm", runtime="torch"), resolve_model("minilm", runtime="onnx")
    int8_spec = resolve_model("minilm", runtime="onnx-int8")
    assert len({torch_spec.fingerprint, onnx_spec.fingerprint, int8_spec.fingerprint}) == 3
    # The key torch-built indexes had before runtimes existed: they are not re-embedded.
    parts = [torch_spec.name, "", "encoder", "mean", "256", "", "", "", TOKENIZATION_RECIPE]
    assert torch_spec.fingerprint == hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def test_an_index_is_queried_in_its_own_runtime_or_one_that_computes_the_same_and_starts_sooner(tiny_qwen2_dir):
    # No GPU here: a minilm index torch built (in fp32 or bf16; before runtimes existed, too) is asked through
    # ONNX Runtime's fp32 export, an int8 one in int8, a model ONNX Runtime does not run by torch.
    assert query_spec({"model": "minilm"}).runtime == "onnx"
    assert query_spec({"model": "minilm", "runtime": "torch", "dtype": "bfloat16"}).runtime == "onnx"
    assert query_spec({"model": "minilm", "runtime": "onnx-int8"}).runtime == "onnx-int8"
    assert query_spec({"model": str(tiny_qwen2_dir), "runtime": "torch"}).runtime == "torch"


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


def test_without_a_gpu_minilm_documents_are_embedded_on_onnx_and_torch_computes_in_bf16_where_amx_is(monkeypatch):
    from codesearch.embedding import spec as models
    from codesearch import hardware

    monkeypatch.setattr(hardware, "default_device", lambda: "cpu")
    for amx, dtype in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(hardware, "cpu_has_amx_bf16", lambda: amx)
        assert resolve_model("minilm").runtime == "onnx" and pin_model(resolve_model("minilm")).dtype == "float32"
        asked = resolve_model("minilm", runtime="torch")
        assert pin_model(asked).dtype == dtype
        assert models.query_runtime(asked, asked.runtime) == "onnx"  # its queries: fp32 on ONNX Runtime


def test_an_index_keeps_its_recorded_dtype_where_this_machine_computes_it(monkeypatch):
    from codesearch import hardware

    monkeypatch.setattr(hardware, "default_device", lambda: "cpu")
    monkeypatch.setattr(hardware, "cpu_has_amx_bf16", lambda: True)
    spec = resolve_model("minilm", runtime="torch")
    assert pin_model(spec).dtype == "bfloat16"
    assert pin_model(spec, "float32").dtype == "float32"  # an fp32 index is not rebuilt for a faster dtype
    assert pin_model(spec, "float16").dtype == "bfloat16"  # fp16 (a GPU's) is not computed on a CPU
    monkeypatch.setattr(hardware, "cpu_has_amx_bf16", lambda: False)
    assert pin_model(spec, "bfloat16").dtype == "float32"  # bf16 without AMX would be slower than fp32
    assert pin_model(resolve_model("minilm", runtime="onnx"), "bfloat16").dtype == "float32"


def test_a_refresh_keeps_the_runtime_the_index_was_built_with(tmp_path, monkeypatch):
    from codesearch.embedding import spec as models

    repo = make_repo(tmp_path / "repo")
    monkeypatch.setenv("CODESEARCH_RUNTIME", "onnx")
    assert codesearch("index", str(repo), "--model", "minilm").returncode == 0
    monkeypatch.delenv("CODESEARCH_RUNTIME")
    monkeypatch.setattr(models, "default_runtime", lambda spec: "torch")  # unasked, a new index would get torch
    (repo / "extra.py").write_text("def extra_helper():\n    return 1\n")
    result = codesearch("index", str(repo))
    assert result.returncode == 0 and "rebuilding" not in result.stderr, result.stderr
    manifest = json.loads((repo / ".codesearch" / "manifest.json").read_text())
    assert manifest["runtime"] == "onnx" and manifest["dtype"] == "float32"


def test_a_long_onnx_index_on_a_cpu_with_amx_names_the_faster_runtime(monkeypatch):
    import io

    from rich.console import Console

    from codesearch.cli.terminal import TerminalProgress
    from codesearch import hardware

    monkeypatch.setattr(hardware, "default_device", lambda: "cpu")
    for amx, chunks, runtime, named in ((True, 20_000, "onnx", True), (False, 20_000, "onnx", False),
                                         (True, 50, "onnx", False), (True, 20_000, "torch", False)):
        monkeypatch.setattr(hardware, "cpu_has_amx_bf16", lambda: amx)
        output = io.StringIO()
        TerminalProgress(Console(file=output, width=200), quiet=True).planned(chunks, resolve_model("minilm", runtime=runtime))
        assert ("CODESEARCH_RUNTIME=torch" in output.getvalue()) == named, (amx, chunks, runtime)
