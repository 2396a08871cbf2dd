"""Checks on the head: it can train, and it has one output per class."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from tlaudit._text import examples
from tlaudit.auditing.checks._registry import Check, register
from tlaudit.auditing.evidence import Evidence, Skip
from tlaudit.auditing.report import Finding, Severity
from tlaudit.auditing.rules.outputs import (
    class_score_layers,
    head_widths,
    is_single_logit,
    named_outputs,
    wrong_width,
)


@register("head-frozen", "error", "the head cannot train", phase="static", points_to="head")
def head_frozen(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Head layers (from ``find_heads`` or ``TransferSetup.head``) with parameters that have
    ``requires_grad=False``, that ``frozen`` patterns cover, or whose optimizer group has LR 0 and
    no scheduler that raises it (a warm-up that starts at 0 is fine).

    Why:
    Freezing the whole model and forgetting to unfreeze the new head trains nothing; the loss
    stays flat and it looks like a data problem.

    Why it is silent:
    A frozen head gets no gradient and the optimizer skips it; if anything else trains the loss moves
    a little, otherwise it stays flat. No error: a model with nothing to train is valid PyTorch.


    Evidence:
    Error: a head parameter has ``requires_grad=False`` that no declaration explains, or sits only
    in optimizer groups whose LR is 0 over the scheduler's whole run (read from the objects). A
    warm-up that starts at 0 is not evidence. Warning: the head is covered by ``frozen`` patterns
    (declared intent, named in the message; frozen on purpose or a pattern too wide). Info: a norm
    layer in the head frozen at its identity affine (weight 1, bias 0), which normalizes as
    ``affine=False`` does. Skip: no head found.
    Example:
    ``tlaudit.freeze(model)`` after ``replace_head`` instead of before it.

    Fix:
    ``tlaudit.unfreeze(model, "<head>")``, or replace the head after freezing (new layers are trainable).

    References:
    - PyTorch tutorial "Finetuning Torchvision Models", https://pytorch.org/tutorials/beginner/finetuning_torchvision_models_tutorial.html
    - PyTorch tutorial "Transfer Learning for Computer Vision", https://pytorch.org/tutorials/beginner/transfer_learning_tutorial.html
    """
    for head in ctx.heads:
        params = [(n, p) for n, p in ctx.params if n == head or n.startswith(head + ".")]
        if not params:
            continue
        frozen = [n for n, p in params if not ctx.requires_grad[id(p)]]
        identity = [n for n in frozen if _identity_affine(ctx.inner, n)]
        if identity and len(identity) == len(frozen):  # a norm layer frozen at weight 1, bias 0: affine=False in effect
            frozen = []
            yield check.finding(
                f"head `{head}` holds a norm layer frozen at its identity affine ({examples(identity)}: weight 1, bias 0): "
                "it normalizes without an affine, as affine=False does (MAE's linear probe freezes its fc_norm so)",
                subject=head,
                hint=f"tlaudit.unfreeze(model, '{head}') if the affine is meant to learn",
                severity=Severity.INFO,
            )
        covered = [n for n, p in params if ctx.frozen_patterns and id(p) in ctx.meant_frozen]
        if frozen and covered:  # declared on purpose: the declaration is named, not overruled
            yield check.finding(
                f"head `{head}` has requires_grad=False ({examples(frozen)}), as TransferSetup.frozen patterns "
                f"{list(ctx.frozen_patterns)} declare: it will not train",
                subject=head,
                hint="narrow the frozen patterns so they leave the head out, if the head is meant to train",
                severity=Severity.WARNING,
            )
        elif frozen:
            yield check.finding(
                f"head `{head}` has requires_grad=False ({examples(frozen)})",
                subject=head,
                hint=f"tlaudit.unfreeze(model, '{head}')",
            )
        elif covered:
            yield check.finding(
                f"head `{head}` is covered by TransferSetup.frozen patterns {list(ctx.frozen_patterns)}",
                subject=head,
                hint="narrow the frozen patterns so they leave the head out",
                severity=Severity.WARNING,
            )
        elif ctx.setup.optimizer is not None:
            peaks = ctx.schedule_peaks.lrs  # a warm-up starts at lr 0: only a group the schedule never raises is stuck
            zero = sorted(
                {ctx.optimizer_ids[id(p)] for _, p in params if id(p) in ctx.optimizer_ids and peaks[ctx.optimizer_ids[id(p)]] == 0}
            )
            if zero:
                yield check.finding(
                    f"head `{head}` sits in optimizer group(s) {zero} with lr 0"
                    + (", and the scheduler never raises it" if ctx.setup.scheduler is not None else ""),
                    subject=head,
                    hint="give the head's group a positive LR",
                )


_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def _identity_affine(model: nn.Module, name: str) -> bool:
    """``name`` is the weight (all 1) or the bias (all 0) of a norm layer: the identity affine."""
    path, _, kind = name.rpartition(".")
    try:
        module = model.get_submodule(path) if path else model
    except AttributeError:
        return False
    tensor = getattr(module, kind, None)
    if not isinstance(module, _NORMS) or not isinstance(tensor, torch.Tensor):
        return False
    return bool(torch.all(tensor == (1 if kind == "weight" else 0)))


@register(
    "head-size",
    "error",
    "a model output does not have num_classes columns",
    needs=("num_classes|weights",),
    phase="train",
    points_to="head",
)
def head_size(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Every output of the model in the train step (auxiliary outputs too) has ``num_classes``
    columns (dimension 1); where the step called ``model.forward(x)``, the head modules' outputs
    are read instead, and where it crashed first, the head layers' sizes. Where the model returns
    more tensors than it has heads (``(features, logits)``), the head modules' outputs are the
    logits and the rest are features, left alone (an info finding says how they were read). With
    ``num_classes=2``, one logit per sample is a binary classifier (an info finding says so). Without ``num_classes``, a head that still has as many outputs as the
    declared ``weights`` have classes (1000 for ImageNet) is a warning: most likely never replaced.
    A Hugging Face task model (``num_labels`` on the model and in its ``config``) is compared
    statically first, before any step: ``config.num_labels`` against ``num_classes``.

    Why:
    A head left at 1000 ImageNet classes trains without error on labels below 1000, and an
    auxiliary head left unreplaced (Inception's ``AuxLogits.fc``, GoogLeNet's ``aux1``/``aux2``)
    only shows up once training mode adds its loss.

    Why it is silent:
    ``CrossEntropyLoss`` accepts any label below the number of output columns, so a 1000-class head
    trains on 10 classes without complaint (990 columns are never the target); an unreplaced auxiliary
    head is only called in training mode, and its loss term quietly pulls the shared features toward
    the wrong task.


    Evidence:
    Error: an output of the traced step whose dimension 1 is not ``num_classes`` (per-pixel logits
    ``(N, C, H, W)`` and auxiliary outputs included), or, for a detection model, a class-score layer
    of another width (``cls_score``, ``mask_fcn_logits``, a RetinaNet/FCOS/SSD classification head;
    box regression is never judged), or a Hugging Face model whose ``config.num_labels`` is not
    ``num_classes`` (read statically; its head and its own loss follow the config; ``num_labels=1``
    for two classes is regression to its loss, unless ``problem_type`` is multi-label). Info: outputs
    read as features, one logit read as a binary classifier. Warning: without ``num_classes``, a
    head as wide as the weights' class list; a Hugging Face head of ``num_classes`` outputs whose
    ``config.num_labels`` was left at another value (the model's own loss reads the logits with
    it). Skip: no
    tensor in the output, or neither ``num_classes`` nor a class count in the weights.
    Example:
    ``model.fc = nn.Linear(2048, 10)`` on ``inception_v3`` leaves ``AuxLogits.fc`` at 1000 outputs.

    Fix:
    ``tlaudit.replace_head(model, num_classes)`` replaces the main and auxiliary heads.

    References:
    - PyTorch tutorial "Finetuning Torchvision Models", https://pytorch.org/tutorials/beginner/finetuning_torchvision_models_tutorial.html
    - ``torch.nn.CrossEntropyLoss`` (targets in [0, C)), https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html
    - Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (auxiliary classifier), CVPR 2016, https://arxiv.org/abs/1512.00567
    """
    n = ctx.setup.num_classes
    if n is None:
        yield from _head_still_pretrained(check, ctx)
        return
    hint = f"tlaudit.replace_head(model, {n}) (auxiliary heads included)"
    stated = _config_finding(check, ctx, n, hint)
    if stated is not None:  # the model's config says it, no step needed
        yield stated
        return
    scores = class_score_layers(ctx.inner)
    if scores:  # a detection model: its outputs are losses or boxes; its class-score layers tell
        for name, classes in scores:
            if classes != n:
                yield check.finding(
                    f"`{name}` scores {classes} classes, expected {n} (num_classes, background included as "
                    "torchvision's detection models count it)",
                    subject=name,
                    hint=f"rebuild the predictor with {n} classes (e.g. FastRCNNPredictor(in_features, {n}))",
                )
        return
    trace = ctx.train_trace()
    if trace.error is not None and trace.outputs is None:  # the step crashed first: read the head layers
        for head, size in head_widths(ctx.inner, ctx.heads):
            if size is not None and size != n and not (n == 2 and size == 1):
                yield check.finding(f"head `{head}` has {size} outputs, expected {n} (num_classes)", subject=head, hint=hint)
        return
    outputs = named_outputs(trace.outputs)
    if not outputs:
        raise Skip(f"the model's output holds no tensor ({type(trace.outputs).__name__})")
    logits = named_outputs(trace.head_outputs)
    if logits and not trace.outputs_from_heads and len(outputs) > len(logits):
        # (features, logits) and the like: the head modules' outputs are the logits, the rest is left alone
        returned = [name for name, _ in outputs]
        yield check.finding(
            f"the model returns {len(returned)} tensors ({examples(returned)}): read the outputs of "
            f"{examples(list(trace.head_outputs))} as logits, the others as features (not checked)",
            subject=next(iter(trace.head_outputs)),
            severity=Severity.INFO,
        )
        outputs = logits
    binary = [name for name, tensor in outputs if n == 2 and is_single_logit(tensor)]
    for name, shape in wrong_width(outputs, n):
        yield check.finding(f"output `{name}` has shape {shape}, expected {n} columns (num_classes)", subject=name, hint=hint)
    if binary:
        yield check.finding(
            f"read {examples(binary)} as a binary classifier's single logit (BCEWithLogitsLoss) for num_classes 2",
            subject=binary[0],
            severity=Severity.INFO,
        )


def _config_finding(check: Check, ctx: Evidence, n: int, hint: str) -> Finding | None:
    """A Hugging Face task model (``num_labels`` on the model and its ``config``) sized for other than
    ``n`` classes, read statically: its own loss reshapes the logits to ``config.num_labels`` columns."""
    model, config = ctx.inner, getattr(ctx.inner, "config", None)
    labels = getattr(config, "num_labels", None)
    if not isinstance(getattr(model, "num_labels", None), int) or not isinstance(labels, int) or isinstance(labels, bool):
        return None
    if labels == n:
        return None
    name = type(model).__name__
    if n == 2 and labels == 1:
        # one logit is a binary classifier only with BCE; a Hugging Face model's own loss takes
        # num_labels=1 for regression (MSELoss on the label values) unless problem_type says otherwise
        if getattr(config, "problem_type", None) == "multi_label_classification":
            return None
        return check.finding(
            f"`{name}.config.num_labels` is 1 for num_classes 2: the model's own loss (labels=..., what the Trainer "
            "uses) treats the task as regression (MSELoss on the label values), and argmax over one column is always 0",
            subject="config.num_labels",
            hint="from_pretrained(..., num_labels=2), or problem_type='multi_label_classification' with float labels for one logit",
        )
    widths = {size for _, size in head_widths(model, ctx.heads) if size is not None}
    if widths == {n}:  # the head was resized by hand, the config left behind
        return check.finding(
            f"`{name}.config.num_labels` is {labels}, but the head has {n} outputs (num_classes {n}): the model's own "
            f"loss (labels=..., what the Trainer uses) reads the logits as {labels} columns",
            subject="config.num_labels",
            hint=f"model.config.num_labels = {n} (and id2label/label2id), or tlaudit.replace_head(model, {n})",
            severity=Severity.WARNING,
        )
    return check.finding(
        f"`{name}.config.num_labels` is {labels}, expected {n} (num_classes): the head and the model's own loss "
        f"are sized for {labels} classes",
        subject="config.num_labels",
        hint=f"from_pretrained(..., num_labels={n}), or {hint}",
    )


def _head_still_pretrained(check: Check, ctx: Evidence) -> Iterator[Finding]:
    classes = ctx.weights_classes
    if classes is None:
        raise Skip("no `num_classes` given, and the weights do not say how many classes they have")
    for head in ctx.heads:
        size = getattr(ctx.inner.get_submodule(head), "out_features", None)
        if size == classes:
            yield check.finding(
                f"head `{head}` still has the {classes} outputs of the weights' classes: not replaced for the new task?",
                subject=head,
                hint="tlaudit.replace_head(model, num_classes), and pass num_classes= to check the outputs",
                severity=Severity.WARNING,
            )
