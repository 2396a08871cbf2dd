"""Inspection: what a model is made of and what of it trains (``describe``, ``trainable_report``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tabulate import tabulate
from torch import nn

from tlaudit._names import unwrap
from tlaudit.surgery import HeadNotFoundError, resolve_heads

__all__ = ["Description", "describe", "TrainableReport", "trainable_report"]


def _flag_summary(flags: Sequence[bool]) -> str:
    if not flags:
        return "-"
    if all(flags):
        return "all"
    if not any(flags):
        return "none"
    return "mixed"


def _mode(module: nn.Module) -> str:
    modes = {m.training for m in module.modules()}
    if modes == {True}:
        return "train"
    if modes == {False}:
        return "eval"
    return "mixed"


def _role(name: str, heads: Sequence[str]) -> str:
    if not heads or name not in heads:
        return ""
    return "head" if name == heads[0] else "aux head"


@dataclass(frozen=True)
class Description:
    """What :func:`describe` returns: ``str()`` is the table, ``to_dict()`` the same for JSON."""

    model: str
    rows: tuple[dict[str, Any], ...]
    total_params: int
    trainable_params: int
    heads: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "heads": list(self.heads),
            "modules": [dict(r) for r in self.rows],
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        table = tabulate(
            [[r["module"], r["type"], f"{r['params']:,}", r["trainable"], r["mode"], _role(r["module"], self.heads)] for r in self.rows],
            headers=["module", "type", "params", "trainable", "mode", "role"],
            colalign=("left", "left", "right", "left", "left", "left"),
        )
        lines = [
            f"{self.model}: {self.total_params:,} parameters, {self.trainable_params:,} trainable",
            table,
            *self.notes,
        ]
        return "\n".join(lines)


def describe(model: nn.Module, *, depth: int = 1, head: str | Sequence[str] | None = None) -> Description:
    """A per-module summary: type, parameter count, trainable (all/none/mixed), mode, which is the head.

    ``depth`` is how many levels of children are listed (1: top-level children); head layers are
    always listed. Shared parameters are counted once.

    Example:
        >>> import torchvision
        >>> d = describe(torchvision.models.resnet18())
        >>> d.total_params, d.heads
        (11689512, ('fc',))
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int: {depth!r} (depth)")
    inner = unwrap(model)
    notes = []
    try:
        heads = tuple(resolve_heads(model, head))
    except HeadNotFoundError:
        heads = ()
        notes.append("no classification head found")
    unique = list(inner.parameters())  # each shared parameter once
    rows = []
    for name, module in inner.named_modules():
        if not name:
            continue
        level = name.count(".") + 1
        is_head = name in heads
        if level > depth and not is_head:
            continue
        params = list(module.parameters())
        rows.append(
            {
                "module": name,
                "type": type(module).__name__,
                "params": sum(p.numel() for p in params),
                "trainable": _flag_summary([p.requires_grad for p in params]),
                "mode": _mode(module),
                "head": is_head,
            }
        )
    shared = sum(1 for _ in inner.named_parameters(remove_duplicate=False)) - len(unique)
    if shared:
        notes.append(f"{shared} shared parameter reference(s) counted once")
    return Description(
        model=type(inner).__name__,
        rows=tuple(rows),
        total_params=sum(p.numel() for p in unique),
        trainable_params=sum(p.numel() for p in unique if p.requires_grad),
        heads=heads,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class TrainableReport:
    """What :func:`trainable_report` returns: ``str()`` is the tables, ``to_dict()`` the same for JSON."""

    modules: tuple[dict[str, Any], ...]
    groups: tuple[dict[str, Any], ...]
    trainable_params: int
    total_params: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "modules": [dict(m) for m in self.modules],
            "param_groups": [dict(g) for g in self.groups],
        }

    def __str__(self) -> str:
        out = [
            f"trainable: {self.trainable_params:,} of {self.total_params:,} parameters",
            tabulate(
                [[m["module"], m["requires_grad"], f"{m['trainable']:,}", f"{m['params']:,}", m["mode"]] for m in self.modules],
                headers=["module", "requires_grad", "trainable", "params", "mode"],
                colalign=("left", "left", "right", "right", "left"),
            ),
        ]
        if self.groups:
            out.append("")
            out.append(
                tabulate(
                    [[g["group"], g["name"], g["lr"], g["weight_decay"], g["params"], g["trainable"]] for g in self.groups],
                    headers=["group", "name", "lr", "weight_decay", "params", "trainable"],
                )
            )
        return "\n".join(out)


def trainable_report(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *, depth: int = 1) -> TrainableReport:
    """``requires_grad`` status per module (to ``depth`` levels) and the LR of every optimizer group.

    Example:
        >>> import torch, torchvision
        >>> from tlaudit import freeze_backbone
        >>> m = torchvision.models.resnet18()
        >>> _ = freeze_backbone(m)
        >>> r = trainable_report(m, torch.optim.SGD(m.fc.parameters(), lr=0.01))
        >>> r.trainable_params, r.groups[0]["lr"]
        (513000, 0.01)
    """
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer: {type(optimizer).__name__} (optimizer)")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int: {depth!r} (depth)")
    inner = unwrap(model)
    rows = []
    for name, module in inner.named_modules():
        if not name or name.count(".") >= depth:
            continue
        params = list(module.parameters())
        rows.append(
            {
                "module": name,
                "requires_grad": _flag_summary([p.requires_grad for p in params]),
                "trainable": sum(p.numel() for p in params if p.requires_grad),
                "params": sum(p.numel() for p in params),
                "mode": _mode(module),
            }
        )
    unique = list(inner.parameters())
    groups = []
    if optimizer is not None:
        for index, group in enumerate(optimizer.param_groups):
            groups.append(
                {
                    "group": index,
                    "name": str(group.get("name", "")),
                    "lr": group.get("lr"),
                    "weight_decay": group.get("weight_decay"),
                    "params": len(group["params"]),
                    "trainable": sum(1 for p in group["params"] if p.requires_grad),
                }
            )
    return TrainableReport(
        modules=tuple(rows),
        groups=tuple(groups),
        trainable_params=sum(p.numel() for p in unique if p.requires_grad),
        total_params=sum(p.numel() for p in unique),
    )
