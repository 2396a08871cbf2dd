"""The checks of ``tlaudit/auditing/checks/frozen.py``: frozen-grad, frozen-changed, frozen-bn-train.

What they watch: that parameters meant frozen get no gradient, do not change, and keep their
BatchNorm layers out of training mode. For each check ID, the setups that must trigger it
(``TRIGGERS``) next to the setups that must not (``CLEAN``); ``tests/auditing/checks/_cases.py`` turns the
tables into tests.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import tlaudit
from tests.support import field_cases as fc
from tests.support.cases import Case, make, model, normalized, size_of, step_keep_zero_grads, trainable, warm_up
from tests.support.check_cases import case_tests

TRIGGERS: dict[str, list[Case]] = {}
CLEAN: dict[str, list[Case]] = {}


# -- train steps and freezing helpers these cases use ----------------------------------------------


def step_eval_frozen_bn(m: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
    """``model.train()`` then ``tlaudit.eval_frozen_batchnorm(model)``: frozen BatchNorm uses running stats."""
    m.train()
    tlaudit.eval_frozen_batchnorm(m)
    opt.zero_grad()
    F.cross_entropy(m(x), y).backward()
    opt.step()


def step_unfreezing(name: str) -> Any:
    """A train step that sets ``requires_grad=True`` on the frozen parameter ``name`` before backward."""

    def step(m: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
        m.train()
        opt.zero_grad()
        m.get_parameter(name).requires_grad_(True)
        F.cross_entropy(m(x), y).backward()
        opt.step()

    return step


def typo_freeze(m: nn.Module, head: str = "fc") -> nn.Module:
    """The freeze loop with the ``==`` typo: freezes nothing."""
    for name, param in m.named_parameters():
        if not name.startswith(head):
            param.requires_grad == False  # noqa: E712, B015 - the bug under test: a comparison, not an assignment
    return m


# -- frozen-grad -----------------------------------------------------------------------------------


def fg_typo_loop() -> tlaudit.TransferSetup:
    m = typo_freeze(model("resnet18"))
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(m.fc.parameters(), lr=0.01))


def fg_frozen_pattern_trainable() -> tlaudit.TransferSetup:
    m = model("resnet18")
    return make(m, strategy="fine_tuning", frozen=["layer1"], optimizer=torch.optim.SGD(m.parameters(), lr=0.01))


def fg_data_parallel_typo() -> tlaudit.TransferSetup:
    m = typo_freeze(model("resnet18"))
    return make(nn.DataParallel(m), strategy="feature_extraction", frozen=["module.layer1"])


def fg_data_parallel_prefixed_pattern() -> tlaudit.TransferSetup:
    """``frozen=["module.layer1"]`` on a DataParallel model means ``layer1`` (it was once silently ignored)."""
    m = model("resnet18")
    return make(nn.DataParallel(m), strategy="fine_tuning", frozen=["module.layer1"], optimizer=torch.optim.SGD(m.parameters(), lr=0.01))


def fg_densenet_typo() -> tlaudit.TransferSetup:
    m = typo_freeze(model("densenet121"), head="classifier")
    return make(m, strategy="feature_extraction")


def fg_vit_frozen_encoder_trainable() -> tlaudit.TransferSetup:
    m = model("vit_tiny")
    return make(m, size_of("vit_tiny"), frozen=["encoder"], optimizer=torch.optim.AdamW(m.parameters(), lr=1e-4))


def fg_dynamic_unfreeze() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m, batchnorm="frozen")
    return make(
        m,
        strategy="feature_extraction",
        optimizer=torch.optim.SGD(tlaudit.param_groups(m, 0.01), lr=0.01),
        train_step=step_unfreezing("layer4.1.conv2.weight"),
    )


def fg_dynamic_unfreeze_no_strategy() -> tlaudit.TransferSetup:
    m = model("mobilenet_v3_small")
    tlaudit.freeze(m, "features")
    return make(
        m,
        optimizer=torch.optim.SGD(trainable(m), lr=0.01),
        train_step=step_unfreezing("features.12.0.weight"),
    )


def fg_clean_freeze_backbone() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m)
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(tlaudit.param_groups(m, 0.01), lr=0.01))


def fg_clean_frozen_pattern() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze(m, "layer1", "conv1", "bn1")
    opt = torch.optim.SGD(trainable(m), lr=0.01)
    return make(m, strategy="fine_tuning", frozen=["conv1", "bn1", "layer1"], optimizer=opt)


def fg_clean_vit() -> tlaudit.TransferSetup:
    m = model("vit_tiny")
    tlaudit.freeze_backbone(m)
    return make(m, size_of("vit_tiny"), strategy="feature_extraction", optimizer=torch.optim.AdamW(trainable(m), lr=1e-3))


def fg_clean_googlenet_aux() -> tlaudit.TransferSetup:
    m = model("googlenet")
    tlaudit.freeze_backbone(m, batchnorm="frozen")  # main and both auxiliary heads stay trainable
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(trainable(m), lr=0.01))


def fg_clean_stale_zeroed_grads() -> tlaudit.TransferSetup:
    """layer1 frozen after a step (stale grads); the step zeroes them in place: no gradient is received."""
    m = model("resnet18")
    warm_up(m, 64)
    tlaudit.freeze(m, "layer1")
    return make(
        m,
        frozen=["layer1"],
        optimizer=torch.optim.SGD(tlaudit.param_groups(m, 0.01), lr=0.01),
        train_step=step_keep_zero_grads,
    )


TRIGGERS["frozen-grad"] = [
    Case(
        "resnet18-typo-loop",
        fg_typo_loop,
        r"^60 parameters in 6 modules \(`conv1`, `bn1`, `layer1` and 3 more\): "
        r"meant frozen \(strategy='feature_extraction'\) but requires or receives a gradient",
        count=1,
    ),
    Case(
        "resnet18-frozen-pattern-trainable",
        fg_frozen_pattern_trainable,
        r"^\d+ parameters of `layer1`: meant frozen \(TransferSetup\.frozen\)",
        count=1,
    ),
    Case(
        "resnet18-data-parallel-typo-loop",
        fg_data_parallel_typo,
        r"^60 parameters in 6 modules \(`conv1`, `bn1`, `layer1` and 3 more\): "
        r"meant frozen \(strategy='feature_extraction'\)",
        count=1,
    ),
    Case(
        "resnet18-data-parallel-prefixed-frozen-pattern",
        fg_data_parallel_prefixed_pattern,
        r"^12 parameters of `layer1`: meant frozen \(TransferSetup\.frozen\) but requires or receives a gradient",
        count=1,
    ),
    Case(
        "densenet121-typo-loop",
        fg_densenet_typo,
        r"^\d+ parameters of `features`: meant frozen \(strategy='feature_extraction'\)",
        count=1,
    ),
    Case(
        "vit-frozen-pattern-trainable",
        fg_vit_frozen_encoder_trainable,
        r"^\d+ parameters of `encoder`: meant frozen \(TransferSetup\.frozen\)",
        count=1,
    ),
    Case(
        "resnet18-train-step-unfreezes",
        fg_dynamic_unfreeze,
        r"^`layer4\.1\.conv2\.weight`: meant frozen \(strategy='feature_extraction'\) "
        r"but requires or receives a gradient",
        count=1,
    ),
    Case(
        "mobilenet-train-step-unfreezes-flags-only",
        fg_dynamic_unfreeze_no_strategy,
        r"^`features\.12\.0\.weight`: meant frozen \(requires_grad=False\)",
        count=1,
    ),
]
CLEAN["frozen-grad"] = [
    Case("resnet18-freeze-backbone", fg_clean_freeze_backbone),
    Case("resnet18-frozen-pattern-frozen", fg_clean_frozen_pattern),
    Case("vit-freeze-backbone", fg_clean_vit),
    Case("googlenet-freeze-backbone-aux", fg_clean_googlenet_aux),
    Case("resnet18-stale-grads-zeroed", fg_clean_stale_zeroed_grads),
]


# -- frozen-changed --------------------------------------------------------------------------------


def fc_adamw_stale_zero_grads() -> tlaudit.TransferSetup:
    m = model("resnet18")
    warm_up(m, 64)  # a few steps were trained before layer1 was frozen: every .grad is a tensor
    tlaudit.freeze(m, "layer1")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.05)
    return make(m, frozen=["layer1"], optimizer=opt, train_step=step_keep_zero_grads)


def fc_sgd_momentum_stale() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    warm_up(m, 64, opt)  # momentum buffers for every parameter
    tlaudit.freeze(m, "layer2")
    return make(m, optimizer=opt, train_step=step_keep_zero_grads)


def fc_efficientnet_no_zero_grad() -> tlaudit.TransferSetup:
    m = model("efficientnet_b0")
    warm_up(m, 64)
    tlaudit.freeze_backbone(m, batchnorm="frozen")  # stale gradients stay on the frozen backbone

    def step(mm: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
        mm.train()
        F.cross_entropy(mm(x), y).backward()  # gradient accumulation: no zero_grad
        opt.step()
        opt.zero_grad()

    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(m.parameters(), lr=0.01), train_step=step)


def fc_train_step_unfreezes() -> tlaudit.TransferSetup:
    m = model("squeezenet1_1")
    tlaudit.freeze_backbone(m)
    opt = torch.optim.SGD(m.parameters(), lr=0.01)  # holds the frozen backbone too
    step = step_unfreezing("features.12.expand3x3.weight")
    return make(m, strategy="feature_extraction", optimizer=opt, train_step=step)


def fc_clean_param_groups() -> tlaudit.TransferSetup:
    m = model("resnet18")
    warm_up(m, 64)
    tlaudit.freeze(m, "layer1")
    opt = torch.optim.AdamW(tlaudit.param_groups(m, 1e-4, weight_decay=0.05))
    return make(m, frozen=["layer1"], optimizer=opt, train_step=step_keep_zero_grads)


def fc_clean_adamw_no_stale_grads() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m)  # frozen parameters have .grad None: AdamW skips them
    return make(m, strategy="feature_extraction", optimizer=torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.05))


def fc_clean_vit_train_step_only() -> tlaudit.TransferSetup:
    m = model("vit_tiny")
    tlaudit.freeze_backbone(m)
    opt = torch.optim.AdamW(trainable(m), lr=1e-3)

    def step(mm: nn.Module, x: torch.Tensor, y: torch.Tensor, _: Any) -> None:
        mm.train()
        opt.zero_grad()
        F.cross_entropy(mm(x), y).backward()
        opt.step()

    return make(m, size_of("vit_tiny"), strategy="feature_extraction", train_step=step)


TRIGGERS["frozen-changed"] = [
    Case(
        "resnet18-adamw-decay-stale-zero-grads",
        fc_adamw_stale_zero_grads,
        r"^\d+ parameters of `layer1`: frozen but changed value in one train step",
        count=1,
    ),
    Case(
        "resnet18-sgd-momentum-stale",
        fc_sgd_momentum_stale,
        r"^\d+ parameters of `layer2`: frozen but changed value",
        count=1,
    ),
    Case(
        "efficientnet-accumulated-stale-grads",
        fc_efficientnet_no_zero_grad,
        r"^\d+ parameters of `features`: frozen but changed value",
        count=1,
    ),
    Case(
        "squeezenet-train-step-unfreezes",
        fc_train_step_unfreezes,
        r"^`features\.12\.expand3x3\.weight`: frozen but changed value in one train step$",
        count=1,
    ),
]
CLEAN["frozen-changed"] = [
    Case("resnet18-param-groups", fc_clean_param_groups),
    Case("resnet18-adamw-all-no-stale-grads", fc_clean_adamw_no_stale_grads),
    Case("vit-train-step-only", fc_clean_vit_train_step_only),
]


# -- frozen-bn-train -------------------------------------------------------------------------------


def fb_feature_extraction_keep() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m)  # batchnorm="keep"
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(trainable(m), lr=0.01))


def fb_feature_extraction_batch_of_one() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m)
    return make(
        m,
        strategy="feature_extraction",
        optimizer=torch.optim.SGD(trainable(m), lr=0.01),
        sample=normalized()[:1],
        targets=torch.tensor([1]),
    )


def fb_fine_tuning_frozen_layer1() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze(m, "layer1")
    return make(m, strategy="fine_tuning", frozen=["layer1"], optimizer=torch.optim.SGD(trainable(m), lr=0.01))


def fb_no_running_stats() -> tlaudit.TransferSetup:
    m = model("resnet18")
    m.bn1 = nn.BatchNorm2d(64, track_running_stats=False)
    tlaudit.freeze_backbone(m)
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(trainable(m), lr=0.01), train_step=step_eval_frozen_bn)


def fb_densenet() -> tlaudit.TransferSetup:
    m = model("densenet121")
    tlaudit.freeze_backbone(m)
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(trainable(m), lr=0.01))


def fb_flags_only_mobilenet() -> tlaudit.TransferSetup:
    m = model("mobilenet_v3_small")
    tlaudit.freeze(m, "features.0", "features.1")  # no strategy, no patterns: requires_grad says what is frozen
    return make(m, optimizer=torch.optim.SGD(trainable(m), lr=0.01))


def fb_clean_frozen_batchnorm() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m, batchnorm="frozen")
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(trainable(m), lr=0.01))


def fb_clean_eval_frozen_batchnorm() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m)
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(trainable(m), lr=0.01), train_step=step_eval_frozen_bn)


def fb_clean_efficientnet_frozen_pattern_bn() -> tlaudit.TransferSetup:
    m = model("efficientnet_b0")
    tlaudit.freeze(m, "features.0", "features.1", batchnorm="frozen")
    opt = torch.optim.SGD(trainable(m), lr=0.01)
    return make(m, strategy="fine_tuning", frozen=["features.0", "features.1"], optimizer=opt)


def fb_clean_full_fine_tuning() -> tlaudit.TransferSetup:
    m = model("densenet121")
    return make(m, strategy="fine_tuning", optimizer=torch.optim.SGD(m.parameters(), lr=0.001))


TRIGGERS["frozen-bn-train"] = [
    Case(
        "resnet18-feature-extraction-keep",
        fb_feature_extraction_keep,
        r"^20 BatchNorm layers in 5 modules \(`bn1`, `layer1`, `layer2` and 2 more\): frozen but in training mode "
        r"during the train step: they normalize with batch statistics and their running stats drift toward the new "
        r"data \(AdaBN when meant; the pretrained features shift when not\)$",
        severity="warning",  # what PyTorch's own tutorial does, and AdaBN: no harm in evidence
        count=1,
    ),
    Case(
        "resnet18-feature-extraction-keep-batch-of-one",
        fb_feature_extraction_batch_of_one,
        r"frozen but in training mode .* - with a batch of 1 the batch statistics are garbage$",
        severity="error",
        count=1,
    ),
    Case(
        "resnet18-fine-tuning-frozen-layer1",
        fb_fine_tuning_frozen_layer1,
        r"^4 BatchNorm layers of `layer1`: frozen but in training mode during the train step",
        severity="warning",
        count=1,
    ),
    Case(
        "resnet18-no-running-stats",
        fb_no_running_stats,
        r"^`bn1`: frozen but without running stats \(track_running_stats=False\)",
        severity="warning",
        count=1,
    ),
    Case(
        "densenet121-feature-extraction-keep",
        fb_densenet,
        r"BatchNorm layers of `features`: frozen but in training mode",
        severity="warning",
        count=1,
    ),
    Case(
        "mobilenet-flags-only",
        fb_flags_only_mobilenet,
        r"BatchNorm layers of `features`: frozen but in training mode",
        severity="warning",
        count=1,
    ),
]
CLEAN["frozen-bn-train"] = [
    Case("resnet18-batchnorm-frozen", fb_clean_frozen_batchnorm),
    Case("resnet18-eval-frozen-batchnorm", fb_clean_eval_frozen_batchnorm),
    Case("efficientnet-frozen-pattern-batchnorm-frozen", fb_clean_efficientnet_frozen_pattern_bn),
    Case("densenet121-full-fine-tuning", fb_clean_full_fine_tuning),
]


# -- the tests -------------------------------------------------------------------------------------


CLEAN["frozen-grad"] += [
    Case("no-grad-backbone-declared-feature-extraction", lambda: fc.probe_no_grad(strategy="feature_extraction")),
]


test_trigger, test_clean, test_full_audit_changes_nothing = case_tests(TRIGGERS, CLEAN)
