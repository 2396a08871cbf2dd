"""Freezing and unfreezing by module name: the feature-extraction and fine-tuning switches.

Every selector is a module-name pattern: it names a module and everything under it with a dot
boundary (``features.1`` does not match ``features.10``), globs are allowed (``layer*``), and wrapper
prefixes (``module.``, ``_orig_mod.``) are ignored. A pattern that matches nothing is an error.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from torch import nn

from tlaudit._names import match_names, pattern_matches, strip_wrapper_prefix, unwrap
from tlaudit.batchnorm import freeze_batchnorm, is_batchnorm
from tlaudit.surgery import resolve_heads

__all__ = ["BatchNormMode", "freeze", "unfreeze", "freeze_backbone", "select_params", "parse_enum"]


class BatchNormMode(str, enum.Enum):
    """What :func:`freeze` does with BatchNorm layers under the frozen patterns.

    * ``"keep"``: only ``requires_grad`` changes; in ``model.train()`` the layers still normalize with
      batch statistics and update their running statistics (PyTorch's default behaviour).
    * ``"frozen"``: the layers are replaced by :class:`FrozenBatchNorm`, which always uses the
      pretrained running statistics, in training mode too.
    """

    KEEP = "keep"
    FROZEN = "frozen"


def parse_enum(cls: type[enum.Enum], value: object, field: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"invalid {field}: {value!r} ({field}); expected one of {valid}") from None


def select_params(model: nn.Module, patterns: Sequence[str], *, field: str = "patterns") -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` under the patterns (all with none); a pattern naming nothing raises PatternError."""
    named = list(unwrap(model).named_parameters())
    if not patterns:
        return named
    module_names = [n for n, _ in unwrap(model).named_modules() if n]
    match_names(module_names + [n for n, _ in named], patterns, field=field)  # raises for a pattern naming nothing
    return [(n, p) for n, p in named if any(pattern_matches(pat, n) for pat in _strip(patterns))]


def _strip(patterns: Sequence[str]) -> list[str]:
    return [strip_wrapper_prefix(p) for p in patterns]


def _set_requires_grad(model: nn.Module, patterns: Sequence[str], flag: bool) -> list[str]:
    changed = []
    for name, param in select_params(model, patterns):
        if param.requires_grad != flag:
            param.requires_grad_(flag)
            changed.append(name)
    return changed


def freeze(model: nn.Module, *patterns: str, batchnorm: BatchNormMode | str = "keep") -> list[str]:
    """Set ``requires_grad=False`` on the parameters of the named modules (all with no pattern), in place.

    ``batchnorm`` is an explicit choice (see :class:`BatchNormMode`): ``"keep"`` leaves BatchNorm
    layers' behaviour alone, ``"frozen"`` converts the BatchNorm layers under the patterns to
    :class:`FrozenBatchNorm`. Returns the names of the parameters whose flag changed.

    Example:
        >>> import torchvision
        >>> m = torchvision.models.resnet18()
        >>> freeze(m, "layer1.0")
        ['layer1.0.conv1.weight', 'layer1.0.bn1.weight', 'layer1.0.bn1.bias', 'layer1.0.conv2.weight', 'layer1.0.bn2.weight', 'layer1.0.bn2.bias']
    """
    mode = parse_enum(BatchNormMode, batchnorm, "batchnorm")
    changed = _set_requires_grad(model, patterns, False)
    if mode is BatchNormMode.FROZEN:
        freeze_batchnorm(model, *patterns)
    return changed


def unfreeze(model: nn.Module, *patterns: str) -> list[str]:
    """Set ``requires_grad=True`` on the parameters of the named modules (all with no pattern), in place.

    :class:`FrozenBatchNorm` layers stay frozen: they hold buffers, not parameters.
    Returns the names of the parameters whose flag changed.

    Example:
        >>> import torchvision
        >>> m = torchvision.models.resnet18()
        >>> _ = freeze(m)
        >>> unfreeze(m, "fc")
        ['fc.weight', 'fc.bias']
    """
    return _set_requires_grad(model, patterns, True)


def freeze_backbone(model: nn.Module, head: str | Sequence[str] | None = None, *, batchnorm: BatchNormMode | str = "keep") -> list[str]:
    """Freeze everything but the head(s), in place: the feature-extraction strategy in one call.

    The head(s) come from :func:`~tlaudit.surgery.find_heads` unless ``head`` names them; they are
    made trainable. Returns the names of the parameters whose flag changed.

    Example:
        >>> import torchvision
        >>> m = torchvision.models.resnet18()
        >>> len(freeze_backbone(m)), m.fc.weight.requires_grad, m.conv1.weight.requires_grad
        (60, True, False)
    """
    mode = parse_enum(BatchNormMode, batchnorm, "batchnorm")
    heads = resolve_heads(model, head)
    changed = []
    for name, param in list(unwrap(model).named_parameters()):
        flag = any(pattern_matches(h, name) for h in heads)
        if param.requires_grad != flag:
            param.requires_grad_(flag)
            changed.append(name)
    if mode is BatchNormMode.FROZEN:
        inner = unwrap(model)
        backbone = [n for n, m in inner.named_modules() if is_batchnorm(m)]
        backbone = [n for n in backbone if not any(pattern_matches(h, n) for h in heads)]
        if backbone:
            freeze_batchnorm(model, *backbone)
    return changed
