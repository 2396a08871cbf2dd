"""The label rule: targets a ``num_classes``-way classifier can take. Shared by ``label-range`` and the
diagnosis of a train step that crashed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LabelProblem", "is_binary_targets", "label_problem"]

IGNORE_INDEX = -100
"""Cross-entropy's default ``ignore_index``: allowed anywhere."""


@dataclass(frozen=True)
class LabelProblem:
    """What is wrong with the targets: a message and the offending values (or widths)."""

    message: str
    hint: str


def is_binary_targets(targets: torch.Tensor) -> bool:
    """0/1 targets, one per sample (shape ``(N,)`` or ``(N, 1)``), of any dtype: what BCEWithLogitsLoss takes."""
    if targets.ndim > 2 or (targets.ndim == 2 and targets.shape[1] != 1):
        return False
    return bool(((targets == 0) | (targets == 1)).all())


def label_problem(targets: torch.Tensor, num_classes: int, *, ignored: set[int] | frozenset[int] = frozenset()) -> LabelProblem | None:
    """None when ``targets`` suit a ``num_classes``-way classifier, else what is wrong.

    Integer class indices must lie in ``[0, num_classes)`` (``-100`` is ignored); one-hot or soft
    targets need ``num_classes`` columns; with ``num_classes == 2``, 0/1 targets of any dtype and
    shape ``(N,)`` or ``(N, 1)`` (a binary classifier with one logit) are fine. ``ignored`` values are
    left out: those a completed train step's loss was seen to ignore.
    """
    t = targets.detach()
    if num_classes == 2 and is_binary_targets(t):
        return None
    if t.is_floating_point():
        if t.ndim >= 2 and t.shape[-1] != num_classes:
            return LabelProblem(
                f"soft/one-hot targets have {t.shape[-1]} columns, expected num_classes {num_classes}",
                "targets must have one column per class",
            )
        return None
    valid = t[t != IGNORE_INDEX]
    for value in ignored:  # values the loss was seen to ignore (a per-pixel ignore_index such as 255)
        valid = valid[valid != value]
    if valid.numel() == 0:
        return None
    lo, hi = int(valid.min()), int(valid.max())
    if lo < 0 or hi >= num_classes:
        bad = sorted({int(v) for v in valid[(valid < 0) | (valid >= num_classes)].unique()[:5].tolist()})
        return LabelProblem(
            f"targets range over [{lo}, {hi}], outside [0, {num_classes}) (num_classes): e.g. {bad}",
            f"map labels to 0..{num_classes - 1} or fix num_classes",
        )
    return None
