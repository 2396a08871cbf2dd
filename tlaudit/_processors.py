"""Hugging Face image processors read as normalizations, without importing ``transformers``.

An image processor (``ViTImageProcessor``, ``AutoImageProcessor.from_pretrained(...)``), or its saved
``preprocessor_config.json``, states ``image_mean``/``image_std`` and whether it rescales
(``do_rescale``, ``rescale_factor``, ``rescale_offset``) and normalizes (``do_normalize``). On 0..1
pixels the processor's output is ``(x - mean') / std'`` with ``mean' = (mean + offset) / (255 r)`` and
``std' = std / (255 r)``, ``r`` the rescale factor (1/255: the statistics as stated); without
``do_normalize`` the model takes the rescaled pixels as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from tlaudit._numbers import float_tuple

__all__ = ["CONFIG_NAME", "is_image_processor", "normalizes", "processor_statistics", "saved_processor"]

CONFIG_NAME = "preprocessor_config.json"


def is_image_processor(obj: Any) -> bool:
    """An image processor object or its saved config: ``image_mean`` and ``image_std`` (never a module:
    torchvision's ``GeneralizedRCNNTransform`` has them inside a detection model)."""
    if isinstance(obj, Mapping):
        return "image_mean" in obj and "image_std" in obj
    return not isinstance(obj, (nn.Module, str)) and hasattr(obj, "image_mean") and hasattr(obj, "image_std")


def _getter(processor: Any) -> Any:
    if isinstance(processor, Mapping):
        return processor.get
    return lambda key, default=None: getattr(processor, key, default)


def normalizes(processor: Any) -> bool:
    """Whether the processor normalizes (``do_normalize`` is not False)."""
    return _getter(processor)("do_normalize", True) is not False


def _crop(value: Any) -> int | None:
    if isinstance(value, Mapping):
        value = value.get("height") or value.get("shortest_edge")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def processor_statistics(processor: Any, source: str | None = None) -> tuple[tuple[float, ...], tuple[float, ...], int | None, str]:
    """``(mean, std, crop size, source)`` on 0..1 pixels that ``processor`` applies (mean 0 and std 1
    where ``do_normalize`` is False: the model takes un-normalized pixels); ``do_rescale``,
    ``rescale_factor`` and ``rescale_offset`` are folded into the statistics.

    Raises:
        ValueError: ``image_mean``/``image_std`` are not numbers.
    """
    get = _getter(processor)
    source = source or f"{type(processor).__name__}.image_mean/image_std"
    mean, std = float_tuple(get("image_mean"), "image_mean"), float_tuple(get("image_std"), "image_std")
    if not normalizes(processor):
        mean, std, source = (0.0,), (1.0,), f"{source} (do_normalize=False: no normalization)"
    scale, offset = 1.0, 0.0
    if get("do_rescale", True) is False:
        source += " (do_rescale=False: its input taken as 0..1 pixels)"
    else:
        factor = get("rescale_factor", 1 / 255)
        scale = 255.0 * float(factor) if isinstance(factor, (int, float)) and factor > 0 else 1.0
        offset = 1.0 if get("rescale_offset", False) is True else 0.0
    if scale != 1.0 or offset:
        mean = tuple((m + offset) / scale for m in mean)
        std = tuple(s / scale for s in std)
    return mean, std, _crop(get("crop_size")) or _crop(get("size")), source


def saved_processor(source: Any) -> tuple[dict[str, Any], str] | None:
    """The saved image processor config in a checkpoint folder (a path) or in the folder a Hugging
    Face model was loaded from (``config.name_or_path``), and that file's path; None where there is none."""
    if isinstance(source, (str, os.PathLike)):
        folder: Any = os.fspath(source)
    else:
        config = getattr(source, "config", None)
        folder = getattr(config, "name_or_path", None) or getattr(config, "_name_or_path", None)
    if not isinstance(folder, str) or not folder or not os.path.isdir(folder):
        return None
    path = os.path.join(folder, CONFIG_NAME)
    try:
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle)
    except (OSError, ValueError):
        return None
    return (saved, path) if isinstance(saved, dict) and is_image_processor(saved) else None
