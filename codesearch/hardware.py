"""What this machine computes on: a GPU or the CPU, how many cores this process may use, whether the CPU
has AMX tiles for bf16, and so the dtype documents are embedded in. Nothing heavy is imported: a plainly
GPU-less machine is told from the environment, the installed torch's version and /proc, and torch is
imported only to ask a machine that may have a GPU.
"""

from __future__ import annotations

import os
from functools import cache

from codesearch import settings


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
