"""Checks on the optimizer: coverage of the trainable parameters, frozen ones in it, LR ceilings."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from tlaudit._text import count
from tlaudit.auditing.checks._grouping import group, grouped_findings, what
from tlaudit.auditing.checks._registry import Check, register
from tlaudit.auditing.evidence import Evidence
from tlaudit.auditing.report import Finding, Severity
from tlaudit.auditing.rules.schedule import groups_above


@register(
    "optimizer-missing",
    "error",
    "a trainable parameter is in no optimizer group",
    needs=("optimizer",),
    phase="static",
    points_to="optimizer",
)
def optimizer_missing(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Trainable parameters (``requires_grad=True``) that no optimizer group holds, compared by
    identity.

    Why:
    An optimizer built before the head swap holds the old head's parameters: the new head gets
    gradients that are never applied, and the old head, no longer in the model, is stepped instead.

    Why it is silent:
    The optimizer holds references to parameter objects, not to the model: after a head swap the new
    layer's gradients are computed and never applied, while the optimizer steps the detached old head.
    The model runs, the loss barely moves, and no error mentions the optimizer.


    Evidence:
    Error: a parameter with ``requires_grad=True`` that no optimizer group holds and that received a
    gradient in the traced step; in a static audit, where no step is observed (a watched run's
    first audit), the flag and the groups alone. Not an error: one that gets no gradient in a
    completed step and sits in no group (frozen in effect, reported by ``trainable-no-grad`` as
    info). Skip: no optimizer.
    Example:
    ``opt = torch.optim.SGD(model.parameters(), lr=0.01)`` followed by ``model.fc = nn.Linear(512, 10)``.

    Fix:
    Build the optimizer after all surgery and freezing: ``torch.optim.AdamW(tlaudit.param_groups(model, lr))``.

    References:
    - ``torch.optim`` ("Constructing it", per-parameter options), https://pytorch.org/docs/stable/optim.html
    - PyTorch tutorial "Finetuning Torchvision Models", https://pytorch.org/tutorials/beginner/finetuning_torchvision_models_tutorial.html
    """
    observed = ctx.observed_gradients()
    names = [
        name
        for name, p in ctx.params
        if ctx.requires_grad[id(p)] and id(p) not in ctx.optimizer_ids and (observed is None or id(p) in observed)
    ]  # no gradient in the step and in no group: frozen in effect (trainable-no-grad says so as info)
    model_ids = {id(p) for _, p in ctx.params}
    stale = sum(1 for pid in ctx.optimizer_ids if pid not in model_ids)
    extra = f"; the optimizer holds {count(stale, 'parameter')} that are not in the model" if stale else ""
    hint = "build the optimizer after replacing the head and freezing: optimizer(tlaudit.param_groups(model, lr))"
    for subject, members in group(names):
        yield check.finding(
            f"{what(subject, members, 'parameter')}: trainable but in no optimizer group{extra}", subject=subject, hint=hint
        )


@register(
    "optimizer-frozen", "warning", "a frozen parameter sits in the optimizer", needs=("optimizer",), phase="static", points_to="optimizer"
)
def optimizer_frozen(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Parameters meant to be frozen, or with ``requires_grad=False``, that an optimizer group holds,
    and whether the optimizer can move them: a parameter with a ``.grad`` or optimizer state
    (momentum, ``exp_avg``) is moved by the next ``step()``; one meant frozen that still has
    ``requires_grad=True`` trains. One with ``requires_grad=False``, ``.grad`` None and no state is
    skipped by every built-in optimizer (weight decay included) and never moves.

    Why:
    A stale gradient plus momentum or weight decay moves frozen weights (see ``frozen-changed``);
    a parameter declared frozen whose flag is still on trains with the rest. Held but idle, frozen
    parameters cost nothing now: PEFT's documented loop builds
    ``torch.optim.AdamW(model.parameters(), lr=...)`` after ``get_peft_model``, which holds every
    frozen base weight, and is correct.

    Why it is silent:
    Parameters with ``requires_grad=False`` and ``.grad`` None are skipped by every built-in
    optimizer, so nothing seems wrong until a stale gradient or weight decay moves them (see
    ``frozen-changed``) or optimizer state is allocated for them.


    Evidence:
    Warning: a parameter meant frozen, or with ``requires_grad=False``, in an optimizer group with a
    ``.grad`` or optimizer state (the next step moves it; ``frozen-changed`` is the error once it
    moved), or meant frozen (``strategy=``, ``frozen=``) but with ``requires_grad=True``. Info: frozen
    parameters with ``requires_grad=False``, no ``.grad`` and no optimizer state in a group (torch's
    optimizers skip them; they would move only if a stale gradient appeared). Skip: no optimizer.
    Example:
    ``torch.optim.SGD(model.parameters(), momentum=0.9)`` stepped a while, then
    ``tlaudit.freeze_backbone(model)`` with the same optimizer: the backbone's momentum moves it.

    Fix:
    Pass only trainable parameters: ``tlaudit.param_groups(model, lr)``; stages unfrozen later are
    added with ``tlaudit.StagedUnfreezer``.

    References:
    - ``torch.optim`` ("Constructing it", per-parameter options), https://pytorch.org/docs/stable/optim.html
    - ``torch.optim.AdamW`` (parameters whose ``grad`` is None are skipped), https://pytorch.org/docs/stable/generated/torch.optim.AdamW.html
    - PEFT's LoRA sequence-classification example (``AdamW(params=model.parameters(), lr=lr)`` after ``get_peft_model``), https://github.com/huggingface/peft/blob/main/examples/sequence_classification/LoRA.ipynb
    - PyTorch tutorial "Transfer Learning for Computer Vision", https://pytorch.org/tutorials/beginner/transfer_learning_tutorial.html
    """
    optimizer = ctx.setup.optimizer
    assert optimizer is not None  # needs=("optimizer",): audit() runs this check only with one
    trainable, stale, idle = [], [], []
    for name, p in ctx.params:
        frozen_flag = not ctx.requires_grad[id(p)]
        if id(p) not in ctx.optimizer_ids or not (frozen_flag or id(p) in ctx.meant_frozen):
            continue
        if not frozen_flag:
            trainable.append(name)  # meant frozen, flag still on: it trains
        elif p.grad is not None or optimizer.state.get(p):
            stale.append(name)
        else:
            idle.append(name)
    hint = "build the optimizer from tlaudit.param_groups(model, lr)"
    yield from grouped_findings(check, trainable, "frozen but held by the optimizer", hint)
    yield from grouped_findings(
        check, stale, "frozen but held by the optimizer with a .grad or optimizer state, which its next step applies", hint
    )
    yield from grouped_findings(
        check,
        idle,
        "frozen and held by the optimizer, idle: no .grad and no optimizer state, so torch's optimizers skip them "
        "(weight decay included) and they cost nothing now; they would move only if a stale gradient appeared",
        hint,
        severity=Severity.INFO,
    )


@register(
    "lr-threshold",
    "error",
    "a group of pretrained parameters has an LR above lr_max",
    needs=("optimizer",),
    phase="static",
    points_to="optimizer",
)
def lr_threshold(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Optimizer groups holding pretrained (non-head) parameters that can move whose LR is above
    ``lr_max``, now or at the peak the scheduler reaches over the whole run (warm-up, one-cycle,
    cyclic, sequential and chained schedules, timm's schedulers); the finding says at which step
    (epoch or update for timm) the peak falls. ``lr_max`` defaults to 1e-3 for adaptive optimizers
    (Adam family, RMSprop, Adagrad, ...) and 0.05 for SGD. The peak is read from the scheduler
    where it declares it (``max_lr``, ``max_lrs``) and computed on copies where it does not; the
    user's optimizer and scheduler are never stepped. A parameter can move when it was trainable
    before the audit, or has a ``.grad``, or optimizer state (momentum, ``exp_avg``): frozen
    parameters without them are never updated (torch's optimizers skip parameters whose ``.grad``
    is None, weight decay included) and are ``optimizer-frozen``'s business. One finding per group.

    Why:
    Fine-tuning with a from-scratch learning rate wrecks pretrained features in the first few
    hundred steps ("catastrophic forgetting"); the damage is done before validation shows it.

    Why it is silent:
    A high learning rate is not an error to PyTorch: the loss still falls on the new task while
    the pretrained features are destroyed in the first steps, and the model ends up no better than one
    trained from scratch.


    Evidence:
    Error: a group of pretrained parameters that can move with an LR (now or at the schedule's
    peak) above ``lr_max``. Warning: above the caution level (``lr_caution``, ``lr_max / 3`` by
    default, 1e-2 for SGD with its default ceiling), or above ``lr_max`` where the weights cover
    only a backbone and ``lr_max`` is the default (a detector or segmenter trained whole around a
    pretrained backbone: torchvision's SSDlite recipe runs SGD at 0.15). Never judged: heads and new layers (adapters such as LoRA, Hugging Face task heads,
    layers the weights' architecture lacks). Skip: no optimizer.
    Example:
    ``torch.optim.Adam(model.parameters(), lr=1e-2)``, or ``OneCycleLR(opt, max_lr=0.1)`` over a
    backbone.

    Fix:
    A lower LR for pretrained layers than for the head: ``tlaudit.param_groups(model, 1e-4, head_lr=1e-3)``.

    References:
    - Howard & Ruder, "Universal Language Model Fine-tuning for Text Classification", ACL 2018 (discriminative LRs, gradual unfreezing), https://arxiv.org/abs/1801.06146
    - Kornblith, Shlens & Le, "Do Better ImageNet Models Transfer Better?", CVPR 2019, https://arxiv.org/abs/1805.08974
    - Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution", ICLR 2022, https://arxiv.org/abs/2202.10054
    """
    names = {id(p): n for n, p in ctx.params}
    lr_max = ctx.lr_max
    optimizer = ctx.setup.optimizer
    assert optimizer is not None  # needs=("optimizer",): audit() runs this check only with one

    def can_move(p: torch.Tensor) -> bool:
        """Trainable before the audit, or holding a gradient or optimizer state (momentum, exp_avg)."""
        trainable = ctx.requires_grad.get(id(p), bool(getattr(p, "requires_grad", True)))
        return trainable or getattr(p, "grad", None) is not None or bool(optimizer.state.get(p))

    def pretrained(p: torch.Tensor) -> bool:
        return id(p) in names and id(p) not in ctx.head_ids and can_move(p)

    adaptive = not isinstance(optimizer, torch.optim.SGD)
    typical = "1e-5 to 3e-4 with Adam-type optimizers" if adaptive else "1e-4 to 1e-2 with SGD"
    hint = (
        "use a lower LR for pretrained layers than for the head: tlaudit.param_groups(model, lr, head_lr=...), "
        "or layer-wise decay (layer_decay=...); if some of these layers are new, declare them: TransferSetup(head=[...])"
    )
    above_max = {e.index: e for e in groups_above(optimizer, lr_max, counted=pretrained, peaks=ctx.schedule_peaks)}
    # the caution level warns only with evidence that these layers are pretrained transfer layers
    transfer = any(v is not None for v in (ctx.setup.weights, ctx.setup.load_result, ctx.setup.strategy))
    caution = ctx.lr_caution if transfer else lr_max
    above_caution = groups_above(optimizer, caution, counted=pretrained, peaks=ctx.schedule_peaks)
    # weights of a backbone only (a detector or segmenter trained whole around it): the published
    # recipes train such models at from-scratch LRs (torchvision's SSDlite at SGD 0.15), so a default
    # ceiling is no evidence of harm there; a ceiling the user set still is
    whole_model_recipe = ctx.weights_cover_part and ctx.setup.lr_max is None
    for excess in above_caution:
        error = excess.index in above_max and not whole_model_recipe
        excess = above_max.get(excess.index, excess)  # an error reads the peak against lr_max
        level = f"lr_max {lr_max:g}" if excess.index in above_max else f"the caution level {caution:.3g}"
        label = f"group {excess.index}" + (f" ({excess.name})" if excess.name else "")
        held = count(len(excess.params), "pretrained parameter")
        if excess.now:
            message = f"{label} holds {held} with lr {excess.lr:g} > {level}"
        else:
            message = f"{label} holds {held}; the scheduler raises its lr to {excess.peak:g} > {level} at {excess.unit} {excess.peak_step}"
        if excess.index in above_max and whole_model_recipe:
            message += (
                "; a warning, not an error: the weights cover only the backbone, and models trained whole around a "
                "pretrained backbone are trained at such LRs (torchvision's SSDlite recipe: SGD 0.15)"
            )
        elif not error:
            message += f" (fine-tuning pretrained layers typically uses {typical})"
        yield check.finding(
            message,
            subject=f"param_groups[{excess.index}]",
            hint=hint,
            severity=None if error else Severity.WARNING,
        )


@register(
    "optimizer-state",
    "error",
    "the optimizer's state does not fit its parameters",
    needs=("optimizer",),
    phase="train",
    points_to="optimizer",
)
def optimizer_state(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Every tensor in the optimizer's state (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ...)
    against the parameter it belongs to: same shape, and a floating dtype that can be added to it.
    Read before any step runs.

    Why:
    Loading an optimizer checkpoint saved before the head was replaced (or before layers were
    pruned) maps state to parameters by position: the new head inherits the old head's momentum,
    of another shape. Training then crashes at the first step, or, where the shapes happen to
    broadcast, silently mixes the old layer's statistics into the new one.

    Why it is silent:
    ``optimizer.load_state_dict`` checks only that the groups have as many parameters as before;
    a shape mismatch surfaces at the first ``step()`` as a broadcasting error inside the optimizer,
    far from the load that caused it, or not at all when the shapes broadcast.


    Evidence:
    Error: an optimizer state tensor whose shape or dtype cannot go with its parameter, read before
    any step, or ``optimizer.step()`` raising in the audit's default step. Skip: no optimizer.
    Example:
    ``optimizer.load_state_dict(torch.load("imagenet_opt.pt"))`` after ``model.fc = nn.Linear(512, 5)``:
    ``fc.weight``'s ``momentum_buffer`` is (1000, 512).

    Fix:
    Build a fresh optimizer after the head swap (``tlaudit.param_groups(model, lr)``), or load
    only the backbone's part of the optimizer state.

    References:
    - ``torch.optim.Optimizer.load_state_dict`` (state is matched to parameters by position), https://pytorch.org/docs/stable/generated/torch.optim.Optimizer.load_state_dict.html
    - PyTorch "Saving and loading models" (optimizer state_dict), https://pytorch.org/tutorials/beginner/saving_loading_models.html
    """
    names = {id(p): n for n, p in ctx.params}
    wrong: list[str] = []
    example = ""
    optimizer = ctx.setup.optimizer
    assert optimizer is not None  # needs=("optimizer",): audit() runs this check only with one
    for param, state in optimizer.state.items():
        if not isinstance(param, torch.Tensor) or not isinstance(state, dict):
            continue
        for key, value in state.items():
            if not isinstance(value, torch.Tensor) or value.ndim == 0:
                continue  # step counters
            bad_shape = tuple(value.shape) != tuple(param.shape)
            bad_dtype = (
                value.is_floating_point()
                and param.is_floating_point()
                and value.dtype != param.dtype
                and value.dtype.itemsize < param.dtype.itemsize
            )
            if bad_shape or bad_dtype:
                name = names.get(id(param), f"a parameter of shape {tuple(param.shape)} not in the model")
                wrong.append(name)
                if not example:
                    detail = f"shape {tuple(value.shape)}" if bad_shape else f"dtype {value.dtype}"
                    have = f"shape {tuple(param.shape)}" if bad_shape else f"dtype {param.dtype}"
                    example = f"`{key}` of `{name}` has {detail}, the parameter {have}"
                break
    if wrong:
        yield from grouped_findings(
            check,
            wrong,
            f"optimizer state does not fit the parameter (e.g. {example}): loaded from a checkpoint of another model?",
            "build a fresh optimizer after replacing the head (tlaudit.param_groups(model, lr)), or load only the backbone's state",
        )
