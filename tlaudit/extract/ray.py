"""Feature extraction as a Ray Data stage: a stateful callable class for ``Dataset.map_batches``.

Ray builds one instance per actor, so the model is built WITH its weights once per worker and every
batch reuses it. Every actor must build the same model: a builder called without weights would give
each actor its own random initialization, so that is refused unless ``random_weights=True`` (then
seeded, so that the actors still agree)::

    import ray
    from tlaudit.extract.ray import RayExtractor

    ds = ray.data.read_images("photos/", size=(224, 224), include_paths=True)  # HWC uint8
    features = ds.map_batches(
        RayExtractor,
        fn_constructor_kwargs={"build": "resnet50", "weights": "ResNet50_Weights.IMAGENET1K_V2"},
        batch_size=256, num_gpus=1, compute=ray.data.ActorPoolStrategy(size=4),
    )
    features.write_parquet("features/")

Needs the ``ray`` extra (``pip install 'tlaudit[ray]'``); this module imports nothing from ray.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from tlaudit.extract.backbones import build_backbone
from tlaudit.extract.extractor import FeatureExtractor
from tlaudit.extract.files import Preprocess

__all__ = ["RayExtractor", "as_chw_uint8"]


def _writable(array: np.ndarray) -> np.ndarray:
    """``array`` itself when writable; else a copy (torch warns on read-only arrays, which Ray hands out)."""
    return array if array.flags.writeable else array.copy()


def _one(image: Any) -> torch.Tensor:
    ragged = getattr(image, "dtype", None) == object  # noqa: E721 - a NumPy object array (ragged images)
    t = torch.from_numpy(_writable(np.ascontiguousarray(np.asarray(image, dtype=np.uint8) if ragged else image)))
    if t.ndim == 2:
        t = t.unsqueeze(-1).expand(*t.shape, 3)
    if t.ndim == 3 and t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3):
        t = t[..., :3].permute(2, 0, 1)  # HWC (ray.data.read_images) to CHW; an alpha channel is dropped
    if t.ndim == 3 and t.shape[0] == 1:
        t = t.expand(3, *t.shape[1:])
    return t


def as_chw_uint8(column: Any) -> list[torch.Tensor] | torch.Tensor:
    """A Ray batch column as CHW tensors: HWC (``read_images``) or CHW, one array or one per row, read-only or not.

    Example:
        >>> frozen = np.zeros((2, 8, 6, 3), np.uint8); frozen.flags.writeable = False
        >>> as_chw_uint8(frozen).shape
        torch.Size([2, 3, 8, 6])
    """
    if isinstance(column, np.ndarray) and column.dtype != object:
        if column.ndim == 4 and column.shape[-1] in (1, 3, 4) and column.shape[1] not in (1, 3):
            return torch.from_numpy(_writable(np.ascontiguousarray(column[..., :3]))).permute(0, 3, 1, 2)
        if column.ndim == 4:
            return torch.from_numpy(_writable(np.ascontiguousarray(column)))
        return [_one(image) for image in column]
    return [_one(image) for image in column]


class RayExtractor:
    """Features of the ``column`` images of each Ray Data batch, added as ``features``.

    Args:
        build: the model: a torchvision name (``"resnet50"``), ``"timm/NAME"``, ``"module:function"``
            (importable on the workers), a callable, or an ``nn.Module`` (shipped to each actor).
        weights: the pretrained weights the model is built WITH (a torchvision weights enum or its
            name, ``"pretrained"`` for timm; a builder receives ``weights=``). They also give the
            preprocessing (mean, std) unless ``normalization`` is given.
        checkpoint: a local state dict instead of ``weights``; readable on every worker.
        random_weights: build without weights on purpose (seeded: every actor builds the same model).
        normalization: ``{"mean": ..., "std": ...}`` for uint8 images, when the weights do not say.
        column: the batch column holding the images: uint8 HWC (``ray.data.read_images``) or CHW, or
            normalized float CHW.
        keep: columns copied into the output besides ``features`` (default: all but ``column``).
        resize, crop: resize the shorter side, then center-crop, per image (images of several sizes).
        device: default ``cuda`` when Ray gave this actor a GPU, else ``cpu``.
        **options: ``node``, ``engine`` and configuration overrides for :class:`~tlaudit.FeatureExtractor`.

    Example:
        >>> fn = RayExtractor("resnet18", random_weights=True, normalization={"mean": [0.5] * 3, "std": [0.5] * 3})
        >>> out = fn({"image": np.zeros((2, 32, 32, 3), np.uint8), "id": np.array([7, 8])})
        >>> out["features"].shape, out["id"].tolist()
        ((2, 512), [7, 8])
    """

    def __init__(
        self,
        build: str | Callable[..., nn.Module] | nn.Module,
        *,
        weights: Any = None,
        checkpoint: str | os.PathLike[str] | None = None,
        random_weights: bool = False,
        normalization: dict[str, Sequence[float]] | None = None,
        column: str = "image",
        keep: list[str] | None = None,
        resize: int | None = None,
        crop: int | None = None,
        device: str | None = None,
        **options: Any,
    ) -> None:
        backbone = build_backbone(build, weights=weights, checkpoint=checkpoint, random_weights=random_weights, node=options.get("node"))
        norm = normalization
        if norm is None and backbone.normalization is not None:
            norm = {"mean": list(backbone.normalization.mean), "std": list(backbone.normalization.std)}
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.column = column
        self.keep = keep
        self.preprocess = Preprocess(resize, crop) if resize or crop else None
        self.weights = backbone.weights
        self.extractor = FeatureExtractor(backbone.model, device=device, weights=norm, **options)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.column not in batch:
            raise KeyError(f"no column named: {self.column!r} (column); the batch has {sorted(batch)}")
        images = as_chw_uint8(batch[self.column])
        if self.preprocess is not None:
            images = [self.preprocess(image) for image in images]
        if isinstance(images, list):
            sizes = {tuple(image.shape) for image in images}
            if len(sizes) > 1:
                raise ValueError(
                    f"images of several sizes in one batch: {sorted(sizes)[:3]} ({self.column}); "
                    "pass crop= (and resize=), or read_images(size=...)"
                )
            images = torch.stack(images)
        features = self.extractor(images).cpu().numpy()
        keep = self.keep if self.keep is not None else [k for k in batch if k != self.column]
        return {**{k: batch[k] for k in keep}, "features": features}
