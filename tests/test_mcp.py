"""The MCP server as an agent meets it: spawned over stdio by the SDK's own client, it lists its tools
and answers them. One conversation per module (one model load); the tests check what it said."""

import json
import sys

import anyio
import pytest

from conftest import clean_env, codesearch, make_repo


async def converse(repo):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "codesearch", "mcp", "--repo", str(repo)],
                                   env=clean_env())
    said = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            said["tools"] = (await session.list_tools()).tools
            said["search"] = await session.call_tool(
                "search", {"query": "send the files that could not be stored again, waiting longer each time", "k": 3})
            said["filtered"] = await session.call_tool(
                "search", {"query": "stop the http server gracefully", "k": 5, "lang": ["go"], "path": ["!tests"]})
            said["status"] = await session.call_tool("index_status", {})
            said["unknown_lang"] = await session.call_tool("search", {"query": "x", "lang": ["cobol"]})
            said["definitions"] = await session.call_tool("definitions", {"name": "compute_checksum"})
            said["callers"] = await session.call_tool("callers", {"name": "compute_checksum"})
            said["references"] = await session.call_tool("references", {"name": "compute_checksum", "kind": ["call"]})
            said["first_page"] = await session.call_tool(
                "search", {"query": "upload queue", "k": 4, "max_tokens": 100})
            said["bad_offset"] = await session.call_tool("definitions", {"name": "x", "offset": -1})
            said["impact"] = await session.call_tool("impact", {"path": "uploads.py", "line": 28})
            said["map"] = await session.call_tool("repository_map", {"max_tokens": 200})
            said["no_images"] = await session.call_tool("search", {"query": "diagram", "kind": "image"})
            said["bad_kind"] = await session.call_tool("search", {"query": "diagram", "kind": "video"})
    return said


def answer_of(result) -> dict:
    assert not _is_error(result), result
    return json.loads(result.content[0].text)


def _is_error(result) -> bool:
    return bool(getattr(result, "is_error", None) or getattr(result, "isError", None))


@pytest.fixture(scope="module")
def conversation(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("mcp") / "repo")
    codesearch("index", str(repo), "--model", "minilm", check=True)
    return repo, anyio.run(converse, repo)


def test_the_server_lists_search_and_index_status(conversation):
    _, said = conversation
    tools = {tool.name: tool for tool in said["tools"]}
    assert set(tools) == {"search", "index_status", "definitions", "references", "callers", "callees", "impact",
                          "repository_map"}
    schema = getattr(tools["search"], "input_schema", None) or tools["search"].inputSchema
    assert set(schema["properties"]) == {"query", "k", "lang", "path", "mode", "per_file", "offset", "max_tokens",
                                         "kind", "image"}
    assert schema["required"] == ["query"]
    assert "question" in tools["search"].description


def test_search_returns_ranked_chunks_with_code(conversation):
    repo, said = conversation
    answer = answer_of(said["search"])
    assert answer["repository"] == str(repo.resolve())
    first = answer["results"][0]
    assert (first["path"], first["symbol"], first["start_line"], first["end_line"]) == (
        "uploads.py", "retry_failed_uploads", 9, 24)
    assert first["code"].startswith("def retry_failed_uploads(")
    assert set(first) == {"path", "start_line", "end_line", "symbol", "kind", "language", "score", "code"}
    assert len(answer["results"]) <= 3


def test_search_applies_language_and_path_filters(conversation):
    _, said = conversation
    results = answer_of(said["filtered"])["results"]
    assert results and all(result["language"] == "go" for result in results)
    assert "Server.Shutdown" in [result["symbol"] for result in results]


def test_index_status_names_the_model_and_counts(conversation):
    repo, said = conversation
    status = answer_of(said["status"])
    assert status["repository"] == str(repo.resolve())
    assert (status["model"], status["files"], status["stale_files"]) == ("minilm", 5, 0)
    assert status["chunks"] > 5


def test_a_bad_argument_is_a_tool_error_the_agent_can_read(conversation):
    _, said = conversation
    result = said["unknown_lang"]
    assert _is_error(result)
    assert "unknown lang 'cobol'" in result.content[0].text


def test_navigation_tools_answer_with_definitions_sites_and_trees(conversation):
    _, said = conversation
    (definition,) = answer_of(said["definitions"])["results"]
    assert (definition["path"], definition["start_line"], definition["kind"]) == ("uploads.py", 27, "function")
    (tree,) = answer_of(said["callers"])["results"]
    assert [(child["symbol"], child["path"]) for child in tree["children"]] == [
        ("test_compute_checksum_is_hex", "tests/test_uploads.py")]
    sites = answer_of(said["references"])["results"]
    assert [(site["path"], site["resolved"]) for site in sites] == [("tests/test_uploads.py", "imported")]


def test_answers_are_paged_to_the_token_budget(conversation):
    _, said = conversation
    first = answer_of(said["first_page"])
    assert len(first["results"]) == 1 and first["next_offset"] == 1
    assert _is_error(said["bad_offset"]) and "offset must be 0 or more" in said["bad_offset"].content[0].text


def test_impact_and_the_repository_map(conversation):
    _, said = conversation
    reached = [(r["symbol"], r["distance"]) for r in answer_of(said["impact"])["results"]]
    assert reached == [("compute_checksum", 0), ("test_compute_checksum_is_hex", 1)]
    entries = answer_of(said["map"])["results"]
    assert entries and {"path", "start_line", "symbol", "kind", "signature"} == set(entries[0])
    assert "def compute_checksum(data: bytes) -> str:" in [entry["signature"] for entry in entries]


def test_pictures_asked_of_an_index_without_them_are_a_tool_error_naming_the_cure(conversation):
    _, said = conversation
    assert _is_error(said["no_images"]) and "--images" in said["no_images"].content[0].text
    assert _is_error(said["bad_kind"]) and "kind" in said["bad_kind"].content[0].text
