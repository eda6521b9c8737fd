"""An encoder model run by ONNX Runtime instead of torch: the same weights, exported once to ONNX and kept
in the user's cache, tokenized by the `tokenizers` library the fast tokenizer is made of.

Why: importing torch and transformers and loading MiniLM takes seconds; onnxruntime and tokenizers take a
tenth of that, which is most of what a query answered in-process costs. Vectors match torch's to a cosine
of 0.9999998 (benchmarks/onnx_runtime.py). The int8 variant (dynamic quantisation of the MatMul and
attention weights, per channel) is 1.5-1.7x as fast and further off (mean cosine 0.993); it is an
option (CODESEARCH_RUNTIME=onnx-int8), not the default. On a CPU with AMX, torch in bf16 indexes faster
still (spec.default_runtime), and the queries of such an index run here, in fp32 (spec.query_runtime).
OnnxEmbedder answers as the torch Embedder does and encodes many documents by the same policy
(batching.DocumentEncoder).

The export needs torch and transformers, once per set of weights: `<cache>/onnx/<digest>/`, where the
digest covers the model folder (weights.folder_digest) and spec.ONNX_EXPORT_RECIPE. The folders are this
user's only (trust.private_directory), and each file is put in place whole (trust.replace_atomically), so a
concurrent or killed export never leaves half a model to load.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from codesearch import settings
from codesearch.embedding.batching import DocumentEncoder, batches_under_budget
from codesearch.embedding.prompts import read_json
from codesearch.embedding.spec import ONNX_EXPORT_RECIPE, ModelSpec
from codesearch.embedding.weights import folder_digest
from codesearch.errors import CodesearchError
from codesearch.hardware import usable_cores
from codesearch.trust import private_directory, replace_atomically

if TYPE_CHECKING:
    import numpy as np

settings.onnx_runtime_quiet()  # before anything here imports onnxruntime

OPSET = 17
# Padded tokens per batch, a quarter of a torch model's CPU budget: small batches stay in the caches. MiniLM
# ran 1.34x faster than with 4,096 (benchmarks/onnx_runtime.py --budgets 4096) and its run over Django's
# longest chunks held 309 MiB less (benchmarks/index_memory.py).
ONNX_TOKEN_BUDGET = 1024


class _Tokenizer:
    """A `tokenizers.Tokenizer` called as the torch Embedder calls a transformers tokenizer (encoder path)."""

    def __init__(self, path: Path, pad_token: str | None):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_padding()
        self._max_length = None
        self.pad_token_id = (self._tokenizer.token_to_id(pad_token) if pad_token else None) or 0

    def __call__(self, texts: list[str], truncation: bool = True, max_length: int | None = None) -> dict:
        if max_length != self._max_length:
            self._tokenizer.enable_truncation(max_length) if truncation and max_length else self._tokenizer.no_truncation()
            self._max_length = max_length
        return {"input_ids": [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]}


@dataclass
class OnnxEmbedder(DocumentEncoder):
    """An encoder model on an ONNX Runtime session (made on first use); encode_queries / encode_documents
    return float32 unit vectors, as the torch Embedder's do. Its `threads` run batches side by side, one
    thread each, on one session: on 2 cores 1.2-1.3x faster than both threads inside each operation of one
    batch at a time, as a small model's operations are too short to split well."""

    spec: ModelSpec
    tokenizer: _Tokenizer
    dim: int
    model_path: str
    token_budget: int = ONNX_TOKEN_BUDGET  # padded tokens per batch
    documents_per_call: int = 256  # texts handed over per call when indexing, between two cache commits
    threads: int = 0  # 0: one per CPU this process may use
    _session: object = field(default=None, repr=False)

    def use_threads(self, threads: int) -> "OnnxEmbedder":
        self.threads = threads
        return self

    def release_memory(self) -> None:
        # The session holds the weights and an arena sized by the largest batch (some 300 MiB with MiniLM);
        # making it again costs about 0.1 s.
        self._session = None

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        queries = list(queries)
        return self.encode_token_ids(self.tokenize_queries(queries) if queries else [])

    def tokenize(self, texts: Sequence[str], role: str = "document") -> list[list[int]]:
        """Token ids of texts in their role, with that role's prompt (ModelSpec.prompt_parts), truncated
        to max_length: the ids the torch Embedder gives an encoder model."""
        formatted = []
        for text in texts:
            before, after = self.spec.prompt_parts(role, text)
            formatted.append(before + text + after)
        return self.tokenizer(formatted, truncation=True, max_length=self.spec.max_length)["input_ids"]

    def tokenize_queries(self, queries: Sequence[str]) -> list[list[int]]:
        return self.tokenize(queries, role="query")

    @property
    def session(self):
        if self._session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self._session = onnxruntime.InferenceSession(self.model_path, options, providers=["CPUExecutionProvider"])
        return self._session

    def encode_token_ids(self, token_ids: list[list[int]],
                         progress: Callable[[int], None] | None = None) -> np.ndarray:
        import numpy as np

        output = np.zeros((len(token_ids), self.dim), dtype=np.float32)
        order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]), reverse=True)
        batches = batches_under_budget(order, token_ids, self.token_budget)
        workers = min(len(batches), self.threads or usable_cores())
        self.session  # made once, before any thread asks for it

        def forward(batch: list[int]) -> list[int]:
            output[batch] = self._forward([token_ids[i] for i in batch])
            return batch

        if workers <= 1:
            done = map(forward, batches)
        else:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="onnx")
            done = pool.map(forward, batches)  # one session runs on several threads at once
        for batch in done:
            if progress is not None:
                progress(len(batch))
        if workers > 1:
            pool.shutdown()
        return output

    def _forward(self, batch_ids: list[list[int]]) -> np.ndarray:
        import numpy as np

        width = max(len(ids) for ids in batch_ids)
        input_ids = np.full((len(batch_ids), width), self.tokenizer.pad_token_id, dtype=np.int64)
        attention = np.zeros((len(batch_ids), width), dtype=np.int64)
        for row, ids in enumerate(batch_ids):
            input_ids[row, :len(ids)] = ids
            attention[row, :len(ids)] = 1
        hidden = self.session.run(None, {"input_ids": input_ids, "attention_mask": attention})[0]
        if self.spec.pooling == "cls":
            pooled = hidden[:, 0]
        else:  # mean, as torch_model.pool computes it
            mask = attention[..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32)


def load_onnx_embedder(spec: ModelSpec) -> OnnxEmbedder:
    """The spec's model on ONNX Runtime, exported (and quantised, for onnx-int8) first if not cached yet."""
    source = Path(spec.source)
    tokenizer_file = source / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise CodesearchError(f"model {spec.name!r} has no tokenizer.json, which the {spec.runtime} runtime needs; "
                              f"use CODESEARCH_RUNTIME=torch")
    try:
        import onnxruntime  # noqa: F401 - the error below, not an ImportError later
    except ImportError:
        raise CodesearchError(f"the {spec.runtime} runtime needs onnxruntime: pip install 'codesearch[minilm]', "
                              f"or use CODESEARCH_RUNTIME=torch") from None
    pad_token = read_json(source / "tokenizer_config.json").get("pad_token")
    tokenizer = _Tokenizer(tokenizer_file, pad_token if isinstance(pad_token, str) else None)
    dim = int(read_json(source / "config.json").get("hidden_size") or 0)
    if spec.pooling not in ("mean", "cls") or not dim:
        raise CodesearchError(f"model {spec.name!r} cannot run on {spec.runtime}; use CODESEARCH_RUNTIME=torch")
    path = exported_model(spec)
    return OnnxEmbedder(spec, tokenizer, dim, model_path=str(path))


def exported_model(spec: ModelSpec) -> Path:
    """The cached ONNX file of the spec's weights and runtime, made now when missing."""
    digest = hashlib.sha256(f"{folder_digest(Path(spec.source))}\0{ONNX_EXPORT_RECIPE}".encode()).hexdigest()[:20]
    folder = _cache_folder(digest)
    fp32 = folder / "model.onnx"
    if not fp32.is_file():
        replace_atomically(fp32, lambda temporary: _export(spec, temporary))
    if spec.runtime == "onnx":
        return fp32
    int8 = folder / "model-int8.onnx"
    if not int8.is_file():
        replace_atomically(int8, lambda temporary: _quantise(fp32, temporary))
    return int8


def _cache_folder(digest: str) -> Path:
    base = Path(settings.cache_dir())
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CodesearchError(f"cannot create {base.parent}: {error.strerror or error}") from None
    for folder in (base, base / "onnx", base / "onnx" / digest):
        private_directory(folder, create=True)
    return folder


def _export(spec: ModelSpec, destination: Path) -> None:
    """Export with eager attention, whose graph ONNX Runtime's transformer optimizer recognises and fuses
    (attention, embedding and skip layer norms, bias GELU): 1.14x the unfused export's speed, and int8
    quantisation of the fused attention gives another 1.7x (benchmarks/NOTES.md)."""
    import warnings

    import torch
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    settings.go_offline()  # a local folder: never wait on the hub

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    unfused = destination.with_name(destination.name + ".unfused")
    try:
        model = AutoModel.from_pretrained(spec.source, dtype=torch.float32, attn_implementation="eager").eval()
        example = torch.ones((2, 8), dtype=torch.long)
        axes = {0: "batch", 1: "tokens"}
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(LastHiddenState(model), (example, example), str(unfused), dynamo=False,
                              input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                              dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
                              opset_version=OPSET)
            fused = optimizer.optimize_model(str(unfused), model_type="bert",
                                             num_heads=int(model.config.num_attention_heads),
                                             hidden_size=int(model.config.hidden_size))
        fused.save_model_to_file(str(destination))
    except (OSError, ValueError, RuntimeError, ImportError, AttributeError) as error:
        raise CodesearchError(f"cannot export model {spec.name!r} to ONNX ({type(error).__name__}: "
                              f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}); "
                              f"use CODESEARCH_RUNTIME=torch") from None
    finally:
        unfused.unlink(missing_ok=True)
    os.chmod(destination, 0o600)


def _quantise(fp32: Path, destination: Path) -> None:
    import logging

    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise CodesearchError("the onnx-int8 runtime needs the onnx package: pip install 'codesearch[minilm]'") from None
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs advice about pre-processing on every run
    try:
        # The weights of MatMul and the fused Attention, per output channel; the defaults (the embedding
        # table too, per tensor) cost far more accuracy (mean cosine to fp32 0.94 against 0.993 on real chunks).
        quantize_dynamic(str(fp32), str(destination), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Attention"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    os.chmod(destination, 0o600)
