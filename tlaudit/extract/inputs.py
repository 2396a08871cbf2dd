"""Where batches come from: tensors, data sets and loaders, cut into shards, moved to the device.

Every batch travels with the indices of its samples, so features can be written and merged by index
whatever the order, the shard or the resumption point.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler

__all__ = ["Batch", "batches", "normalize_uint8", "prefetch", "shard_range"]

Batch = tuple[torch.Tensor, torch.Tensor]
"""``(images, indices)``: a batch of images and the int64 indices of its samples."""


def shard_range(n: int, rank: int, world_size: int) -> range:
    """The contiguous block of sample positions that ``rank`` of ``world_size`` takes: no padding.

    ``DistributedSampler`` repeats samples to give every rank the same count; extraction must see
    each sample exactly once, so the blocks differ in length by at most one.

    Example:
        >>> [list(shard_range(5, r, 2)) for r in range(2)]
        [[0, 1], [2, 3, 4]]
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size): rank={rank}, world_size={world_size} (distributed)")
    return range(n * rank // world_size, n * (rank + 1) // world_size)


def _images(item: Any, where: str) -> torch.Tensor:
    if isinstance(item, torch.Tensor):
        return item
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], torch.Tensor):
        return item[0]
    if isinstance(item, dict):
        for key in ("image", "images", "pixel_values", "input"):
            if isinstance(item.get(key), torch.Tensor):
                return item[key]
    raise TypeError(
        f"a batch must be a tensor, a (images, ...) tuple or a dict with an 'image' tensor, got {type(item).__name__} ({where})"
    )


def _rebuilt_loader(loader: DataLoader, positions: Sequence[int], pin_memory: bool) -> DataLoader:
    """A loader over ``positions`` of ``loader.dataset`` with the loader's batch size, workers and collate."""
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=list(positions),
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=pin_memory or loader.pin_memory,
        drop_last=loader.drop_last,
        persistent_workers=False,
        prefetch_factor=loader.prefetch_factor if loader.num_workers else None,
    )


def batches(
    data: Any,
    positions: range | None = None,
    *,
    batch_size: int,
    pin_memory: bool = False,
    num_workers: int = 0,
) -> tuple[int, Iterator[Batch]]:
    """``(total, iterator of (images, indices))`` over ``data`` restricted to ``positions``.

    ``data``: a batched tensor ``(N, C, H, W)``, a map-style ``Dataset`` (items as a tensor or an
    ``(image, ...)`` tuple), or a ``DataLoader`` without shuffling (rebuilt over ``positions`` with
    its own batch size, workers and ``collate_fn``). ``positions`` defaults to every sample; the
    indices are positions in ``data``.

    Example:
        >>> total, it = batches(torch.zeros(5, 3, 2, 2), range(1, 5), batch_size=3)
        >>> total, [idx.tolist() for _, idx in it]
        (5, [[1, 2, 3], [4]])
    """
    if isinstance(data, torch.Tensor):
        if data.ndim != 4:
            raise ValueError(f"an image tensor must be (N, C, H, W): shape {tuple(data.shape)} (data)")
        n = data.shape[0]
        span = positions if positions is not None else range(n)

        def from_tensor() -> Iterator[Batch]:
            for start in range(0, len(span), batch_size):
                part = span[start : start + batch_size]
                images = data[part.start : part.stop]
                yield (images.pin_memory() if pin_memory else images), torch.arange(part.start, part.stop)

        return n, from_tensor()
    if isinstance(data, DataLoader):
        if not isinstance(data.sampler, SequentialSampler) or data.batch_sampler is None or data.batch_size is None:
            raise ValueError(
                f"cannot tell sample indices from this DataLoader: sampler {type(data.sampler).__name__} (data); "
                "pass a DataLoader with shuffle=False and a batch_size, or the Dataset itself"
            )
        n = len(data.dataset)  # type: ignore[arg-type]
        span = positions if positions is not None else range(n)
        loader = _rebuilt_loader(data, span, pin_memory)
        return n, _with_indices(loader, span, "data")
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        n = len(data)
        span = positions if positions is not None else range(n)
        loader = DataLoader(data, batch_size=batch_size, sampler=list(span), num_workers=num_workers, pin_memory=pin_memory)
        return n, _with_indices(loader, span, "data")
    raise TypeError(
        f"cannot extract from {type(data).__name__} (data); expected a (N, C, H, W) tensor, a map-style Dataset "
        "or a DataLoader without shuffling"
    )


def _with_indices(loader: Iterable[Any], span: Sequence[int], where: str) -> Iterator[Batch]:
    done = 0
    for item in loader:
        images = _images(item, where)
        count = images.shape[0]
        yield images, torch.as_tensor(list(span[done : done + count]), dtype=torch.int64)
        done += count


def normalize_uint8(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, channels_last: bool = False) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` pixels to normalized float32, on the device the images are on.

    ``mean`` and ``std`` are per channel on the 0..1 scale (the weights' values); the result equals
    ``(images / 255 - mean) / std``, computed as one multiply-add.

    Example:
        >>> x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
        >>> normalize_uint8(x, torch.tensor([0.5]), torch.tensor([0.5])).flatten().tolist()
        [-1.0, 1.0000001192092896]
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype} (images)")
    if images.ndim != 4 or images.shape[1] != mean.numel():
        raise ValueError(f"uint8 images must be (N, C, H, W) with C = {mean.numel()} channels: shape {tuple(images.shape)} (images)")
    scale = (1.0 / (255.0 * std)).to(images.device, torch.float32).view(1, -1, 1, 1)
    shift = (-mean / std).to(images.device, torch.float32).view(1, -1, 1, 1)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return torch.addcmul(shift, images.to(torch.float32), scale)


def prefetch(source: Iterator[Batch], device: torch.device) -> Iterator[Batch]:
    """Batches moved to ``device`` one ahead of use.

    On CUDA the host-to-device copy of the next batch runs non-blocking on a side stream while the
    current batch computes (the pattern of timm's prefetching loader); the compute stream waits for
    the copy's event and the tensor is recorded on it, so the allocator never reuses its memory
    early. Pinned host memory makes the copy truly asynchronous. Elsewhere batches are moved as they come.
    """
    if device.type != "cuda":
        for images, indices in source:
            yield images.to(device), indices
        return
    stream = torch.cuda.Stream(device)
    pending: tuple[torch.Tensor, torch.Tensor, torch.cuda.Event] | None = None
    for images, indices in source:
        with torch.cuda.stream(stream):
            moved = images.to(device, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(stream)
        if pending is not None:
            yield _ready(*pending)
        pending = (moved, indices, ready)
    if pending is not None:
        yield _ready(*pending)


def _ready(images: torch.Tensor, indices: torch.Tensor, event: torch.cuda.Event) -> Batch:
    current = torch.cuda.current_stream(images.device)
    current.wait_event(event)
    images.record_stream(current)
    return images, indices
