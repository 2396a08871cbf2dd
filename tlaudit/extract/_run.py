"""Helpers of one extraction run: rank and world size, the aggregate rate, the data's length, the bar."""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

__all__ = ["aggregate_rate", "data_length", "progress_bar", "rank_and_world"]


def rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if (rank is None) != (world_size is None):
        raise ValueError(f"pass both rank and world_size or neither: rank={rank!r}, world_size={world_size!r} (extract)")
    if rank is not None and world_size is not None:
        return rank, world_size
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def aggregate_rate(count: int, elapsed: float, rate: float) -> float:
    """Images of all ranks over the slowest rank's time (``rate`` when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rate
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    total = torch.tensor([float(count)], device=device)
    slowest = torch.tensor([elapsed], device=device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    return float(total.item() / slowest.item()) if slowest.item() > 0 else 0.0


def data_length(data: Any) -> int:
    if isinstance(data, torch.Tensor):
        return int(data.shape[0]) if data.ndim else 0
    dataset = getattr(data, "dataset", data)
    try:
        return len(dataset)
    except TypeError:
        raise TypeError(
            f"cannot extract from {type(data).__name__}: it has no length (data); expected a (N, C, H, W) tensor, "
            "a map-style Dataset or a DataLoader without shuffling"
        ) from None


def progress_bar(total: int, progress: bool | None, rank: int) -> Any:
    if progress is None:
        isatty = getattr(sys.stderr, "isatty", None)
        progress = bool(isatty and isatty()) and rank == 0
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the bar is optional: extraction runs the same without it
        return None
    return tqdm(total=total, unit="img", desc=f"extract (rank {rank})", file=sys.stderr)
