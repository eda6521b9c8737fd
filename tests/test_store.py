"""The index store: round trip, and what a crash at each step leaves behind."""

import numpy as np
import pytest

from codesearch.chunk import Chunk
from codesearch.errors import CodesearchError
from codesearch import generations
from codesearch.lexical import LexicalIndex, code_terms, query_terms
from codesearch.store import IndexStore

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


def lexical_symbols(store, query):
    found = store.lexical_index().search(query_terms(query), 5)
    chunks = store.chunks_by_id([chunk_id for chunk_id, _ in found])
    return [chunks[chunk_id].symbol for chunk_id, _ in found]


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
    assert lexical_symbols(reopened, "alpha") == ["alpha"]
    reopened.close()


def test_replacing_a_file_swaps_its_chunks_everywhere(store):
    store.replace_files(MANIFEST, add_file(store, "a.py", ["alpha", "beta"], seed=1), removed=[])
    store.replace_files(MANIFEST, add_file(store, "a.py", ["gamma"], seed=2), removed=[])
    assert store.chunk_count() == 1 and store.vector_index().ntotal == 1
    assert lexical_symbols(store, "alpha") == [] and lexical_symbols(store, "gamma") == ["gamma"]
    store.replace_files(MANIFEST, {}, removed=["a.py"])
    assert store.chunk_count() == 0 and store.vector_index().ntotal == 0 and lexical_symbols(store, "gamma") == []


def test_a_crash_before_commit_leaves_the_previous_index(store, tmp_path, monkeypatch):
    store.replace_files(MANIFEST, add_file(store, "a.py", ["alpha"], seed=1), removed=[])
    changes = add_file(store, "b.py", ["beta"], seed=2)

    def die(*args):
        raise KeyboardInterrupt  # the process is killed after the new FAISS file was written

    original_write = generations.write_vectors
    monkeypatch.setattr(generations, "write_vectors",
                        lambda directory, number, index: (original_write(directory, number, index), die()))
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


@pytest.mark.parametrize("step", ["write_vectors", "write_lexical"])
def test_a_crash_after_writing_either_file_leaves_the_previous_pair(store, tmp_path, monkeypatch, step):
    store.replace_files(MANIFEST, add_file(store, "a.py", ["alpha"], seed=1), removed=[])
    original = getattr(generations, step)

    def write_then_die(directory, number, index):
        original(directory, number, index)
        raise KeyboardInterrupt

    monkeypatch.setattr(generations, step, write_then_die)
    with pytest.raises(KeyboardInterrupt):
        store.replace_files(MANIFEST, add_file(store, "b.py", ["beta"], seed=2), removed=[])
    store.close()
    reopened = IndexStore.open(tmp_path / ".codesearch")
    assert reopened.generation == 1 and lexical_symbols(reopened, "beta") == []
    assert lexical_symbols(reopened, "alpha") == ["alpha"]
    reopened.close()


@pytest.mark.parametrize("damage", ["missing", "garbage", "other generation"])
def test_a_lost_lexical_folder_is_rebuilt_from_the_stored_terms(store, tmp_path, damage):
    import shutil

    store.replace_files(MANIFEST, add_file(store, "a.py", ["alpha", "beta"], seed=3), removed=[])
    store.replace_files(MANIFEST, add_file(store, "b.py", ["gamma"], seed=4), removed=[])
    store.close()
    folder = tmp_path / ".codesearch" / "lexical-2"
    if damage == "missing":
        shutil.rmtree(folder)
    elif damage == "garbage":
        for path in folder.iterdir():
            path.write_bytes(b"garbage")
    else:  # an older generation's folder under this generation's name: it holds another number of chunks
        shutil.rmtree(folder)
        store = IndexStore.open(tmp_path / ".codesearch")
        index = LexicalIndex.from_parts(store.metadata.unit_parts())
        index.chunks -= 1
        index.save(folder)
        store.close()
    reopened = IndexStore.open(tmp_path / ".codesearch")
    assert lexical_symbols(reopened, "gamma") == ["gamma"] and lexical_symbols(reopened, "beta") == ["beta"]
    reopened.close()


def test_lexical_filters_apply_before_the_cut(store):
    store.replace_files(MANIFEST, add_file(store, "a.py", [f"retry_{i}" for i in range(30)], seed=5), removed=[])
    ids = sorted(store.chunks_by_id(range(1, 100)))
    allowed = np.asarray(ids[-2:], dtype=np.int64)
    found = store.lexical_index().search(query_terms("retry"), 3, allowed)
    assert sorted(chunk_id for chunk_id, _ in found) == ids[-2:]


def test_symbol_terms_outweigh_a_mention_and_stems_match(store):
    chunks = [Chunk("a.py", 1, 5, "upload_files", "function", "python", "def upload_files():\n    send(all)"),
              Chunk("b.py", 1, 5, "helper", "function", "python", "def helper():\n    upload_files()")]
    store.cache_vectors(["k1", "k2"], unit_vectors(2, 6))
    store.replace_files(MANIFEST, {"a.py": ("f1", chunks[:1], ["k1"]), "b.py": ("f2", chunks[1:], ["k2"])},
                        removed=[])
    assert lexical_symbols(store, "uploading files") == ["upload_files", "helper"]
    assert lexical_symbols(store, "what's the upload's job") == ["upload_files", "helper"]  # "s" stems to ""


def test_bm25_scores_a_split_function_as_one_document(store):
    """The words of a question often sit in different parts of one long function (doc comment first,
    code later): the unit matches both, where each part alone would tie with functions that match one."""
    parts = [Chunk("a.py", 1, 20, "mirror_folder", "function", "python", "def mirror_folder():\n    # checksum every file"),
             Chunk("a.py", 21, 40, "mirror_folder", "function", "python", "    retry(upload)\n    return done"),
             Chunk("b.py", 1, 5, "push", "function", "python", "def push():\n    retry(upload)"),
             Chunk("c.py", 1, 5, "digest", "function", "python", "def digest():\n    return checksum(data)")]
    keys = [f"k{i}" for i in range(4)]
    store.cache_vectors(keys, unit_vectors(4, 8))
    store.replace_files(MANIFEST, {"a.py": ("f1", parts[:2], keys[:2]), "b.py": ("f2", parts[2:3], keys[2:3]),
                                   "c.py": ("f3", parts[3:], keys[3:])}, removed=[])
    found = store.lexical_index().search(query_terms("checksum and retry the upload"), 5)
    chunks = store.chunks_by_id([chunk_id for chunk_id, _ in found])
    assert [(chunks[i].symbol, chunks[i].start_line) for i, _ in found][0] == ("mirror_folder", 1)
    assert len(found) == 3  # one document per unit, known by its first part


def test_a_garbage_database_names_rebuild(tmp_path):
    directory = tmp_path / ".codesearch"
    directory.mkdir()
    (directory / "index.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CodesearchError, match="--rebuild"):
        IndexStore.open(directory)


def test_code_terms_split_identifiers_and_keep_them_whole():
    assert code_terms("parseHTTPConfig snake_case_name x2") == [
        "parsehttpconfig", "parse", "http", "config", "snake_case_name", "snake", "case", "name", "x2"]


def test_abbreviations_in_code_bring_the_words_they_stand_for():
    assert code_terms("parseCfg") == ["parsecfg", "parse", "cfg", "configuration", "config"]
    assert code_terms("get_u64_le") == ["get_u64_le", "get", "64", "le", "little", "endian", "less", "equal",
                                        "unsigned", "integer", "64"]
    assert code_terms("int32_t") == ["int32_t", "int", "32", "integer", "signed", "integer", "32"]


def test_an_english_word_in_a_comment_is_not_taken_for_an_abbreviation():
    assert code_terms("should be closed") == ["should", "be", "closed"]
    assert "big" in code_terms("to_be_bytes")


def test_a_question_in_words_finds_the_abbreviated_code(store):
    parts = [Chunk("a.py", 1, 3, "load_cfg", "function", "python", "def load_cfg(ctx):\n    return ctx.cfg"),
             Chunk("b.py", 1, 3, "load_plugins", "function", "python", "def load_plugins():\n    return found")]
    keys = ["k0", "k1"]
    store.cache_vectors(keys, unit_vectors(2, 8))
    store.replace_files(MANIFEST, {"a.py": ("f1", parts[:1], keys[:1]), "b.py": ("f2", parts[1:], keys[1:])},
                        removed=[])
    found = store.lexical_index().search(query_terms("load the configuration from the context"), 5)
    assert [store.chunks_by_id([found[0][0]])[found[0][0]].symbol] == ["load_cfg"]
    assert query_terms("ctx") == ["ctx", "context"]


def test_a_keyword_is_expanded_only_inside_a_longer_identifier():
    assert code_terms("def f(): return len(x)") == ["def", "f", "return", "len", "x"]
    assert code_terms("to_str") == ["to_str", "to", "str", "string"]
