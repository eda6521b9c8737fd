"""A first index answers before its vectors are in: words first, vectors added step by step, and a run stopped
half-way leaves an index that answers and a next run that embeds only what is missing."""

from __future__ import annotations

import pytest

from codesearch.indexer import build, read, words_first
from codesearch.indexer.build import index_repository
from codesearch.query.api import QueryRequest
from codesearch.query.engine import Engine
from conftest import FakeEmbedder, make_repo


class Stopped(Exception):
    """The run was killed here."""


def stopping_after(calls: int):
    """A model that embeds two texts a call and dies at call `calls` + 1, as a killed run would."""

    class Stopping(FakeEmbedder):
        documents_per_call = 2
        made = 0

        def encode_token_ids(self, texts, progress=None):
            Stopping.made += 1
            if Stopping.made > calls:
                raise Stopped
            return super().encode_token_ids(texts, progress)

    return Stopping


@pytest.fixture
def progressive(monkeypatch):
    monkeypatch.setattr(build, "PROGRESSIVE_FILES", 1)
    monkeypatch.setattr(words_first, "STEP_SECONDS", 0.0)
    monkeypatch.setattr(words_first, "BATCH", 4)


def answer(repo, text, mode="hybrid"):
    engine = Engine.open(repo, embedder_for=FakeEmbedder)
    try:
        return engine.query(QueryRequest([text], k=20, mode=mode)), engine.status(count_stale=False)
    finally:
        engine.close()


def test_a_run_stopped_half_way_answers_by_words_and_the_next_run_embeds_only_what_is_missing(tmp_path, progressive):
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(Stopped):
        index_repository(repo, model="minilm", embedder_factory=stopping_after(3))
    found, status = answer(repo, "upload retry")
    assert 0 < status["unembedded"] < status["chunks"]
    assert 0 < found.embedded < 1
    assert found.hits[0] and any("upload" in hit.chunk.path for hit in found.hits[0])
    dense_only, _ = answer(repo, "upload retry", mode="semantic")
    assert len(dense_only.hits[0]) <= status["chunks"] - status["unembedded"]

    report = index_repository(repo, model="minilm", embedder_factory=FakeEmbedder)
    assert report.embedded == status["chunks"] - 6  # three calls of two: what the first run embedded is kept
    found, status = answer(repo, "upload retry")
    assert (status["unembedded"], found.embedded) == (0, 1.0)
    dense_only, _ = answer(repo, "upload retry", mode="semantic")
    assert len(dense_only.hits[0]) == min(20, status["chunks"])


def test_a_chunk_with_no_vector_yet_ranks_by_its_words(tmp_path, progressive):
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(Stopped):
        index_repository(repo, model="minilm", embedder_factory=stopping_after(0))  # words only
    found, status = answer(repo, "upload")
    assert status["unembedded"] == status["chunks"]
    lexical, _ = answer(repo, "upload", mode="lexical")
    assert [hit.chunk.id for hit in found.hits[0]] == [hit.chunk.id for hit in lexical.hits[0]]


def test_vectors_waiting_to_be_written_are_never_pruned_from_the_cache(tmp_path, progressive, monkeypatch):
    """The cache is bounded (a quarter of the live chunks, at least CACHE_FLOOR), but a vector computed for
    a chunk written without one stays until its file is written again with it: a fast model embeds more
    than the bound between two steps, and a pruned vector left its file unembedded for the next run."""
    from codesearch.index import store

    monkeypatch.setattr(store, "CACHE_FLOOR", 2)
    monkeypatch.setattr(words_first, "STEP_SECONDS", 3600.0)  # every vector computed before any is written
    monkeypatch.setattr(words_first, "FILES_PER_STEP", 1)  # then written a file at a time
    repo = make_repo(tmp_path / "repo")
    report = index_repository(repo, model="minilm", embedder_factory=FakeEmbedder)
    _, status = answer(repo, "upload")
    assert status["unembedded"] == 0 and report.embedded == status["chunks"]
    assert index_repository(repo, model="minilm", embedder_factory=FakeEmbedder).embedded == 0


def test_a_small_run_writes_once_with_every_vector(tmp_path):
    repo = make_repo(tmp_path / "repo")
    report = index_repository(repo, model="minilm", embedder_factory=FakeEmbedder)
    _, status = answer(repo, "upload")
    assert report.embedded == status["chunks"] and status["unembedded"] == 0 and status["generation"] == 1


def test_the_command_line_says_how_much_is_embedded(tmp_path, progressive):
    import json

    from conftest import codesearch

    repo = make_repo(tmp_path / "repo")
    with pytest.raises(Stopped):
        index_repository(repo, model="minilm", embedder_factory=stopping_after(3))
    status = json.loads(codesearch("status", "--json", cwd=repo).stdout)
    assert 0 < status["unembedded"] < status["chunks"]
    text = codesearch("status", cwd=repo).stdout
    assert f"embedded    {status['chunks'] - status['unembedded']} of {status['chunks']} chunks" in text
    answered = codesearch("query", "upload", "--mode", "lexical", cwd=repo)
    assert answered.returncode == 0 and "of the index's chunks have a vector so far" in answered.stderr
    line = json.loads(codesearch("query", "upload", "--mode", "lexical", "--json", cwd=repo).stdout)
    assert 0 < line["embedded"] < 1 and line["stale_files"] == 0


def test_words_first_in_small_batches_ends_with_the_index_one_step_writes(tmp_path, monkeypatch):
    def contents(repo):
        engine = Engine.open(repo, embedder_for=FakeEmbedder)
        try:
            rows = engine.store.database.db.execute(
                "SELECT path, start_line, end_line, symbol, embedding_key FROM chunks ORDER BY 1, 2").fetchall()
            refs = engine.store.database.db.execute("SELECT count(*) FROM refs").fetchone()[0]
            return rows, refs, engine.status(count_stale=False)["unembedded"]
        finally:
            engine.close()

    one_step = make_repo(tmp_path / "one")
    index_repository(one_step, model="minilm", embedder_factory=FakeEmbedder)
    monkeypatch.setattr(build, "PROGRESSIVE_FILES", 1)
    monkeypatch.setattr(words_first, "BATCH", 1)  # files written 8 chunks at a time, embedded 1 at a time
    monkeypatch.setattr(words_first, "STEP_SECONDS", 0.0)
    monkeypatch.setattr(words_first, "FILES_PER_STEP", 2)
    batched = make_repo(tmp_path / "batched")
    report = index_repository(batched, model="minilm", embedder_factory=FakeEmbedder)
    assert contents(batched) == contents(one_step) and contents(batched)[2] == 0
    assert report.embedded == len({row[4] for row in contents(one_step)[0]})


def test_a_querys_refresh_of_a_half_embedded_index_reads_only_what_changed(tmp_path, progressive, monkeypatch):
    from codesearch.index.store import IndexStore, index_dir
    from codesearch.indexer.freshness import bring_up_to_date

    repo = make_repo(tmp_path / "repo")
    with pytest.raises(Stopped):
        index_repository(repo, model="minilm", embedder_factory=stopping_after(3))
    monkeypatch.setattr(build, "PROGRESSIVE_FILES", 200)  # as it is: a query refreshes at most 20 files
    (repo / "added.py").write_text("def reconcile_ledger(entries):\n    return sorted(entries)\n")
    store = IndexStore.open(index_dir(repo))
    try:
        unembedded = store.database.unembedded_count()
        assert bring_up_to_date(repo, store, embedder_factory=FakeEmbedder).refreshed == 1
        assert store.database.unembedded_count() == unembedded  # the stopped run's files are left to `index`
    finally:
        store.close()


def test_the_model_gives_back_its_memory_before_segments_are_merged(tmp_path, progressive, monkeypatch):
    """A merge builds its segment in memory; ONNX Runtime keeps its weights and an arena of batches. A first
    index merges while it embeds, so the model lets go of what it holds first, or the two peaks add."""
    from codesearch.index.store import IndexStore

    class Holding(FakeEmbedder):
        holding = False

        def encode_token_ids(self, texts, progress=None):
            Holding.holding = True
            return super().encode_token_ids(texts, progress)

        def release_memory(self):
            Holding.holding = False

    merged_while = []
    merge = IndexStore._merge

    def recorded_merge(store, chosen):
        merged_while.append(Holding.holding)
        return merge(store, chosen)

    monkeypatch.setattr(IndexStore, "_merge", recorded_merge)
    repo = make_repo(tmp_path / "repo")
    index_repository(repo, model="minilm", embedder_factory=Holding)
    assert merged_while and not any(merged_while)


def test_files_written_while_a_large_run_writes_words_join_it_before_the_vectors(tmp_path, progressive, monkeypatch):
    """A checkout still writing when a refresh looked: what it writes next is in the index by the time the
    vectors are computed (minutes on a CPU), not left to the run after."""
    repo = make_repo(tmp_path / "repo")
    original = read.read_listed
    embedded_when_late_was_indexed = []

    def checkout_still_writing(root, path, limit=-1):
        if not (repo / "late.py").exists():
            (repo / "late.py").write_text("def settle_invoice(total):\n    return round(total, 2)\n")
        return original(root, path, limit)

    class Watching(FakeEmbedder):
        def encode_token_ids(self, texts, progress=None):
            embedded_when_late_was_indexed.append("late.py" in indexed_files(repo))
            return super().encode_token_ids(texts, progress)

    monkeypatch.setattr(read, "read_listed", checkout_still_writing)
    report = index_repository(repo, model="minilm", embedder_factory=Watching)
    assert embedded_when_late_was_indexed and all(embedded_when_late_was_indexed)
    assert report.changed_files == len(indexed_files(repo))
    found, status = answer(repo, "settle_invoice", mode="lexical")
    assert found.hits[0][0].chunk.path == "late.py" and status["unembedded"] == 0


def test_a_file_rewritten_all_the_time_does_not_hold_the_vectors_back(tmp_path, progressive, monkeypatch):
    """A log in the tree, rewritten between any two looks: each look writes it, and looks again only while git
    seems at work (many files changed)."""
    repo = make_repo(tmp_path / "repo")
    looks, rounds = [], []
    original_look, original_round = words_first.files_to_read, words_first._words_of_later_changes

    def look(*arguments):
        (repo / "churn.py").write_text(f"def churn_{len(looks)}():\n    return {len(looks)}\n")
        looks.append(1)
        return original_look(*arguments)

    def one_round(*arguments, **options):
        rounds.append(1)
        return original_round(*arguments, **options)

    monkeypatch.setattr(words_first, "files_to_read", look)
    monkeypatch.setattr(words_first, "_words_of_later_changes", one_round)
    index_repository(repo, model="minilm", embedder_factory=FakeEmbedder)
    assert rounds and len(looks) == len(rounds)


def test_a_tree_that_keeps_changing_costs_each_step_one_look(tmp_path, progressive, monkeypatch):
    """A build writing many files all the time: right after the words the run looks while git seems at work
    (for at most RESCAN_SECONDS), and at each step after only once."""
    repo = make_repo(tmp_path / "repo")
    (repo / "written").mkdir()
    looks, rounds = [], []
    original_look, original_round = words_first.files_to_read, words_first._words_of_later_changes

    def look(*arguments):
        for number in range(words_first.RESCAN_BUSY + 5):
            (repo / "written" / f"out_{number}.py").write_text(f"def out_{number}():\n    return {len(looks)}\n")
        looks.append(1)
        return original_look(*arguments)

    def one_round(*arguments, **options):
        before = len(looks)
        written = original_round(*arguments, **options)
        rounds.append(len(looks) - before)
        return written

    monkeypatch.setattr(words_first, "RESCAN_SECONDS", 3.0)
    monkeypatch.setattr(words_first, "files_to_read", look)
    monkeypatch.setattr(words_first, "_words_of_later_changes", one_round)
    index_repository(repo, model="minilm", embedder_factory=FakeEmbedder)
    assert rounds[0] > 1  # after the words: looking while git seems at work
    assert len(rounds) > 2 and set(rounds[1:]) == {1}


def test_a_file_read_while_git_saw_it_changed_is_not_read_again_once_committed(tmp_path):
    from conftest import git

    repo = make_repo(tmp_path / "repo")
    index_repository(repo, model="minilm", embedder_factory=FakeEmbedder)
    (repo / "added.py").write_text("def reconcile_ledger(entries):\n    return sorted(entries)\n")
    assert index_repository(repo, embedder_factory=FakeEmbedder).changed_files == 1
    git(repo, "add", "added.py")
    git(repo, "commit", "-q", "-m", "add")
    assert index_repository(repo, embedder_factory=FakeEmbedder).changed_files == 0
    (repo / "added.py").write_text("def reconcile_ledger(entries):\n    return sorted(entries, reverse=True)\n")
    assert index_repository(repo, embedder_factory=FakeEmbedder).changed_files == 1  # an edit is still seen


def indexed_files(repo) -> set[str]:
    from codesearch.index.store import IndexStore, index_dir

    store = IndexStore.open(index_dir(repo))
    try:
        return set(store.database.file_fingerprints())
    finally:
        store.close()
