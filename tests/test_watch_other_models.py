"""A model that no optimizer trains and that predicts after the first audits (an EMA model): its first
prediction with a module in training mode is audited, unless it is called again in the step after,
which makes it part of training (a target network). tlaudit/watcher/observe.py notes it with a light
pre-hook while only the step hook stays; tlaudit/watcher/__init__.py decides it at the step after.

* torchvision's classification reference (https://github.com/pytorch/vision/blob/main/references/classification/train.py):
  ``model_ema = ExponentialMovingAverage(...)`` (an ``AveragedModel``) updated after the optimizer
  step, ``evaluate(model_ema, ...)`` after each epoch's ``evaluate(model, ...)``, both in eval mode.
* The seeded mistake: the EMA model validated without ``eval()``, BatchNorm and dropout active.
* A target network that starts later (a teacher called under ``no_grad`` in training mode from the
  second epoch on) is part of training: never stopped.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel

import tlaudit
from tests.test_watch import loader, tiny
from tlaudit import AuditFailed


def train(*, ema_in_eval: bool = True, late_teacher: bool = False) -> list[int]:
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model_ema = AveragedModel(model)
    teacher = copy.deepcopy(model) if late_teacher else None
    ran = []
    for epoch in range(3):
        model.train()
        for x, y in loader():
            if teacher is not None and epoch >= 1:
                with torch.no_grad():
                    teacher(x)
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            model_ema.update_parameters(model)
        model.eval()
        with torch.no_grad():
            for x, _ in loader():
                model(x)
        if ema_in_eval:
            model_ema.eval()
        with torch.no_grad():
            for x, _ in loader():
                model_ema(x)
        ran.append(epoch)
    return ran


def test_an_ema_model_validated_in_eval_mode_is_not_stopped():
    with tlaudit.watch(stream=io.StringIO()) as watched:
        assert train() == [0, 1, 2]
    assert not any(r.errors for r in watched.reports.values())


def test_an_ema_model_validated_without_eval_is_caught_in_the_step_after():
    with pytest.raises(AuditFailed, match=r"^inference audit of another model: AveragedModel, before optimizer step \d+: eval-mode"):
        with tlaudit.watch(stream=io.StringIO()) as watched:
            train(ema_in_eval=False)
    [stage] = [s for s in watched.reports if s.startswith("inference (another model")]
    [error] = watched.reports[stage].by_check("eval-mode")
    assert "`AveragedModel` ran in training mode during predict" in error.message


def test_a_target_network_that_starts_after_the_audits_is_not_stopped():
    with tlaudit.watch(stream=io.StringIO()) as watched:
        assert train(late_teacher=True) == [0, 1, 2]
    assert not any(r.errors for r in watched.reports.values())
    assert not any(s.startswith("inference (another model") for s in watched.reports)


def test_an_ema_model_validated_without_eval_after_the_last_step_is_caught_at_the_end():
    """Two epochs: the EMA model's second validation comes after the last optimizer step."""

    def two_epochs() -> None:
        model = tiny()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        model_ema = AveragedModel(model)
        for _ in range(2):
            model.train()
            for x, y in loader():
                optimizer.zero_grad()
                F.cross_entropy(model(x), y).backward()
                optimizer.step()
                model_ema.update_parameters(model)
            model.eval()
            with torch.inference_mode():  # torchvision's evaluate()
                for x, _ in loader():
                    model(x)
                for x, _ in loader():
                    model_ema(x)

    with pytest.raises(
        AuditFailed, match=r"^inference audit of another model: AveragedModel, at the watch's end, after optimizer step 4: eval-mode"
    ):
        with tlaudit.watch(stream=io.StringIO()):
            two_epochs()
