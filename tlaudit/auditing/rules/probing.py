"""Normalization a pipeline applies where its steps cannot be read: measured on constant images.

A ``Lambda``, a custom class, an albumentations or timm pipeline is opaque to
:func:`tlaudit.normalization.find_normalizations`; the pipeline is affine in the input level after
resize and crop, so constant images at known levels give its per-channel mean and std.
"""

from __future__ import annotations

import random
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tlaudit._processors import is_image_processor
from tlaudit.normalization import (
    Normalization,
    _children,
    _is_normalize,
    _is_preset,
    find_normalizations,
)

__all__ = ["UnreadableNormalization", "measure_normalization", "opaque_steps", "read_normalizations"]


class UnreadableNormalization(ValueError):
    """A pipeline whose normalization can be neither read from its steps nor measured; the message says why."""


def _is_known_step(step: Any) -> bool:
    """A torchvision transform other than ``Lambda``: its effect on normalization is known (none, or read)."""
    module = type(step).__module__
    return module.startswith("torchvision.transforms") and type(step).__name__ != "Lambda"


def _step_name(step: Any) -> str:
    if type(step).__name__ == "function":
        return getattr(step, "__qualname__", "function")
    return type(step).__name__


def opaque_steps(transform: Any) -> list[str]:
    """Names of the steps of ``transform`` that cannot be read structurally, in order.

    Known are torchvision v1/v2 transforms (``Lambda`` excepted), the weights' preset transforms, Hugging
    Face image processors and the containers (``Compose``, ``RandomApply``, ``nn.Sequential``, lists); anything else (a ``Lambda``, a
    function, a custom class, timm's or albumentations' transforms) is opaque: it may normalize.

    Example:
        >>> from torchvision.transforms import v2
        >>> opaque_steps(v2.Compose([v2.Resize(64), v2.Lambda(lambda x: x / 255)]))
        ['Lambda']
    """
    if transform is None or _is_normalize(transform) or _is_preset(transform) or is_image_processor(transform):
        return []  # an image processor is read from its image_mean/image_std and do_normalize
    children = _children(transform)
    containers = (nn.Sequential, nn.ModuleList, list, tuple)
    if children is not None and (_is_known_step(transform) or isinstance(transform, containers)):
        return [name for child in children for name in opaque_steps(child)]
    if _is_known_step(transform):
        return []
    return [_step_name(transform)]


# Levels (in 0..1, exact in uint8) of the three constant images: one per channel, distinct across
# channels and runs, so that a step mixing channels (grayscale, hue) fails the affine test.
_LEVELS = ((64, 96, 128), (192, 160, 224), (128, 208, 32))
_SEEDS = (0, 1)
_TOLERANCE = 2e-3
_MAX_STD = 10.0
_MAX_MEAN = 5.0
"""A measured std must be positive and at most this, a mean at most this far from 0 (0..1 pixels,
or 0..255 ones rescaled): anything else is no normalization but a step the probe cannot read."""


def _inputs(size: int, levels: Sequence[int], channels: int) -> dict[str, Callable[[Any], Any]]:
    """The input kinds a pipeline may accept: each calls the pipeline on a constant image of ``levels``
    (0..255 per channel) and returns its output."""

    def pil(transform: Any) -> Any:
        from PIL import Image

        mode = {1: "L", 3: "RGB"}[channels]
        return transform(Image.new(mode, (size, size), tuple(levels) if channels > 1 else levels[0]))

    def uint8() -> torch.Tensor:
        return torch.tensor(levels, dtype=torch.uint8).view(channels, 1, 1).expand(channels, size, size).contiguous()

    def named_array(transform: Any) -> Any:  # albumentations' convention: aug(image=HWC uint8 array)["image"]
        return transform(image=uint8().permute(1, 2, 0).numpy())

    return {
        "a PIL image": pil,
        "a uint8 CHW tensor": lambda transform: transform(uint8()),
        "a float 0..1 CHW tensor": lambda transform: transform(uint8().float() / 255),
        "a uint8 HWC array as image=": named_array,
    }


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed)


class _RandomStates:
    """Saves torch's, Python's and (if imported) NumPy's global RNG states and restores them on exit."""

    def __enter__(self) -> _RandomStates:
        self.torch = torch.random.get_rng_state()
        self.python = random.getstate()
        numpy = sys.modules.get("numpy")
        self.numpy = numpy.random.get_state() if numpy is not None else None
        return self

    def __exit__(self, *exc: object) -> None:
        torch.random.set_rng_state(self.torch)
        random.setstate(self.python)
        if self.numpy is not None:
            sys.modules["numpy"].random.set_state(self.numpy)


def _levels_out(out: Any, channels: int) -> torch.Tensor:
    """The per-channel output level of one constant image (the median: robust to padding and erasing)."""
    if isinstance(out, Mapping) and "image" in out:
        out = out["image"]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise UnreadableNormalization(f"it returns {type(out).__name__}, not a float tensor")
    if not out.is_floating_point():
        raise UnreadableNormalization(f"it returns a {out.dtype} tensor, not a float tensor")
    if out.ndim == 4 and out.shape[0] == 1:
        out = out[0]
    if out.ndim != 3 or out.shape[0] != channels:
        raise UnreadableNormalization(f"it returns shape {tuple(out.shape)}, not {channels} channels first")
    flat = out.detach().float().reshape(channels, -1)
    if not bool(torch.isfinite(flat).all()):
        raise UnreadableNormalization("it returns non-finite values")
    return flat.median(dim=1).values


def measure_normalization(transform: Callable[[Any], Any], *, size: int = 256, channels: int = 3) -> Normalization:
    """The per-channel mean/std ``transform`` applies, measured on constant images.

    A pipeline of resizes, crops, flips and one normalization maps a constant image of level ``x``
    (0..1) to the constant ``(x - mean) / std``: two levels per channel give ``mean`` and ``std``, a
    third checks that the map is affine. Each run is seeded (twice, with two seeds that must agree, so
    random photometric steps are caught) and the global RNG states of torch, Python and NumPy are
    restored afterwards. The input kinds tried, in order: a PIL image, a uint8 CHW tensor, a float
    0..1 CHW tensor, a uint8 HWC array passed as ``image=`` (albumentations; the output's ``"image"``
    is read), each ``size`` pixels square; the first the pipeline runs on without raising is
    measured (its output must be a float tensor with ``channels`` channels first). Warnings raised
    by the pipeline are silenced.

    The result's ``source`` starts with ``"measured"`` and names the input kind.

    Raises:
        UnreadableNormalization: the pipeline raises on every input kind, or on the first it takes its
            output is not a float tensor, not affine in the level, changes with the seed, or gives a
            std that is not positive (an inverting step) or an implausible mean/std; the
            message says why for each kind tried.

    Example:
        >>> from torchvision.transforms import v2
        >>> pipeline = v2.Compose([v2.PILToTensor(), v2.Lambda(lambda x: (x / 255 - 0.5) / 0.25)])
        >>> measure_normalization(pipeline, size=32).std
        (0.25, 0.25, 0.25)
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3: {channels!r} (channels)")
    reasons: list[str] = []
    with _RandomStates(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind in _inputs(size, _LEVELS[0], channels):
            try:
                return _measure(transform, kind, size, channels)
            except UnreadableNormalization as err:  # the pipeline takes this kind: its output is the answer
                reasons.append(f"on {kind}, {err}")
                break
            except Exception as err:  # the user's pipeline may raise anything on an input it does not take
                reasons.append(f"on {kind}, it raises {type(err).__name__}: {err}")
    raise UnreadableNormalization("; ".join(reasons))


def _measure(transform: Callable[[Any], Any], kind: str, size: int, channels: int) -> Normalization:
    runs: dict[tuple[int, int], torch.Tensor] = {}
    for seed in _SEEDS:
        for index, levels in enumerate(_LEVELS if seed == _SEEDS[0] else _LEVELS[:2]):
            _seeded(seed)
            runs[seed, index] = _levels_out(_inputs(size, levels[:channels], channels)[kind](transform), channels)
    x = torch.tensor(_LEVELS, dtype=torch.float64)[:, :channels] / 255
    y = [runs[_SEEDS[0], i].double() for i in range(3)]
    slope = (y[1] - y[0]) / (x[1] - x[0])
    if bool((slope.abs() < 1e-6).any()):
        raise UnreadableNormalization("its output does not depend on the input level")
    predicted = y[0] + slope * (x[2] - x[0])
    scale = 1 + y[2].abs().max()
    if bool(((predicted - y[2]).abs() > _TOLERANCE * scale).any()):
        raise UnreadableNormalization("its output is not affine in the input level (a photometric step?)")
    for index in range(2):
        if bool(((runs[_SEEDS[1], index].double() - y[index]).abs() > _TOLERANCE * scale).any()):
            raise UnreadableNormalization("its output changes with the random seed (a random photometric step?)")
    std = 1 / slope
    mean = x[0] - y[0] * std
    if bool((std <= 0).any()) or bool((std > _MAX_STD).any()) or bool((mean.abs() > _MAX_MEAN).any()):
        raise UnreadableNormalization(
            f"its estimate is not a normalization (mean {[round(float(v), 3) for v in mean]}, std "
            f"{[round(float(v), 3) for v in std]}: an inverting or rescaling step?)"
        )
    return Normalization(
        mean=tuple(round(float(v), 6) for v in mean),
        std=tuple(round(float(v), 6) for v in std),
        source=f"measured on constant images, {kind}",
    )


def read_normalizations(transform: Any, *, size: int = 256) -> list[Normalization]:
    """Every normalization ``transform`` applies: read from its steps, or measured where a step is opaque.

    A pipeline that holds a ``Normalize`` step (or a weights preset) is read as
    :func:`find_normalizations` reads it, whatever augmentations surround it (RandAugment,
    TrivialAugment, RandomErasing, timm's transforms): the step is evidence, the opaque steps are
    taken not to normalize again. Only a pipeline with opaque steps and no readable normalization is
    measured as a whole (:func:`measure_normalization`): the result is one measured normalization, or
    one identity (mean 0, std 1) where the pixels pass unchanged. A measurement that is not
    consistent (not affine, not repeatable, a non-positive or implausible std) is no reading.

    Raises:
        UnreadableNormalization: an opaque step, no readable normalization and no measurement;
            the message names the opaque steps and why the measurement failed.
    """
    read = find_normalizations(transform)
    if read:  # a Normalize step is evidence, whatever augmentations surround it
        return read
    if not opaque_steps(transform):
        return read
    try:
        return [measure_normalization(transform, size=size)]
    except UnreadableNormalization as err:
        steps = ", ".join(f"`{name}`" for name in dict.fromkeys(opaque_steps(transform)))
        raise UnreadableNormalization(f"the transform could not be read ({steps}) or measured: {err}") from err
