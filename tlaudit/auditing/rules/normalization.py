"""The normalization rule: how a pipeline's normalization differs from what the weights expect, and
torchvision's ``transform_input`` re-normalization inside Inception v3 and GoogLeNet.

Shared by the ``normalization`` check and ``assert_normalization``; reading a pipeline and the
weights' statistics is :mod:`tlaudit.normalization`'s.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tlaudit.normalization import Normalization, torchvision_weights

__all__ = ["NormalizationMismatch", "compare_normalization", "expects_transform_input"]


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
