"""Checks on what is meant frozen: gradients, changed values, BatchNorm statistics."""

from __future__ import annotations

from collections.abc import Iterator

from tlaudit.auditing.checks._grouping import grouped_findings
from tlaudit.auditing.checks._registry import Check, register
from tlaudit.auditing.evidence import Evidence
from tlaudit.auditing.report import Finding, Severity
from tlaudit.auditing.rules.inputs import batch_size


@register("frozen-grad", "error", "a parameter meant to be frozen requires or receives a gradient", phase="train", points_to="freeze")
def frozen_grad(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Parameters meant to be frozen (by ``strategy="feature_extraction"``, by ``frozen`` patterns, or by
    ``requires_grad=False``) that still have ``requires_grad=True``, or that receive a gradient in the
    train step.

    Why:
    A frozen backbone that still trains is the most common silent transfer bug: a typo in the
    freeze loop, or freezing before ``replace_head`` of a model that is rebuilt, leaves pretrained
    layers trainable and the pretrained features are overwritten.

    Why it is silent:
    A parameter that should be frozen but still has ``requires_grad=True`` simply trains: nothing
    raises, the loss goes down, and the pretrained features are slowly overwritten. The usual cause is
    ``p.requires_grad == False`` (a comparison whose result is thrown away) or a name filter that
    matches nothing.


    Evidence:
    Error: a parameter meant frozen (``strategy="feature_extraction"``, ``frozen`` patterns, or
    ``requires_grad=False``) received a gradient in the traced step, or keeps ``requires_grad=True``
    where no complete step shows it frozen in effect. Not an error: ``requires_grad=True`` on a
    parameter that gets no gradient in a completed step and sits in no optimizer group (a backbone
    run under ``torch.no_grad()``, as linear-evaluation scripts do): it cannot change, and
    ``trainable-no-grad`` says so as info. Skip: feature extraction declared but no head found.
    Example:
    ``for p in model.parameters(): p.requires_grad = False`` followed by ``model.load_state_dict(...)``
    is fine, but ``for name, p in model.named_parameters(): if "fc" not in name: p.requires_grad == False``
    (a comparison, not an assignment) freezes nothing.

    Fix:
    ``tlaudit.freeze_backbone(model)`` or ``tlaudit.freeze(model, "<module>")``, and check the result
    with ``tlaudit.trainable_report(model)``.

    References:
    - PyTorch tutorial "Finetuning Torchvision Models", https://pytorch.org/tutorials/beginner/finetuning_torchvision_models_tutorial.html
    - PyTorch notes "Autograd mechanics: Locally disabling gradient computation", https://pytorch.org/docs/stable/notes/autograd.html#locally-disabling-gradient-computation
    - Yosinski et al., "How transferable are features in deep neural networks?", NeurIPS 2014, https://arxiv.org/abs/1411.1792
    """
    trace = ctx.train_trace()
    observed = ctx.observed_gradients()
    names = [
        name
        for pid, name in ctx.meant_frozen.items()
        if pid in trace.grad_received or (ctx.requires_grad[pid] and not _frozen_in_effect(ctx, pid, observed))
    ]
    yield from grouped_findings(
        check,
        names,
        f"meant frozen ({ctx.meant_frozen_source}) but requires or receives a gradient",
        "set requires_grad=False on them: tlaudit.freeze(model, '<module>') or tlaudit.freeze_backbone(model)",
    )


def _frozen_in_effect(ctx: Evidence, pid: int, observed: set[int] | None) -> bool:
    """``requires_grad=True`` but no gradient in a complete step and in no optimizer group: it cannot
    change (trainable-no-grad reports it as info)."""
    return ctx.setup.optimizer is not None and observed is not None and pid not in observed and pid not in ctx.optimizer_ids


@register(
    "frozen-changed",
    "error",
    "a frozen parameter changes value in one train step",
    needs=("optimizer|train_step",),
    phase="train",
    points_to="optimizer",
)
def frozen_changed(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Parameters meant to be frozen, or with ``requires_grad=False``, whose value changes in one
    train step.

    Why:
    ``requires_grad=False`` stops new gradients, not updates: a stale ``.grad`` left from before the
    freeze is still stepped by momentum, and decoupled weight decay (AdamW) shrinks every parameter
    the optimizer holds that has a gradient tensor, zero or not.

    Why it is silent:
    The frozen parameters receive no new gradient, so everything looks frozen in
    ``trainable_report``; the optimizer still applies momentum from an old ``.grad`` and decoupled
    weight decay every step, so the values drift without any error or warning.


    Evidence:
    Error: a frozen parameter's value differs after one traced step (observed, compared bit for
    bit). Skip: the step raised, or the audit's own default step does not fit the model (the
    reason says which).
    Example:
    Freezing ``layer1`` after a few steps, keeping it in an AdamW optimizer with ``weight_decay=0.05``
    and zeroing gradients with ``zero_grad(set_to_none=False)``: ``layer1`` decays every step.

    Fix:
    Build the optimizer from trainable parameters only (``tlaudit.param_groups(model, lr)``), and
    clear stale gradients (``p.grad = None``) of the parameters you freeze.

    References:
    - ``torch.optim.AdamW`` (decoupled weight decay), https://pytorch.org/docs/stable/generated/torch.optim.AdamW.html
    - ``torch.optim.Optimizer.zero_grad`` (``set_to_none``), https://pytorch.org/docs/stable/generated/torch.optim.Optimizer.zero_grad.html
    - Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, https://arxiv.org/abs/1711.05101
    """
    trace = ctx.train_trace().require_complete()
    names = [name for name, p in ctx.params if (id(p) in ctx.meant_frozen or not ctx.requires_grad[id(p)]) and id(p) in trace.changed]
    yield from grouped_findings(
        check,
        names,
        "frozen but changed value in one train step",
        "remove frozen parameters from the optimizer (tlaudit.param_groups) and set their .grad to None",
    )


@register(
    "frozen-bn-train",
    "warning",
    "a BatchNorm layer in the frozen part normalizes with batch statistics in training",
    phase="train",
    points_to="freeze",
)
def frozen_bn_train(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    BatchNorm layers inside the part meant frozen that run in training mode during the train step,
    or that have no running statistics (``track_running_stats=False``) and so always use batch
    statistics. A warning: letting frozen BatchNorm adapt its statistics to the new data is what
    PyTorch's own transfer-learning tutorial does, and a known technique (AdaBN). An error where
    the evidence shows harm: a train batch of one, whose batch statistics are undefined or garbage.

    Why:
    ``requires_grad=False`` freezes BatchNorm's affine weights, not its statistics: in
    ``model.train()`` a "frozen" BatchNorm normalizes with the statistics of each small batch and
    overwrites the pretrained running mean and variance, so the frozen features drift.

    Why it is silent:
    ``model.train()`` is the right call for the trainable part, and BatchNorm in training mode raises
    nothing: it quietly normalizes with each batch's statistics and overwrites the pretrained running
    mean and variance. Small batches make it worse, and the model evaluated later uses drifted
    statistics. (On purpose this is AdaBN: suppress the check with a reason.)


    Evidence:
    Warning: a BatchNorm layer in the part meant frozen ran in training mode in the traced step,
    or keeps no running statistics (AdaBN when meant). Error: the same with a train batch of one,
    whose batch statistics are undefined. Skip: the step raised before any BatchNorm ran.
    Example:
    ``tlaudit.freeze_backbone(model)`` then ``model.train()`` in the training loop: every backbone
    BatchNorm layer updates its running stats.

    Fix:
    Convert them once with ``tlaudit.freeze(model, ..., batchnorm="frozen")`` /
    ``tlaudit.freeze_batchnorm(model, ...)``, or call ``tlaudit.eval_frozen_batchnorm(model)`` after
    every ``model.train()``.

    References:
    - ``torch.nn.BatchNorm2d`` (running statistics, ``momentum``, ``track_running_stats``), https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html
    - PyTorch tutorial "Finetuning Torchvision Models", https://pytorch.org/tutorials/beginner/finetuning_torchvision_models_tutorial.html
    - Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation" (AdaBN), 2016, https://arxiv.org/abs/1603.04779
    - Ioffe & Szegedy, "Batch Normalization", ICML 2015, https://arxiv.org/abs/1502.03167
    """
    trace = ctx.train_trace()
    if trace.error is not None and not any(trace.bn_calls.values()):
        trace.require_complete()
    batch = batch_size(ctx.sample)
    severity = Severity.ERROR if batch == 1 else None
    modules = dict(ctx.inner.named_modules())
    in_train, no_stats = [], []
    for name, calls in trace.bn_calls.items():
        module = modules[name]
        meant = ctx.module_meant_frozen(name)
        if meant is None:
            params = [p for p in (module.weight, module.bias) if p is not None]
            meant = bool(params) and all(id(p) in ctx.meant_frozen for p in params)
        if not meant or not calls:
            continue
        if any(call.no_running_stats for call in calls):
            no_stats.append(name)
        elif any(call.training for call in calls):
            in_train.append(name)
    hint = (
        "tlaudit.freeze_batchnorm(model, '<module>') to fix their statistics, or call "
        "tlaudit.eval_frozen_batchnorm(model) after model.train()"
    )
    yield from grouped_findings(
        check,
        in_train,
        "frozen but in training mode during the train step: they normalize with batch statistics and their "
        "running stats drift toward the new data (AdaBN when meant; the pretrained features shift when not)"
        + (" - with a batch of 1 the batch statistics are garbage" if batch == 1 else ""),
        hint,
        noun="BatchNorm layer",
        severity=severity,
    )
    yield from grouped_findings(
        check,
        no_stats,
        "frozen but without running stats (track_running_stats=False), so batch statistics are always used",
        "keep the pretrained running_mean/running_var (track_running_stats=True) or use tlaudit.FrozenBatchNorm",
        noun="BatchNorm layer",
        severity=severity,
    )
