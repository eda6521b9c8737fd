"""The index store: round trip, and what a crash at each step leaves behind."""

import numpy as np
import pytest

from codesearch.chunk import Chunk
from codesearch.errors import CodesearchError
from codesearch.store import IndexStore, code_terms

DIM = 8
MANIFEST = {"model": "test", "dimension": DIM}


def unit_vectors(count, seed):
    vectors = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def add_file(store, path, names, seed):
    chunks = [Chunk(path, i * 10 + 1, i * 10 + 5, name, "function", "python", f"def {name}():\n    pass")
              for i, name in enumerate(names)]
    keys = [f"{path}:{name}:{seed}" for name in names]
    store.cache_vectors(keys, unit_vectors(len(names), seed))
    return {path: (f"fp-{seed}", chunks, keys)}


def nearest_symbol(store, vector):
    _, ids = store.vector_index().search(vector.reshape(1, -1), 1)
    return store.chunks_by_id([int(ids[0][0])])[int(ids[0][0])].symbol


@pytest.fixture
def store(tmp_path):
    opened = IndexStore.open(tmp_path / ".codesearch", create=True)
    yield opened
    opened.close()


def test_round_trip(store, tmp_path):
    store.replace_files(MANIFEST, add_file(store, "a.py", ["alpha", "beta"], seed=1), removed=[])
    store.close()
    reopened = IndexStore.open(tmp_path / ".codesearch")
    assert reopened.chunk_count() == 2 and reopened.file_fingerprints() == {"a.py": "fp-1"}
    assert reopened.manifest()["model"] == "test" and reopened.generation == 1
    assert nearest_symbol(reopened, unit_vectors(2, 1)[1]) == "beta"
    assert [reopened.chunks_by_id([i])[i].symbol for i, _ in reopened.lexical_search('"alpha"', 5)] == ["alpha"]
    reopened.close()


def test_replacing_a_file_swaps_its_chunks_everywhere(store):
    store.replace_files(MANIFEST, add_file(store, "a.py", ["alpha", "beta"], seed=1), removed=[])
    store.replace_files(MANIFEST, add_file(store, "a.py", ["gamma"], seed=2), removed=[])
    assert store.chunk_count() == 1 and store.vector_index().ntotal == 1
    assert store.lexical_search('"alpha"', 5) == []
    store.replace_files(MANIFEST, {}, removed=["a.py"])
    assert store.chunk_count() == 0 and store.vector_index().ntotal == 0 and store.lexical_search('"gamma"', 5) == []


def test_a_crash_before_commit_leaves_the_previous_index(store, tmp_path, monkeypatch):
    store.replace_files(MANIFEST, add_file(store, "a.py", ["alpha"], seed=1), removed=[])
    changes = add_file(store, "b.py", ["beta"], seed=2)

    def die(*args):
        raise KeyboardInterrupt  # the process is killed after the new FAISS file was written

    original_write = store._write_faiss
    monkeypatch.setattr(store, "_write_faiss", lambda index, generation: (original_write(index, generation), die()))
    with pytest.raises(KeyboardInterrupt):
        store.replace_files(MANIFEST, changes, removed=[])
    store.close()
    reopened = IndexStore.open(tmp_path / ".codesearch")
    assert reopened.generation == 1 and reopened.chunk_count() == 1
    assert reopened.vector_index().ntotal == 1
    assert nearest_symbol(reopened, unit_vectors(1, 1)[0]) == "alpha"
    reopened.close()


def test_a_lost_vector_file_is_rebuilt_from_the_database(store, tmp_path):
    store.replace_files(MANIFEST, add_file(store, "a.py", ["alpha", "beta"], seed=3), removed=[])
    store.close()
    for path in (tmp_path / ".codesearch").glob("vectors-*.faiss"):
        path.write_bytes(b"garbage")
    reopened = IndexStore.open(tmp_path / ".codesearch")
    assert nearest_symbol(reopened, unit_vectors(2, 3)[0]) == "alpha"
    reopened.close()


def test_a_garbage_database_names_rebuild(tmp_path):
    directory = tmp_path / ".codesearch"
    directory.mkdir()
    (directory / "index.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CodesearchError, match="--rebuild"):
        IndexStore.open(directory)


def test_code_terms_split_identifiers_and_keep_them_whole():
    assert code_terms("parseHTTPConfig snake_case_name x2") == [
        "parsehttpconfig", "parse", "http", "config", "snake_case_name", "snake", "case", "name", "x2"]
