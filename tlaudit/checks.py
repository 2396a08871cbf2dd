"""The named checks: one registry, each check declared once with its ID, severity, summary and function.

A check reads an :class:`~tlaudit.context.AuditContext` and yields findings. It never prints, never
raises for a problem it found, and never changes the setup; it raises :class:`~tlaudit.context.Skip`
when it cannot run. Each docstring is the check's documentation: what it checks, why it matters,
an example, and the fix.
"""
from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tlaudit._names import closest
from tlaudit._text import count as _count
from tlaudit._text import examples as _examples
from tlaudit._text import fmt as _fmt
from tlaudit.freezing import FrozenBatchNorm
from tlaudit.context import BN_TYPES, AuditContext, Skip, named_outputs
from tlaudit.report import Finding, Severity
from tlaudit.setup import Strategy

__all__ = ["Check", "REGISTRY", "ALIASES", "get_check", "select_checks", "simulate_peak_lrs"]

CheckFunc = Callable[[AuditContext], Iterable[Finding]]


@dataclass(frozen=True)
class Check:
    """A registered check. ``needs`` name the setup fields without which it is skipped."""

    id: str
    severity: Severity
    summary: str
    func: CheckFunc = field(repr=False)
    needs: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def doc(self) -> str:
        import inspect

        return inspect.cleandoc(self.func.__doc__ or "")

    def section(self, title: str) -> str:
        """One part of the docstring: ``what``, ``why``, ``example`` or ``fix``."""
        match = re.search(rf"^{title}:\s*\n(.*?)(?=^\w[\w ]*:\s*$|\Z)", self.doc, flags=re.M | re.S)
        return match.group(1).strip() if match else ""

    def finding(self, message: str, *, subject: str = "", hint: str = "", severity: Severity | None = None) -> Finding:
        return Finding(self.id, severity or self.severity, message, subject, hint)


REGISTRY: dict[str, Check] = {}
ALIASES: dict[str, str] = {}
_ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def _register(
    check_id: str, severity: str, summary: str, *, needs: Sequence[str] = (), aliases: Sequence[str] = ()
) -> Callable[[CheckFunc], CheckFunc]:
    def decorate(func: CheckFunc) -> CheckFunc:
        if not _ID.match(check_id) or check_id in REGISTRY:
            raise ValueError(f"check ID must be unique kebab-case: {check_id!r}")
        REGISTRY[check_id] = Check(check_id, Severity(severity), summary, func, tuple(needs), tuple(aliases))
        for alias in aliases:
            ALIASES[alias] = check_id
        return func

    return decorate


def get_check(check_id: str, *, field_name: str = "check") -> Check:
    """The check registered under ``check_id`` (or an alias of it)."""
    key = ALIASES.get(check_id, check_id)
    if key not in REGISTRY:
        near = closest(check_id, list(REGISTRY) + list(ALIASES))
        hint = f"; did you mean {', '.join(near)}?" if near else "; `tlaudit checks` lists them"
        raise ValueError(f"unknown check ID: {check_id!r} ({field_name}){hint}")
    return REGISTRY[key]


def select_checks(select: Iterable[str] | str | None = None, ignore: Iterable[str] | str | None = None) -> list[Check]:
    """The checks to run, in registry order: ``select`` (all when None) minus ``ignore``."""

    def ids(value: Iterable[str] | str | None, name: str) -> list[str] | None:
        if value is None:
            return None
        items = value.split(",") if isinstance(value, str) else list(value)
        return [get_check(i.strip(), field_name=name).id for i in items if i.strip()]

    chosen = ids(select, "select")
    dropped = set(ids(ignore, "ignore") or ())
    return [c for c in REGISTRY.values() if (chosen is None or c.id in chosen) and c.id not in dropped]


# -- helpers -------------------------------------------------------------------------------------


_MAX_GROUPS = 3


def _common_prefix(names: Sequence[str]) -> str:
    parts = [n.split(".") for n in names]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common)


def _group(names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Names grouped by top-level module, each group's subject their common prefix.

    More than three groups make a single group whose subject is the common prefix of all
    (empty: the whole model), so one problem across a backbone is one finding.
    """
    buckets: dict[str, list[str]] = {}
    for name in names:
        buckets.setdefault(name.split(".")[0], []).append(name)
    if len(buckets) > _MAX_GROUPS:
        return [(_common_prefix(names), list(names))]
    return [(_common_prefix(bucket), bucket) for bucket in buckets.values()]


def _what(subject: str, members: Sequence[str], noun: str) -> str:
    """```layer1.0.conv1.weight``` / ``12 parameters of `layer1``` / ``60 parameters in 6 modules``."""
    if len(members) == 1:
        return f"`{members[0]}`"
    if subject:
        return f"{_count(len(members), noun)} of `{subject}`"
    tops = list(dict.fromkeys(m.split(".")[0] for m in members))
    return f"{_count(len(members), noun)} in {len(tops)} modules ({_examples(tops)})"


def _param_findings(
    check: Check, names: Sequence[str], problem: str, hint: str, severity: Severity | None = None
) -> Iterator[Finding]:
    for subject, members in _group(names):
        message = f"{_what(subject, members, 'parameter')}: {problem}"
        if len(members) > 1 and subject:
            message += f" ({_examples(members)})"
        yield check.finding(message, subject=subject, hint=hint, severity=severity)


# -- checks --------------------------------------------------------------------------------------


@_register("frozen-grad", "error", "a parameter meant to be frozen requires or receives a gradient")
def frozen_grad(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Parameters meant to be frozen (by ``strategy="feature_extraction"``, by ``frozen`` patterns, or by
    ``requires_grad=False``) that still have ``requires_grad=True``, or that receive a gradient in the
    train step.

    Why:
    A frozen backbone that still trains is the most common silent transfer bug: a typo in the
    freeze loop, or freezing before ``replace_head`` of a model that is rebuilt, leaves pretrained
    layers trainable and the pretrained features are overwritten.

    Example:
    ``for p in model.parameters(): p.requires_grad = False`` followed by ``model.load_state_dict(...)``
    is fine, but ``for name, p in model.named_parameters(): if "fc" not in name: p.requires_grad == False``
    (a comparison, not an assignment) freezes nothing.

    Fix:
    ``tlaudit.freeze_backbone(model)`` or ``tlaudit.freeze(model, "<module>")``, and check the result
    with ``tlaudit.trainable_report(model)``.
    """
    check = REGISTRY["frozen-grad"]
    trace = ctx.train_trace()
    names = [
        name
        for pid, name in ctx.meant_frozen.items()
        if ctx.requires_grad[pid] or pid in trace.grad_received
    ]
    yield from _param_findings(
        check,
        names,
        f"meant frozen ({ctx.meant_frozen_source}) but requires or receives a gradient",
        "set requires_grad=False on them: tlaudit.freeze(model, '<module>') or tlaudit.freeze_backbone(model)",
    )


@_register("frozen-changed", "error", "a frozen parameter changes value in one train step", needs=("optimizer|train_step",))
def frozen_changed(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Parameters meant to be frozen, or with ``requires_grad=False``, whose value changes in one
    train step.

    Why:
    ``requires_grad=False`` stops new gradients, not updates: a stale ``.grad`` left from before the
    freeze is still stepped by momentum, and decoupled weight decay (AdamW) shrinks every parameter
    the optimizer holds that has a gradient tensor, zero or not.

    Example:
    Freezing ``layer1`` after a few steps, keeping it in an AdamW optimizer with ``weight_decay=0.05``
    and zeroing gradients with ``zero_grad(set_to_none=False)``: ``layer1`` decays every step.

    Fix:
    Build the optimizer from trainable parameters only (``tlaudit.param_groups(model, lr)``), and
    clear stale gradients (``p.grad = None``) of the parameters you freeze.
    """
    check = REGISTRY["frozen-changed"]
    trace = ctx.train_trace()
    names = [
        name
        for name, p in ctx.params
        if (id(p) in ctx.meant_frozen or not ctx.requires_grad[id(p)]) and id(p) in trace.changed
    ]
    yield from _param_findings(
        check,
        names,
        "frozen but changed value in one train step",
        "remove frozen parameters from the optimizer (tlaudit.param_groups) and set their .grad to None",
    )


@_register("frozen-bn-train", "error", "a BatchNorm layer in the frozen part normalizes with batch statistics in training")
def frozen_bn_train(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    BatchNorm layers inside the part meant frozen that run in training mode during the train step,
    or that have no running statistics (``track_running_stats=False``) and so always use batch
    statistics. An error for feature extraction, a warning otherwise.

    Why:
    ``requires_grad=False`` freezes BatchNorm's affine weights, not its statistics: in
    ``model.train()`` a "frozen" BatchNorm normalizes with the statistics of each small batch and
    overwrites the pretrained running mean and variance, so the frozen features drift.

    Example:
    ``tlaudit.freeze_backbone(model)`` then ``model.train()`` in the training loop: every backbone
    BatchNorm layer updates its running stats.

    Fix:
    Convert them once with ``tlaudit.freeze(model, ..., batchnorm="frozen")`` /
    ``tlaudit.freeze_batchnorm(model, ...)``, or call ``tlaudit.eval_frozen_batchnorm(model)`` after
    every ``model.train()``.
    """
    check = REGISTRY["frozen-bn-train"]
    trace = ctx.train_trace()
    severity = Severity.ERROR if ctx.setup.strategy is Strategy.FEATURE_EXTRACTION else Severity.WARNING
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
        if any(no_running for _, no_running in calls):
            no_stats.append(name)
        elif any(training for training, _ in calls):
            in_train.append(name)
    hint = (
        "tlaudit.freeze_batchnorm(model, '<module>') to fix their statistics, or call "
        "tlaudit.eval_frozen_batchnorm(model) after model.train()"
    )
    for subject, members in _group(in_train):
        message = (
            f"{_what(subject, members, 'BatchNorm layer')}: frozen but in training mode during the train step, "
            "so batch statistics are used and the running stats drift"
        )
        if len(members) > 1 and subject:
            message += f" ({_examples(members)})"
        yield check.finding(message, subject=subject, hint=hint, severity=severity)
    for subject, members in _group(no_stats):
        yield check.finding(
            f"{_what(subject, members, 'BatchNorm layer')}: frozen but without running stats "
            "(track_running_stats=False), so batch statistics are always used",
            subject=subject,
            hint="keep the pretrained running_mean/running_var (track_running_stats=True) or use tlaudit.FrozenBatchNorm",
            severity=severity,
        )


@_register("head-frozen", "error", "the head cannot train")
def head_frozen(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Head layers (from ``find_heads`` or ``TransferSetup.head``) with parameters that have
    ``requires_grad=False``, that ``frozen`` patterns cover, or whose optimizer group has LR 0.

    Why:
    Freezing the whole model and forgetting to unfreeze the new head trains nothing; the loss
    stays flat and it looks like a data problem.

    Example:
    ``tlaudit.freeze(model)`` after ``replace_head`` instead of before it.

    Fix:
    ``tlaudit.unfreeze(model, "<head>")``, or replace the head after freezing (new layers are trainable).
    """
    check = REGISTRY["head-frozen"]
    for head in ctx.heads:
        params = [(n, p) for n, p in ctx.params if n == head or n.startswith(head + ".")]
        if not params:
            continue
        frozen = [n for n, p in params if not ctx.requires_grad[id(p)]]
        covered = [n for n, p in params if ctx.frozen_patterns and id(p) in ctx.meant_frozen]
        if frozen:
            yield check.finding(
                f"head `{head}` has requires_grad=False ({_examples(frozen)})",
                subject=head,
                hint=f"tlaudit.unfreeze(model, '{head}')",
            )
        elif covered:
            yield check.finding(
                f"head `{head}` is covered by TransferSetup.frozen patterns {list(ctx.frozen_patterns)}",
                subject=head,
                hint="narrow the frozen patterns so they leave the head out",
            )
        elif ctx.setup.optimizer is not None:
            groups = ctx.setup.optimizer.param_groups
            zero = sorted({ctx.optimizer_ids[id(p)] for _, p in params if id(p) in ctx.optimizer_ids and groups[ctx.optimizer_ids[id(p)]]["lr"] == 0})
            if zero:
                yield check.finding(
                    f"head `{head}` sits in optimizer group(s) {zero} with lr 0",
                    subject=head,
                    hint="give the head's group a positive LR",
                )


@_register("head-size", "error", "a model output does not have num_classes columns", needs=("num_classes",))
def head_size(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Every output of the model in the train step (auxiliary outputs too) has ``num_classes``
    columns (dimension 1).

    Why:
    A head left at 1000 ImageNet classes trains without error on labels below 1000, and an
    auxiliary head left unreplaced (Inception's ``AuxLogits.fc``, GoogLeNet's ``aux1``/``aux2``)
    only shows up once training mode adds its loss.

    Example:
    ``model.fc = nn.Linear(2048, 10)`` on ``inception_v3`` leaves ``AuxLogits.fc`` at 1000 outputs.

    Fix:
    ``tlaudit.replace_head(model, num_classes)`` replaces the main and auxiliary heads.
    """
    check = REGISTRY["head-size"]
    trace = ctx.train_trace()
    outputs = named_outputs(trace.outputs)
    if not outputs:
        raise Skip(f"the model's output holds no tensor ({type(trace.outputs).__name__})")
    for name, tensor in outputs:
        columns = tensor.shape[1] if tensor.ndim >= 2 else None
        if columns != ctx.setup.num_classes:
            yield check.finding(
                f"output `{name}` has shape {tuple(tensor.shape)}, expected {ctx.setup.num_classes} columns (num_classes)",
                subject=name,
                hint=f"tlaudit.replace_head(model, {ctx.setup.num_classes}) (auxiliary heads included)",
            )


@_register("trainable-no-grad", "warning", "a trainable parameter receives no gradient in the train step")
def trainable_no_grad(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Parameters with ``requires_grad=True`` (and not meant frozen) that receive no gradient in
    the train step.

    Why:
    Trainable but unused parameters point at a wiring mistake: a head that is replaced but not
    called, a branch detached by ``.detach()`` or ``torch.no_grad()`` inside ``forward``, or an
    auxiliary head whose output the loss ignores. With DDP they also break ``find_unused_parameters=False``.

    Example:
    ``self.new_head = nn.Linear(...)`` added as an attribute while ``forward`` still calls ``self.fc``.

    Fix:
    Use the parameters in the loss, or freeze them if they are not meant to train.
    """
    check = REGISTRY["trainable-no-grad"]
    trace = ctx.train_trace()
    names = [
        name
        for name, p in ctx.params
        if ctx.requires_grad[id(p)] and id(p) not in ctx.meant_frozen and id(p) not in trace.grad_received
    ]
    yield from _param_findings(
        check, names, "trainable but received no gradient in the train step", "use it in the loss, or freeze it"
    )


@_register("optimizer-missing", "error", "a trainable parameter is in no optimizer group", needs=("optimizer",))
def optimizer_missing(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Trainable parameters (``requires_grad=True``) that no optimizer group holds, compared by
    identity.

    Why:
    An optimizer built before the head swap holds the old head's parameters: the new head gets
    gradients that are never applied, and the old head, no longer in the model, is stepped instead.

    Example:
    ``opt = torch.optim.SGD(model.parameters(), lr=0.01)`` followed by ``model.fc = nn.Linear(512, 10)``.

    Fix:
    Build the optimizer after all surgery and freezing: ``torch.optim.AdamW(tlaudit.param_groups(model, lr))``.
    """
    check = REGISTRY["optimizer-missing"]
    names = [name for name, p in ctx.params if ctx.requires_grad[id(p)] and id(p) not in ctx.optimizer_ids]
    model_ids = {id(p) for _, p in ctx.params}
    stale = sum(1 for pid in ctx.optimizer_ids if pid not in model_ids)
    extra = f"; the optimizer holds {_count(stale, 'parameter')} that are not in the model" if stale else ""
    hint = "build the optimizer after replacing the head and freezing: optimizer(tlaudit.param_groups(model, lr))"
    for subject, members in _group(names):
        yield check.finding(
            f"{_what(subject, members, 'parameter')}: trainable but in no optimizer group{extra}", subject=subject, hint=hint
        )


@_register("optimizer-frozen", "warning", "a frozen parameter sits in the optimizer", needs=("optimizer",))
def optimizer_frozen(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Parameters meant to be frozen, or with ``requires_grad=False``, that an optimizer group holds.

    Why:
    Harmless only while their ``.grad`` stays None: a stale gradient plus momentum or weight decay
    moves them (see ``frozen-changed``), and they cost optimizer memory once unfrozen by mistake.

    Example:
    ``torch.optim.AdamW(model.parameters())`` after ``tlaudit.freeze_backbone(model)``.

    Fix:
    Pass only trainable parameters: ``tlaudit.param_groups(model, lr)``; stages unfrozen later are
    added with ``tlaudit.StagedUnfreezer``.
    """
    check = REGISTRY["optimizer-frozen"]
    names = [
        name
        for name, p in ctx.params
        if (id(p) in ctx.meant_frozen or not ctx.requires_grad[id(p)]) and id(p) in ctx.optimizer_ids
    ]
    yield from _param_findings(
        check, names, "frozen but held by the optimizer", "build the optimizer from tlaudit.param_groups(model, lr)"
    )


_SCHEDULER_HORIZON = 1000
_SCHEDULER_MAX_STEPS = 10000


def _scheduler_horizon(scheduler: Any) -> int:
    horizon = _SCHEDULER_HORIZON
    for attr in ("total_steps", "total_iters", "T_max", "T_0"):
        value = getattr(scheduler, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            horizon = max(horizon, value + 1)
    for sub in getattr(scheduler, "_schedulers", []) or []:
        horizon = max(horizon, _scheduler_horizon(sub))
    milestones = getattr(scheduler, "_milestones", None)
    if milestones:
        horizon = max(horizon, int(max(milestones)) + _SCHEDULER_HORIZON)
    return min(horizon, _SCHEDULER_MAX_STEPS)


class _StandIn(torch.optim.Optimizer):
    """An optimizer that holds copies of the user's group hyperparameters and one scalar each; step() does nothing."""

    def __init__(self, groups: list[dict[str, Any]]) -> None:
        super().__init__(
            [{**{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}, "params": [torch.zeros(1, requires_grad=True)]} for g in groups],
            {},
        )

    def step(self, closure: Any = None) -> None:
        return None


_LR_RTOL = 1e-9


def simulate_peak_lrs(optimizer: torch.optim.Optimizer, scheduler: Any) -> tuple[list[float], list[int]]:
    """Peak LR per group, and the first step it is reached, over the scheduler's horizon, on copies.

    The user's optimizer and scheduler are not stepped: the scheduler is deep-copied with its
    optimizer swapped for a stand-in holding one scalar per group. ``ReduceLROnPlateau`` only
    lowers LRs, so its peak is the current LR.
    """
    groups = optimizer.param_groups
    peaks = [float(g["lr"]) for g in groups]
    at = [0] * len(groups)
    if scheduler is None or isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return peaks, at
    stand_in = _StandIn(groups)
    sim = copy.deepcopy(scheduler, {id(optimizer): stand_in})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(1, _scheduler_horizon(scheduler)):
            try:
                stand_in.step()
                sim.step()
            except (ValueError, ZeroDivisionError, IndexError, TypeError):  # e.g. OneCycleLR past total_steps
                break
            for i, g in enumerate(stand_in.param_groups):
                lr = float(g["lr"])
                if lr > peaks[i] * (1 + _LR_RTOL):
                    peaks[i], at[i] = lr, step
    return peaks, at


@_register("lr-threshold", "error", "a group of pretrained parameters has an LR above lr_max", needs=("optimizer",))
def lr_threshold(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Optimizer groups holding pretrained (non-head) parameters whose LR is above ``lr_max``, now
    or at the peak the scheduler reaches (warm-up, one-cycle). ``lr_max`` defaults to 1e-3 for
    adaptive optimizers (Adam family, RMSprop, Adagrad, ...) and 1e-2 for SGD. The schedule is
    simulated on copies; the user's optimizer and scheduler are never stepped.

    Why:
    Fine-tuning with a from-scratch learning rate wrecks pretrained features in the first few
    hundred steps ("catastrophic forgetting"); the damage is done before validation shows it.

    Example:
    ``torch.optim.Adam(model.parameters(), lr=1e-2)``, or ``OneCycleLR(opt, max_lr=0.1)`` over a
    backbone.

    Fix:
    A lower LR for pretrained layers than for the head: ``tlaudit.param_groups(model, 1e-4, head_lr=1e-3)``.
    """
    check = REGISTRY["lr-threshold"]
    optimizer = ctx.setup.optimizer
    peaks, at = simulate_peak_lrs(optimizer, ctx.setup.scheduler)
    names = {id(p): n for n, p in ctx.params}
    lr_max = ctx.lr_max
    for index, group in enumerate(optimizer.param_groups):
        pretrained = [names[id(p)] for p in group["params"] if id(p) in names and id(p) not in ctx.head_ids]
        if not pretrained:
            continue
        label = f"group {index}" + (f" ({group['name']})" if group.get("name") else "")
        subject = f"param_groups[{index}]"
        now = float(group["lr"])
        if now > lr_max:
            message = f"{label} holds {_count(len(pretrained), 'pretrained parameter')} with lr {now:g} > lr_max {lr_max:g}"
        elif peaks[index] > lr_max:
            message = (
                f"{label} holds {_count(len(pretrained), 'pretrained parameter')}; the scheduler raises its lr to "
                f"{peaks[index]:g} > lr_max {lr_max:g} at step {at[index]}"
            )
        else:
            continue
        yield check.finding(
            message,
            subject=subject,
            hint="use a lower LR for pretrained layers than for the head: tlaudit.param_groups(model, lr, head_lr=...)",
        )


_MODE_SENSITIVE = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)


@_register("eval-mode", "error", "a module is in training mode while predict runs", needs=("predict",))
def eval_mode(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Modules called in training mode during ``predict``: an error where dropout or BatchNorm layers
    are affected, a warning where only other modules are (they matter if they read ``self.training``).

    Why:
    In training mode dropout zeroes activations and BatchNorm normalizes with the batch's own
    statistics (and updates the running ones): predictions are noisy, depend on the batch, and
    the model changes while it predicts.

    Example:
    ``def predict(model, x): with torch.no_grad(): return model(x)`` without ``model.eval()``.

    Fix:
    ``with tlaudit.inference(model): model(x)``, or ``model.eval()`` before predicting.
    """
    check = REGISTRY["eval-mode"]
    trace = ctx.predict_trace()
    if not trace.training_modules:
        return
    modules = dict(ctx.inner.named_modules())
    sensitive = [n for n in trace.training_modules if isinstance(modules.get(n), _MODE_SENSITIVE)]
    dropout = [n for n in sensitive if isinstance(modules[n], nn.modules.dropout._DropoutNd)]
    norms = [n for n in sensitive if n not in dropout]
    top = [n for n in trace.training_modules if "." not in n and n]
    subject = "" if "" in trace.training_modules else (top[0] if top else trace.training_modules[0])
    where = f"`{type(ctx.inner).__name__}`" if not subject else f"`{subject}`"
    detail = []
    if dropout:
        detail.append(f"{_count(len(dropout), 'dropout layer')} active ({_examples(dropout)})")
    if norms:
        detail.append(f"{_count(len(norms), 'BatchNorm layer')} using batch statistics ({_examples(norms)})")
    if detail:
        text, severity = "; ".join(detail), None
    else:
        text = (
            f"{_count(len(trace.training_modules), 'module')} in training mode; no dropout or BatchNorm is affected, "
            "but modules that read self.training are"
        )
        severity = Severity.WARNING
    yield check.finding(
        f"{where} ran in training mode during predict: {text}",
        subject=subject,
        hint="call model.eval() in predict, or use `with tlaudit.inference(model):`",
        severity=severity,
    )


def _outputs_equal(a: Any, b: Any) -> bool:
    left, right = named_outputs(a), named_outputs(b)
    if len(left) != len(right):
        return False
    for (_, x), (_, y) in zip(left, right):
        if x.shape != y.shape:
            return False
        if not torch.equal(x, y) and not torch.allclose(x.float(), y.float(), rtol=1e-5, atol=1e-6, equal_nan=True):
            return False
    return True


@_register("eval-nondeterministic", "error", "two predict calls on the same input disagree", needs=("predict",))
def eval_nondeterministic(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Calls ``predict`` twice on the same input and compares the outputs (to 1e-5 relative).

    Why:
    Inference should be a function of its input. Randomness that ``model.eval()`` does not turn
    off (``F.dropout(x, p, training=True)``, random augmentation inside ``forward``, sampling)
    makes every prediction and every metric noisy.

    Example:
    ``x = F.dropout(x, 0.5)`` in a custom ``forward``: ``training`` defaults to True for the
    functional form.

    Fix:
    Pass ``training=self.training`` to functional dropout, and move augmentation out of ``forward``.
    """
    check = REGISTRY["eval-nondeterministic"]
    trace = ctx.predict_trace()
    if not _outputs_equal(*trace.outputs):
        yield check.finding(
            "two predict calls on the same sample returned different outputs",
            subject="predict",
            hint="look for randomness that model.eval() does not switch off, e.g. F.dropout(x, p) without training=self.training",
        )


@_register("grad-inference", "warning", "predict runs with gradients enabled", needs=("predict",))
def grad_inference(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Whether ``predict`` calls the model with autograd enabled (neither ``torch.no_grad()`` nor
    ``torch.inference_mode()``).

    Why:
    Autograd keeps every activation alive for a backward pass that never comes: inference uses
    several times the memory and runs slower.

    Example:
    ``def predict(model, x): model.eval(); return model(x)``.

    Fix:
    ``with tlaudit.inference(model): ...`` or ``with torch.inference_mode(): ...``.
    """
    check = REGISTRY["grad-inference"]
    if ctx.predict_trace().grad_enabled:
        yield check.finding(
            "predict runs the model with gradients enabled",
            subject="predict",
            hint="wrap inference in torch.inference_mode() or `with tlaudit.inference(model):`",
        )


@_register("normalization", "error", "the transform's mean/std differ from the weights' expected ones", needs=("weights", "transform"))
def normalization(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Compares the normalization the ``transform`` applies (torchvision v1/v2 ``Normalize``, preset
    transforms, nested ``Compose``) with the mean/std the ``weights`` were trained with; also a
    transform with no normalization, or with two.

    Why:
    Pretrained features assume the input statistics they were trained on. The wrong mean/std (or
    none) shifts every activation; the model still trains, only worse, and nobody notices.

    Example:
    ``Normalize([0.5] * 3, [0.5] * 3)`` with ``ResNet50_Weights.IMAGENET1K_V2``, which expects
    ``[0.485, 0.456, 0.406]`` / ``[0.229, 0.224, 0.225]``.

    Fix:
    Use the weights' own preset (``weights.transforms()``) or ``Normalize(mean=..., std=...)`` with
    ``tlaudit.expected_normalization(weights)``.
    """
    check = REGISTRY["normalization"]
    expected = ctx.expected
    found = ctx.found_normalizations
    hint = f"Normalize(mean={_fmt(expected.mean)}, std={_fmt(expected.std)}), or use weights.transforms()"
    if not found:
        yield check.finding(
            f"the transform applies no normalization; the weights expect mean {_fmt(expected.mean)}, std {_fmt(expected.std)}",
            subject="transform",
            hint=hint,
        )
        return
    if len(found) > 1:
        yield check.finding(
            f"the transform normalizes {len(found)} times (double normalization)",
            subject="transform",
            hint="keep a single Normalize step",
        )
        return
    actual = found[0]
    if not actual.matches(expected):
        yield check.finding(
            f"the transform normalizes with mean {_fmt(actual.mean)}, std {_fmt(actual.std)}; "
            f"the weights ({expected.source}) expect mean {_fmt(expected.mean)}, std {_fmt(expected.std)}",
            subject="transform",
            hint=hint,
        )


@_register("input-range", "warning", "the sample looks unnormalized or doubly normalized", needs=("sample",))
def input_range(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Per-channel statistics of the ``sample``: values all in 0..1 or 0..255 (pixels that were never
    normalized), or means and standard deviations far from a normalized input's (around 0 and 1),
    as double normalization produces.

    Why:
    The transform the audit sees is not always the one that ran: a second ``Normalize`` in the
    dataset, a ``ToTensor`` missing or doubled. The batch itself tells.

    Example:
    A batch from ``ToTensor()`` alone: every value in [0, 1], channel means near 0.45.

    Fix:
    Normalize once with the weights' mean/std: ``weights.transforms()``.
    """
    check = REGISTRY["input-range"]
    x = ctx.sample
    if not x.is_floating_point() or x.ndim < 3 or x.numel() == 0:
        raise Skip(f"the sample is not a float image batch (dtype {x.dtype}, shape {tuple(x.shape)})")
    flat = x.detach().float().transpose(0, 1).reshape(x.shape[1], -1)
    lo, hi = float(flat.min()), float(flat.max())
    means, stds = flat.mean(dim=1).tolist(), flat.std(dim=1).tolist()
    stats = f"range [{lo:.3g}, {hi:.3g}], channel means {_fmt(means)}, stds {_fmt(stds)}"
    hint = "normalize once with the weights' mean/std (weights.transforms())"
    if lo >= 0 and hi > 2 and hi <= 255:
        yield check.finding(f"the sample looks like 0..255 pixels, not normalized: {stats}", subject="sample", hint=hint)
    elif lo >= 0 and hi <= 1:
        yield check.finding(f"the sample looks like 0..1 pixels, not normalized: {stats}", subject="sample", hint=hint)
    elif any(abs(m) > 1.5 for m in means) or any(s > 3 or s < 0.2 for s in stds):
        yield check.finding(
            f"the sample's statistics are far from a normalized input's (means near 0, stds near 1): {stats}; "
            "doubly normalized?",
            subject="sample",
            hint=hint,
        )


@_register("label-range", "error", "a target is outside [0, num_classes)", needs=("num_classes", "targets"))
def label_range(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    Integer targets outside ``[0, num_classes)`` (the cross-entropy ignore index -100 is allowed),
    or one-hot/soft targets whose last dimension is not ``num_classes``.

    Why:
    Labels from 1..N instead of 0..N-1 crash on CPU but can fail with an opaque device-side assert
    on GPU, and with a 1000-class head left in place they train silently against the wrong classes.

    Example:
    ``ImageFolder`` classes remapped to start at 1; ``num_classes=10`` with a label 10.

    Fix:
    Map labels to ``0 .. num_classes - 1``, or set ``num_classes`` to the real count.
    """
    check = REGISTRY["label-range"]
    t = ctx.targets
    n = ctx.setup.num_classes
    if t.is_floating_point():
        if t.ndim >= 2 and t.shape[-1] != n:
            yield check.finding(
                f"soft/one-hot targets have {t.shape[-1]} columns, expected num_classes {n}",
                subject="targets",
                hint="targets must have one column per class",
            )
        return
    valid = t[t != -100]
    if valid.numel() == 0:
        return
    lo, hi = int(valid.min()), int(valid.max())
    if lo < 0 or hi >= n:
        bad = sorted({int(v) for v in valid[(valid < 0) | (valid >= n)].unique()[:5].tolist()})
        yield check.finding(
            f"targets range over [{lo}, {hi}], outside [0, {n}) (num_classes): e.g. {bad}",
            subject="targets",
            hint=f"map labels to 0..{n - 1} or fix num_classes",
        )


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
    if isinstance(module, (*BN_TYPES, FrozenBatchNorm)):
        if module.running_mean is None:
            return None
        return bool(torch.all(module.running_mean == 0) and torch.all(module.running_var == 1))
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)) and getattr(module, "weight", None) is not None:
        bias_zero = module.bias is None or bool(torch.all(module.bias == 0))
        return bool(torch.all(module.weight == 1)) and bias_zero
    return None


@_register("pretrained-not-loaded", "error", "the backbone looks untrained although pretrained weights are declared", needs=("weights|load_result",))
def pretrained_not_loaded(ctx: AuditContext) -> Iterator[Finding]:
    """What:
    With ``load_result`` (what ``load_state_dict`` returned): missing keys outside the head, or
    unexpected keys (an error). With ``weights`` declared: every norm layer of the backbone still
    at its initial values (BatchNorm running stats 0/1, LayerNorm/GroupNorm weight 1 and bias 0),
    i.e. no pretrained weights were ever loaded (a warning).

    Why:
    ``resnet50()`` instead of ``resnet50(weights=...)``, a ``strict=False`` load whose keys all
    carry a ``module.`` prefix, or a checkpoint for another architecture: training "works" from
    random features, only with far lower accuracy.

    Example:
    ``model.load_state_dict(torch.load("ddp.pt"), strict=False)`` where every key starts with ``module.``.

    Fix:
    Build with ``weights=...``; strip wrapper prefixes from checkpoint keys; load with
    ``strict=True`` after replacing the head, or check the returned missing/unexpected keys.
    """
    check = REGISTRY["pretrained-not-loaded"]
    if ctx.setup.load_result is not None:
        missing, unexpected = _missing_unexpected(ctx.setup.load_result)
        try:
            heads = ctx.heads
        except Skip:
            heads = []
        backbone_missing = [k for k in missing if not any(k == h or k.startswith(h + ".") for h in heads)]
        if backbone_missing:
            yield check.finding(
                f"load_state_dict left {_count(len(backbone_missing), 'backbone key')} missing ({_examples(backbone_missing)})",
                subject="load_result",
                hint="load a checkpoint of the same architecture; strip `module.`/`_orig_mod.` prefixes from its keys",
            )
        if unexpected:
            prefixed = [k for k in unexpected if k.startswith(("module.", "_orig_mod."))]
            extra = "; they carry a wrapper prefix" if prefixed else ""
            yield check.finding(
                f"load_state_dict found {_count(len(unexpected), 'unexpected key')} ({_examples(unexpected)}){extra}",
                subject="load_result",
                hint="strip wrapper prefixes from the checkpoint's keys and load with strict=True",
            )
        if backbone_missing or unexpected or ctx.setup.weights is None:
            return
    verdicts = {}
    for name, module in ctx.inner.named_modules():
        try:
            if name and ctx.is_head(name):
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
            f"weights are declared but all {_count(len(verdicts), 'norm layer')} of the backbone are at their "
            "initial values: pretrained weights look not loaded",
            subject="weights",
            hint="build the model with weights=... or load the checkpoint, and pass load_result= to be sure",
            severity=Severity.WARNING,
        )
