"""Hybrid ranking, filters and output formats, through the CLI on the fixture repository."""

import json

import pytest

from conftest import codesearch, git, make_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("ranking") / "repo")
    # A caller that mentions parseConfig many times must not outrank its definition.
    (repo / "web" / "loader.js").write_text(
        "const { parseConfig } = require('./config');\n\n"
        "function loadAll(paths) {\n"
        "  // parseConfig for each path; parseConfig throws on bad JSON, so parseConfig is wrapped\n"
        "  return paths.map((p) => { try { return parseConfig(p); } catch (e) { return null; } });\n"
        "}\n\nmodule.exports = { loadAll };\n")
    # Overloads share a symbol path; each is its own answer, not parts of one function.
    (repo / "Palette.swift").write_text(
        "extension Palette {\n"
        "    static func color(fromRGB value: Int) -> Color {\n"
        "        return Color(red: (value >> 16) & 0xff, green: (value >> 8) & 0xff, blue: value & 0xff)\n"
        "    }\n\n"
        "    static func color(fromHex text: String) -> Color? {\n"
        "        let digits = text.hasPrefix(\"#\") ? String(text.dropFirst()) : text\n"
        "        guard digits.count == 6, let value = Int(digits, radix: 16) else { return nil }\n"
        "        return color(fromRGB: value)\n"
        "    }\n"
        "}\n")
    # A long run of module-level constants is cut into parts; each part answers alone.
    (repo / "limits.py").write_text("def limit_named(name):\n    return globals()[name]\n\n\n" + "".join(f"LIMIT_{number} = {number}\n" for number in range(200))
                                    + "UPLOAD_BACKOFF_CEILING_SECONDS = 300\n")
    # A type whose name a query gives beside a member's: the member is the answer, not the declaration.
    (repo / "queue.go").write_text(
        "package uploads\n\n"
        "// UploadQueue holds uploads waiting to be sent: Add appends one, Drain empties the queue.\n"
        "type UploadQueue struct {\n\titems []string\n\tlimit int\n}\n\n"
        "func (q *UploadQueue) Add(item string) {\n\tq.items = append(q.items, item)\n}\n\n"
        "func (q *UploadQueue) Drain() []string {\n\tdrained := q.items\n\tq.items = nil\n\treturn drained\n}\n")
    # A class with a one-word name whose methods say its name more often than its declaration does.
    (repo / "scheduler.py").write_text(
        "class Scheduler:\n    \"\"\"Runs jobs at their times.\"\"\"\n\n    def __init__(self):\n        self.jobs = []\n\n"
        + "".join(f"    def job_{n}(self, scheduler=None):\n        scheduler = scheduler or Scheduler()\n"
                  f"        return scheduler.jobs[{n}]\n\n" for n in range(6)))
    # A class whose constructor carries its name and says it more often than the declaration does.
    (repo / "Widget.java").write_text(
        "public class Widget {\n    private final int size;\n\n"
        "    public Widget(int size) {\n        // a Widget of this size; Widget sizes are never negative\n"
        "        if (size < 0) throw new IllegalArgumentException(\"Widget size\");\n"
        "        this.size = size;\n    }\n\n"
        "    public int size() {\n        return size;\n    }\n}\n")
    # A type stub repeating the class: the implementation is the definition.
    (repo / "scheduler.pyi").write_text("class Scheduler:\n    jobs: list\n    def job_0(self, scheduler: Scheduler | None = ...) -> object: ...\n")
    # Many functions sharing words, so that a retriever's candidates outnumber the pool of a top 10.
    (repo / "ledger.py").write_text("".join(
        f"def ledger_entry_{n}(book):\n    \"\"\"Post entry {n} to the ledger book.\"\"\"\n"
        f"    return book.post({'entry, ' * (n % 7)}ledger={n})\n\n\n" for n in range(240)))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "loader")
    codesearch("index", str(repo), "--model", "minilm", check=True)
    return repo


def results(repo, *args):
    result = codesearch("query", *args, "--json", cwd=repo)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)["results"]


def test_an_identifier_query_finds_the_definition_first(repo):
    for mode in ("hybrid", "lexical"):
        first = results(repo, "parseConfig", "--mode", mode)[0]
        assert (first["path"], first["symbol"]) == ("web/config.js", "parseConfig"), mode


def test_a_paraphrase_finds_a_function_whose_name_it_does_not_share(repo):
    first = results(repo, "hash the payload so unchanged files are not sent twice")[0]
    assert first["symbol"] == "compute_checksum"


def test_a_member_named_after_its_class_with_a_space_is_the_definition(repo):
    for mode in ("hybrid", "lexical"):
        first = results(repo, "UploadQueue Add", "--mode", mode)[0]
        assert (first["path"], first["symbol"]) == ("queue.go", "UploadQueue.Add"), mode


def test_qualified_names_in_prose_need_a_code_looking_word():
    from codesearch.index.database import StoredChunk
    from codesearch.query.fuse import names_in

    def defines(query, symbol):
        return names_in(query).bonus(StoredChunk(1, "a.rs", 1, 2, symbol, "method", "rust", "", "")) > 0

    assert defines("KeyValueStore subscript get set", "KeyValueStore.subscript")
    assert defines("parser valueFloat underscores", "parser.valueFloat")
    assert defines("Foo::bar_baz", "Foo::bar_baz") and defines("parseConfig", "config.parseConfig")
    assert not defines("resolve the url path", "Url::path")  # plain words are not a qualified name
    assert not defines("UploadQueue, add", "UploadQueue.add")  # punctuation parts them


def test_overloads_are_separate_answers(repo):
    found = [r for r in results(repo, "color from hex digits", "--mode", "lexical", "-k", "5")
             if (r["path"], r["symbol"]) == ("Palette.swift", "Palette.color")]
    spans = sorted((r["start_line"], r["end_line"]) for r in found)
    assert spans == [(2, 4), (6, 10)], found


def test_module_leftovers_answer_part_by_part(repo):
    first = results(repo, "UPLOAD_BACKOFF_CEILING_SECONDS", "--mode", "lexical", "-k", "1")[0]
    assert first["path"] == "limits.py" and first["kind"] == "module"
    assert first["start_line"] <= 205 <= first["end_line"] and first["end_line"] - first["start_line"] < 100, first


def test_tests_rank_below_the_code_they_test(repo):
    symbols = [r["symbol"] for r in results(repo, "compute_checksum hex digest", "--mode", "lexical")]
    assert symbols.index("compute_checksum") < symbols.index("test_compute_checksum_is_hex")


def test_no_two_results_overlap_in_one_file(repo):
    found = results(repo, "upload queue retry", "-k", "20")
    for i, a in enumerate(found):
        for b in found[i + 1:]:
            assert a["path"] != b["path"] or a["end_line"] < b["start_line"] or b["end_line"] < a["start_line"]


def test_lang_filter_applies_before_the_cut_to_k(repo):
    found = results(repo, "parse the config file", "--lang", "go", "-k", "2")
    assert found and all(r["language"] == "go" for r in found) and len(found) == 2


def test_path_globs_include_and_exclude_before_the_cut(repo):
    found = results(repo, "compute checksum", "--path", "!uploads.py", "-k", "3")
    assert found and all(r["path"] != "uploads.py" for r in found)
    found = results(repo, "retry", "--path", "server/*", "-k", "1", "--mode", "lexical")
    assert [r["path"] for r in found] in ([], ["server/server.go"])
    found = results(repo, "wait for requests", "--path", "server/*", "-k", "1")
    assert [r["path"] for r in found] == ["server/server.go"]


def test_a_glob_that_matches_nothing_finds_nothing(repo):
    result = codesearch("query", "anything", "--path", "nowhere/*", "--json", cwd=repo)
    assert result.returncode == 1 and json.loads(result.stdout)["results"] == []


def test_vimgrep_files_only_and_context_formats(repo):
    lines = codesearch("query", "sha256 digest of a payload", "--mode", "lexical", "--format", "vimgrep", "-k", "1", cwd=repo).stdout
    assert lines.strip() == "uploads.py:27:1: compute_checksum"
    files = codesearch("query", "sha256 digest of a payload", "--mode", "lexical", "--files-only", "-k", "3", cwd=repo).stdout.split()
    assert files[0] == "uploads.py" and len(files) == len(set(files))
    shown = codesearch("query", "sha256 digest of a payload", "--mode", "lexical", "-k", "1", "-C", "2", cwd=repo).stdout
    assert "25" in shown and "31" in shown  # two lines around 27-29


def test_semantic_and_lexical_modes_can_be_chosen(repo):
    assert results(repo, "wait for open requests to finish", "--mode", "semantic")[0]["symbol"] == "Server.Shutdown"
    assert results(repo, "zzzz qqqq", "--mode", "lexical") == []


def test_a_bare_one_word_name_finds_its_declaration_before_the_methods_that_repeat_it(repo):
    for mode in ("hybrid", "lexical"):
        first = results(repo, "Scheduler", "--mode", mode)[0]
        assert (first["path"], first["symbol"], first["start_line"]) == ("scheduler.py", "Scheduler", 1), (mode, first)


def test_a_bare_type_name_finds_the_type_before_its_constructor(repo):
    for mode in ("hybrid", "lexical"):
        found = results(repo, "Widget", "--mode", mode)
        assert (found[0]["path"], found[0]["start_line"], found[0]["kind"]) == ("Widget.java", 1, "class"), (mode, found[:2])


def test_a_bare_type_name_finds_its_declarations_before_its_methods(repo):
    for mode in ("hybrid", "lexical"):
        found = results(repo, "UploadQueue", "--mode", mode)
        # Declared twice: a Go struct and a Python class; both come before any of their methods.
        assert {(r["path"], r["symbol"], r["start_line"]) for r in found[:2]} == {
            ("queue.go", "UploadQueue", 3), ("uploads.py", "UploadQueue", 32)}, (mode, found[:3])


def test_a_bare_name_is_a_name_whatever_its_shape_and_a_qualified_one_needs_its_container():
    from codesearch.index.database import StoredChunk
    from codesearch.query.fuse import BARE_NAME_BONUS, EXACT_CASE, NAME_MATCH_BONUS, TYPE_FIRST, names_in

    def bonus(query, symbol, text, kind="class"):
        return names_in(query).bonus(StoredChunk(1, "a.py", 1, 9, symbol, kind, "python", "", text))

    declared_type, declared_function = BARE_NAME_BONUS + TYPE_FIRST + EXACT_CASE, BARE_NAME_BONUS + EXACT_CASE

    assert bonus("Environment", "Environment", "@dataclass\nclass Environment:\n    x = 1") == declared_type
    assert bonus("load", "load", "# Read it.\ndef load(path):", "function") == declared_function
    # Annotations may open the declaration's own line; a decorator's arguments are not a declaration.
    assert bonus("Monad", "Monad", "/** A monad. */\n@typeclass trait Monad[F[_]] extends FlatMap[F] {") == declared_type
    assert bonus("User", "User", "@Serializable data class User(val name: String)") == declared_type
    assert bonus("Packet", "Packet", "#[derive(Debug)] pub struct Packet {") == declared_type
    assert bonus("load", "load", '@mark.parametrize("path", [("a", 1)])\ndef load(path):', "function") == declared_function
    # A later part of a long class that was cut into several is not where the class is declared.
    assert bonus("Environment", "Environment", "    overlayed = False\n    linked_to: 'Environment'") == NAME_MATCH_BONUS
    assert bonus("Rack::Builder", "Rack::Builder", "class Builder") == declared_type
    assert bonus("Rack::Builder", "Other::Builder", "class Builder") == NAME_MATCH_BONUS
    # Spelled as asked comes first among definitions of one kind (Go's Client and client, trait Monad and
    # object monad); the kind still comes before the spelling.
    assert bonus("monad", "Monad", "trait Monad[F[_]] {") == BARE_NAME_BONUS + TYPE_FIRST
    assert bonus("session", "session", "def session():", "function") == declared_function < bonus("session", "Session", "class Session:")
    assert bonus("how do we retry", "retry", "def retry():") == 0  # a plain word in a sentence names nothing
    # In a sentence an acronym-led type (UIColor, HTTPAdapter) is as often the type a function returns as
    # the definition asked for; alone it is the definition asked for.
    assert not names_in("turn a hex string into a UIColor").names and names_in("HTTPAdapter").bare
    # A block that adds to a type (Rust's impl, Swift's extension) names it on its first line, but the type is
    # defined where its struct, class or enum is: that comes first.
    assert bonus("Keys", "Keys", "pub struct Keys<'a, K, V> {", "struct") == declared_type
    assert bonus("Keys", "Keys", "impl<K, V> Clone for Keys<'_, K, V> {", "impl") == declared_function
    assert bonus("Keys", "Keys", "unsafe impl Send for Keys {}", "impl") == declared_function
    assert bonus("Keys", "Keys", "public extension Keys: Sequence {", "extension") == declared_function
    assert bonus("Keys", "Keys", "final class Keys: Sequence {", "type") == declared_type
    # An annotation whose arguments go on over more lines is still an annotation (C#, Java, Python, Rust alike).
    assert bonus("TypeOffset", "TypeOffset", '[SuppressMessage("Style", "IDE1006",\n    Justification = "x",\n'
                 '    Scope = "type")]\nstatic partial class TypeOffset\n{') == declared_type
    assert bonus("index", "index", '@app.route(\n    "/",\n    methods=["GET"],\n)\ndef index():', "function") == \
        declared_function
    assert bonus("Style", "Style", '[SuppressMessage("x",\n    Scope = Style)]\nclass TypeOffset') == NAME_MATCH_BONUS
    # One-liners cut as one chunk each declare their member on a line of their own.
    grouped = "using Option_p = std::unique_ptr<Option>;\n// A detail.\ntypedef unsigned long hash_t;"
    assert bonus("hash_t", "cli::Option_p, hash_t", grouped, "type") == declared_type
    assert bonus("detail", "cli::Option_p, hash_t", grouped, "type") == 0


def test_asking_for_more_results_keeps_the_first_ones(repo):
    for mode in ("hybrid", "lexical"):
        for query in ("post an entry to the ledger book", "ledger_entry_3 book"):
            ten = [(r["path"], r["start_line"]) for r in results(repo, query, "--mode", mode, "-k", "10")]
            fifty = [(r["path"], r["start_line"]) for r in results(repo, query, "--mode", mode, "-k", "50")]
            assert fifty[:len(ten)] == ten, (mode, query)


def test_per_file_caps_the_answers_one_file_gives(repo):
    capped = results(repo, "UploadQueue", "--per-file", "1", "-k", "5")
    assert len({r["path"] for r in capped}) == len(capped)
    uncapped = results(repo, "UploadQueue", "--per-file", "0", "-k", "5")
    assert len({r["path"] for r in uncapped}) < len(uncapped)
    assert codesearch("query", "x", "--per-file", "-1", cwd=repo).stderr.strip().endswith(
        "--per-file must be a number of results, or 0 for no limit")


def test_files_only_lists_k_distinct_files(repo):
    listed = codesearch("query", "UploadQueue", "--files-only", "-k", "3", cwd=repo).stdout.split()
    assert len(listed) == len(set(listed)) == 3, listed


def fused(query, lexical, per_file=0, dense=None, unembedded=(), **constants):
    """fuse() over one lexical ranking of made-up chunks, (path, symbol, raw BM25 score) best first, and the
    model's scores of the same chunks in the same order if `dense` is given (None: no vector yet), with fuse.py's
    constants set as given for the call: the paths answered, best first."""
    from codesearch.index.database import StoredChunk
    from codesearch.query import fuse
    from codesearch.query.api import Candidates, UnitRuns

    chunks = {number: StoredChunk(number, path, 4 * number, 4 * number + 2, symbol, "function", "python", "",
                                  f"def {symbol}():")
              for number, (path, symbol, _) in enumerate(lexical, 1)}
    vectors = None if dense is None else sorted(((number, score) for number, score in enumerate(dense, 1)
                                                  if score is not None), key=lambda item: -item[1])
    found = Candidates(100, vectors, [(number, score) for number, (_, _, score) in enumerate(lexical, 1)], None,
                       chunks, UnitRuns({}), None,
                       frozenset(number for number, (path, _, _) in enumerate(lexical, 1) if path in unembedded))
    saved = {name: getattr(fuse, name) for name in constants}
    try:
        for name, value in constants.items():
            setattr(fuse, name, value)
        return [hit.chunk.path for hit in fuse.fuse([found], query, 10, per_file=per_file)]
    finally:
        for name, value in saved.items():
            setattr(fuse, name, value)


def test_a_sentences_words_in_a_files_name_lift_that_file():
    ranking = [("net/session.py", "take_connection", 10.0), ("pool/idle.py", "take", 9.0),
               *((f"misc/other_{n}.py", f"close_{n}", 1.0) for n in range(8))]
    query = "take an idle connection from the pool"
    assert fused(query, ranking, PATH_WORDS_STRONG=0.0, FILE_COHERENCE=0.0)[:2] == ["net/session.py", "pool/idle.py"]
    assert fused(query, ranking, FILE_COHERENCE=0.0)[:2] == ["pool/idle.py", "net/session.py"]
    # A bare name asks for its definition, wherever it lives: no file's name counts.
    assert fused("take_connection", ranking, FILE_COHERENCE=0.0)[0] == "net/session.py"


def test_without_vectors_a_files_name_weighs_more():
    # BM25 counts the path's words once among a whole body's; the model reads the path in each chunk's header.
    # With no vector to read it (lexical mode), the file's name says more: half the question's terms in
    # pool/idle.py outweigh a body that matches better.
    ranking = [("net/session.py", "take_connection", 10.0), ("pool/idle.py", "take", 6.0),
               *((f"misc/other_{n}.py", f"close_{n}", 1.0) for n in range(8))]
    query = "take an idle connection from the pool"
    assert fused(query, ranking, FILE_COHERENCE=0.0)[:2] == ["pool/idle.py", "net/session.py"]
    assert fused(query, ranking, FILE_COHERENCE=0.0, PATH_WORDS_STRONG=0.3)[:2] == [
        "net/session.py", "pool/idle.py"]


def test_a_chunk_not_embedded_yet_is_ranked_by_its_words_and_its_files_name_as_in_lexical_mode():
    ranking = [("net/session.py", "take_connection", 10.0), ("pool/idle.py", "take", 6.0),
               *((f"misc/other_{n}.py", f"close_{n}", 1.0) for n in range(8))]
    dense = [0.9, None, *(0.1 for _ in range(8))]
    query = "take an idle connection from the pool"
    assert fused(query, ranking, dense=dense, unembedded={"pool/idle.py"}, FILE_COHERENCE=0.0)[:2] == [
        "pool/idle.py", "net/session.py"]
    assert fused(query, ranking, dense=dense, unembedded={"pool/idle.py"}, FILE_COHERENCE=0.0,
                 PATH_WORDS_STRONG=0.3)[:2] == ["net/session.py", "pool/idle.py"]

def test_when_each_file_gives_one_answer_its_name_weighs_as_much():
    # With vectors, a function's own evidence leads; when the answer stands for its file, the file's name
    # is evidence about the answer itself.
    ranking = [("net/session.py", "take_connection", 10.0), ("pool/idle.py", "take", 6.0),
               *((f"misc/other_{n}.py", f"close_{n}", 1.0) for n in range(8))]
    dense = [0.9, 0.6, *(0.1 for _ in range(8))]
    query = "take an idle connection from the pool"
    assert fused(query, ranking, dense=dense, FILE_COHERENCE=0.0)[:2] == ["net/session.py", "pool/idle.py"]
    assert fused(query, ranking, per_file=1, dense=dense, FILE_COHERENCE_ONE_PER_FILE=0.0)[:2] == [
        "pool/idle.py", "net/session.py"]

def test_a_file_with_many_good_answers_lifts_its_best_one():
    ranking = [("misc/timers.py", "fire_due_jobs", 10.0),
               *(("scheduling/cron.py", f"cron_step_{n}", 9.5 - n / 10) for n in range(6)),
               *((f"misc/other_{n}.py", f"close_{n}", 1.0) for n in range(8))]
    query = "run the due jobs of a cron table"
    assert fused(query, ranking, PATH_WORDS_STRONG=0.0, FILE_COHERENCE=0.0)[:2] == ["misc/timers.py", "scheduling/cron.py"]
    lifted = fused(query, ranking, PATH_WORDS_STRONG=0.0)
    # Only the file's best answer rises; the rest of its answers stay below the single good one.
    assert lifted[:3] == ["scheduling/cron.py", "misc/timers.py", "scheduling/cron.py"]


def test_path_name_terms_are_the_file_and_folder_names_stemmed():
    from codesearch.query.fuse import path_name_terms

    assert path_name_terms("src/connection_pools/HttpPool.test.ts") == {"http", "httppool", "pool", "connect",
                                                                        "connection_pool"}
    assert path_name_terms("pool.py") == {"pool"}


def test_when_each_file_gives_one_answer_a_files_whole_evidence_weighs_more():
    ranking = [("misc/timers.py", "fire_due_jobs", 10.0),
               *(("scheduling/cron.py", f"cron_step_{n}", 8.5 - n / 10) for n in range(6)),
               *((f"misc/other_{n}.py", f"close_{n}", 1.0) for n in range(8))]
    query = "run the due jobs of a cron table"
    assert fused(query, ranking, PATH_WORDS_STRONG=0.0)[:2] == ["misc/timers.py", "scheduling/cron.py"]
    assert fused(query, ranking, per_file=1, PATH_WORDS_STRONG=0.0)[:2] == ["scheduling/cron.py", "misc/timers.py"]
