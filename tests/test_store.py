"""The index store: round trip, and what a crash at each step leaves behind."""

import zlib

import numpy as np
import pytest

from codesearch.source.chunk import Chunk
from codesearch.index import store as store_module
from codesearch.errors import CodesearchError, IndexDamaged
from codesearch.index.terms import code_terms, query_terms
from codesearch.index.store import IndexStore

DIM = 8
MANIFEST = {"model": "test", "dimension": DIM}


def unit_vectors(count, seed):
    vectors = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def add_file(store, path, names, seed):
    chunks = [Chunk(path, i * 10 + 1, i * 10 + 5, name, "function", "python", f"def {name}():\n    pass")
              for i, name in enumerate(names)]
    keys = [f"{path}:{name}:{seed}" for name in names]
    store.database.cache_vectors(keys, unit_vectors(len(names), seed))
    return {path: (f"fp-{seed}", chunks, keys)}


def lexical_symbols(store, query):
    found = store.lexical_index().search(query_terms(query), 5)
    chunks = store.database.chunks_by_id([chunk_id for chunk_id, _ in found])
    return [chunks[chunk_id].symbol for chunk_id, _ in found]


def nearest_symbol(store, vector):
    ((chunk_id, _),) = store.vector_index().search(vector, 1)
    return store.database.chunks_by_id([chunk_id])[chunk_id].symbol


@pytest.fixture
def store(tmp_path):
    opened = IndexStore.open(tmp_path / ".codesearch", create=True)
    yield opened
    opened.close()


def test_round_trip(store, tmp_path):
    store.replace_files(MANIFEST, add_file(store, "a.py", ["alpha", "beta"], seed=1), removed=[])
    store.close()
    reopened = IndexStore.open(tmp_path / ".codesearch")
    assert reopened.database.chunk_count() == 2 and reopened.database.file_fingerprints() == {"a.py": "fp-1"}
    assert reopened.database.manifest()["model"] == "test" and reopened.generation == 1
    assert nearest_symbol(reopened, unit_vectors(2, 1)[1]) == "beta"
    assert lexical_symbols(reopened, "alpha") == ["alpha"]
    reopened.close()


def test_replacing_a_file_swaps_its_chunks_everywhere(store):
    store.replace_files(MANIFEST, add_file(store, "a.py", ["alpha", "beta"], seed=1), removed=[])
    store.replace_files(MANIFEST, add_file(store, "a.py", ["gamma"], seed=2), removed=[])
    assert store.database.chunk_count() == 1 and store.vector_index().ntotal == 1
    assert lexical_symbols(store, "alpha") == [] and lexical_symbols(store, "gamma") == ["gamma"]
    store.replace_files(MANIFEST, {}, removed=["a.py"])
    assert store.database.chunk_count() == 0 and store.vector_index().ntotal == 0 and lexical_symbols(store, "gamma") == []


def test_a_crash_before_commit_leaves_the_previous_index(store, tmp_path, monkeypatch):
    store.replace_files(MANIFEST, add_file(store, "a.py", ["alpha"], seed=1), removed=[])
    changes = add_file(store, "b.py", ["beta"], seed=2)
    original_write = store_module.write_segment

    def write_then_die(*args):
        original_write(*args)
        raise KeyboardInterrupt  # the process is killed after the new segment was written, before the commit

    monkeypatch.setattr(store_module, "write_segment", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        store.replace_files(MANIFEST, changes, removed=["a.py"])
    store.close()
    reopened = IndexStore.open(tmp_path / ".codesearch")
    assert reopened.generation == 1 and reopened.database.chunk_count() == 1
    assert reopened.vector_index().ntotal == 1 and lexical_symbols(reopened, "beta") == []
    assert nearest_symbol(reopened, unit_vectors(1, 1)[0]) == "alpha"
    monkeypatch.undo()
    reopened.replace_files(MANIFEST, add_file(reopened, "c.py", ["gamma"], seed=3), removed=[])
    # The killed run's folder was never listed: the next refresh writes its own segment in its place.
    assert sorted(path.name for path in (tmp_path / ".codesearch").glob("segment-*")) == ["segment-1", "segment-2"]
    assert lexical_symbols(reopened, "beta") == [] and lexical_symbols(reopened, "gamma") == ["gamma"]
    reopened.close()


@pytest.mark.parametrize("damage", ["missing", "vectors", "postings", "ids"])
def test_an_unreadable_segment_is_named_and_its_files_are_indexed_again(store, tmp_path, damage):
    import shutil

    store.replace_files(MANIFEST, add_file(store, "a.py", ["alpha", "beta"], seed=3), removed=[])
    store.replace_files(MANIFEST, add_file(store, "b.py", ["gamma"], seed=4), removed=[])
    store.close()
    folder = tmp_path / ".codesearch" / "segment-1"
    if damage == "missing":
        shutil.rmtree(folder)
    else:
        name = {"vectors": "vectors.faiss", "postings": "posting_units.npy", "ids": "chunk_ids.npy"}[damage]
        (folder / name).write_bytes(b"garbage")
    reopened = IndexStore.open(tmp_path / ".codesearch")
    with pytest.raises(IndexDamaged, match="codesearch index"):
        reopened.lexical_index()
    with reopened.lock():
        assert reopened.repair() == ["a.py"]
    assert reopened.database.file_fingerprints() == {"b.py": "fp-4"}  # the refresh under way reads a.py again
    assert lexical_symbols(reopened, "gamma") == ["gamma"] and lexical_symbols(reopened, "alpha") == []
    reopened.close()


def _ranked(store, query, vector):
    """Both retrievers' answers as (path, line, rounded score), independent of chunk ids and of the order of ties."""
    def named(found):
        chunks = store.database.chunks_by_id([chunk_id for chunk_id, _ in found])
        return sorted((round(score, 9), chunks[i].path, chunks[i].start_line) for i, score in found)

    return (named(store.lexical_index().search(query_terms(query), 20)),
            named(store.vector_index().search(vector, 20)))


def test_deleted_chunks_never_appear_and_statistics_count_live_units_only(store, tmp_path):
    store.replace_files(MANIFEST, add_file(store, "a.py", ["retry_upload", "parse_config"], seed=1), removed=[])
    store.replace_files(MANIFEST, add_file(store, "b.py", ["retry_download"], seed=2), removed=[])
    store.replace_files(MANIFEST, add_file(store, "a.py", ["open_socket"], seed=3), removed=[])
    assert store.segment_numbers() == [1, 2, 3]  # a.py's first two chunks are deleted from segment 1
    symbols = {chunk.symbol for chunk in store.database.chunks_by_id(range(1, 10)).values()}
    assert symbols == {"retry_download", "open_socket"}
    lexicon = store.lexical_index()
    assert len(lexicon) == 2 and lexicon.frequencies(query_terms("retry upload")) == {"retri": 1}
    assert lexical_symbols(store, "retry upload") == ["retry_download"]
    for vector in unit_vectors(2, 1):  # the deleted chunks' own vectors find only live ones
        assert nearest_symbol(store, vector) in {"retry_download", "open_socket"}
    assert store.vector_index().ntotal == 2


def test_a_refreshed_index_answers_as_one_built_from_scratch(tmp_path):
    """Random edits, deletions, renames and returns to earlier versions, each a new segment with deletions
    marked (and merges along the way): every answer, BM25 score and inner product equals that of an index
    built from scratch from the same files."""
    import random

    words = "retry upload parse config socket buffer token cache flush stream merge index query".split()
    rng = random.Random(7)
    versions: dict[str, list[str]] = {}
    (tmp_path / "segmented").mkdir()
    (tmp_path / "fresh").mkdir()
    segmented = IndexStore.open(tmp_path / "segmented" / ".codesearch", create=True)
    for step in range(40):
        action = rng.random()
        path = f"m{rng.randrange(8)}.py"
        if action < 0.15 and versions:
            removed_path = rng.choice(sorted(versions))
            del versions[removed_path]
            segmented.replace_files(MANIFEST, {}, removed=[removed_path])
        elif action < 0.25 and versions:  # a rename: the same functions under another path
            old_path = rng.choice(sorted(versions))
            versions[path] = versions.pop(old_path)
            segmented.replace_files(MANIFEST, _file(segmented, path, versions[path]), removed=[old_path])
        else:
            versions[path] = [f"{rng.choice(words)}_{rng.choice(words)}" for _ in range(rng.randint(1, 4))]
            segmented.replace_files(MANIFEST, _file(segmented, path, versions[path]), removed=[])
        if step in (9, 19, 29):
            with segmented.lock():
                segmented.merge_segments()
    fresh = IndexStore.open(tmp_path / "fresh" / ".codesearch", create=True)
    fresh.replace_files(MANIFEST, {path: _file(fresh, path, names)[path] for path, names in versions.items()},
                        removed=[])
    assert len(segmented.segment_numbers()) > 1 and len(fresh.segment_numbers()) == 1
    for query in ["retry upload", "parse the config", "socket buffer flush", "token", "merge index query"]:
        vector = unit_vectors(1, hash(query) % 1000)[0]
        assert _ranked(segmented, query, vector) == _ranked(fresh, query, vector)
    assert len(segmented.lexical_index()) == len(fresh.lexical_index())
    assert segmented.lexical_index().average_length == fresh.lexical_index().average_length
    segmented.close()
    fresh.close()


def _file(store, path, names):
    """A file of functions whose vectors follow from their names, so the same function has the same vector."""
    chunks = [Chunk(path, i * 10 + 1, i * 10 + 5, name, "function", "python", f"def {name}():\n    {name}()")
              for i, name in enumerate(names)]
    keys = [f"{path}:{name}" for name in names]
    vectors = [unit_vectors(1, zlib.crc32(key.encode()))[0] for key in keys]
    store.database.cache_vectors(keys, np.stack(vectors))
    return {path: (f"fp-{'-'.join(names)}", chunks, keys)}


def test_merged_postings_equal_postings_built_from_the_live_units():
    """A merge (32-bit columns, one packed sort) gives, array for array, what a build of the surviving units
    gives, whatever order the build reads its documents in."""
    import random

    from codesearch.index.lexical import Postings

    rng = random.Random(5)
    vocabulary = [f"t{i}" for i in range(300)] + ["ünïcode", "x"]
    documents = {unit_id: [rng.choice(vocabulary) for _ in range(rng.randint(1, 60))] for unit_id in rng.sample(range(1, 5000), 900)}
    ids = sorted(documents)
    parts = [ids[0::3], ids[1::3], ids[2::3]]  # interleaved ids: the merge puts units back in id order
    deleted = set(rng.sample(ids, 200)) | {unit_id for unit_id in ids if "x" in documents[unit_id]}
    merged = Postings.merge([(Postings.build([(i, documents[i]) for i in part]), sorted(deleted & set(part)))
                             for part in parts])
    shuffled = [(i, documents[i]) for i in ids if i not in deleted]
    rng.shuffle(shuffled)
    built = Postings.build(iter(shuffled))
    for name in Postings._ARRAYS:
        assert np.array_equal(getattr(merged, name), getattr(built, name)), name
        assert getattr(merged, name).dtype == getattr(built, name).dtype, name


def test_bm25_search_prunes_without_changing_the_answer():
    """Search skips common terms' postings once they cannot change the answer (MaxScore); its answers equal
    BM25 computed over every unit by the textbook formula, across segments with deletions and filters, and
    so do its document frequencies."""
    import math
    import random

    from codesearch.index.lexical import LexicalIndex, Postings

    rng = random.Random(3)
    common, rare = ["get", "set", "data", "value"], [f"rare{i}" for i in range(40)]
    documents = {unit_id: [rng.choice(common) for _ in range(rng.randint(3, 30))] +
                 [rng.choice(rare) for _ in range(rng.randint(0, 3))] for unit_id in range(1, 601)}
    deleted = [unit_id for unit_id in documents if unit_id % 7 == 0]
    index = LexicalIndex([(Postings.build([(i, documents[i]) for i in documents if i <= 300]), deleted),
                          (Postings.build([(i, documents[i]) for i in documents if i > 300]), deleted)])
    live = {unit_id: words for unit_id, words in documents.items() if unit_id not in deleted}
    average = sum(map(len, live.values())) / len(live)

    def textbook(terms, allowed):
        scores = {}
        for term in dict.fromkeys(terms):
            holding = [unit_id for unit_id, words in live.items() if term in words]
            idf = math.log(1 + (len(live) - len(holding) + 0.5) / (len(holding) + 0.5))
            for unit_id in holding:
                tf, length = live[unit_id].count(term), len(live[unit_id])
                scores[unit_id] = scores.get(unit_id, 0) + idf * tf / (tf + 1.2 * (1 - 0.75 + 0.75 * length / average))
        ranked = sorted((unit_id for unit_id in scores if allowed is None or unit_id in allowed),
                        key=lambda unit_id: (-scores[unit_id], unit_id))
        return [(unit_id, scores[unit_id]) for unit_id in ranked]

    for _ in range(40):
        terms = rng.sample(rare, 2) + rng.sample(common, 3)
        allowed = np.asarray(rng.sample(range(1, 601), 200)) if rng.random() < 0.3 else None
        for limit in (3, 10):
            found = index.search(terms, limit, allowed)
            expected = textbook(terms, None if allowed is None else set(allowed.tolist()))[:limit]
            assert [unit_id for unit_id, _ in found] == [unit_id for unit_id, _ in expected]
            assert [score for _, score in found] == pytest.approx([score for _, score in expected], rel=1e-9)
        # Document frequencies, those of the search's own terms reused from it, others computed.
        asked = terms + [rng.choice(rare), "absent"]
        assert index.frequencies(asked) == {term: sum(term in words for words in live.values()) for term in asked
                                            if any(term in words for words in live.values())}


def test_ten_segments_of_about_one_size_merge_whatever_side_of_a_power_of_ten_they_lie():
    from codesearch.index.segments import SegmentSize, plan_merge

    sizes = [SegmentSize(number, 9_990 + 10 * number, 0) for number in range(10)]  # 9,990 to 10,080 rows
    assert plan_merge(sizes) == list(range(10))
    assert plan_merge(sizes[:9]) == []
    # Nine small ones and one a hundred times larger do not merge; mostly deleted ones are rewritten.
    assert plan_merge([SegmentSize(n, 50, 0) for n in range(9)] + [SegmentSize(9, 100_000, 0)]) == []
    assert plan_merge([SegmentSize(1, 100, 40), SegmentSize(2, 100, 10)]) == [1]


def test_no_merge_makes_a_segment_past_the_cap():
    from codesearch.index.segments import MAX_MERGED_ROWS, SegmentSize, plan_merge

    # A first index of a million chunks: batches of 16,000 and merged segments of 160,000 lie within a factor
    # ten, and would all merge into one; only as many as fit under the cap do.
    batches = [SegmentSize(number, 16_000, 0) for number in range(4)]
    merged = [SegmentSize(10 + number, 100_000, 0) for number in range(6)]
    chosen = plan_merge(batches + merged)
    assert len(chosen) >= 2 and sum(size.rows for size in batches + merged if size.number in chosen) <= MAX_MERGED_ROWS
    assert set(range(4)) <= set(chosen)  # the smallest first
    # Segments past half the cap take part in no merge of sizes, however many gather; a mostly deleted one is
    # still rewritten.
    big = [SegmentSize(number, MAX_MERGED_ROWS // 2 + 1, 0) for number in range(12)]
    assert plan_merge(big) == []
    assert plan_merge(big[:-1] + [SegmentSize(11, MAX_MERGED_ROWS // 2 + 1, MAX_MERGED_ROWS // 3)]) == [11]


def test_a_merge_keeps_every_answer_and_drops_deleted_rows(store, tmp_path):
    for number in range(12):
        store.replace_files(MANIFEST, add_file(store, f"m{number}.py", [f"retry_{number}", f"parse_{number}"],
                                               seed=number), removed=[])
    store.replace_files(MANIFEST, {}, removed=["m0.py", "m1.py"])
    vector = unit_vectors(1, 99)[0]
    before = _ranked(store, "retry parse", vector)
    with store.lock():
        merged = store.merge_segments()
    assert len(merged) >= 10 and len(store.segment_numbers()) <= 3
    assert _ranked(store, "retry parse", vector) == before
    assert store.database.deleted_ids() == {}
    assert sorted(path.name for path in (tmp_path / ".codesearch").glob("segment-*")) == \
        sorted(f"segment-{number}" for number in store.segment_numbers())


def _twelve_files_merged(store, flat, first=0):
    """Twelve files of five functions in both stores, one removed; `store`'s ten smallest segments merged."""
    for number in range(first, first + 12):
        names = [f"fn_{number}_{i}" for i in range(5)]
        for target in (store, flat):
            target.replace_files(MANIFEST, _file(target, f"m{number}.py", names), removed=[])
    for target in (store, flat):
        target.replace_files(MANIFEST, {}, removed=[f"m{first + 3}.py"])
    with store.lock():
        store.merge_segments()


def test_a_merge_moves_chunks_without_rewriting_their_rows(store, monkeypatch):
    """A merge records where each merged segment's chunks went (`moved`), chains of merges included; the
    chunks' rows are not rewritten, and every chunk resolves to the listed segment that holds it."""
    from codesearch.index import segments

    monkeypatch.setattr(segments, "SIZE_CLASS_FLOOR", 1)
    for number in range(100):
        store.replace_files(MANIFEST, _file(store, f"m{number}.py", [f"fn_{number}"]), removed=[])
        if number == 0:
            rows_before = store.database.db.execute("SELECT id, segment FROM chunks").fetchall()
        with store.lock():
            store.merge_segments()  # ten of one row merge, then ten of ten: merged segments merge again
    assert store.database.db.execute("SELECT id, segment FROM chunks WHERE id = ?", (rows_before[0][0],)).fetchall() \
        == rows_before
    listed = set(store.segment_numbers())
    assert {target for (target,) in store.database.db.execute("SELECT target FROM moved")} <= listed
    assert store.database.db.execute("SELECT count(*) FROM moved").fetchone()[0] <= 100
    held = {number: set(np.asarray(store._segment(number).chunk_ids).tolist()) for number in listed}
    for segment, chunk_id in store.database.live_locations([f"m{n}.py:fn_{n}" for n in range(100)]).values():
        assert chunk_id in held[segment]
    assert sum(live for live, _ in store.database.segment_rows().values()) == 100
    assert {number: live for number, (live, _) in store.database.segment_rows().items()} == \
        {number: len(ids) for number, ids in held.items()}


@pytest.mark.parametrize("scanned_per_scored", [0, 10**9], ids=["distance-computer", "selector"])
def test_large_segments_are_sketched_and_answer_as_flat_when_every_row_is_rescored(store, tmp_path, monkeypatch,
                                                                                   scanned_per_scored):
    """Past SKETCH_MIN_ROWS a segment keeps RaBitQ parts for a first pass; rescoring every row (either way),
    it answers as flat segments do, deletions and filters included."""
    from codesearch.index import segments

    monkeypatch.setattr(segments, "SCANNED_PER_SCORED", scanned_per_scored)
    monkeypatch.setattr(segments, "SKETCH_MIN_ROWS", 40)
    monkeypatch.setattr(segments, "SKETCH_PART_ROWS", 16)  # several parts, scanned by several threads
    monkeypatch.setattr(segments, "SIZE_CLASS_FLOOR", 10)
    monkeypatch.setattr(segments, "EXACT_FILTERED_ROWS", 0)  # filters go through the two passes too
    monkeypatch.setattr(segments, "RESCORED", 1000)
    flat = IndexStore.open(tmp_path / "flat", create=True)
    _twelve_files_merged(store, flat)  # ten segments of 5 rows merge into one of 50: a sketched segment
    sketched = [store._segment(n) for n in store.segment_numbers() if store._segment(n).sketch]
    assert len(sketched) == 1 and len(sketched[0]) == 45 and [part.ntotal for part in sketched[0].sketch] == [16, 16, 13]
    store.replace_files(MANIFEST, {}, removed=["m1.py"])  # deleted rows inside the sketched segment
    flat.replace_files(MANIFEST, {}, removed=["m1.py"])
    for seed in range(5):
        vector = unit_vectors(1, 100 + seed)[0]
        assert _ranked(store, "fn", vector) == _ranked(flat, "fn", vector)
        allowed = store.database.chunk_ids(lambda path: path in ("m2.py", "m11.py"))
        found = store.vector_index().search(vector, 20, allowed)
        assert {store.database.chunks_by_id([i])[i].path for i, _ in found} == {"m2.py", "m11.py"} and len(found) == 10
    vectors = store.cached_vectors(["m2.py:fn_2_0"])  # read back from the sketched segment
    np.testing.assert_allclose(vectors["m2.py:fn_2_0"], unit_vectors(1, zlib.crc32(b"m2.py:fn_2_0"))[0], atol=1e-3)
    flat.close()


def test_a_first_pass_that_leaves_too_few_rows_asks_again(store, tmp_path, monkeypatch):
    """The first pass keeps RESCORED · k rows; when deletions or a filter leave fewer than that among them,
    it asks for more, so a search still finds k rows while k rows may be returned, and never a deleted one."""
    from codesearch.index import segments

    monkeypatch.setattr(segments, "SKETCH_MIN_ROWS", 40)
    monkeypatch.setattr(segments, "SIZE_CLASS_FLOOR", 10)
    monkeypatch.setattr(segments, "EXACT_FILTERED_ROWS", 0)
    monkeypatch.setattr(segments, "RESCORED", 1)
    flat = IndexStore.open(tmp_path / "flat", create=True)
    _twelve_files_merged(store, flat)
    removed = [f"m{n}.py" for n in (0, 1, 2, 4, 5)]
    deleted = set(store.database.chunk_ids(lambda path: path in removed).tolist())
    store.replace_files(MANIFEST, {}, removed=removed)
    for seed in range(5):
        vector = unit_vectors(1, 200 + seed)[0]
        found = store.vector_index().search(vector, 25)
        assert len(found) == 25 and not deleted & {i for i, _ in found}
        allowed = store.database.chunk_ids(lambda path: path == "m9.py")
        assert len(store.vector_index().search(vector, 10, allowed)) == 5
    flat.close()


def test_an_ivf_segment_of_an_earlier_version_is_searched_exactly_and_rewritten(store, tmp_path):
    """Segments written as IVF indexes (the version before sketches) are read, searched with every list
    probed, and rewritten by the next merge."""
    import json
    import faiss

    flat = IndexStore.open(tmp_path / "flat", create=True)
    for target in (store, flat):
        target.replace_files(MANIFEST, _file(target, "a.py", [f"fn_{i}" for i in range(30)]), removed=[])
    number = store.segment_numbers()[0]
    folder = tmp_path / ".codesearch" / f"segment-{number}"
    rows = store._segment(number).vectors.reconstruct_n(0, 30)
    store.close()
    quantizer = faiss.IndexFlatIP(DIM)
    quantizer.add(rows[:4])
    ivf = faiss.IndexIVFScalarQuantizer(quantizer, DIM, 4, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    ivf.by_residual = False
    ivf.train(rows[:1])
    ivf.add(rows)
    ivf.make_direct_map()
    (folder / "vectors.faiss").unlink()
    faiss.write_index(ivf, str(folder / "vectors.faiss"))
    header = json.loads((folder / "format.json").read_text())
    (folder / "format.json").write_text(json.dumps({**header, "vectors": "ivf"}))
    store = IndexStore.open(tmp_path / ".codesearch")
    assert store._segment(number).outdated
    vector = unit_vectors(1, 7)[0]
    assert _ranked(store, "fn", vector) == _ranked(flat, "fn", vector)
    with store.lock():
        assert store.merge_segments() == [number]
    assert not any(store._segment(n).outdated for n in store.segment_numbers())
    assert _ranked(store, "fn", vector) == _ranked(flat, "fn", vector)
    store.close()
    flat.close()


def test_vectors_moved_into_a_segment_give_their_space_back(store, tmp_path):
    big = {"model": "test", "dimension": 256}
    chunks = [Chunk("a.py", i * 10 + 1, i * 10 + 5, f"f{i}", "function", "python", f"def f{i}():\n    pass")
              for i in range(400)]
    keys = [f"k{i}" for i in range(400)]
    store.database.cache_vectors(keys, np.random.default_rng(0).normal(size=(400, 256)).astype(np.float32))
    database = tmp_path / ".codesearch" / "index.sqlite"
    cached_size = database.stat().st_size + (tmp_path / ".codesearch" / "index.sqlite-wal").stat().st_size
    store.replace_files(big, {"a.py": ("fp", chunks, keys)}, removed=[])
    free, pages = (store.database.db.execute(f"PRAGMA {name}").fetchone()[0] for name in ("freelist_count", "page_count"))
    assert free / pages <= 0.25 and database.stat().st_size < cached_size / 2


def test_a_live_vector_is_kept_once_and_a_removed_one_goes_to_the_cache(store):
    store.replace_files(MANIFEST, add_file(store, "a.py", ["alpha"], seed=1), removed=[])
    assert store.database.cached_vectors(["a.py:alpha:1"]) == {}  # held by segment 1 only
    assert set(store.cached_vectors(["a.py:alpha:1"])) == {"a.py:alpha:1"}  # read from there
    store.replace_files(MANIFEST, add_file(store, "a.py", ["beta"], seed=2), removed=[])
    assert set(store.database.cached_vectors(["a.py:alpha:1"])) == {"a.py:alpha:1"}  # kept for a switch back
    np.testing.assert_allclose(store.cached_vectors(["a.py:alpha:1"])["a.py:alpha:1"], unit_vectors(1, 1)[0],
                               atol=1e-3)


def test_lexical_filters_apply_before_the_cut(store):
    store.replace_files(MANIFEST, add_file(store, "a.py", [f"retry_{i}" for i in range(30)], seed=5), removed=[])
    ids = sorted(store.database.chunks_by_id(range(1, 100)))
    allowed = np.asarray(ids[-2:], dtype=np.int64)
    found = store.lexical_index().search(query_terms("retry"), 3, allowed)
    assert sorted(chunk_id for chunk_id, _ in found) == ids[-2:]


def test_symbol_terms_outweigh_a_mention_and_stems_match(store):
    chunks = [Chunk("a.py", 1, 5, "upload_files", "function", "python", "def upload_files():\n    send(all)"),
              Chunk("b.py", 1, 5, "helper", "function", "python", "def helper():\n    upload_files()")]
    store.database.cache_vectors(["k1", "k2"], unit_vectors(2, 6))
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
    store.database.cache_vectors(keys, unit_vectors(4, 8))
    store.replace_files(MANIFEST, {"a.py": ("f1", parts[:2], keys[:2]), "b.py": ("f2", parts[2:3], keys[2:3]),
                                   "c.py": ("f3", parts[3:], keys[3:])}, removed=[])
    found = store.lexical_index().search(query_terms("checksum and retry the upload"), 5)
    chunks = store.database.chunks_by_id([chunk_id for chunk_id, _ in found])
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
    store.database.cache_vectors(keys, unit_vectors(2, 8))
    store.replace_files(MANIFEST, {"a.py": ("f1", parts[:1], keys[:1]), "b.py": ("f2", parts[1:], keys[1:])},
                        removed=[])
    found = store.lexical_index().search(query_terms("load the configuration from the context"), 5)
    assert [store.database.chunks_by_id([found[0][0]])[found[0][0]].symbol] == ["load_cfg"]
    assert query_terms("ctx") == ["ctx", "context"]


def test_a_keyword_is_expanded_only_inside_a_longer_identifier():
    assert code_terms("def f(): return len(x)") == ["def", "f", "return", "len", "x"]
    assert code_terms("to_str") == ["to_str", "to", "str", "string"]


def test_sqlite_keeps_its_temporary_files_in_memory(store):
    """A merge's UPDATE and VACUUM need temporary space; in a file it would be chunk text in /var/tmp."""
    assert store.database.db.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
