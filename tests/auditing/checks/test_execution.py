"""The checks of ``tlaudit/auditing/checks/execution.py``: user-code-error.

What they watch: the setup's own ``train_step`` and ``predict`` running without an exception. For
each check ID, the setups that must trigger it (``TRIGGERS``) next to the setups that must not
(``CLEAN``); ``tests/auditing/checks/_cases.py`` turns the tables into tests.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import tlaudit
from tests.support.cases import NC, Case, make, model, predict_inference, trainable
from tests.support.check_cases import case_tests

TRIGGERS: dict[str, list[Case]] = {}
CLEAN: dict[str, list[Case]] = {}


def tutorial_step(m: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
    """The loop of PyTorch's transfer-learning tutorial, calling ``model.forward`` as notebooks do."""
    m.train()
    opt.zero_grad()
    loss = F.cross_entropy(m.forward(x), y)
    loss.backward()
    opt.step()


def crashing_predict(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(m):
        return m(x[:, :2])  # a channel slice the first conv cannot take


def uc_labels_from_one() -> tlaudit.TransferSetup:
    m = model("resnet18")
    return make(
        m, optimizer=torch.optim.SGD(m.parameters(), lr=0.01), train_step=tutorial_step, targets=torch.tensor([1, NC])
    )  # labels numbered 1..N


def uc_head_not_replaced() -> tlaudit.TransferSetup:
    m = model("resnet18", head=False)  # still 1000 outputs, labels up to 1000 crash nothing...

    def step(mm: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
        tutorial_step(mm, x, y.float().unsqueeze(1).expand(-1, NC), opt)  # ...a loss built for NC columns does

    return make(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.01), train_step=step)


def uc_predict_raises() -> tlaudit.TransferSetup:
    m = model("resnet18")
    return make(m, optimizer=torch.optim.SGD(trainable(m), lr=0.01), predict=crashing_predict)


def uc_clean_tutorial() -> tlaudit.TransferSetup:
    m = model("resnet18")
    return make(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.01), train_step=tutorial_step, predict=predict_inference)


TRIGGERS["user-code-error"] = [
    Case(
        "resnet18-labels-numbered-from-one",
        uc_labels_from_one,
        rf"^TransferSetup\.train_step raised IndexError: Target {NC} is out of bounds\.$",
        count=1,
    ),
    Case(
        "resnet18-head-not-replaced",
        uc_head_not_replaced,
        r"^TransferSetup\.train_step raised (RuntimeError|ValueError): ",
        count=1,
    ),
    Case("resnet18-predict-raises", uc_predict_raises, r"^TransferSetup\.predict raised RuntimeError: ", count=1),
]
CLEAN["user-code-error"] = [Case("resnet18-tutorial-step-with-forward", uc_clean_tutorial)]


test_trigger, test_clean, test_full_audit_changes_nothing = case_tests(TRIGGERS, CLEAN)


def test_the_hint_points_at_the_finding_that_explains_the_crash() -> None:
    report = tlaudit.audit(uc_labels_from_one())
    [crash] = report.by_check("user-code-error")
    assert crash.hint == "fix the exception; likely cause: the targets do not fit num_classes (see `label-range`)"
    assert report.by_check("label-range")
    skipped = {s.check: s.reason for s in report.skipped}
    assert skipped["frozen-changed"] == f"the train step raised (IndexError: Target {NC} is out of bounds.); see `user-code-error`"
    report = tlaudit.audit(uc_head_not_replaced(), select=["user-code-error", "head-size"])
    assert report.by_check("user-code-error")[0].hint.endswith("(see `head-size`)")
    assert report.by_check("head-size")[0].message == f"output `fc` has shape (2, 1000), expected {NC} columns (num_classes)"


def test_outputs_are_read_from_the_heads_when_the_step_calls_forward() -> None:
    m = model("resnet18", head=False)
    setup = make(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.01), train_step=tutorial_step, targets=torch.tensor([0, 1]))
    [finding] = tlaudit.audit(setup, select=["head-size"]).findings
    assert finding.message == f"output `fc` has shape (2, 1000), expected {NC} columns (num_classes)"
