"""Feature extraction as a Ray Data stage: a stateful callable class for ``Dataset.map_batches``.

Ray builds one instance per actor, so the model is built and prepared once per worker and every
batch reuses it::

    import ray
    from tlaudit.extract.ray import RayExtractor

    ds = ray.data.from_items([{"image": img} for img in images])  # uint8 (C, H, W) arrays
    features = ds.map_batches(
        RayExtractor,
        fn_constructor_kwargs={"build": "torchvision.models:resnet50", "weights": "ResNet50_Weights.IMAGENET1K_V2"},
        batch_size=256, num_gpus=1, concurrency=4,
    )

Needs the ``ray`` extra (``pip install 'tlaudit[ray]'``); this module imports nothing from ray.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from tlaudit.extract.extractor import FeatureExtractor

__all__ = ["RayExtractor"]


def _build(build: str | Callable[[], nn.Module]) -> nn.Module:
    if callable(build):
        model = build()
    elif isinstance(build, str) and ":" in build:
        module_name, _, attr = build.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"cannot import the model builder: {build!r} (build)") from err
        model = factory()
    else:
        raise TypeError(f"build must be a callable or 'module:function', got {build!r} (build)")
    if not isinstance(model, nn.Module):
        raise TypeError(f"build returned {type(model).__name__}, not an nn.Module (build)")
    return model


class RayExtractor:
    """Features of the ``column`` images of each Ray Data batch, added as ``features``.

    Args:
        build: a callable returning the model, or ``"module:function"`` (built with no arguments, so a
            worker can import it). The head is removed with :func:`~tlaudit.remove_head` unless
            ``remove_head=False`` or ``node`` is given.
        column: the batch column holding ``(C, H, W)`` images, uint8 or normalized floats.
        keep: columns copied into the output besides ``features`` (default: all but ``column``).
        device: default ``cuda`` when Ray gave this actor a GPU, else ``cpu``.
        **options: ``node``, ``weights`` and configuration overrides for :class:`~tlaudit.FeatureExtractor`.

    Example:
        >>> fn = RayExtractor("torchvision.models:resnet18", weights={"mean": [0.5] * 3, "std": [0.5] * 3})
        >>> out = fn({"image": np.zeros((2, 3, 32, 32), np.uint8), "id": np.array([7, 8])})
        >>> out["features"].shape, out["id"].tolist()
        ((2, 512), [7, 8])
    """

    def __init__(
        self,
        build: str | Callable[[], nn.Module],
        *,
        column: str = "image",
        keep: list[str] | None = None,
        remove_head: bool = True,
        device: str | None = None,
        **options: Any,
    ) -> None:
        from tlaudit.surgery import remove_head as _remove_head

        model = _build(build)
        if remove_head and options.get("node") is None and not callable(getattr(model, "forward_head", None)):
            _remove_head(model)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.column = column
        self.keep = keep
        self.extractor = FeatureExtractor(model, device=device, **options)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.column not in batch:
            raise KeyError(f"no column named: {self.column!r} (column); the batch has {sorted(batch)}")
        images = torch.as_tensor(np.stack(list(batch[self.column])) if batch[self.column].dtype == object
                                 else batch[self.column])
        features = self.extractor(images).cpu().numpy()
        keep = self.keep if self.keep is not None else [k for k in batch if k != self.column]
        return {**{k: batch[k] for k in keep}, "features": features}
