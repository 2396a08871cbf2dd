"""Feature-extraction throughput, measured on pytest-benchmark's ``benchmark`` (the ``tlaudit_bench`` fixture)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tlaudit._names import unwrap
from tlaudit.evaluation import inference

__all__ = ["Throughput", "measure_throughput"]


@dataclass(frozen=True)
class Throughput:
    """What ``tlaudit_bench`` measured: images per second from the median round time."""

    images_per_second: float
    median_seconds: float
    batch_size: int
    device: str
    dtype: str
    rounds: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "images_per_second": self.images_per_second,
            "median_seconds": self.median_seconds,
            "batch_size": self.batch_size,
            "device": self.device,
            "dtype": self.dtype,
            "rounds": self.rounds,
        }


def measure_throughput(
    benchmark: Any,
    model: nn.Module,
    sample: torch.Tensor,
    *,
    rounds: int = 20,
    warmup_rounds: int = 2,
    iterations: int = 1,
) -> Throughput:
    """Feature-extraction throughput of ``model`` on ``sample`` with pytest-benchmark's ``benchmark``.

    Each call is ``model(sample)`` in eval mode under ``torch.inference_mode()`` (training flags are
    restored afterwards), synchronized on CUDA. Records ``images_per_second`` (batch size over the
    median time per call), ``batch_size``, ``device`` and ``dtype`` in ``benchmark.extra_info``, so
    ``--benchmark-json`` carries them. With ``--benchmark-disable`` the call runs once and is timed
    with ``time.perf_counter``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"tlaudit_bench: model must be a torch.nn.Module, got {type(model).__name__} (model)")
    inner = unwrap(model)
    if not isinstance(sample, torch.Tensor) or sample.ndim < 1:
        raise TypeError(f"tlaudit_bench: sample must be a batched torch.Tensor, got {type(sample).__name__} (sample)")
    for value, field in ((rounds, "rounds"), (iterations, "iterations")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"tlaudit_bench: {field} must be a positive int: {value!r} ({field})")
    if isinstance(warmup_rounds, bool) or not isinstance(warmup_rounds, int) or warmup_rounds < 0:
        raise ValueError(f"tlaudit_bench: warmup_rounds must be an int >= 0: {warmup_rounds!r} (warmup_rounds)")
    ref = next((p for p in inner.parameters() if p.is_floating_point()), None)
    dtype = ref.dtype if ref is not None else sample.dtype
    device = sample.device
    sync = device.type == "cuda"

    def forward() -> None:
        model(sample)
        if sync:
            torch.cuda.synchronize(device)

    with inference(model):
        if getattr(benchmark, "disabled", False):
            started = time.perf_counter()
            benchmark.pedantic(forward, rounds=1, iterations=1)
            median, done = time.perf_counter() - started, 1
        else:
            benchmark.pedantic(forward, rounds=rounds, warmup_rounds=warmup_rounds, iterations=iterations)
            median, done = float(benchmark.stats.stats.median), rounds
    batch = int(sample.shape[0])
    result = Throughput(
        images_per_second=batch / median if median > 0 else float("inf"),
        median_seconds=median,
        batch_size=batch,
        device=str(device),
        dtype=str(dtype).replace("torch.", ""),
        rounds=done,
    )
    benchmark.extra_info.update(
        {
            "images_per_second": result.images_per_second,
            "batch_size": result.batch_size,
            "device": result.device,
            "dtype": result.dtype,
            "mode": "eval+inference_mode",
            "model": type(inner).__name__,
        }
    )
    return result
