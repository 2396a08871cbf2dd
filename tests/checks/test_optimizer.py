"""The checks of ``tlaudit/checks/optimizer.py``: optimizer-missing, optimizer-frozen, lr-threshold.

What they watch: that the optimizer holds what trains and not what is frozen, at a learning rate fit
for pretrained weights. For each check ID, the setups that must trigger it (``TRIGGERS``) next to
the setups that must not (``CLEAN``); ``tests/checks/_cases.py`` turns the tables into tests.
"""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import tlaudit
from tests.cases import NC, Case, fingerprint, fingerprint_diff, make, model, size_of, trainable
from tests.checks._cases import case_tests


TRIGGERS: dict[str, list[Case]] = {}
CLEAN: dict[str, list[Case]] = {}


# -- optimizer-missing -----------------------------------------------------------------------------


def om_built_before_head_swap() -> tlaudit.TransferSetup:
    m = model("resnet18", head=False)
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    m.fc = nn.Linear(512, NC)
    return make(m, optimizer=opt)


def om_head_only_optimizer_fine_tuning() -> tlaudit.TransferSetup:
    m = model("efficientnet_b0")
    return make(m, strategy="fine_tuning", optimizer=torch.optim.AdamW(m.classifier.parameters(), lr=1e-3))


def om_clean_after_surgery() -> tlaudit.TransferSetup:
    m = model("resnet18")
    return make(m, optimizer=torch.optim.SGD(tlaudit.param_groups(m, 0.001), lr=0.001))


def om_clean_feature_extraction() -> tlaudit.TransferSetup:
    m = model("densenet121")
    tlaudit.freeze_backbone(m)
    return make(m, strategy="feature_extraction", optimizer=torch.optim.AdamW(m.classifier.parameters(), lr=1e-3))


TRIGGERS["optimizer-missing"] = [
    Case(
        "resnet18-optimizer-before-head-swap",
        om_built_before_head_swap,
        r"^2 parameters of `fc`: trainable but in no optimizer group; "
        r"the optimizer holds 2 parameters that are not in the model",
        count=1,
    ),
    Case(
        "efficientnet-head-only-optimizer",
        om_head_only_optimizer_fine_tuning,
        r"^\d+ parameters of `features`: trainable but in no optimizer group$",
        count=1,
    ),
]
CLEAN["optimizer-missing"] = [
    Case("resnet18-after-surgery", om_clean_after_surgery),
    Case("densenet121-feature-extraction-head-only", om_clean_feature_extraction),
]


# -- optimizer-frozen ------------------------------------------------------------------------------


def of_adamw_all_params() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m)
    return make(m, strategy="feature_extraction", optimizer=torch.optim.AdamW(m.parameters(), lr=1e-3))


def of_densenet_frozen_features() -> tlaudit.TransferSetup:
    m = model("densenet121")
    tlaudit.freeze(m, "features")
    return make(m, strategy="fine_tuning", frozen=["features"], optimizer=torch.optim.AdamW(m.parameters(), lr=1e-3))


def of_clean_param_groups() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m)
    return make(m, strategy="feature_extraction", optimizer=torch.optim.AdamW(tlaudit.param_groups(m, 1e-3)))


def of_clean_filter_requires_grad() -> tlaudit.TransferSetup:
    m = model("vit_tiny")
    tlaudit.freeze(m, "conv_proj", "encoder.layers")
    return make(m, size_of("vit_tiny"), optimizer=torch.optim.SGD(trainable(m), lr=0.001))


TRIGGERS["optimizer-frozen"] = [
    Case(
        "resnet18-adamw-all-parameters",
        of_adamw_all_params,
        r"^60 parameters in 6 modules \(`conv1`, `bn1`, `layer1` and 3 more\): frozen but held by the optimizer",
        count=1,
    ),
    Case(
        "densenet121-frozen-features",
        of_densenet_frozen_features,
        r"^\d+ parameters of `features`: frozen but held by the optimizer",
        count=1,
    ),
]
CLEAN["optimizer-frozen"] = [
    Case("resnet18-param-groups", of_clean_param_groups),
    Case("vit-filter-requires-grad", of_clean_filter_requires_grad),
]


# -- lr-threshold ----------------------------------------------------------------------------------


def lr_adam_1e2() -> tlaudit.TransferSetup:
    m = model("resnet18")
    return make(m, optimizer=torch.optim.Adam(m.parameters(), lr=1e-2))


def lr_sgd_01() -> tlaudit.TransferSetup:
    m = model("resnet18")
    return make(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))


def lr_explicit_lr_max() -> tlaudit.TransferSetup:
    m = model("mobilenet_v3_small")
    return make(m, optimizer=torch.optim.SGD(m.parameters(), lr=1e-3), lr_max=1e-4)


def lr_onecycle() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.SGD(m.parameters(), lr=0.001, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=100)  # starts at 0.004
    return make(m, optimizer=opt, scheduler=sched)


def lr_linear_warmup() -> tlaudit.TransferSetup:
    m = model("efficientnet_b0")
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=5)  # 0.005 -> 0.05
    return make(m, optimizer=opt, scheduler=sched)


def lr_adamw_onecycle() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=100)  # starts at 4e-4
    return make(m, optimizer=opt, scheduler=sched)


def lr_warmup_then_cosine() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=10)  # 0.0005 -> 0.05 at step 10
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=90)
    return make(m, optimizer=opt, scheduler=torch.optim.lr_scheduler.SequentialLR(opt, [warmup, cosine], milestones=[10]))


def lr_named_groups() -> tlaudit.TransferSetup:
    m = model("vit_tiny")
    return make(m, size_of("vit_tiny"), optimizer=torch.optim.AdamW(tlaudit.param_groups(m, 1e-2)))


def lr_clean_param_groups() -> tlaudit.TransferSetup:
    m = model("resnet18")
    return make(m, optimizer=torch.optim.Adam(tlaudit.param_groups(m, 1e-4, head_lr=1e-2)))  # head excluded


def lr_clean_decaying_scheduler() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    return make(m, optimizer=opt, scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50))


def lr_clean_sgd_cosine_decay() -> tlaudit.TransferSetup:
    m = model("densenet121")
    opt = torch.optim.SGD(m.parameters(), lr=0.005, momentum=0.9)
    return make(m, optimizer=opt, scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50))


def lr_clean_step_lr() -> tlaudit.TransferSetup:
    m = model("mobilenet_v3_small")
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)  # exactly lr_max: not above it
    return make(m, optimizer=opt, scheduler=torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.1))


def lr_clean_head_only_high_lr() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m, batchnorm="frozen")
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(m.fc.parameters(), lr=0.5))


def lr_clean_reduce_on_plateau() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    return make(m, optimizer=opt, scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(opt))


TRIGGERS["lr-threshold"] = [
    Case(
        "resnet18-adam-1e-2",
        lr_adam_1e2,
        r"^group 0 holds 60 pretrained parameters with lr 0\.01 > lr_max 0\.001$",
        count=1,
    ),
    Case(
        "resnet18-sgd-0.1",
        lr_sgd_01,
        r"^group 0 holds 60 pretrained parameters with lr 0\.1 > lr_max 0\.01$",
        count=1,
    ),
    Case("mobilenet-explicit-lr-max", lr_explicit_lr_max, r"with lr 0\.001 > lr_max 0\.0001$", count=1),
    Case(
        "resnet18-onecycle",
        lr_onecycle,
        r"^group 0 holds 60 pretrained parameters; the scheduler raises its lr to 0\.1 > lr_max 0\.01 at step 29$",
        count=1,
    ),
    Case(
        "resnet18-adamw-onecycle",
        lr_adamw_onecycle,
        r"^group 0 holds 60 pretrained parameters; the scheduler raises its lr to 0\.01 > lr_max 0\.001 at step \d+$",
        count=1,
    ),
    Case(
        "efficientnet-linear-warmup",
        lr_linear_warmup,
        r"the scheduler raises its lr to 0\.05 > lr_max 0\.01 at step 5$",
        count=1,
    ),
    Case(
        "resnet18-warmup-then-cosine",
        lr_warmup_then_cosine,
        r"the scheduler raises its lr to 0\.05 > lr_max 0\.01 at step 10$",
        count=1,
    ),
    Case(
        "vit-param-groups-named",
        lr_named_groups,
        r"^group 0 \(backbone\) holds \d+ pretrained parameters with lr 0\.01 > lr_max 0\.001",
        count=2,
    ),
]
CLEAN["lr-threshold"] = [
    Case("resnet18-param-groups-head-high", lr_clean_param_groups),
    Case("resnet18-adamw-cosine-decay", lr_clean_decaying_scheduler),
    Case("densenet121-sgd-cosine-decay", lr_clean_sgd_cosine_decay),
    Case("mobilenet-step-lr-at-lr-max", lr_clean_step_lr),
    Case("resnet18-head-only-high-lr", lr_clean_head_only_high_lr),
    Case("resnet18-reduce-on-plateau", lr_clean_reduce_on_plateau),
]


# -- the tests -------------------------------------------------------------------------------------


test_trigger, test_clean, test_full_audit_changes_nothing = case_tests(TRIGGERS, CLEAN)


# -- lr-threshold never steps the user's scheduler -------------------------------------------------


@pytest.mark.parametrize(
    "build", [lr_onecycle, lr_linear_warmup, lr_warmup_then_cosine, lr_clean_step_lr, lr_clean_decaying_scheduler, lr_adamw_onecycle]
)
def test_lr_threshold_does_not_step_the_users_scheduler(build: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The schedule is simulated on copies: the user's objects are untouched even without the engine's restore."""
    from tlaudit.engine.snapshot import Snapshot

    monkeypatch.setattr(Snapshot, "restore", lambda self: None)
    setup = build()
    fp = fingerprint(setup)
    scheduler, optimizer = setup.scheduler, setup.optimizer
    schedulers = [scheduler, *getattr(scheduler, "_schedulers", [])]

    def position() -> list[Any]:
        return [(s.last_epoch, getattr(s, "_step_count", None), list(s.get_last_lr())) for s in schedulers]

    before, lrs = position(), [g["lr"] for g in optimizer.param_groups]
    tlaudit.audit(setup, select=["lr-threshold"])
    assert position() == before
    assert scheduler.last_epoch == 0
    assert [g["lr"] for g in optimizer.param_groups] == lrs
    assert dict(optimizer.state) == {}
    assert fingerprint_diff(fp, fingerprint(setup)) == []
