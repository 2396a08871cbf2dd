"""The traced train step and predict calls: the user's own code raising is a SetupError naming the field."""

from __future__ import annotations

import random
import re
from typing import Any

import numpy
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tlaudit
from tests.support.cases import fingerprint, fingerprint_diff, make, model, normalized, warm_up

# -- the user's own code raising -------------------------------------------------------------------


def _raising_train_step_setup() -> tlaudit.TransferSetup:
    m = model("resnet18")
    optimizer = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    warm_up(m, 64, optimizer)  # momentum buffers and .grad tensors exist before the audit
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)

    def train_step(mm: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
        mm.train()
        opt.zero_grad()
        F.cross_entropy(mm(x), y).backward()
        opt.step()
        scheduler.step()
        mm.layer1.requires_grad_(False)
        mm.layer2.eval()
        mm.fc.weight.grad = torch.ones_like(mm.fc.weight)
        torch.rand(3), random.random(), numpy.random.rand(3)
        torch.set_grad_enabled(False)
        raise RuntimeError("disk full")

    return make(m, optimizer=optimizer, scheduler=scheduler, train_step=train_step)


def _raising_predict_setup() -> tlaudit.TransferSetup:
    m = model("mobilenet_v3_small")
    m.eval()
    calls = []

    def predict(mm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        mm.train()  # BatchNorm running stats update in this forward
        mm.classifier.requires_grad_(False)
        torch.rand(3), random.random(), numpy.random.rand(3)
        out = mm(x)
        if len(calls) == 2:  # the second call fails, after the first one went through
            raise ValueError("bad batch")
        return out

    return make(m, optimizer=torch.optim.AdamW(m.parameters(), lr=1e-4), predict=predict)


@pytest.mark.parametrize(
    ("build", "message", "subject"),
    [
        pytest.param(
            _raising_train_step_setup,
            r"^TransferSetup\.train_step raised RuntimeError: disk full$",
            "train_step",
            id="train_step",
        ),
        pytest.param(_raising_predict_setup, r"^TransferSetup\.predict raised ValueError: bad batch$", "predict", id="predict"),
    ],
)
def test_user_code_raising_is_a_finding_the_other_checks_still_run_and_nothing_changes(build: Any, message: str, subject: str) -> None:
    setup = build()
    before = fingerprint(setup)
    report = tlaudit.audit(setup)
    [finding] = report.by_check("user-code-error")
    assert re.search(message, finding.message) and finding.subject == subject
    assert {"optimizer-missing", "lr-threshold", "label-range"} <= set(report.checks_run)
    assert fingerprint_diff(before, fingerprint(setup)) == []


def test_the_default_step_failing_on_the_sample_is_a_setup_error_naming_it() -> None:
    setup = make(model("resnet18"), sample=normalized()[:, :1])
    before = fingerprint(setup)
    with pytest.raises(
        tlaudit.SetupError, match=r"^TransferSetup\.sample: the model cannot take the sample of shape \(2, 1, 64, 64\)"
    ) as info:
        tlaudit.audit(setup)
    assert info.value.field == "sample"
    assert fingerprint_diff(before, fingerprint(setup)) == []
