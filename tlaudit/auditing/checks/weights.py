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


_SMALL_TAIL = 0.05
"""Missing keys only after the last loaded one (the layers just before the head) that hold less than
this share of the load's elements: a layer or two the checkpoint never had (MAE's ``fc_norm``)."""


def _missing_findings(check: Check, ctx: Evidence, missing: list[str]) -> Iterator[Finding]:
    """Missing keys of pretrained layers as the model is now: keys of layers replaced after the load
    are gone from the model and left out; new layers are not in checkpoints. Inside the network (a
    loaded key follows) or many: an error. A few at its end, before the head: a warning."""
    state = ctx.inner.state_dict()
    keys = list(state)
    position = {k: i for i, k in enumerate(keys)}
    prefix = ""
    found: list[tuple[str, int]] = []
    for key in missing:
        i = position.get(prefix + key)
        if i is None and not prefix:  # loaded into a submodule (model.backbone.load_state_dict): its keys are relative
            full = next((k for k in keys if k.endswith("." + key)), None)
            if full is not None:
                prefix, i = full[: -len(key)], position[full]
        if i is not None and not ctx.is_new(keys[i]):
            found.append((key, i))
    if not found:
        return
    gone = {i for _, i in found}
    scope = [i for i, k in enumerate(keys) if k.startswith(prefix) and not ctx.is_new(k)]
    # loaded: the parameters that were not missing (a parameterless layer added after the load, as
    # BatchNorm1d(affine=False) before a linear probe, has only buffers no checkpoint held)
    parameters = {name for name, _ in ctx.inner.named_parameters()}
    loaded = [i for i in scope if i not in gone and keys[i] in parameters]
    elements = sum(state[keys[i]].numel() for i in scope) or 1
    share = sum(state[keys[i]].numel() for i in gone) / elements
    names = [k for k, _ in found]
    if loaded and min(gone) > max(loaded) and share < _SMALL_TAIL:
        yield check.finding(
            f"load_state_dict left {count(len(names), 'key')} missing ({examples(names)}), after every loaded one: the "
            "last layers before the head keep their initialization (intended when they are new, as MAE's fc_norm)",
            subject="load_result",
            hint="declare new layers with TransferSetup(head=[...]); else load a checkpoint that has them",
            severity=Severity.WARNING,
        )
        return
    yield check.finding(
        f"load_state_dict left {count(len(names), 'backbone key')} missing ({examples(names)})",
        subject="load_result",
        hint="load a checkpoint of the same architecture; strip `module.`/`_orig_mod.` prefixes from its keys",
    )


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
    With ``load_result`` (what ``load_state_dict`` returned): missing keys of pretrained layers as
    the model is now (keys of a layer replaced after the load are gone from it; new layers are not
    in checkpoints), and unexpected keys. With ``weights`` declared: every norm layer of the backbone still
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
    Error: ``load_result`` with missing keys of pretrained layers inside the network (a loaded key
    follows them: those layers stay random and feed everything after them) or holding 5% or more of
    the loaded elements, or unexpected keys with a wrapper prefix (nothing, or not everything, was
    loaded). Warning: a few missing keys after every loaded one, under 5% (the last layers before
    the head, new where the checkpoint never had them: MAE's ``fc_norm``); weights declared but
    every norm layer still at its initial values. Info: unexpected keys alone (the checkpoint's
    pretraining head or projector; the model took every key it has). Skip: neither
    ``load_result`` nor norm layers to read.
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
        yield from _missing_findings(check, ctx, missing)
        if unexpected:
            prefixed = [k for k in unexpected if k.startswith(("module.", "_orig_mod."))]
            if prefixed:
                yield check.finding(
                    f"load_state_dict found {count(len(unexpected), 'unexpected key')} ({examples(unexpected)}); they carry a wrapper prefix",
                    subject="load_result",
                    hint="strip wrapper prefixes from the checkpoint's keys and load with strict=True",
                )
            else:  # the model took every key it has; these have no place in it
                yield check.finding(
                    f"load_state_dict ignored {count(len(unexpected), 'checkpoint key')} the model has no place for "
                    f"({examples(unexpected)}): a pretraining head or projector, or a layer this model drops",
                    subject="load_result",
                    severity=Severity.INFO,
                )
        if missing or unexpected or ctx.setup.weights is None:
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
