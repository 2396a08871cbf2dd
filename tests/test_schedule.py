"""``tlaudit/auditing/rules/schedule.py``: the peak LR over a scheduler's whole run, read or computed on copies.

Every schedule here is a real torch (or timm) scheduler on a real optimizer. Where a peak is
computed, it is checked against stepping a deep copy of the same optimizer and scheduler (the
oracle); the number of steps computed is asserted, so the cost of an audit stays bounded.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as sched

import tlaudit.auditing.rules.schedule as schedule
from tlaudit.auditing.rules.schedule import groups_above, peak_lrs

WARMUP, TOTAL = 20_000, 100_000


def linear_warmup(step: int) -> float:
    """transformers' ``get_linear_schedule_with_warmup`` shape: 0 -> 1 over 20k steps, then down to 0 at 100k."""
    return step / WARMUP if step < WARMUP else max(0.0, (TOTAL - step) / (TOTAL - WARMUP))


def cosine_warmup(step: int) -> float:
    """transformers' ``get_cosine_schedule_with_warmup`` shape."""
    if step < WARMUP:
        return step / WARMUP
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * (step - WARMUP) / (TOTAL - WARMUP))))


def sgd(*lrs: float, momentum: float = 0.9) -> torch.optim.SGD:
    """An SGD with one single-parameter group per LR."""
    return torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs], lr=lrs[0], momentum=momentum)


def oracle(build: Callable[[], tuple[torch.optim.Optimizer, Any]], steps: int, *, skip: int = 0) -> tuple[list[float], list[int]]:
    """Peak LR per group and its first step over ``steps`` steps after ``skip``, stepping a fresh, identical pair."""
    opt, s = build()
    for _ in range(skip):
        opt.step()
        s.step()
    peaks = [float(g["lr"]) for g in opt.param_groups]
    at = [0] * len(peaks)
    for step in range(1, steps + 1):
        opt.step()
        s.step()
        for i, g in enumerate(opt.param_groups):
            if float(g["lr"]) > peaks[i] * (1 + 1e-9):
                peaks[i], at[i] = float(g["lr"]), step
    return peaks, at


def state(optimizer: torch.optim.Optimizer, scheduler: Any) -> tuple[Any, ...]:
    return copy.deepcopy((scheduler.state_dict(), [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]))


# -- read where the scheduler declares it ----------------------------------------------------------


def test_one_cycle_over_100k_steps_is_read_from_max_lr_per_group() -> None:
    opt = sgd(1e-3, 1e-4)
    s = sched.OneCycleLR(opt, max_lr=[0.1, 0.01], total_steps=TOTAL)
    before = state(opt, s)
    peaks = peak_lrs(opt, s)
    assert peaks.lrs == (0.1, 0.01)
    assert peaks.steps == (29_999, 29_999)  # pct_start * total_steps - 1 scheduler steps
    assert (peaks.source, peaks.computed) == ("declared", 0)
    assert state(opt, s) == before


def test_one_cycle_agrees_with_stepping_it() -> None:
    def build() -> tuple[torch.optim.Optimizer, Any]:
        opt = sgd(1e-3)
        return opt, sched.OneCycleLR(opt, max_lr=0.1, total_steps=1_000, pct_start=0.25)

    opt, s = build()
    peaks, at = oracle(build, 999)
    assert peak_lrs(opt, s).lrs == pytest.approx(peaks)
    assert peak_lrs(opt, s).steps == tuple(at) == (249,)


def test_one_cycle_past_its_top_peaks_now() -> None:
    opt = sgd(1e-3)
    s = sched.OneCycleLR(opt, max_lr=0.1, total_steps=100)
    for _ in range(40):
        opt.step()
        s.step()
    peaks = peak_lrs(opt, s)
    assert peaks.lrs == (opt.param_groups[0]["lr"],) and peaks.steps == (0,)


def test_cyclic_triangular_peaks_at_max_lr_after_step_size_up() -> None:
    opt = sgd(1e-4, 1e-5)
    s = sched.CyclicLR(opt, base_lr=[1e-4, 1e-5], max_lr=[0.1, 0.02], step_size_up=2_000)
    peaks = peak_lrs(opt, s)
    assert peaks.lrs == pytest.approx((0.1, 0.02), rel=1e-12)
    assert peaks.steps == (2_000, 2_000) and peaks.source == "declared"


def test_cyclic_triangular2_in_its_second_cycle_peaks_at_half_the_height() -> None:
    def build() -> tuple[torch.optim.Optimizer, Any]:
        opt = sgd(1e-4)
        return opt, sched.CyclicLR(opt, base_lr=1e-4, max_lr=0.1, step_size_up=2_000, mode="triangular2")

    opt, s = build()
    for _ in range(5_000):  # cycle 2 (4000 steps each), 1000 steps in
        opt.step()
        s.step()
    peaks = peak_lrs(opt, s)
    want, at = oracle(build, 4_000, skip=5_000)
    assert peaks.steps == tuple(at) == (1_000,)
    assert peaks.lrs == pytest.approx(want) and peaks.lrs[0] == pytest.approx(1e-4 + (0.1 - 1e-4) / 2)


def test_cyclic_exp_range_is_simulated_until_it_stops_rising() -> None:
    def build() -> tuple[torch.optim.Optimizer, Any]:
        opt = sgd(1e-4)
        return opt, sched.CyclicLR(opt, base_lr=1e-4, max_lr=0.1, step_size_up=2_000, mode="exp_range", gamma=0.9999)

    opt, s = build()
    peaks = peak_lrs(opt, s)
    want, at = oracle(build, 8_000)
    assert peaks.lrs == pytest.approx(want) and peaks.steps == tuple(at)
    assert peaks.lrs[0] < 0.1 and peaks.source == "simulated"
    assert peaks.computed == schedule._STALL_MIN


@pytest.mark.parametrize(
    "build",
    [
        lambda o: sched.StepLR(o, step_size=10, gamma=0.1),
        lambda o: sched.MultiStepLR(o, milestones=[30, 80], gamma=0.1),
        lambda o: sched.ExponentialLR(o, gamma=0.95),
    ],
    ids=["step", "multistep", "exponential"],
)
def test_decaying_schedulers_peak_now_without_computing_a_step(build: Callable[[Any], Any]) -> None:
    opt = sgd(0.01)
    peaks = peak_lrs(opt, build(opt))
    assert peaks.lrs == (0.01,) and peaks.steps == (0,) and peaks.computed == 0


# -- evaluated or simulated over the declared horizon ----------------------------------------------


@pytest.mark.parametrize("shape", [linear_warmup, cosine_warmup], ids=["linear", "cosine"])
def test_lambda_warmup_of_20k_steps_is_found_after_40k_evaluated_steps(shape: Callable[[int], float]) -> None:
    """No declared horizon: followed until twice the step of the last new peak."""
    opt = torch.optim.AdamW([torch.zeros(2, requires_grad=True)], lr=1e-2)
    s = sched.LambdaLR(opt, shape)
    before = state(opt, s)
    peaks = peak_lrs(opt, s)
    assert peaks.lrs == pytest.approx((1e-2,)) and peaks.steps == (WARMUP,)
    assert (peaks.source, peaks.computed, peaks.truncated) == ("evaluated", 2 * WARMUP, False)
    assert state(opt, s) == before


def test_lambda_that_never_rises_is_followed_for_the_minimum_stretch() -> None:
    opt = sgd(0.01)
    peaks = peak_lrs(opt, sched.LambdaLR(opt, lambda step: 0.999**step))
    assert peaks.steps == (0,) and peaks.computed == schedule._STALL_MIN


def test_sequential_warmup_then_lambda_is_simulated_until_it_stops_rising() -> None:
    """The stepped simulation, on a stand-in optimizer, also stops at twice the last peak: 40k steps for a 20k warm-up."""
    opt = sgd(0.05)
    warm = sched.LinearLR(opt, start_factor=0.01, total_iters=WARMUP)
    rest = sched.LambdaLR(opt, lambda step: 1.0)
    s = sched.SequentialLR(opt, [warm, rest], milestones=[WARMUP])
    peaks = peak_lrs(opt, s)
    assert peaks.lrs == pytest.approx((0.05,)) and peaks.steps == (WARMUP,)
    assert (peaks.source, peaks.computed) == ("simulated", 2 * WARMUP)


@pytest.mark.parametrize(
    ("build", "horizon"),
    [
        (
            lambda o: sched.SequentialLR(
                o, [sched.LinearLR(o, 0.01, total_iters=500), sched.CosineAnnealingLR(o, T_max=3_000)], milestones=[500]
            ),
            3_500,
        ),
        (
            lambda o: sched.SequentialLR(
                o, [sched.ConstantLR(o, 0.1, total_iters=5_000), sched.ExponentialLR(o, 0.9999)], milestones=[5_000]
            ),
            5_000,
        ),
        (lambda o: sched.ChainedScheduler([sched.LinearLR(o, 0.1, total_iters=800), sched.ExponentialLR(o, 0.999)]), 800),
        (lambda o: sched.ChainedScheduler([sched.ConstantLR(o, 0.5, total_iters=300), sched.CosineAnnealingLR(o, T_max=1_200)]), 1_200),
        (lambda o: sched.PolynomialLR(o, total_iters=700, power=2.0), 700),
        (lambda o: sched.MultiStepLR(o, milestones=[100, 400], gamma=3.0), 400),
    ],
    ids=[
        "sequential-warmup-cosine",
        "sequential-second-phase-high",
        "chained-warmup-exp",
        "chained-const-cosine",
        "polynomial",
        "multistep-rising",
    ],
)
def test_declared_horizons_are_followed_to_their_end_and_agree_with_stepping(build: Callable[[Any], Any], horizon: int) -> None:
    def pair() -> tuple[torch.optim.Optimizer, Any]:
        opt = sgd(0.05, 0.001)
        return opt, build(opt)

    opt, s = pair()
    before = state(opt, s)
    peaks = peak_lrs(opt, s)
    want, at = oracle(pair, horizon + 500)
    assert peaks.lrs == pytest.approx(want, rel=1e-9) and peaks.steps == tuple(at)
    assert (peaks.source, peaks.computed, peaks.truncated) == ("simulated", horizon, False)
    assert state(opt, s) == before


def test_a_forever_rising_schedule_stops_at_the_hard_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule, "_MAX_STEPS", 3_000)
    opt = sgd(1e-4)
    peaks = peak_lrs(opt, sched.ExponentialLR(opt, gamma=1.001))
    assert peaks.computed == 3_000 and peaks.truncated
    assert peaks.steps == (3_000,) and peaks.lrs[0] == pytest.approx(1e-4 * 1.001**3_000)


def test_a_resumed_scheduler_is_followed_from_where_it_is() -> None:
    opt = sgd(0.05)
    s = sched.LinearLR(opt, start_factor=0.01, total_iters=1_000)
    for _ in range(600):
        opt.step()
        s.step()
    peaks = peak_lrs(opt, s)
    assert peaks.steps == (400,) and peaks.computed == 400 and peaks.lrs == pytest.approx((0.05,))


# -- timm's schedulers: their LR function, per epoch or per update ---------------------------------


def test_timm_cosine_warmup_per_epoch() -> None:
    from timm.scheduler import CosineLRScheduler

    opt = sgd(0.1)
    s = CosineLRScheduler(opt, t_initial=100, warmup_t=5, warmup_lr_init=1e-4, warmup_prefix=True)
    before = state(opt, s)
    peaks = peak_lrs(opt, s)
    assert opt.param_groups[0]["lr"] == 1e-4  # timm starts the group at warmup_lr_init
    assert peaks.lrs == pytest.approx((0.1,)) and peaks.steps == (5,) and peaks.unit == "epoch"
    assert (peaks.source, peaks.computed) == ("evaluated", s.get_cycle_length())
    assert state(opt, s) == before


def test_timm_cosine_warmup_per_update_agrees_with_stepping_it() -> None:
    from timm.scheduler import CosineLRScheduler

    opt = sgd(5e-3)
    s = CosineLRScheduler(opt, t_initial=5_000, warmup_t=300, warmup_lr_init=1e-6, t_in_epochs=False, cycle_limit=2)
    peaks = peak_lrs(opt, s)
    copy_opt = copy.deepcopy(opt)
    timm_copy = copy.deepcopy(s, {id(opt): copy_opt})
    seen = []
    for update in range(1, 10_001):
        timm_copy.step_update(update)
        seen.append(copy_opt.param_groups[0]["lr"])
    assert peaks.unit == "update" and peaks.computed == 10_000
    assert peaks.lrs[0] == pytest.approx(max(seen)) and peaks.steps == (seen.index(max(seen)) + 1,)


def test_timm_lr_scale_of_a_group_is_applied() -> None:
    from timm.scheduler import CosineLRScheduler

    opt = torch.optim.SGD(
        [{"params": [torch.zeros(1, requires_grad=True)], "lr_scale": 0.1}, {"params": [torch.zeros(1, requires_grad=True)]}],
        lr=0.05,
    )
    peaks = peak_lrs(opt, CosineLRScheduler(opt, t_initial=50, warmup_t=3, warmup_lr_init=1e-5, warmup_prefix=True))
    assert peaks.lrs == pytest.approx((0.005, 0.05))


def test_timm_step_scheduler_without_a_cycle_length_is_followed_until_it_stops_rising() -> None:
    from timm.scheduler import StepLRScheduler

    opt = sgd(0.1)
    peaks = peak_lrs(opt, StepLRScheduler(opt, decay_t=30, warmup_t=3, warmup_lr_init=1e-4))
    assert peaks.lrs == pytest.approx((0.1,)) and peaks.steps == (3,) and peaks.computed == schedule._STALL_MIN


# -- tensor LRs and the ceiling rule ---------------------------------------------------------------


def test_a_tensor_lr_is_read_as_a_number_and_left_as_it_was() -> None:
    lr = torch.tensor(1e-2)
    opt = torch.optim.Adam([torch.zeros(2, requires_grad=True)], lr=lr, foreach=False)
    s = sched.LinearLR(opt, start_factor=0.1, total_iters=10)
    value = opt.param_groups[0]["lr"].clone()
    peaks = peak_lrs(opt, s)
    assert peaks.lrs == pytest.approx((1e-2,)) and peaks.steps == (10,) and isinstance(peaks.lrs[0], float)
    assert opt.param_groups[0]["lr"] is lr and torch.equal(lr, value)


def test_groups_above_counts_only_what_the_caller_counts() -> None:
    frozen, moving = torch.zeros(1), torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([{"params": [frozen, moving], "lr": 0.1}, {"params": [torch.zeros(1, requires_grad=True)], "lr": 1e-3}], lr=0.1)
    found = groups_above(opt, 0.01, counted=lambda p: p.requires_grad)
    assert [(e.index, e.lr, e.now, len(e.params)) for e in found] == [(0, 0.1, True, 1)]
    assert groups_above(opt, 0.01, counted=lambda p: False) == []


def test_groups_above_names_the_peak_step_and_its_unit() -> None:
    from timm.scheduler import CosineLRScheduler

    opt = sgd(0.1)
    s = CosineLRScheduler(opt, t_initial=1_000, warmup_t=50, warmup_lr_init=1e-4, warmup_prefix=True, t_in_epochs=False)
    found = groups_above(opt, 0.01, scheduler=s)
    assert [(e.peak, e.peak_step, e.unit, e.now) for e in found] == [(pytest.approx(0.1), 50, "update", False)]


def test_a_group_added_after_the_scheduler_was_built_is_read_at_its_current_lr() -> None:
    """torch's OneCycleLR would raise KeyError on its next step: the reader falls back instead of crashing the check."""
    opt = sgd(1e-3)
    s = sched.OneCycleLR(opt, max_lr=0.1, total_steps=100)
    opt.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "lr": 0.5})
    found = groups_above(opt, 0.01, scheduler=s)
    assert [(e.index, e.lr, e.now) for e in found] == [(1, 0.5, True)]
