"""A model's outputs: every tensor in whatever it returns, and the rule that logits have ``num_classes`` columns."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["class_score_layers", "detach_outputs", "head_widths", "is_box_regression", "named_outputs", "wrong_width"]


def named_outputs(outputs: Any, prefix: str = "output") -> list[tuple[str, torch.Tensor]]:
    """Every tensor in a model's output (tensor, tuple, namedtuple, dict, or an object with ``logits``)."""
    if isinstance(outputs, torch.Tensor):
        return [(prefix, outputs)]
    if isinstance(outputs, tuple) and hasattr(outputs, "_fields"):
        found = []
        for name in outputs._fields:
            found.extend(named_outputs(getattr(outputs, name), name))
        return found
    if isinstance(outputs, (list, tuple)):
        found = []
        for i, value in enumerate(outputs):
            found.extend(named_outputs(value, f"{prefix}[{i}]"))
        return found
    if isinstance(outputs, dict):
        found = []
        for key, value in outputs.items():
            found.extend(named_outputs(value, str(key)))
        return found
    logits = getattr(outputs, "logits", None)
    if isinstance(logits, torch.Tensor):
        return [("logits", logits)]
    return []


def detach_outputs(outputs: Any) -> Any:
    """A detached copy of a model's output, with the same structure."""
    if isinstance(outputs, torch.Tensor):
        return outputs.detach().clone()
    if isinstance(outputs, tuple) and hasattr(outputs, "_fields"):
        return type(outputs)(*(detach_outputs(v) for v in outputs))
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(detach_outputs(v) for v in outputs)
    if isinstance(outputs, dict):
        return {k: detach_outputs(v) for k, v in outputs.items()}
    return outputs


def head_widths(model: nn.Module, heads: list[str]) -> list[tuple[str, int | None]]:
    """``(name, outputs)`` of each head layer: ``out_features`` or a Conv's ``out_channels`` (None if neither)."""
    widths = []
    for name in heads:
        layer = model.get_submodule(name)
        size = layer.out_channels if isinstance(layer, nn.modules.conv._ConvNd) else getattr(layer, "out_features", None)
        widths.append((name, size if isinstance(size, int) else None))
    return widths


def wrong_width(outputs: list[tuple[str, torch.Tensor]], num_classes: int) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of each output whose dimension 1 is not ``num_classes``: the head-size rule.

    With ``num_classes == 2`` one logit per sample (shape ``(N,)`` or ``(N, 1)``) is a binary
    classifier's, and fits. Shared by the ``head-size`` check and ``assert_head``.
    """
    return [
        (name, tuple(tensor.shape))
        for name, tensor in outputs
        if (tensor.ndim < 2 or tensor.shape[1] != num_classes) and not (num_classes == 2 and is_single_logit(tensor))
    ]


def is_single_logit(tensor: torch.Tensor) -> bool:
    """One logit per sample: a binary classifier's output for BCEWithLogitsLoss."""
    return tensor.ndim in (1, 2) and tuple(tensor.shape[1:]) in ((), (1,))


def class_score_layers(model: nn.Module) -> list[tuple[str, int]]:
    """``(name, classes)`` of each layer of a detection model that scores classes, background included
    as torchvision counts it; empty for a model that has none.

    Read by structure, never from box regression: a Fast R-CNN predictor's ``cls_score``
    (``bbox_pred`` holds 4 box deltas per class), Mask R-CNN's ``mask_fcn_logits`` (one mask per
    class), a RetinaNet or FCOS classification head (its ``num_classes``), an SSD classification
    head, SSD's or SSDlite's (its ``num_columns``). Keypoint predictors score keypoints, not classes: left out.

    Example:
        >>> import torchvision
        >>> m = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=3)
        >>> class_score_layers(m)
        [('roi_heads.box_predictor.cls_score', 3)]
    """
    found: list[tuple[str, int]] = []
    for name, module in model.named_modules():
        children = dict(module.named_children())
        prefix = f"{name}." if name else ""
        score = children.get("cls_score")
        if isinstance(score, nn.Linear) and "bbox_pred" in children:
            found.append((prefix + "cls_score", score.out_features))
        masks = children.get("mask_fcn_logits")
        if isinstance(masks, nn.modules.conv._ConvNd):
            found.append((prefix + "mask_fcn_logits", masks.out_channels))
        classes = getattr(module, "num_classes", None)
        if "cls_logits" in children and isinstance(classes, int):
            found.append((prefix + "cls_logits", classes))
        columns = getattr(module, "num_columns", None)
        if type(module).__name__.endswith("ClassificationHead") and isinstance(columns, int):  # SSD's, SSDlite's
            found.append((name, columns))
    return found


def is_box_regression(name: str) -> bool:
    """A detection layer that regresses boxes (``bbox_pred``, ``bbox_reg``, a ``regression_head``): never
    a class-score head."""
    parts = name.split(".")
    return parts[-1] in ("bbox_pred", "bbox_reg") or "regression_head" in parts
