"""Checks that pretrained weights were really loaded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from tlaudit._text import count, examples
from tlaudit.auditing.checks._registry import Check, register
from tlaudit.auditing.evidence import Evidence, Skip
from tlaudit.auditing.report import Finding, Severity
from tlaudit.batchnorm import BN_TYPES, FrozenBatchNorm


def _missing_unexpected(load_result: Any) -> tuple[list[str], list[str]]:
    if isinstance(load_result, dict):
        missing, unexpected = load_result.get("missing_keys"), load_result.get("unexpected_keys")
    else:
        missing, unexpected = getattr(load_result, "missing_keys", None), getattr(load_result, "unexpected_keys", None)
    if missing is None or unexpected is None:
        raise Skip(
            f"TransferSetup.load_result has no missing_keys/unexpected_keys: {type(load_result).__name__}; "
            "pass what model.load_state_dict(...) returned"
        )
    return list(missing), list(unexpected)


def _at_init(module: nn.Module) -> bool | None:
    """Whether a norm layer holds its initial values (None: not a norm layer that can tell).

    Any layer with ``running_mean``/``running_var`` tensors counts: BatchNorm, tlaudit's
    FrozenBatchNorm, torchvision's ``FrozenBatchNorm2d`` (what timm's ``freeze()`` makes), timm's
    ``FrozenBatchNormAct2d``.
    """
    mean, var = getattr(module, "running_mean", None), getattr(module, "running_var", None)
    if isinstance(module, (*BN_TYPES, FrozenBatchNorm)) or (isinstance(mean, torch.Tensor) and isinstance(var, torch.Tensor)):
        if not isinstance(mean, torch.Tensor) or not isinstance(var, torch.Tensor):
            return None
        return bool(torch.all(mean == 0) and torch.all(var == 1))
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)) and getattr(module, "weight", None) is not None:
        bias_zero = module.bias is None or bool(torch.all(module.bias == 0))
        return bool(torch.all(module.weight == 1)) and bias_zero
    return None


@register(
    "pretrained-not-loaded",
    "error",
    "the backbone looks untrained although pretrained weights are declared",
    needs=("weights|load_result",),
    phase="static",
    points_to="weights",
)
def pretrained_not_loaded(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    With ``load_result`` (what ``load_state_dict`` returned): missing keys outside the head, or
    unexpected keys (an error). With ``weights`` declared: every norm layer of the backbone still
    at its initial values (BatchNorm running stats 0/1, LayerNorm/GroupNorm weight 1 and bias 0),
    i.e. no pretrained weights were ever loaded (a warning).

    Why:
    ``resnet50()`` instead of ``resnet50(weights=...)``, a ``strict=False`` load whose keys all
    carry a ``module.`` prefix, or a checkpoint for another architecture: training "works" from
    random features, only with far lower accuracy.

    Why it is silent:
    ``load_state_dict(..., strict=False)`` returns the missing and unexpected keys instead of raising,
    and a model built without ``weights=`` is a valid model: training runs from random features and only
    the final accuracy shows it.


    Evidence:
    Error: ``load_result`` with missing backbone keys or unexpected keys (nothing, or not
    everything, was loaded). Warning: weights declared but every norm layer still at its initial
    values. Skip: neither ``load_result`` nor norm layers to read.
    Example:
    ``model.load_state_dict(torch.load("ddp.pt"), strict=False)`` where every key starts with ``module.``.

    Fix:
    Build with ``weights=...``; strip wrapper prefixes from checkpoint keys; load with
    ``strict=True`` after replacing the head, or check the returned missing/unexpected keys.

    References:
    - ``torch.nn.Module.load_state_dict`` (``strict``, returned keys), https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.load_state_dict
    - torchvision "Models and pre-trained weights" (``weights.transforms()``), https://pytorch.org/vision/stable/models.html
    - Yosinski et al., "How transferable are features in deep neural networks?", NeurIPS 2014, https://arxiv.org/abs/1411.1792
    """
    if ctx.setup.load_result is not None:
        missing, unexpected = _missing_unexpected(ctx.setup.load_result)
        backbone_missing = [k for k in missing if not ctx.is_new(k)]  # new layers are not in checkpoints
        if backbone_missing:
            yield check.finding(
                f"load_state_dict left {count(len(backbone_missing), 'backbone key')} missing ({examples(backbone_missing)})",
                subject="load_result",
                hint="load a checkpoint of the same architecture; strip `module.`/`_orig_mod.` prefixes from its keys",
            )
        if unexpected:
            prefixed = [k for k in unexpected if k.startswith(("module.", "_orig_mod."))]
            extra = "; they carry a wrapper prefix" if prefixed else ""
            yield check.finding(
                f"load_state_dict found {count(len(unexpected), 'unexpected key')} ({examples(unexpected)}){extra}",
                subject="load_result",
                hint="strip wrapper prefixes from the checkpoint's keys and load with strict=True",
            )
        if backbone_missing or unexpected or ctx.setup.weights is None:
            return
    verdicts = {}
    for name, module in ctx.inner.named_modules():
        try:
            if name and ctx.is_new(name):
                continue
        except Skip:
            pass
        verdict = _at_init(module)
        if verdict is not None:
            verdicts[name] = verdict
    if not verdicts:
        raise Skip("no norm layers with statistics to judge the backbone by; pass load_result=")
    if all(verdicts.values()):
        yield check.finding(
            f"weights are declared but all {count(len(verdicts), 'norm layer')} of the backbone are at their "
            "initial values: pretrained weights look not loaded",
            subject="weights",
            hint="build the model with weights=... or load the checkpoint, and pass load_result= to be sure",
            severity=Severity.WARNING,
        )
