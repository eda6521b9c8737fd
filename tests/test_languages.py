"""The language table: every row has a query that compiles and a sample file that exercises it."""

from __future__ import annotations

from pathlib import Path

import pytest

from codesearch.source.languages import LANGUAGES, load_language, spec_for_path, spec_for_source

LANGUAGE_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "languages"


@pytest.mark.parametrize("spec", LANGUAGES, ids=lambda spec: spec.name)
def test_every_language_has_a_compiling_query_and_a_sample(spec):
    assert load_language(spec) is not None
    assert (LANGUAGE_FIXTURES / spec.name / "expected.json").is_file()


def test_extensions_map_to_languages():
    assert spec_for_path("src/App.tsx").name == "tsx"
    assert spec_for_path("lib/thor.rb").name == "ruby"
    assert spec_for_path("README.md") is None


def test_a_header_that_is_really_cpp_is_parsed_as_cpp():
    assert spec_for_source("lz4.h", b"#include <stddef.h>\nint LZ4_count(const char *p);\n").name == "c"
    assert spec_for_source("logger.h", b"#pragma once\nnamespace spdlog {\nclass logger;\n}\n").name == "cpp"
    assert spec_for_source("pool.h", b"template<typename T>\nstruct pool {};\n").name == "cpp"
    assert spec_for_source("x.c", b"namespace_value = 1;\nclass = 2;\n").name == "c"
