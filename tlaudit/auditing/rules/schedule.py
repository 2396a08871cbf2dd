"""The LRs an optimizer's groups will reach over the whole run, and the LR-ceiling rule.

The peak of each group's LR is read from the scheduler where the scheduler declares it, and
computed where it does not, without ever stepping the user's optimizer or scheduler:

- ``OneCycleLR``: each group's ``max_lr``, reached at the end of the first phase
  (``pct_start * total_steps - 1`` scheduler steps).
- ``CyclicLR`` in ``triangular``/``triangular2`` mode: the LR the scheduler's own formula gives at
  the next top of a cycle (``max_lrs`` for a fresh ``triangular`` one).
- ``StepLR``, ``MultiStepLR``, ``ExponentialLR`` with ``gamma <= 1`` and ``ReduceLROnPlateau``
  never raise the LR: the peak is the current LR.
- ``LambdaLR``: its functions evaluated step by step (``base_lr * lr_lambda(step)``).
- timm's schedulers (``timm.scheduler``, recognised by shape, timm is never imported): their own
  LR function ``_get_lr(t)`` evaluated for every epoch or update ``t`` of the run, scaled by a
  group's ``lr_scale`` as timm does; noise (``noise_range_t``) is not modelled.
- Any other scheduler (``SequentialLR``, ``ChainedScheduler``, ``LinearLR``, cosine, warm
  restarts, user classes): simulated on a deep copy whose optimizer is a stand-in that holds one
  scalar per group, so a step costs microseconds, not a model's worth of memory.

How far: a scheduler that declares its run length (``total_iters``, ``T_max``, ``T_0``,
``total_steps``, ``SequentialLR`` milestones plus the last phase, timm's ``get_cycle_length()``)
is followed to its end. Where the length is not declared (``LambdaLR``, ``MultiplicativeLR``,
``CyclicLR`` with ``exp_range`` or a custom ``scale_fn``, timm's step schedulers, user classes),
it is followed until the LR has not reached a new peak for a long stretch: past twice the step of
the last new peak and at least ``_STALL_MIN`` steps. Either way at most ``_MAX_STEPS`` steps are
computed (``SchedulePeaks.truncated`` says when that bound cut the run).

What it costs (a shared 2-core CPU, one thread): a ``LambdaLR`` 20k-step warm-up is found after 40k
evaluated steps in 0.14 s (about 3.5 us a step); the same warm-up in a ``SequentialLR`` after 40k
simulated steps in 0.47 s (about 12 us a step); a timm per-update cosine over 50k updates, 0.3 s;
a schedule that rises forever stops at the 200k-step bound after 0.65 s evaluated, 2.0-2.4 s
simulated. ``OneCycleLR`` and ``CyclicLR`` cost nothing measurable, whatever their length.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, overload

import torch

__all__ = [
    "ADAPTIVE_LR_MAX",
    "SGD_LR_CAUTION",
    "SGD_LR_MAX",
    "GroupExcess",
    "SchedulePeaks",
    "groups_above",
    "peak_lrs",
    "simulate_peak_lrs",
]

# The default LR ceilings for pretrained (non-head) parameters, and where they come from.
# Adaptive optimizers (Adam family, RMSprop, Adagrad): fine-tuning recipes use 1e-5 to 3e-4
# (BERT's 2e-5 to 5e-5, timm's and ViT's fine-tuning 1e-4 or below); 1e-3 is the usual from-scratch
# LR, so above it is an error, above a third of it a warning.
# SGD: torchvision's detection and segmentation references fine-tune ImageNet backbones at 0.02
# (https://github.com/pytorch/vision/tree/main/references/segmentation, the torchvision detection
# tutorial at 0.005); ImageNet is trained from scratch at 0.1 (batch 256). So above 0.05, half the
# from-scratch LR, is an error; above 1e-2, where the classification transfer tutorials stop
# (PyTorch's at 1e-3), a warning.
ADAPTIVE_LR_MAX = 1e-3
SGD_LR_MAX = 0.05
SGD_LR_CAUTION = 1e-2

_STALL_MIN = 10_000
"""Steps an undeclared schedule is always followed for, even when its LR never rises."""
_MAX_STEPS = 200_000
"""Hard bound on the steps computed for one schedule: keeps an audit fast on any schedule."""
_LR_RTOL = 1e-9
_CAUGHT = (ValueError, ZeroDivisionError, IndexError, TypeError, OverflowError)
"""What a scheduler raises past its end (``OneCycleLR`` past ``total_steps``) or on a bad step."""


@dataclass(frozen=True)
class SchedulePeaks:
    """The highest LR each optimizer group reaches over the run, and when.

    Attributes:
        lrs: per group, the peak LR (at least the current one).
        steps: per group, the first step (counted from now, in ``unit``) the peak is reached; 0
            when the current LR is the peak.
        unit: ``"step"`` (``scheduler.step()`` calls), or ``"epoch"``/``"update"`` for timm
            schedulers stepped per epoch or per optimizer update.
        source: ``"current"``, ``"declared"`` (read from the scheduler's settings),
            ``"evaluated"`` (its LR function called per step) or ``"simulated"`` (stepped on a copy).
        computed: how many steps were evaluated or simulated (0 when read or current).
        truncated: the hard bound ``_MAX_STEPS`` stopped the run before its end.
    """

    lrs: tuple[float, ...]
    steps: tuple[int, ...]
    unit: str = "step"
    source: str = "current"
    computed: int = 0
    truncated: bool = False


def _lr(value: Any) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _is_timm(scheduler: Any) -> bool:
    return callable(getattr(scheduler, "_get_lr", None)) and hasattr(scheduler, "t_in_epochs") and hasattr(scheduler, "base_values")


def _horizon(scheduler: Any) -> tuple[int, bool]:
    """``(steps, declared)``: the run length a torch scheduler declares (in its own steps from 0), or a lower bound."""
    lrs = torch.optim.lr_scheduler
    if isinstance(scheduler, lrs.SequentialLR):
        last, declared = _horizon(scheduler._schedulers[-1])
        return int(scheduler._milestones[-1]) + last, declared
    if isinstance(scheduler, lrs.ChainedScheduler):
        parts = [_horizon(sub) for sub in scheduler._schedulers]
        return max((n for n, _ in parts), default=0), all(d for _, d in parts)
    if isinstance(scheduler, (lrs.StepLR, lrs.MultiStepLR, lrs.ExponentialLR)):
        if scheduler.gamma <= 1:
            return 0, True  # never raises the LR
        if isinstance(scheduler, lrs.MultiStepLR):
            return int(max(scheduler.milestones, default=0)), True
        return 0, False
    if isinstance(scheduler, lrs.OneCycleLR):
        return int(scheduler.total_steps) - 1, True
    if isinstance(scheduler, lrs.CosineAnnealingWarmRestarts):
        return int(scheduler.T_0), True  # later cycles restart at the same base LRs
    if isinstance(scheduler, (lrs.LinearLR, lrs.ConstantLR, lrs.PolynomialLR)):
        return int(scheduler.total_iters), True  # constant afterwards
    if isinstance(scheduler, lrs.CosineAnnealingLR):
        return int(scheduler.T_max), True  # the run length the user declared; it would rise again after
    return 0, False  # LambdaLR, MultiplicativeLR, CyclicLR, classes of the user's own


class _StandIn(torch.optim.Optimizer):
    """An optimizer that holds copies of the user's group hyperparameters and one scalar each; step() does nothing."""

    def __init__(self, groups: list[dict[str, Any]]) -> None:
        super().__init__(
            [
                {**{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}, "params": [torch.zeros(1, requires_grad=True)]}
                for g in groups
            ],
            {},
        )

    @overload
    def step(self, closure: None = None) -> None: ...
    @overload
    def step(self, closure: Callable[[], float]) -> float: ...
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # the supertype's signature
        return None


def _follow(
    values: Iterator[list[float]], current: list[float], *, horizon: int, declared: bool
) -> tuple[list[float], list[int], int, bool]:
    """Peaks, the steps they fall at, the steps followed, and whether ``_MAX_STEPS`` cut the run.

    ``values`` yields the LRs after each step from now; ``current`` are those at step 0.

    Stops at ``horizon`` when ``declared``; otherwise once past ``horizon``, ``_STALL_MIN`` and twice
    the step of the last new peak; always at ``_MAX_STEPS`` steps.
    """
    peaks, at = list(current), [0] * len(current)
    last_peak, step = 0, 0
    while True:
        if step >= horizon and (declared or step >= max(_STALL_MIN, 2 * last_peak)):
            return peaks, at, step, False
        if step >= _MAX_STEPS:
            return peaks, at, step, True
        try:
            lrs = next(values)
        except StopIteration:
            return peaks, at, step, False
        step += 1
        for i, lr in enumerate(lrs):
            if lr > peaks[i] * (1 + _LR_RTOL):
                peaks[i], at[i], last_peak = lr, step, step


def _stepped(scheduler: Any, optimizer: torch.optim.Optimizer) -> Iterator[list[float]]:
    stand_in = _StandIn(optimizer.param_groups)
    sim = copy.deepcopy(scheduler, {id(optimizer): stand_in})
    while True:
        try:
            sim.step()  # the stand-in is never stepped: the order warning is silenced by peak_lrs
        except (KeyError, *_CAUGHT):  # e.g. OneCycleLR past total_steps, or a group added after it was built
            return
        yield [_lr(g["lr"]) for g in stand_in.param_groups]


def _lambda_values(scheduler: torch.optim.lr_scheduler.LambdaLR) -> Iterator[list[float]]:
    base = [_lr(b) for b in scheduler.base_lrs]
    step = scheduler.last_epoch
    while True:
        step += 1
        try:
            yield [b * float(f(step)) for b, f in zip(base, scheduler.lr_lambdas)]
        except _CAUGHT:
            return


def _timm_peaks(optimizer: torch.optim.Optimizer, scheduler: Any) -> SchedulePeaks:
    scales = [float(g.get("lr_scale", 1.0)) for g in optimizer.param_groups]

    def at(t: int) -> list[float] | None:
        lrs = scheduler._get_lr(t)
        return None if lrs is None else [float(v) * s for v, s in zip(lrs, scales)]

    def values() -> Iterator[list[float]]:
        t = 0
        while True:
            t += 1
            try:
                lrs = at(t)
            except _CAUGHT:
                return
            if lrs is None:
                return
            yield lrs

    try:
        horizon, declared = int(scheduler.get_cycle_length()), True
    except (AttributeError, *_CAUGHT):
        horizon, declared = 0, False
    first = at(0) or [_lr(g["lr"]) for g in optimizer.param_groups]
    peaks, steps, n, cut = _follow(values(), first, horizon=horizon, declared=declared)
    unit = "epoch" if scheduler.t_in_epochs else "update"
    return SchedulePeaks(tuple(peaks), tuple(steps), unit, "evaluated", n, cut)


def _one_cycle_peaks(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.OneCycleLR) -> SchedulePeaks:
    top = round(scheduler._schedule_phases[0]["end_step"])
    current = [_lr(g["lr"]) for g in optimizer.param_groups]
    if scheduler.last_epoch >= top:  # past the top: the LR only falls from here
        return SchedulePeaks(tuple(current), (0,) * len(current))
    peaks = [max(c, _lr(g["max_lr"])) for c, g in zip(current, optimizer.param_groups)]
    steps = [0 if p == c else top - scheduler.last_epoch for p, c in zip(peaks, current)]
    return SchedulePeaks(tuple(peaks), tuple(steps), source="declared")


def _cyclic_peaks(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.CyclicLR) -> SchedulePeaks:
    """The next top of a cycle, where the LR is highest for the rest of the run (amplitude never grows)."""
    total = scheduler.total_size
    up = round(total * scheduler.step_ratio)
    to_top = int((up - scheduler.last_epoch) % round(total))
    sim = copy.deepcopy(scheduler, {id(optimizer): _StandIn(optimizer.param_groups)})
    sim.last_epoch = scheduler.last_epoch + to_top
    sim.cycle_momentum = False
    top = [_lr(v) for v in sim.get_lr()]
    current = [_lr(g["lr"]) for g in optimizer.param_groups]
    peaks = [max(c, t) for c, t in zip(current, top)]
    steps = [0 if p == c else to_top for p, c in zip(peaks, current)]
    return SchedulePeaks(tuple(peaks), tuple(steps), source="declared")


def peak_lrs(optimizer: torch.optim.Optimizer, scheduler: Any = None) -> SchedulePeaks:
    """The peak LR of each optimizer group over the scheduler's whole run, without stepping either.

    See the module docstring for how each kind of scheduler is read and how far it is followed.
    Warnings the schedulers raise while they are read or simulated are silenced.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.001)
        >>> sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=100_000)
        >>> peaks = peak_lrs(opt, sched)
        >>> peaks.lrs, peaks.steps, peaks.source
        ((0.1,), (29999,), 'declared')
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _peak_lrs(optimizer, scheduler)


def _peak_lrs(optimizer: torch.optim.Optimizer, scheduler: Any) -> SchedulePeaks:
    lrs = torch.optim.lr_scheduler
    current = [_lr(g["lr"]) for g in optimizer.param_groups]
    if scheduler is None or isinstance(scheduler, lrs.ReduceLROnPlateau):
        return SchedulePeaks(tuple(current), (0,) * len(current))
    reader: Callable[[torch.optim.Optimizer, Any], SchedulePeaks] | None = None
    if _is_timm(scheduler):
        reader = _timm_peaks
    elif isinstance(scheduler, lrs.OneCycleLR):
        reader = _one_cycle_peaks
    elif isinstance(scheduler, lrs.CyclicLR) and scheduler._scale_fn_custom is None and scheduler.mode != "exp_range":
        reader = _cyclic_peaks
    if reader is not None:
        try:
            read = reader(optimizer, scheduler)
        except (KeyError, AttributeError, *_CAUGHT):  # groups added after the scheduler was built
            read = None
        if read is not None and len(read.lrs) == len(current):
            return read
        if _is_timm(scheduler):  # nothing to simulate without timm's own step count
            return SchedulePeaks(tuple(current), (0,) * len(current))
    horizon, declared = _horizon(scheduler)
    start = max(int(getattr(scheduler, "last_epoch", 0)), 0)
    remaining = max(horizon - start, 0)
    if declared and remaining == 0:
        return SchedulePeaks(tuple(current), (0,) * len(current))
    if type(scheduler) is lrs.LambdaLR:
        values, source = _lambda_values(scheduler), "evaluated"
    else:
        values, source = _stepped(scheduler, optimizer), "simulated"
    peaks, steps, n, cut = _follow(values, current, horizon=remaining, declared=declared)
    return SchedulePeaks(tuple(peaks), tuple(steps), source=source, computed=n, truncated=cut)


def simulate_peak_lrs(optimizer: torch.optim.Optimizer, scheduler: Any) -> tuple[list[float], list[int]]:
    """Peak LR per group, and the first step it is reached: :func:`peak_lrs` as two lists."""
    peaks = peak_lrs(optimizer, scheduler)
    return list(peaks.lrs), list(peaks.steps)


@dataclass(frozen=True)
class GroupExcess:
    """An optimizer group whose LR, now or at the schedule's peak, is above the ceiling.

    ``peak_step`` is 0 when the current LR is already above it, counted in ``unit`` (see
    :class:`SchedulePeaks`); ``params`` are the counted parameters.
    """

    index: int
    name: str
    lr: float
    peak: float
    peak_step: int
    params: tuple[torch.Tensor, ...]
    unit: str = "step"

    @property
    def now(self) -> bool:
        """The current LR is already above the ceiling (not only the scheduled peak)."""
        return self.peak_step == 0


def groups_above(
    optimizer: torch.optim.Optimizer,
    lr_max: float,
    *,
    scheduler: Any = None,
    counted: Callable[[torch.Tensor], bool] = lambda p: True,
    peaks: SchedulePeaks | None = None,
) -> list[GroupExcess]:
    """The groups holding a ``counted`` parameter whose LR is above ``lr_max`` now or at the scheduled peak.

    The LR-ceiling rule, shared by the ``lr-threshold`` check and ``assert_lr_below``. ``peaks``:
    :func:`peak_lrs` of this optimizer and scheduler when already computed (it is read once per audit).
    """
    found: list[GroupExcess] = []
    groups = [(index, group, tuple(p for p in group["params"] if counted(p))) for index, group in enumerate(optimizer.param_groups)]
    if not any(params for _, _, params in groups):
        return found
    if peaks is None:
        peaks = peak_lrs(optimizer, scheduler)
    for index, group, params in groups:
        if not params:
            continue
        now, name = _lr(group["lr"]), str(group.get("name") or "")
        if now > lr_max:
            found.append(GroupExcess(index, name, now, now, 0, params, peaks.unit))
        elif peaks.lrs[index] > lr_max:
            found.append(GroupExcess(index, name, now, peaks.lrs[index], peaks.steps[index], params, peaks.unit))
    return found
