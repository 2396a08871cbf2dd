"""What a benchmark ran on, and what the device could do at best.

:func:`environment` records versions, the device, backend flags, threads and CPU features.
:func:`flops_per_image` counts a forward pass with ``torch.utils.flop_counter``; :func:`peak_flops`
is a generous upper bound of the device's compute, so a throughput whose FLOP rate exceeds it is a
measurement error (a missing synchronization, a cached result), never a fast run.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["environment", "flops_per_image", "gpu_peak_flops", "peak_flops", "plausible"]

# Dense peak FLOP/s by (device-name fragment, dtype kind), from the vendors' data sheets.
_GPU_PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"float32": 67e12, "tf32": 494e12, "half": 989e12}),
    ("H100", {"float32": 67e12, "tf32": 494e12, "half": 989e12}),
    ("B200", {"float32": 80e12, "tf32": 1200e12, "half": 2250e12}),
    ("A100", {"float32": 19.5e12, "tf32": 156e12, "half": 312e12}),
    ("L40S", {"float32": 91.6e12, "tf32": 183e12, "half": 366e12}),
    ("A10", {"float32": 31.2e12, "tf32": 62.5e12, "half": 125e12}),
    ("RTX 5090", {"float32": 105e12, "tf32": 105e12, "half": 210e12}),
    ("RTX 4090", {"float32": 82.6e12, "tf32": 82.6e12, "half": 165e12}),
    ("V100", {"float32": 15.7e12, "tf32": 15.7e12, "half": 125e12}),
    ("T4", {"float32": 8.1e12, "tf32": 8.1e12, "half": 65e12}),
)
_UNKNOWN_GPU_PEAK = 2.5e15  # above every GPU's dense bf16 peak: flags only what no GPU can do


def _cpu_features() -> dict[str, Any]:
    get = getattr(torch.cpu, "get_capabilities", None)
    caps = get() if get is not None else {}
    keys = ("cpu_name", "avx2", "avx512_f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "num_physical_cores")
    out = {k: caps[k] for k in keys if k in caps}
    out["capability"] = torch.backends.cpu.get_cpu_capability()
    return out


def environment(device: torch.device | str) -> dict[str, Any]:
    """Versions, device, backend flags, threads and CPU features, as a JSON-ready dict.

    Example:
        >>> env = environment("cpu")
        >>> env["device_name"] == torch.cpu.get_capabilities()["cpu_name"], env["threads"] == torch.get_num_threads()
        (True, True)
    """
    import torchvision

    from tlaudit import __version__

    device = torch.device(device)
    matmul = torch.backends.cuda.matmul
    cudnn = torch.backends.cudnn
    env: dict[str, Any] = {
        "tlaudit": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
        "cudnn": cudnn.version() if cudnn.is_available() else None,
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else _cpu_features().get("cpu_name", platform.processor()),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": _cpu_features(),
        "flags": {
            "cudnn_benchmark": cudnn.benchmark,
            "matmul_fp32_precision": getattr(matmul, "fp32_precision", None),
            "cudnn_conv_fp32_precision": getattr(getattr(cudnn, "conv", None), "fp32_precision", None),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        },
        "world_size": _world_size(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = {
            "capability": f"{props.major}.{props.minor}",
            "memory_bytes": props.total_memory,
            "multiprocessors": props.multi_processor_count,
        }
    return env


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def flops_per_image(model: nn.Module, sample: torch.Tensor) -> float:
    """FLOPs of one image through ``model`` (``sample`` is a batch; the count is divided by its size).

    Counts matmuls and convolutions with ``torch.utils.flop_counter.FlopCounterMode`` under
    ``torch.no_grad()``; a multiply-add counts as two.

    Example:
        >>> flops_per_image(nn.Linear(10, 4), torch.randn(3, 10))
        80.0
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(sample)
    return counter.get_total_flops() / max(1, int(sample.shape[0]))


def _cpu_max_hz() -> float:
    path = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return max(float(path.read_text()) * 1e3, 3.0e9)
    except (OSError, ValueError):
        return 5.0e9  # above any server CPU's turbo clock


def peak_flops(device: torch.device | str, dtype: str = "float32", *, tf32: bool = False) -> float:
    """A generous upper bound of ``device``'s FLOP/s for ``dtype`` (``float32``, ``bfloat16``, ``float16``).

    GPUs: the data-sheet dense peak for known names, else 2.5 PFLOP/s. CPUs: cores x max clock x
    FLOPs per cycle of the widest units present (2 FMA units x 16 fp32 lanes x 2 with AVX-512,
    twice that for AVX-512 BF16, 2048 per cycle with AMX).

    Example:
        >>> peak_flops("cpu") > 1e9
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        return gpu_peak_flops(torch.cuda.get_device_name(device), dtype, tf32=tf32)
    caps: dict[str, Any] = getattr(torch.cpu, "get_capabilities", dict)()
    per_cycle = 64.0 if caps.get("avx512_f", True) else 32.0
    if dtype in ("bfloat16", "float16"):
        if caps.get("amx_bf16") or caps.get("amx_fp16"):
            per_cycle = 2048.0
        elif caps.get("avx512_bf16") or caps.get("avx512_fp16"):
            per_cycle = 128.0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores * _cpu_max_hz() * per_cycle


def gpu_peak_flops(name: str, dtype: str = "float32", *, tf32: bool = False) -> float:
    """The dense peak FLOP/s of the GPU called ``name``, or 2.5 PFLOP/s (above any GPU) when unknown.

    Example:
        >>> gpu_peak_flops("NVIDIA H200", "bfloat16") / 1e12
        989.0
    """
    kind = "half" if dtype in ("bfloat16", "float16") else "tf32" if tf32 else "float32"
    for fragment, peaks in _GPU_PEAKS:
        if fragment in name:
            return peaks[kind]
    return _UNKNOWN_GPU_PEAK


def plausible(images_per_second: float, flops: float, ceiling: float) -> bool:
    """Whether ``images_per_second`` images of ``flops`` each fit under the ``ceiling`` FLOP/s.

    Example:
        >>> plausible(100.0, 4e9, 1e12), plausible(1000.0, 4e9, 1e12)
        (True, False)
    """
    return images_per_second * flops <= ceiling
