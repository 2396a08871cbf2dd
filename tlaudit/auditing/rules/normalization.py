"""The normalization rule: how a pipeline's normalization differs from what the weights expect, and
torchvision's ``transform_input`` re-normalization inside Inception v3 and GoogLeNet.

Shared by the ``normalization`` check and ``assert_normalization``; reading a pipeline and the
weights' statistics is :mod:`tlaudit.normalization`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from tlaudit.normalization import Normalization, _floats, torchvision_weights

__all__ = [
    "EFFECT_ERROR",
    "EFFECT_WARNING",
    "NormalizationMismatch",
    "compare_normalization",
    "effect_severity",
    "expects_transform_input",
    "normalization_effect",
    "model_normalizations",
]

EFFECT_ERROR = 0.25
"""A mismatch whose effect (see :func:`normalization_effect`) reaches this many of the weights'
normalized units is an error: a quarter of a standard deviation of the input the weights were trained
on, for a typical pixel. ``Normalize(0.5, 0.5)``, CIFAR statistics or no normalization on ImageNet
weights move a typical pixel by 0.3 to 1.3 units."""

EFFECT_WARNING = 0.1
"""From this effect up to :data:`EFFECT_ERROR` a mismatch is a warning; below, an info finding (a
dataset's own statistics a few thousandths off the weights', as Tiny-ImageNet's are off ImageNet's,
move a typical pixel by about 0.05 units)."""


_TRANSFORM_INPUT_WEIGHTS = frozenset(
    {"Inception_V3_Weights", "GoogLeNet_Weights", "Inception_V3_QuantizedWeights", "GoogLeNet_QuantizedWeights"}
)
"""torchvision weights whose builders (``inception_v3``, ``googlenet`` and their quantized versions) set
``transform_input=True`` unless told otherwise: the model re-normalizes ImageNet-normalized input to the
mean/std 0.5 the original weights were trained on."""


def expects_transform_input(weights: Any) -> bool | None:
    """Whether torchvision's builder of ``weights`` turns on ``transform_input``; None for weights that are
    not a torchvision weights enum (or its name).

    Example:
        >>> expects_transform_input("Inception_V3_Weights.IMAGENET1K_V1")
        True
        >>> expects_transform_input("ResNet18_Weights.DEFAULT")
        False
    """
    weights = torchvision_weights(weights)
    if weights is None:
        return None  # not torchvision weights: cannot tell
    return type(weights).__name__ in _TRANSFORM_INPUT_WEIGHTS


@dataclass(frozen=True)
class NormalizationMismatch:
    """How a pipeline's normalization differs from the expected one: the normalization rule's verdict.

    ``kind`` is ``"missing"`` (no normalization found), ``"double"`` (more than one) or ``"different"``
    (one, with another mean/std). Shared by the ``normalization`` check and ``assert_normalization``.
    """

    kind: str
    found: tuple[Normalization, ...]
    expected: Normalization


def compare_normalization(found: Sequence[Normalization], expected: Normalization) -> NormalizationMismatch | None:
    """None when ``found`` is exactly one normalization matching ``expected``, else what is wrong.

    A measured identity (mean 0, std 1: the pixels pass unchanged) counts as no normalization; it stays
    in the mismatch's ``found`` so that messages can say it was measured.
    """
    steps = [n for n in found if not n.is_identity]
    if not steps:
        if expected.is_identity:
            return None
        kind = "missing"
    elif len(steps) > 1:
        kind = "double"
    elif not steps[0].matches(expected):
        kind = "different"
    else:
        return None
    return NormalizationMismatch(kind, tuple(steps) if kind != "missing" else tuple(found), expected)


def normalization_effect(actual: Normalization, expected: Normalization) -> float:
    """How far a typical pixel moves in the weights' normalized units when ``actual`` is applied
    instead of ``expected``: the largest over channels and over the pixels one standard deviation
    either side of the weights' mean (``x = m_w +- s_w``).

    With ``actual = (m, s)`` and ``expected = (m_w, s_w)`` the normalized value of such a pixel moves
    by ``(m_w - m) / s +- (s_w / s - 1)``, so the effect is ``max_c |m_w - m| / s + |s_w / s - 1|``.

    Example:
        >>> from tlaudit.normalization import IMAGENET_NORMALIZATION, Normalization
        >>> round(normalization_effect(Normalization((0.5,) * 3, (0.5,) * 3), IMAGENET_NORMALIZATION), 2)
        0.74
    """
    channels = max(len(actual.mean), len(expected.mean), len(actual.std), len(expected.std))

    def at(values: Sequence[float], c: int) -> float:
        return values[c] if len(values) > 1 else values[0]

    worst = 0.0
    for c in range(channels):
        m, s, m_w, s_w = at(actual.mean, c), at(actual.std, c), at(expected.mean, c), at(expected.std, c)
        worst = max(worst, abs(m_w - m) / s + abs(s_w / s - 1))
    return worst


def effect_severity(effect: float) -> str:
    """``"error"``, ``"warning"`` or ``"info"`` for a normalization mismatch of this effect
    (thresholds :data:`EFFECT_ERROR` and :data:`EFFECT_WARNING`)."""
    if effect >= EFFECT_ERROR:
        return "error"
    return "warning" if effect >= EFFECT_WARNING else "info"


def model_normalizations(model: nn.Module) -> list[Normalization]:
    """The normalizations a model applies to its input itself, outermost first.

    torchvision's detection models (Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS, SSD) normalize in
    ``GeneralizedRCNNTransform`` with its ``image_mean``/``image_std``: their input is 0..1 pixels,
    and a ``Normalize`` in the transform as well is a second normalization.

    Example:
        >>> import torchvision
        >>> m = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
        >>> model_normalizations(m)[0].std
        (0.229, 0.224, 0.225)
    """
    found = []
    for name, module in model.named_modules():
        mean, std = getattr(module, "image_mean", None), getattr(module, "image_std", None)
        if mean is None or std is None:
            continue
        try:
            found.append(
                Normalization(
                    _floats(mean, "image_mean"),
                    _floats(std, "image_std"),
                    source=f"`{name or type(model).__name__}` ({type(module).__name__}) inside the model",
                )
            )
        except ValueError:
            continue
    return found
