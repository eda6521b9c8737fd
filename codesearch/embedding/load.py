"""The one place a runtime is chosen and a model loaded: load_embedder hands back the spec's model on its
runtime (spec.runtime: torch, or ONNX Runtime through onnx_model), on this machine's device, sized for it
(token budget, documents per call). It fails within seconds, with a way out, when the weights cannot be
had. torch and transformers are imported only when a model loads.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from codesearch import hardware, settings
from codesearch.embedding.batching import TOKEN_BUDGET
from codesearch.embedding.spec import ModelSpec
from codesearch.embedding.torch_model import Embedder
from codesearch.embedding.weights import local_source
from codesearch.errors import CodesearchError, first_line

if TYPE_CHECKING:
    from codesearch.embedding.onnx_model import OnnxEmbedder


def load_embedder(spec: ModelSpec, device: str | None = None) -> Embedder | OnnxEmbedder:
    """Load tokenizer and weights; fail within seconds, with a way out, when they cannot be had."""
    if spec.runtime != "torch":
        from codesearch.embedding.onnx_model import load_onnx_embedder

        return load_onnx_embedder(spec)
    source = local_source(spec)
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    device = device or hardware.default_device()
    # On a GPU the tokenizer would otherwise run on one core while the device waits; on a CPU its
    # threads would take cores from the model.
    settings.tokenizer_threads(parallel=device.startswith("cuda"))
    # The dtype pin_model put in the embedding key, when indexing. A query is a few tokens: a CPU embeds it
    # in fp32, the most exact, whatever the documents' dtype; a GPU in its own.
    dtype = getattr(torch, spec.dtype or (hardware.planned_dtype(device) if device.startswith("cuda") else "float32"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=spec.revision,
                                                  trust_remote_code=spec.trust_remote_code)
        model = AutoModel.from_pretrained(source, revision=spec.revision, dtype=dtype,
                                          trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as error:
        raise CodesearchError(f"cannot load model {spec.name!r}: {first_line(error)}") from None
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


class LoadedModels:
    """Models loaded once and handed out again, one per set of weights (a different query instruction shares
    them), for a process that embeds more than once: the server, or a query that refreshes the index first.
    `load` is load_embedder unless given; `threads`, when set, caps each model's CPU threads."""

    def __init__(self, load=None, threads: int | None = None):
        self._load, self._threads, self._models = load, threads, {}

    def __call__(self, spec: ModelSpec):
        key = replace(spec, query_instruction=None, code_query_instruction=None)
        embedder = self._models.get(key)
        if embedder is None:
            embedder = self._models[key] = (self._load or load_embedder)(spec)
            if self._threads and hasattr(embedder, "use_threads"):  # a stand-in model may have none
                embedder.use_threads(self._threads)  # on the thread that runs the model
        return embedder if embedder.spec == spec else replace(embedder, spec=spec)
