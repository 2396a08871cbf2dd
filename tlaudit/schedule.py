"""The LRs an optimizer's groups will reach: the scheduler simulated on copies, and the LR-ceiling rule.

The user's optimizer and scheduler are never stepped: the scheduler is deep-copied with its
optimizer swapped for a stand-in that holds one scalar per group.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["GroupExcess", "groups_above", "simulate_peak_lrs"]

_SCHEDULER_HORIZON = 1000
_SCHEDULER_MAX_STEPS = 10000
_LR_RTOL = 1e-9


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


def simulate_peak_lrs(optimizer: torch.optim.Optimizer, scheduler: Any) -> tuple[list[float], list[int]]:
    """Peak LR per group, and the first step it is reached, over the scheduler's horizon, on copies.

    ``ReduceLROnPlateau`` only lowers LRs, so its peak is the current LR.
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


@dataclass(frozen=True)
class GroupExcess:
    """An optimizer group whose LR, now or at the schedule's peak, is above the ceiling.

    ``peak_step`` is 0 when the current LR is already above it; ``params`` are the counted parameters.
    """

    index: int
    name: str
    lr: float
    peak: float
    peak_step: int
    params: tuple[torch.Tensor, ...]

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
) -> list[GroupExcess]:
    """The groups holding a ``counted`` parameter whose LR is above ``lr_max`` now or at the scheduled peak.

    The LR-ceiling rule, shared by the ``lr-threshold`` check and ``assert_lr_below``.
    """
    peaks, at = simulate_peak_lrs(optimizer, scheduler)
    found = []
    for index, group in enumerate(optimizer.param_groups):
        params = tuple(p for p in group["params"] if counted(p))
        if not params:
            continue
        now = float(group["lr"])
        if now > lr_max:
            found.append(GroupExcess(index, str(group.get("name") or ""), now, now, 0, params))
        elif peaks[index] > lr_max:
            found.append(GroupExcess(index, str(group.get("name") or ""), now, peaks[index], at[index], params))
    return found
