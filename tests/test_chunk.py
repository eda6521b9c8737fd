"""How a file is cut: the traps of each grammar, big units, broken input, and files with no grammar."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codesearch.source.chunk import DECLARATION_KINDS, MAX_CHUNK_LINES, PartBudget, chunk_file
from codesearch.source.chunk_process import ChunkingProcess, chunk_files
from codesearch.source.languages import LANGUAGES

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# Inputs found by fuzzing that crash or stall a grammar (tree-sitter 0.26.1): bash 0.25.1 segfaults on "{" then
# U+F0000 (in about half of all runs: its isdigit reads outside a table, tree-sitter-bash#337); Kotlin 1.1.0's
# scanner loops forever on "private val()\n@"; Kotlin (497 bytes) and TSX 0.23.2 (17 bytes) parse for minutes,
# Kotlin taking gigabytes.
CRASH_INPUTS = sorted((FIXTURES / "crash_inputs").glob("crash_*"))


def _cut(path: str, source: str):
    return chunk_file(path, textwrap.dedent(source).encode())


def _units(path: str, source: str):
    return {(chunk.symbol, chunk.kind) for chunk in _cut(path, source)
            if chunk.kind not in DECLARATION_KINDS and chunk.kind != "window"}


def test_c_function_returning_a_pointer_is_named_by_its_declarator_and_keeps_its_body():
    chunks = _cut("words.c", """\
        char **split(const char *text)
        {
            return 0;
        }
        """)
    assert [(c.symbol, c.kind, c.start_line, c.end_line) for c in chunks] == [("split", "function", 1, 4)]


def test_cpp_out_of_class_definition_keeps_its_qualified_name():
    assert ("Logger::flush", "function") in _units("logger.cpp", """\
        void Logger::flush() {
            sink_->flush();
        }
        """)


def test_rust_impl_is_a_scope_of_its_methods():
    chunks = _cut("stack.rs", """\
        impl<T> Stack<T> {
            fn push(&mut self, item: T) {
                self.items.push(item);
            }
        }
        """)
    method = next(c for c in chunks if c.kind == "method")
    assert (method.symbol, method.context) == ("Stack::push", "Stack")
    assert method.embedding_text.startswith("stack.rs :: Stack\n")


def test_python_function_in_a_class_is_a_method_with_its_decorator():
    chunks = _cut("cache.py", """\
        class Cache:
            @property
            def size(self):
                return len(self.items)
        """)
    method = next(c for c in chunks if c.kind == "method")
    assert (method.symbol, method.start_line) == ("Cache.size", 2)


def test_javascript_functions_assigned_to_variables_and_keys_are_units():
    assert _units("app.js", """\
        const parse = (text) => {
          return JSON.parse(text);
        };
        app.render = function render(view) {
          return view;
        };
        const api = {
          fetch: function (url) {
            return url;
          },
        };
        """) == {("parse", "function"), ("app.render", "function"), ("api.fetch", "method")}


def test_ruby_singleton_methods_belong_to_their_class():
    assert _units("util.rb", """\
        module Thor
          class Util
            def self.snake_case(str)
              str.downcase
            end
          end
        end
        """) == {("Thor::Util::snake_case", "method")}


def test_doc_comment_and_annotations_belong_to_the_method():
    chunks = _cut("Api.java", """\
        class Api {
            /**
             * Fetches a user.
             */
            @GET
            @Path("/users")
            public User user(String id) {
                return store.find(id);
            }
        }
        """)
    method = next(c for c in chunks if c.kind == "method")
    assert (method.start_line, method.end_line) == (2, 9)


def test_dbt_macros_are_units_named_by_the_macro():
    chunks = _cut("merge.sql", """\
        {% macro get_merge_sql(target, source) -%}
          {{ adapter.dispatch('get_merge_sql')(target, source) }}
        {%- endmacro %}

        {% macro default__get_merge_sql(target, source) -%}
          merge into {{ target }} using {{ source }}
        {%- endmacro %}
        """)
    assert [(c.symbol, c.kind, c.start_line, c.end_line) for c in chunks] == [
        ("get_merge_sql", "macro", 1, 3), ("default__get_merge_sql", "macro", 5, 7)]


def test_html_script_is_chunked_as_javascript_at_the_html_lines():
    chunks = _cut("page.html", """\
        <html>
        <body>
          <p>Hello</p>
          <script>
            function greet(name) {
              return "hi " + name;
            }
          </script>
        </body>
        </html>
        """)
    script = next(c for c in chunks if c.language == "javascript")
    assert (script.symbol, script.start_line, script.end_line) == ("greet", 5, 7)
    assert script.text.strip().startswith("function greet")


def test_tiny_neighbours_merge_and_keep_their_names():
    chunks = _cut("Point.kt", """\
        class Point(val x: Int, val y: Int) {
            fun left() = Point(x - 1, y)
            fun right() = Point(x + 1, y)
            fun up() = Point(x, y + 1)
        }
        """)
    assert [(c.symbol, c.start_line, c.end_line) for c in chunks if c.kind == "method"] == [
        ("Point.left, right, up", 2, 4)]


def test_a_unit_too_large_is_split_into_parts_that_fit_and_cover_it():
    body = "".join(f"    total += {i}\n" for i in range(200))
    chunks = chunk_file("big.py", f"def big():\n    total = 0\n{body}    return total\n".encode())
    assert {c.symbol for c in chunks} == {"big"} and len(chunks) > 2
    assert all(c.end_line - c.start_line + 1 <= MAX_CHUNK_LINES for c in chunks)
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 203
    assert all(later.start_line == earlier.end_line + 1 for earlier, later in zip(chunks, chunks[1:]))


def test_parts_fit_the_window_of_the_model_that_reads_them():
    source = "".join(f"    total += compute_value_{i}(items[{i}], weights[{i}])\n" for i in range(60))
    source = f"def weighted_total(items, weights):\n    total = 0\n{source}    return total\n".encode()
    small = PartBudget.for_window(256)  # MiniLM's window
    assert PartBudget.for_window(1024) == PartBudget()  # bge-code-v1's: the default cut
    assert 500 <= small.chars <= 700 and small.lines < MAX_CHUNK_LINES
    default, fitted = chunk_file("total.py", source), chunk_file("total.py", source, budget=small)
    assert len(fitted) > len(default) and {c.symbol for c in fitted} == {"weighted_total"}
    assert all(len(c.text) + 1 <= small.chars for c in fitted)
    assert fitted[0].start_line == 1 and fitted[-1].end_line == 63
    assert all(later.start_line == earlier.end_line + 1 for earlier, later in zip(fitted, fitted[1:]))


def test_a_script_inside_html_is_cut_with_the_same_budget():
    script = "".join(f"    total += values[{i}] * factors[{i}];\n" for i in range(60))
    page = f"<html><body>\n<script>\nfunction sumAll(values, factors) {{\n  let total = 0;\n{script}  return total;\n}}\n</script>\n</body></html>\n"
    small = PartBudget.for_window(256)
    parts = [c for c in chunk_file("page.html", page.encode(), budget=small) if c.symbol == "sumAll"]
    assert len(parts) > 1 and all(len(c.text) + 1 <= small.chars for c in parts)


def test_a_large_function_made_of_functions_is_cut_at_them():
    inner = "".join(f"  function helper{i}(x) {{\n" + "    x += 1;\n" * 12 + "    return x;\n  }\n" for i in range(8))
    chunks = chunk_file("plugin.js", f"function enablePlugin() {{\n{inner}  return 1;\n}}\n".encode())
    assert {c.symbol for c in chunks if c.kind == "function"} >= {f"enablePlugin.helper{i}" for i in range(8)}


def test_code_outside_functions_forms_module_chunks():
    chunks = _cut("config.py", """\
        import os

        DEBUG = os.environ.get("DEBUG") == "1"

        def load():
            return DEBUG
        """)
    assert [(c.kind, c.start_line, c.end_line) for c in chunks] == [("module", 1, 3), ("function", 5, 6)]


def test_a_broken_file_still_yields_its_good_units():
    assert ("fine", "function") in _units("broken.py", """\
        def broken(:
            return ]

        def fine():
            return 1
        """)


def test_files_without_a_grammar_or_without_units_become_windows():
    text = "".join(f"line {i}\n" for i in range(100))
    for path in ("notes.md", "constants.py"):
        chunks = chunk_file(path, text.encode())
        assert {c.kind for c in chunks} == {"window"}
        assert chunks[0].start_line == 1 and chunks[-1].end_line == 100


def test_a_non_ascii_bash_function_keeps_its_name():
    # bash's parser sees non-ASCII bytes as "x" (its crash on U+F0000); names come from the real bytes.
    chunks = chunk_file("greet.sh", "grüße() {\n  echo \"héllo 🌍\"\n}\n".encode())
    assert [(c.symbol, c.kind, c.text) for c in chunks] == [
        ("grüße", "function", "grüße() {\n  echo \"héllo 🌍\"\n}")]


def test_inputs_that_crashed_or_stalled_a_grammar_become_windows_quickly():
    # Each run in a fresh process: the bash crash depends on where the process's memory happens to lie.
    script = ("import sys, time; from pathlib import Path; from codesearch.source.chunk import chunk_file\n"
              "for name in sys.argv[1:]:\n"
              "    started = time.perf_counter(); chunks = chunk_file(Path(name).name, Path(name).read_bytes())\n"
              "    print(Path(name).name, {c.kind for c in chunks} == {'window'}, time.perf_counter() - started)\n")
    assert len(CRASH_INPUTS) == 4
    for inputs in (CRASH_INPUTS, CRASH_INPUTS[:1], CRASH_INPUTS[:1]):  # the bash one twice more
        result = subprocess.run([sys.executable, "-c", script, *map(str, inputs)], capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 0, result.stderr
        for line in result.stdout.splitlines():
            name, windows, seconds = line.split()
            assert windows == "True" and float(seconds) < 2, line


def test_chunk_files_cuts_as_chunk_file_does():
    files = [(path.name, path.read_bytes()) for path in sorted((FIXTURES / "languages").glob("*/*.*"))
             if path.name != "expected.json"]
    files.insert(3, ("deleted.py", None))
    notices = []
    expected = [chunk_file(path, source, budget=PartBudget.for_window(256)) if source is not None else []
                for path, source in files]
    for workers in (1, 3):  # three children given small batches in turn: the results still come in order
        with patch("codesearch.source.chunk_process.BATCH_FILES", 4):
            results = list(chunk_files(files, PartBudget.for_window(256), notice=notices.append, workers=workers))
        assert results == expected
    assert notices == [] and sum(map(len, results)) > 50


def test_a_file_that_kills_the_chunking_process_becomes_windows_and_the_others_are_still_cut():
    notices = []
    files = [("one.py", b"def one():\n    return 1\n"), ("evil.py", b"def f():\n    SEGFAULT\n"),
             ("two.js", b"function two() {\n  return 2;\n}\n"), ("gone.py", None),
             ("evil\n.rs", b"fn f() {\n    SEGFAULT\n}\n"), ("three.py", b"def three():\n    return 3\n")]
    with ChunkingProcess(notice=notices.append, function="crash_chunker:chunk_or_fail") as chunker:
        results = dict(zip([path for path, _ in files], chunker.chunk(files)))
    assert {path: [(c.symbol, c.kind) for c in chunks] for path, chunks in results.items()} == {
        "one.py": [("one", "function")], "evil.py": [("evil.py:1", "window")], "two.js": [("two", "function")],
        "gone.py": [], "evil\n.rs": [("evil\n.rs:1", "window")], "three.py": [("three", "function")]}
    assert results["evil\n.rs"][0].text == "fn f() {\n    SEGFAULT\n}" and results["evil\n.rs"][0].language == "rust"
    assert notices == ["evil.py: parsing it as python crashed (SIGSEGV); indexed as plain text",
                       "evil\\n.rs: parsing it as rust crashed (SIGSEGV); indexed as plain text"]  # one line


def test_a_file_that_stalls_the_chunking_process_is_given_up_after_its_time():
    notices = []
    files = [("slow.py", b"STALL = 1\n"), ("fine.py", b"def fine():\n    return 1\n")]
    started = time.perf_counter()
    with ChunkingProcess(notice=notices.append, function="crash_chunker:chunk_or_fail", file_seconds=2) as chunker:
        results = list(chunker.chunk(files))
    assert [[(c.symbol, c.kind) for c in chunks] for chunks in results] == [[("slow.py:1", "window")],
                                                                          [("fine", "function")]]
    assert notices == ["slow.py: parsing it as python took more than 2 s; indexed as plain text"]
    assert time.perf_counter() - started < 10


def test_without_a_chunking_process_files_are_cut_here_after_one_notice():
    notices = []
    files = [("one.py", b"def one():\n    return 1\n"), ("two.py", b"def two():\n    return 2\n")]
    with ChunkingProcess(notice=notices.append, function="no_such_module:chunk") as chunker:
        results = list(chunker.chunk(files))
    assert [[c.symbol for c in chunks] for chunks in results] == [["one"], ["two"]]
    assert len(notices) == 1 and notices[0].startswith("chunking in this process: the chunking process did not start")


SAMPLE_EXTENSIONS = {spec.name: spec.extensions[0] for spec in LANGUAGES}
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def isolated():
    """chunk_file in a child process, so that an input that crashes a grammar fails one test, not the run."""
    notices = []
    with ChunkingProcess(notice=notices.append) as chunker:
        def chunk(path: str, data: bytes):
            notices.clear()
            [chunks] = chunker.chunk([(path, data)])
            assert notices == []
            return chunks
        yield chunk


@pytest.mark.parametrize("language", sorted(SAMPLE_EXTENSIONS))
@FUZZ
@given(data=st.binary(max_size=400))
def test_the_chunker_never_raises_on_random_bytes(isolated, language, data):
    _check_chunks(isolated(f"fuzz{SAMPLE_EXTENSIONS[language]}", data), data)


@pytest.mark.parametrize("language", sorted(SAMPLE_EXTENSIONS))
@FUZZ
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
       | st.lists(st.sampled_from(["{", "}", "(", ")", "def f():", "function f() {", "class A {", "<script>",
                                   "</script>", "{% macro m() %}", "{% endmacro %}", "fn f() {", "end", "\n",
                                   "/*", "*/", "'", '"', "<", ">", "::", ";", " "]), max_size=60).map("".join))
def test_the_chunker_never_raises_on_random_text(isolated, language, text):
    data = text.encode()  # the extension names the language
    _check_chunks(isolated(f"fuzz{SAMPLE_EXTENSIONS[language]}", data), data)


def _check_chunks(chunks, data: bytes) -> None:
    line_count = max(len(data.decode("utf-8", errors="replace").split("\n")), 1)
    for chunk in chunks:
        assert 1 <= chunk.start_line <= chunk.end_line <= line_count


def test_a_class_chunk_declares_the_class_and_lists_its_members_signatures():
    chunks = _cut("cache.py", """\
        class Cache(Base):
            def get(self, key,
                    default=None):
                return self.items.get(key, default)

            @property
            def size(self):
                return len(self.items)
        """)
    declaration = next(c for c in chunks if c.kind == "class")
    assert (declaration.symbol, declaration.start_line, declaration.end_line) == ("Cache", 1, 1)
    assert declaration.text.split("\n") == ["class Cache(Base):", "    def get(self, key,",
                                            "            default=None):", "    def size(self):"]


def test_a_member_signature_leaves_out_annotations_and_the_body_but_keeps_a_wrapped_declaration():
    chunks = _cut("Inventory.java", """\
        public class Inventory {
            private int count;
            @Override
            public int add(String item,
                           int amount) {
                return count += amount;
            }
        }
        """)
    declaration = next(c for c in chunks if c.kind == "class")
    assert (declaration.start_line, declaration.end_line) == (1, 2)
    assert declaration.text.split("\n") == ["public class Inventory {", "    private int count;",
                                            "    public int add(String item,", "                   int amount) {"]


def test_go_c_and_rust_types_that_are_no_struct_are_definitions_too():
    def kinds(path, source):
        return {(chunk.symbol, chunk.kind) for chunk in _cut(path, source)}

    assert ("MatcherFunc", "type") in kinds("mux.go", """\
        package mux

        // MatcherFunc is the function signature used by custom matchers.
        type MatcherFunc func(*http.Request, *RouteMatch) bool
        """)
    assert kinds("hash.c", "typedef unsigned long hash_t;\n") == {("hash_t", "type")}
    assert kinds("lib.rs", "pub type Result<T> = std::result::Result<T, Error>;\n") == {("Result", "type")}


def test_cpp_aliases_typedefs_and_concepts_are_definitions_but_a_member_alias_stays_in_its_class():
    chunks = _cut("types.hpp", """\
        namespace cli {
        class Option;

        using Option_p = std::unique_ptr<Option>;

        template <typename... Ts>
        using void_t = typename make_void<Ts...>::type;

        template <typename T> struct make_void { using type = void; };
        }
        typedef unsigned long hash_t;

        template <typename T>
        concept Addable = requires(T a) { a + a; };
        """)
    found = {(chunk.symbol, chunk.kind, chunk.start_line) for chunk in chunks}
    assert {("cli::Option_p", "type", 4), ("cli::void_t", "type", 6), ("hash_t", "type", 11),
            ("Addable", "type", 13), ("cli::make_void", "struct", 9)} <= found, found


def test_each_type_of_a_go_group_is_a_definition_of_its_own_and_a_lone_one_keeps_its_doc_comment():
    chunks = _cut("structs.go", """\
        package teststructs

        // Eagle is a bird.
        type Eagle struct {
        \tName string
        }

        type (
        \t// StructA is the first.
        \tStructA struct{ X int }

        \tStructB struct {
        \t\tY int
        \t}
        )
        """)
    found = {(chunk.symbol, chunk.kind, chunk.start_line, chunk.end_line) for chunk in chunks}
    assert {("Eagle", "type", 3, 6), ("StructA", "type", 9, 10), ("StructB", "type", 12, 14)} <= found, found


def test_a_swift_extension_adds_to_a_type_and_says_so():
    found = {(chunk.symbol, chunk.kind) for chunk in _cut("Keys.swift", """\
        public struct Keys {
            let values: [String]
        }

        extension Keys: Sequence {
            public func makeIterator() -> IndexingIterator<[String]> { values.makeIterator() }
        }
        """)}
    assert {("Keys", "type"), ("Keys", "extension"), ("Keys.makeIterator", "method")} <= found, found
