"""Shared fixtures. Nothing here touches the network."""

from __future__ import annotations

import pytest

# Enough text for a byte-level BPE to learn a few hundred merges of code and English.
_TOKENIZER_CORPUS = [
    "def parse_config(path):\n    with open(path) as handle:\n        return json.load(handle)\n",
    "class Cache:\n    def __init__(self, size):\n        self.size = size\n        self.items = {}\n",
    "function retry(fn, attempts) { for (let i = 0; i < attempts; i++) { try { return fn(); } catch (e) {} } }",
    "func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }",
    "Given a question in text, retrieve relevant code that can help answer the question.",
    "<instruct>Find the function.\n<query>how do I read a configuration file?",
    "The quick brown fox jumps over the lazy dog while the compiler checks every type.",
    "SELECT name, count(*) FROM users WHERE active = 1 GROUP BY name ORDER BY name;",
]
EOS = "<|endoftext|>"
PAD = "<|pad|>"


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    """A random-weight Qwen2 model and a byte-level BPE tokenizer, saved as a model folder.

    Built once per session in well under a second; resolve_model sees a decoder (model_type qwen2)
    and load_embedder loads it like the real bge-code-v1 folder. The tokenizer adds no EOS of its
    own, as Qwen2's does not, so the embedder has to append it.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2Model

    directory = tmp_path_factory.mktemp("tiny-qwen2")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(_TOKENIZER_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD,
                                        padding_side="left", model_max_length=32768)
    tokenizer.save_pretrained(directory)

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=bpe.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    Qwen2Model(config).save_pretrained(directory)
    return directory
