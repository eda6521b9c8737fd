"""Where a model's weights come from and which exact weights they are.

pin_model names the weights (a local folder's digest, or the commit of the hub snapshot) and the dtype
documents are embedded in (hardware.planned_dtype: bf16 on a GPU, fp16 where bf16 is unsupported; on a
CPU bf16 where it has AMX matrix units for it, fp32 elsewhere): both are in every embedding key, so
vectors of two dtypes are never mixed in one index. An index keeps the dtype it recorded when this
machine computes that dtype as well (fp32 anywhere), instead of being rebuilt for a faster one.
local_source finds the weights on disk (a local folder, the hub cache, or downloaded into it) and
fails within seconds, with a way out, when they cannot be had; the hub client is imported only then.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

from codesearch import hardware, settings
from codesearch.embedding.spec import ModelSpec
from codesearch.errors import CodesearchError, first_line


def pin_model(spec: ModelSpec, recorded_dtype: str | None = None) -> ModelSpec:
    """The spec with what its document vectors depend on besides its settings: which weights, which dtype.

    Run before indexing (both are in the embedding key). A local folder is identified by folder_digest; a
    hub model by the commit of its snapshot in the local cache, fetched first when it is not there yet,
    as loading it would be (and failing the same way when it cannot be had). The dtype is the one
    load_embedder will use: `recorded_dtype` (the index's own) when it is fp32 or this machine's planned
    dtype, else hardware.planned_dtype's; ONNX Runtime always computes in fp32.
    """
    if Path(spec.source).is_dir():
        weights = "folder:" + folder_digest(Path(spec.source))
    else:
        weights = "hub:" + Path(local_source(spec)).name  # the hub cache's snapshots/<commit>
    if spec.dtype or spec.runtime != "torch":
        dtype = spec.dtype or "float32"
    else:
        planned = hardware.planned_dtype()
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


def local_source(spec: ModelSpec) -> str:
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
        raise CodesearchError(f"cannot download model {spec.source!r}: {first_line(error)}") from None


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
