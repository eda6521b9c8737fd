"""Each language's sample files are cut into the chunks listed in their expected.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codesearch.source.chunk import chunk_file
from conftest import codesearch

LANGUAGE_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "languages"
FIELDS = ("start_line", "end_line", "symbol", "kind", "language")


def _cases():
    for expected_file in sorted(LANGUAGE_FIXTURES.glob("*/expected.json")):
        for name, chunks in json.loads(expected_file.read_text()).items():
            yield pytest.param(expected_file.parent / name, chunks, id=f"{expected_file.parent.name}/{name}")


@pytest.mark.parametrize(("path", "expected"), list(_cases()))
def test_sample_file_is_cut_as_expected(path, expected):
    chunks = chunk_file(path.name, path.read_bytes())
    assert [{field: getattr(chunk, field) for field in FIELDS} for chunk in chunks] == expected


def test_chunks_command_prints_the_expected_chunks_as_json():
    sample = LANGUAGE_FIXTURES / "rust" / "stack.rs"
    result = codesearch("chunks", "--json", sample.name, cwd=sample.parent, check=True)
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    expected = json.loads((sample.parent / "expected.json").read_text())[sample.name]
    assert [{field: chunk[field] for field in FIELDS} for chunk in printed] == expected
    assert {chunk["path"] for chunk in printed} == {"stack.rs"}
