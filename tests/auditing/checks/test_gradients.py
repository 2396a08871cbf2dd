"""The checks of ``tlaudit/auditing/checks/gradients.py``: trainable-no-grad.

What they watch: that every trainable parameter receives a gradient. For each check ID, the setups
that must trigger it (``TRIGGERS``) next to the setups that must not (``CLEAN``);
``tests/auditing/checks/_cases.py`` turns the tables into tests.
"""

from __future__ import annotations

import torch
from torch import nn

import tlaudit
from tests.support import field_cases as fc
from tests.support.cases import NC, Case, make, model, step_main_output_only, trainable
from tests.support.check_cases import case_tests

TRIGGERS: dict[str, list[Case]] = {}
CLEAN: dict[str, list[Case]] = {}


# -- trainable-no-grad -----------------------------------------------------------------------------


def tn_unused_layer() -> tlaudit.TransferSetup:
    m = model("resnet18")
    m.new_head = nn.Linear(512, NC)  # added as an attribute; forward still calls fc
    return make(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.01))


def tn_googlenet_aux_ignored() -> tlaudit.TransferSetup:
    m = model("googlenet")
    return make(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.01), train_step=step_main_output_only)


def tn_clean_resnet() -> tlaudit.TransferSetup:
    m = model("resnet18")
    return make(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.01))


def tn_clean_googlenet_aux_loss() -> tlaudit.TransferSetup:
    m = model("googlenet")
    return make(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.01))


def tn_clean_feature_extraction() -> tlaudit.TransferSetup:
    m = model("efficientnet_b0")
    tlaudit.freeze_backbone(m, batchnorm="frozen")
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(trainable(m), lr=0.01))


TRIGGERS["trainable-no-grad"] = [
    Case(
        "resnet18-unused-layer",
        tn_unused_layer,
        r"^2 parameters of `new_head`: trainable but received no gradient in the train step",
        count=1,
    ),
    Case(
        "googlenet-aux-loss-ignored",
        tn_googlenet_aux_ignored,
        r"^\d+ parameters of `aux1`: trainable but received no gradient",
        count=2,
    ),
]
CLEAN["trainable-no-grad"] = [
    Case("resnet18", tn_clean_resnet),
    Case("googlenet-aux-loss", tn_clean_googlenet_aux_loss),
    Case("efficientnet-feature-extraction", tn_clean_feature_extraction),
]


# -- the tests -------------------------------------------------------------------------------------


TRIGGERS["trainable-no-grad"] += [
    Case(
        "no-grad-backbone-frozen-in-effect",
        fc.probe_no_grad,
        r"^60 parameters of `backbone`: frozen in effect: no gradient reaches them in the step and no optimizer "
        r"group holds them; with requires_grad=True they still cost 42\.6 MB",
        severity="info",
        count=1,
    ),
]


test_trigger, test_clean, test_full_audit_changes_nothing = case_tests(TRIGGERS, CLEAN)
