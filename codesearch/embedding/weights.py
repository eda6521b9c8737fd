"""Where a model's weights come from and which exact weights they are, and loading them on this
machine's device.

pin_model names the weights (a local folder's digest, or the commit of the hub snapshot) and the dtype
documents are embedded in (bf16 on a GPU, fp16 where bf16 is unsupported; on a CPU bf16 where it has AMX
matrix units for it, fp32 elsewhere): both are in every embedding key, so vectors of two dtypes are never
mixed in one index. An index keeps the dtype it recorded when this machine computes that dtype as well
(fp32 anywhere), instead of being rebuilt for a faster one. load_embedder
fails within seconds, with a way out, when the weights cannot be had. torch, transformers and the hub
client are imported only here, and only when needed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from functools import cache
from pathlib import Path

from codesearch import settings
from codesearch.embedding.torch_model import TOKEN_BUDGET, Embedder
from codesearch.errors import CodesearchError
from codesearch.embedding.spec import ModelSpec


def pin_model(spec: ModelSpec, recorded_dtype: str | None = None) -> ModelSpec:
    """The spec with what its document vectors depend on besides its settings: which weights, which dtype.

    Run before indexing (both are in the embedding key). A local folder is identified by folder_digest; a
    hub model by the commit of its snapshot in the local cache, fetched first when it is not there yet,
    as loading it would be (and failing the same way when it cannot be had). The dtype is the one
    load_embedder will use: `recorded_dtype` (the index's own) when it is fp32 or this machine's planned
    dtype, else planned_dtype's; ONNX Runtime always computes in fp32.
    """
    if Path(spec.source).is_dir():
        weights = "folder:" + folder_digest(Path(spec.source))
    else:
        weights = "hub:" + Path(_local_source(spec)).name  # the hub cache's snapshots/<commit>
    if spec.dtype or spec.runtime != "torch":
        dtype = spec.dtype or "float32"
    else:
        planned = planned_dtype()
        dtype = recorded_dtype if recorded_dtype in ("float32", planned) else planned
    return replace(spec, weights=weights, dtype=dtype)


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

    if settings.gpus_hidden():
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
    """The dtype documents are embedded in on `device` (default: this machine's) when indexing."""
    device = device or default_device()
    if not device.startswith("cuda"):
        # oneDNN runs bf16 matrix products on AMX tiles: minilm embeds 3.1x faster than in fp32 on two
        # cores, its vectors within cosine 0.9999 of fp32's (benchmarks/NOTES.md). Elsewhere bf16 is slower.
        return "bfloat16" if cpu_has_amx_bf16() else "float32"
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def usable_cores() -> int:
    """The cores this process may use (its CPU affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@cache
def cpu_has_amx_bf16() -> bool:
    """Whether this CPU has AMX tiles for bf16 (Intel Xeon since Sapphire Rapids), as Linux reports it; read
    from /proc, so that pinning a model imports no torch."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return {"amx_bf16", "amx_tile"} <= set(line.split(":", 1)[-1].split())
    except OSError:
        pass
    return False


def load_embedder(spec: ModelSpec, device: str | None = None) -> Embedder:
    """Load tokenizer and weights; fail within seconds, with a way out, when they cannot be had."""
    if spec.runtime != "torch":
        from codesearch.embedding.onnx_model import load_onnx_embedder

        return load_onnx_embedder(spec)
    source = _local_source(spec)
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    device = device or default_device()
    # On a GPU the tokenizer would otherwise run on one core while the device waits; on a CPU its
    # threads would take cores from the model.
    settings.tokenizer_threads(parallel=device.startswith("cuda"))
    # The dtype pin_model put in the embedding key, when indexing. A query is a few tokens: a CPU embeds it
    # in fp32, the most exact, whatever the documents' dtype; a GPU in its own.
    dtype = getattr(torch, spec.dtype or (planned_dtype(device) if device.startswith("cuda") else "float32"))
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
        settings.go_offline()  # a local folder needs no hub; never wait on one
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
        settings.go_offline()
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
    if settings.hub_offline():
        return False
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(settings.hub_endpoint())
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
