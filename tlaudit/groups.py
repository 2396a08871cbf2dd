"""Optimizer parameter groups for transfer learning: a low LR for pretrained layers, a higher one for the head."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from tlaudit._names import pattern_matches, unwrap
from tlaudit.surgery import resolve_heads

__all__ = ["param_groups"]


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim <= 1 or name.endswith(".bias")


def _block_key(model: nn.Module, name: str) -> str:
    """The block a parameter belongs to: the entry of the first Sequential/ModuleList on its path,
    else the module that owns it (the parameter itself for parameters of the root)."""
    parts = name.split(".")
    module: nn.Module | None = model
    for i, part in enumerate(parts[:-1]):
        if isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module) > 1:
            return ".".join(parts[: i + 1])
        module = module._modules.get(part) if module is not None else None
        if module is None:
            break
    return ".".join(parts[:-1]) or name


def param_groups(
    model: nn.Module,
    lr: float,
    *,
    head_lr: float | None = None,
    layer_decay: float | None = None,
    weight_decay: float = 0.0,
    head: str | Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: a low LR for pretrained layers, a higher one for the head.

    * pretrained (non-head) parameters get ``lr``; head parameters get ``head_lr`` (default ``10 * lr``);
    * with ``layer_decay`` (0 < d <= 1), block ``k`` counted back from the head gets ``lr * d**k``;
      a block is the entry of the first ``nn.Sequential``/``nn.ModuleList`` on a parameter's path
      (ResNet ``layer1.0``, VGG ``features.0``, ViT ``encoder.layers.encoder_layer_0``), else the
      module that owns it (ViT ``encoder.ln``), in the order the model registers them;
    * only trainable parameters, each exactly once; biases and 1-d parameters (norm weights) get no
      weight decay.

    Each group carries a ``name`` key for logs. Pass the result to any ``torch.optim`` optimizer.

    Example:
        >>> import torchvision
        >>> m = torchvision.models.resnet18()
        >>> groups = param_groups(m, 1e-4, weight_decay=0.05)
        >>> [(g["name"], g["lr"], g["weight_decay"], len(g["params"])) for g in groups]
        [('backbone', 0.0001, 0.05, 20), ('backbone/no_decay', 0.0001, 0.0, 40), ('head', 0.001, 0.05, 1), ('head/no_decay', 0.001, 0.0, 1)]
    """
    for value, field in ((lr, "lr"), (head_lr, "head_lr"), (weight_decay, "weight_decay")):
        if value is None and field == "head_lr":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{field} must be a finite number >= 0: {value!r} ({field})")
    if layer_decay is not None and (isinstance(layer_decay, bool) or not isinstance(layer_decay, (int, float)) or not 0 < layer_decay <= 1):
        raise ValueError(f"layer_decay must be in (0, 1]: {layer_decay!r} (layer_decay)")
    head_lr = 10 * lr if head_lr is None else head_lr
    inner = unwrap(model)
    heads = resolve_heads(model, head)
    seen: set[int] = set()
    backbone: list[tuple[str, nn.Parameter]] = []
    head_params: list[tuple[str, nn.Parameter]] = []
    for name, param in inner.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (head_params if any(pattern_matches(h, name) for h in heads) else backbone).append((name, param))

    groups: dict[tuple[str, bool], dict[str, Any]] = {}

    def add(group_name: str, group_lr: float, name: str, param: nn.Parameter) -> None:
        no_decay = _no_decay(name, param)
        key = (group_name, no_decay)
        if key not in groups:
            groups[key] = {
                "name": group_name + ("/no_decay" if no_decay else ""),
                "params": [],
                "lr": group_lr,
                "weight_decay": 0.0 if no_decay else weight_decay,
            }
        groups[key]["params"].append(param)

    if layer_decay is None:
        for name, param in backbone:
            add("backbone", lr, name, param)
    else:
        blocks = list(dict.fromkeys(_block_key(inner, name) for name, _ in backbone))
        depth = {block: len(blocks) - 1 - i for i, block in enumerate(blocks)}
        for name, param in backbone:
            block = _block_key(inner, name)
            add(block, lr * layer_decay ** depth[block], name, param)
    for name, param in head_params:
        add("head", head_lr, name, param)
    return list(groups.values())
