"""The one query engine: a request checked once with typed errors that each front end words for its own
users, status and query on an open index, retrieval and fusion as separate steps (one index is fusing
one; several fuse into one ranking), and the database layout brought up to date by numbered migrations."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest

from codesearch.query.api import QueryRequest
from codesearch.query.engine import Engine
from codesearch.errors import BadRequest, IndexMissing
from conftest import assert_one_line_error, codesearch, make_repo


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    from conftest import FakeEmbedder

    from codesearch.indexer.build import index_repository

    repo = make_repo(tmp_path_factory.mktemp("engine") / "repo")
    index_repository(repo, model="minilm", embedder_factory=FakeEmbedder)
    return repo


@pytest.mark.parametrize("fields, field, cli, mcp", [
    (dict(k=0), "k", "-k must be a positive number", "k must be a positive number"),
    (dict(mode="fuzzy"), "mode", "unknown --mode 'fuzzy'", "unknown mode 'fuzzy'"),
    (dict(languages=("cobol",)), "languages", "unknown --lang 'cobol'", "unknown lang 'cobol'"),
    (dict(queries=["  "]), "queries", "give a query", "give a query"),
    (dict(queries=["x" * 10_001]), "queries", "at most 10000 are accepted", "at most 10000 are accepted"),
])
def test_a_bad_request_names_its_field_and_each_front_end_words_it(fields, field, cli, mcp):
    from codesearch.cli.terminal import FLAGS
    from codesearch.server.mcp import PARAMETERS

    with pytest.raises(BadRequest) as raised:
        QueryRequest(**{"queries": ["where do we retry"], **fields}).checked()
    assert raised.value.field == field
    assert cli in raised.value.worded(FLAGS[field]) and mcp in raised.value.worded(PARAMETERS[field])
    assert "--" not in str(raised.value)  # the library's own wording names no flag


def test_a_checked_request_is_trimmed_and_splits_path_globs():
    request = QueryRequest.from_options(["  retry uploads \n"], paths=["src/**", "!tests"], k=3).checked()
    assert list(request.queries) == ["retry uploads"] and request.k == 3
    assert (request.filters.include_globs, request.filters.exclude_globs) == (("src/**",), ("tests",))


def test_the_socket_server_names_a_bad_field_by_its_json_key():
    from codesearch.server.protocol import request_from_message

    with pytest.raises(BadRequest) as raised:
        request_from_message({"op": "query", "queries": ["x"], "k": -1}).checked()
    assert str(raised.value) == "k must be a positive number of results"
    with pytest.raises(BadRequest, match='"languages" must be a list of strings'):
        request_from_message({"op": "query", "queries": ["x"], "languages": "go"})


def test_the_engine_answers_status_and_queries(indexed):
    engine = Engine.open(indexed)
    try:
        status = engine.status()
        answer = engine.query(QueryRequest(["retry failed uploads", "parseConfig"], k=2, mode="lexical"))
    finally:
        engine.close()
    assert status["indexed"] and status["model"] == "minilm" and status["stale_files"] == 0
    assert answer.generation == status["generation"] and answer.repository == engine.root
    assert [hits[0].chunk.symbol for hits in answer.hits] == ["retry_failed_uploads", "parseConfig"]
    assert all(len(hits) <= 2 for hits in answer.hits)


def test_no_index_is_index_missing_and_an_unfinished_one_is_not_indexed(tmp_path):
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(IndexMissing, match="not indexed"):
        Engine.open(repo)
    assert_one_line_error(codesearch("status", str(repo)), "not indexed", "codesearch index")

    from codesearch.index.store import IndexStore, index_dir

    IndexStore.open(index_dir(repo), create=True).close()  # what a first build killed before its commit leaves
    text = codesearch("status", str(repo))
    assert text.returncode == 0 and "not indexed" in text.stdout and "None" not in text.stdout, text
    info = json.loads(codesearch("status", str(repo), "--json").stdout)
    assert info["indexed"] is False and (info["files"], info["chunks"], info["generation"]) == (0, 0, None)
    assert_one_line_error(codesearch("query", "retry", "--mode", "lexical", "--repo", str(repo)), "codesearch index")


def test_one_index_fused_alone_answers_as_search_and_two_fuse_into_one_ranking(indexed, tmp_path):
    from codesearch.query.fuse import fuse
    from codesearch.query.api import Query
    from codesearch.query.engine import search
    from codesearch.query.retrieve import retrieve

    other = tmp_path / "other"
    shutil.copytree(indexed, other, symlinks=True)
    vector = np.random.default_rng(3).standard_normal(384).astype(np.float32)
    vector /= np.linalg.norm(vector)
    one, two = Engine.open(indexed), Engine.open(other)
    try:
        query = Query("retry failed uploads", 5, "hybrid", vector)
        alone = fuse([retrieve(one.store, query)], query.text, query.k, 0.5)
        assert [(hit.chunk.id, hit.score) for hit in alone] == [
            (hit.chunk.id, hit.score) for hit in search(one.store, query.text, 5, "hybrid", vector, 0.5)]
        found = retrieve(one.store, query)
        assert found.terms.documents > 0 and set(found.terms.frequencies) <= {"retri", "fail", "upload"}
        both = fuse([found, retrieve(two.store, query)], query.text, 10, 0.5)
        # The same index twice: every answer comes from both, with the same score, side by side.
        assert [hit.chunk.symbol for hit in both[::2]] == [hit.chunk.symbol for hit in both[1::2]]
        assert [hit.score for hit in both[::2]] == pytest.approx([hit.score for hit in both[1::2]])
        assert both[0].chunk.symbol == alone[0].chunk.symbol == "retry_failed_uploads"
    finally:
        one.close()
        two.close()


def test_an_index_from_before_migrations_is_brought_up_to_date(indexed, tmp_path):
    from codesearch.index.migrations import MIGRATIONS

    repo = tmp_path / "old"
    shutil.copytree(indexed, repo, symlinks=True)
    database = sqlite3.connect(repo / ".codesearch" / "index.sqlite")
    with database:
        database.execute("ALTER TABLE manifest RENAME TO meta")  # the layout before user_version counted steps
        database.execute("PRAGMA user_version = 0")
    database.close()
    engine = Engine.open(repo)
    try:
        assert engine.status()["model"] == "minilm"
        assert engine.store.database.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        engine.close()
