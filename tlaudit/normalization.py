"""The input normalization pretrained weights expect, and the one an input pipeline applies."""

from __future__ import annotations

import enum
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from tlaudit._numbers import float_tuple as _floats
from tlaudit._processors import CONFIG_NAME, is_image_processor, normalizes, processor_statistics, saved_processor

__all__ = [
    "IMAGENET_NORMALIZATION",
    "Normalization",
    "deferred_normalization",
    "expected_normalization",
    "find_normalization",
    "find_normalizations",
    "processor_normalization",
    "torchvision_weights",
]


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``mean`` and ``std`` (on 0..1 pixels), plus crop size and interpolation when known.

    ``crop_pct`` and ``crop_mode`` are timm's (``resize_size`` is ``crop_size / crop_pct`` there);
    ``on_device`` is True for a normalization that a timm ``PrefetchLoader`` applies on the device
    rather than the transform.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_size: int | None = None
    resize_size: int | None = None
    interpolation: str | None = None
    source: str = ""
    crop_pct: float | None = None
    crop_mode: str | None = None
    on_device: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_size": self.crop_size,
            "resize_size": self.resize_size,
            "interpolation": self.interpolation,
            "source": self.source,
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
            "on_device": self.on_device,
        }

    def matches(self, other: Normalization, *, tol: float = 1e-3) -> bool:
        """Same mean and std within ``tol`` (one value broadcasts over channels)."""
        return _close(self.mean, other.mean, tol) and _close(self.std, other.std, tol)

    @property
    def is_identity(self) -> bool:
        """Mean 0 and std 1: the pixels pass unchanged (what a measured pipeline without normalization gives)."""
        return _close(self.mean, (0.0,), 1e-3) and _close(self.std, (1.0,), 1e-3)

    @property
    def measured(self) -> bool:
        """Whether this was measured on constant images rather than read from the pipeline's steps."""
        return self.source.startswith("measured")


def _close(a: Sequence[float], b: Sequence[float], tol: float) -> bool:
    if len(a) != len(b):
        if len(a) == 1:
            a = tuple(a) * len(b)
        elif len(b) == 1:
            b = tuple(b) * len(a)
        else:
            return False
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def _size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return int(value[-1]) if value else None
    return int(value)


def _interp(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def _from_preset(preset: Any, source: str) -> Normalization:
    return Normalization(
        mean=_floats(preset.mean, "mean"),
        std=_floats(preset.std, "std"),
        crop_size=_size(getattr(preset, "crop_size", None)),
        resize_size=_size(getattr(preset, "resize_size", None)),
        interpolation=_interp(getattr(preset, "interpolation", None)),
        source=source,
    )


def _from_timm_cfg(cfg: Any, source: str) -> Normalization:
    get = cfg.get if isinstance(cfg, Mapping) else lambda key, default=None: getattr(cfg, key, default)
    input_size = get("input_size")
    crop = int(input_size[-1]) if input_size else None
    crop_pct = get("crop_pct")
    # timm's eval transform resizes to floor(crop / crop_pct) (transforms_imagenet_eval)
    resize = int(math.floor(crop / crop_pct)) if crop and crop_pct else None
    return Normalization(
        mean=_floats(get("mean"), "mean"),
        std=_floats(get("std"), "std"),
        crop_size=crop,
        resize_size=resize,
        interpolation=_interp(get("interpolation")),
        source=source,
        crop_pct=float(crop_pct) if crop_pct else None,
        crop_mode=get("crop_mode"),
    )


def _timm_data_config(model: nn.Module) -> dict[str, Any] | None:
    """``timm.data.resolve_model_data_config(model)`` for a model of timm's own classes, else None.

    It starts from the model's ``pretrained_cfg`` and applies what the model itself overrides
    (a ``num_features``-independent input size, ``fixed_input_size``), as timm's own training and
    validation scripts do.
    """
    if not type(model).__module__.startswith("timm."):
        return None
    try:
        from timm.data import resolve_model_data_config
    except ImportError:
        return None
    try:
        return dict(resolve_model_data_config(model))
    except Exception:  # not a timm model after all: fall back to its pretrained_cfg
        return None


def processor_normalization(processor: Any, source: str | None = None) -> Normalization:
    """The normalization on 0..1 pixels a Hugging Face image processor (or its saved config) applies."""
    mean, std, crop, source = processor_statistics(processor, source)
    return Normalization(mean, std, crop_size=crop, source=source)


def expected_normalization(weights: Any) -> Normalization:
    """The normalization that pretrained ``weights`` expect.

    ``weights`` is a torchvision weights enum member or its name (``"ResNet50_Weights.IMAGENET1K_V2"``),
    a timm model (read with ``timm.data.resolve_model_data_config``: mean, std, input size,
    interpolation, ``crop_pct`` and ``crop_mode``, as timm's own scripts resolve them) or its
    ``pretrained_cfg``, a mapping with ``mean`` and ``std`` (and optionally ``crop_size``,
    ``resize_size``, ``interpolation``), or Hugging Face's: an image processor (``image_mean``,
    ``image_std``, ``do_normalize``, ``do_rescale``), a checkpoint folder with a
    ``preprocessor_config.json``, or a model loaded from one.

    Example:
        >>> expected_normalization("ResNet50_Weights.IMAGENET1K_V2").mean
        (0.485, 0.456, 0.406)
        >>> expected_normalization({"mean": [0.5] * 3, "std": [0.5] * 3}).std
        (0.5, 0.5, 0.5)
    """
    from torchvision.models import WeightsEnum, get_weight

    saved = saved_processor(weights) if isinstance(weights, (str, nn.Module)) else None
    if saved is not None:  # a checkpoint folder, or a Hugging Face model loaded from one
        return processor_normalization(saved[0], f"image_mean/image_std of {saved[1]}")
    if is_image_processor(weights):
        return processor_normalization(weights, None if not isinstance(weights, Mapping) else "image processor config")
    if isinstance(weights, str):
        try:
            weights = get_weight(weights)
        except (ValueError, KeyError, AttributeError) as err:
            raise ValueError(f"unknown weights name: {weights!r} (weights); expected e.g. 'ResNet50_Weights.IMAGENET1K_V2'") from err
    if isinstance(weights, WeightsEnum):
        return _from_weights_enum(weights)
    if isinstance(weights, nn.Module):
        cfg = getattr(weights, "pretrained_cfg", None) or getattr(weights, "default_cfg", None)
        if cfg is not None:
            resolved = _timm_data_config(weights)
            if resolved is not None:
                return _from_timm_cfg(resolved, f"timm.data.resolve_model_data_config({type(weights).__name__})")
        if cfg is None:
            raise ValueError(
                f"model has no pretrained_cfg: {type(weights).__name__} (weights), and no {CONFIG_NAME} where it was loaded "
                "from; pass the weights enum, the image processor or {'mean': ..., 'std': ...}"
            )
        return _from_timm_cfg(cfg, f"{type(weights).__name__}.pretrained_cfg")
    if isinstance(weights, Mapping):
        if "mean" not in weights or "std" not in weights:
            raise ValueError(f"mapping needs 'mean' and 'std' keys: {sorted(weights)!r} (weights)")
        if "input_size" in weights or "crop_pct" in weights:
            return _from_timm_cfg(weights, "pretrained_cfg")
        return Normalization(
            mean=_floats(weights["mean"], "weights['mean']"),
            std=_floats(weights["std"], "weights['std']"),
            crop_size=_size(weights.get("crop_size")),
            resize_size=_size(weights.get("resize_size")),
            interpolation=_interp(weights.get("interpolation")),
            source="mapping",
        )
    if hasattr(weights, "mean") and hasattr(weights, "std"):
        return _from_timm_cfg(weights, type(weights).__name__)
    raise TypeError(
        f"cannot read a normalization from {type(weights).__name__}: {weights!r} (weights); expected a torchvision "
        "weights enum or name, a timm model or pretrained_cfg, or {'mean': ..., 'std': ...}"
    )


def _from_weights_enum(weights: Any) -> Normalization:
    """A torchvision weights enum's normalization: its preset's mean/std (classification, segmentation,
    video), or, for detection weights, the ImageNet mean/std their models apply inside.

    torchvision's ``ObjectDetection`` preset only scales to 0..1 floats: the detection models
    normalize in ``GeneralizedRCNNTransform`` (``image_mean``/``image_std``, ImageNet's by default),
    so what their backbones expect overall is ImageNet's statistics, applied inside the model.
    """
    preset = weights.transforms()
    if hasattr(preset, "mean") and hasattr(preset, "std"):
        return _from_preset(preset, str(weights))
    if type(preset).__name__ == "ObjectDetection":
        return Normalization(
            IMAGENET_NORMALIZATION.mean,
            IMAGENET_NORMALIZATION.std,
            source=f"{weights} (normalized inside the model: GeneralizedRCNNTransform)",
        )
    raise ValueError(
        f"the preset of {weights} ({type(preset).__name__}) states no mean/std (weights); pass "
        "{'mean': ..., 'std': ...} for the statistics the model expects"
    )


def _children(transform: Any) -> list[Any] | None:
    inner = getattr(transform, "transforms", None)
    if isinstance(inner, (list, tuple)):
        return list(inner)
    if isinstance(inner, nn.Module):
        return [inner]
    if isinstance(transform, (nn.Sequential, nn.ModuleList)):
        return list(transform)
    if isinstance(transform, (list, tuple)):
        return list(transform)
    return None


def _is_normalize(transform: Any) -> bool:
    from torchvision import transforms as v1
    from torchvision.transforms import v2

    return isinstance(transform, (v1.Normalize, v2.Normalize))


def _is_preset(transform: Any) -> bool:
    """A torchvision weights preset that normalizes (ImageClassification, SemanticSegmentation, VideoClassification)."""
    return type(transform).__module__ == "torchvision.transforms._presets" and hasattr(transform, "mean") and hasattr(transform, "std")


def _prefetch_loader(transform: Any) -> Normalization | None:
    """timm's ``PrefetchLoader`` normalizes uint8 batches on the device with ``mean * 255`` / ``std * 255``."""
    timm_loader = sys.modules.get("timm.data.loader")
    cls = getattr(timm_loader, "PrefetchLoader", None)
    if cls is None or not isinstance(transform, cls):
        return None
    mean = tuple(round(v / 255.0, 6) for v in _floats(transform.mean.float().flatten(), "mean"))
    std = tuple(round(v / 255.0, 6) for v in _floats(transform.std.float().flatten(), "std"))
    return Normalization(mean, std, source="PrefetchLoader (on the device)", on_device=True)


_PREFETCHER_STEPS = ("MaybePILToTensor", "ToNumpy")


def deferred_normalization(transform: Any) -> str | None:
    """Why a pipeline without normalization is still right: who normalizes instead, or None.

    ``timm.data.create_transform(..., use_prefetcher=True)`` leaves normalization out on purpose:
    the pipeline ends in uint8 pixels (timm's ``MaybePILToTensor`` or ``ToNumpy``) and timm's
    ``PrefetchLoader`` normalizes each batch on the device. For such a pipeline
    :func:`find_normalization` returns None (no normalization *in the transform*) and this returns
    ``"timm PrefetchLoader"``; pass the ``PrefetchLoader`` itself to :func:`find_normalization` to
    read the mean/std it applies. Any other pipeline without a normalization returns None.

    Example:
        >>> from torchvision.transforms import v2
        >>> deferred_normalization(v2.Compose([v2.Resize(256), v2.CenterCrop(224)])) is None
        True
    """
    if find_normalizations(transform):
        return None
    if _prefetch_loader(transform) is not None:
        return None
    steps = _flatten(transform)
    for step in steps:
        cls = type(step)
        if cls.__module__.startswith("timm.") and cls.__name__ in _PREFETCHER_STEPS:
            return "timm PrefetchLoader"
    return None


def _flatten(transform: Any) -> list[Any]:
    children = _children(transform)
    if children is None:
        return [transform]
    out: list[Any] = []
    for child in children:
        out.extend(_flatten(child))
    return out


def find_normalizations(transform: Any) -> list[Normalization]:
    """Every normalization a pipeline applies, in order (two of them is double normalization).

    A timm ``PrefetchLoader`` counts as one, applied on the device (``on_device=True``).
    """
    if transform is None:
        return []
    prefetched = _prefetch_loader(transform)
    if prefetched is not None:
        return [prefetched]
    if is_image_processor(transform) and not isinstance(transform, Mapping):  # a processor called on images
        return [processor_normalization(transform)] if normalizes(transform) else []
    if _is_normalize(transform):
        return [Normalization(_floats(transform.mean, "mean"), _floats(transform.std, "std"), source=repr(transform))]
    if _is_preset(transform):
        return [_from_preset(transform, type(transform).__name__)]
    children = _children(transform)
    if children is None:
        return []
    found: list[Normalization] = []
    for child in children:
        found.extend(find_normalizations(child))
    return found


def find_normalization(transform: Any) -> Normalization | None:
    """The mean/std an input pipeline applies, or None where it has no normalization.

    Reads torchvision transforms v1 and v2 (nested ``Compose``, ``RandomApply`` and ``nn.Sequential``
    included), the weights' own preset transforms, timm's ``create_transform`` pipelines and timm's
    ``PrefetchLoader`` (which normalizes on the device). With more than one normalization in the
    pipeline the first is returned; :func:`find_normalizations` lists them all. None means the
    transform does not normalize: :func:`deferred_normalization` tells whether something else
    (timm's prefetcher) does it instead.

    Example:
        >>> import torch
        >>> from torchvision.transforms import v2
        >>> find_normalization(v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.25] * 3)])).std
        (0.25, 0.25, 0.25)
        >>> find_normalization(v2.Compose([v2.Resize(256)])) is None
        True
    """
    found = find_normalizations(transform)
    return found[0] if found else None


IMAGENET_NORMALIZATION = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), source="ImageNet")


def torchvision_weights(weights: Any) -> Any:
    """The torchvision weights enum member ``weights`` is or names, or None."""
    from torchvision.models import WeightsEnum, get_weight

    if isinstance(weights, str):
        try:
            weights = get_weight(weights)
        except (ValueError, KeyError, AttributeError):
            return None
    return weights if isinstance(weights, WeightsEnum) else None
