"""Every environment variable codesearch reads or sets, in one place. Nothing is imported, so any module,
the query client included, may use it at no cost.

Read:
  CODESEARCH_MODEL       the model `index` uses when none is named (the CLI's --model takes it too)
  CODESEARCH_NO_SERVER   set (1, true, yes): `query` never asks a running server, it answers in-process
  CODESEARCH_NO_AUTOSTART set (1, true, yes): a query answered in-process does not start a server
  CODESEARCH_RUNTIME     what runs the model when indexing: torch, onnx or onnx-int8 (spec.RUNTIMES);
                         unset, a new index gets spec.default_runtime and an index keeps its own
  XDG_CACHE_HOME         where ONNX exports of models are kept (codesearch/onnx/; default ~/.cache)
  CODESEARCH_DEBUG       set: an unexpected error shows its traceback instead of one line
  CUDA_VISIBLE_DEVICES   "" or -1 hides every GPU: torch need not even be imported to know
  HF_HUB_OFFLINE         set (1, true, yes): the Hugging Face hub is not asked
  HF_ENDPOINT            where the hub is (default https://huggingface.co)
  XDG_RUNTIME_DIR        where a server's socket goes when the repository's path is too long for one
Set, for the libraries codesearch loads:
  HF_HUB_OFFLINE         once a model is known to need no hub (a local folder), or the hub is unreachable
  TOKENIZERS_PARALLELISM unless the user set it: tokenizer threads on a GPU machine, none beside a CPU model
  ORT_DISABLE_TELEMETRY  1 unless the user set it: ONNX Runtime's Linux build otherwise keeps a device id
                         and an event database under ~/.cache/Microsoft for its telemetry
"""

from __future__ import annotations

import os

_YES = ("1", "true", "yes")


def default_model() -> str | None:
    return os.environ.get("CODESEARCH_MODEL") or None


def server_disabled() -> bool:
    return os.environ.get("CODESEARCH_NO_SERVER", "").lower() in _YES


def autostart_disabled() -> bool:
    return server_disabled() or os.environ.get("CODESEARCH_NO_AUTOSTART", "").lower() in _YES


def runtime() -> str | None:
    return os.environ.get("CODESEARCH_RUNTIME") or None


def cache_dir() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                        "codesearch")


def debug() -> bool:
    return bool(os.environ.get("CODESEARCH_DEBUG"))


def gpus_hidden() -> bool:
    return os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in _YES


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def runtime_dir() -> str | None:
    return os.environ.get("XDG_RUNTIME_DIR")


def go_offline() -> None:
    """Tell the hub client never to wait on the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"


def tokenizer_threads(parallel: bool) -> None:
    """Let the tokenizer use threads (a GPU waits for it) or not (a CPU model needs the cores), unless
    the user chose."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if parallel else "false")


def onnx_runtime_quiet() -> None:
    """Keep ONNX Runtime's telemetry off (it reads this when it starts), unless the user chose."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
