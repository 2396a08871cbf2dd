"""The checks of ``tlaudit/auditing/checks/optimizer.py``: optimizer-missing, optimizer-frozen, lr-threshold.

What they watch: that the optimizer holds what trains and not what is frozen, at a learning rate fit
for pretrained weights. For each check ID, the setups that must trigger it (``TRIGGERS``) next to
the setups that must not (``CLEAN``); ``tests/auditing/checks/_cases.py`` turns the tables into tests.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import re
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import tlaudit
from tests.support import field_cases as fc
from tests.support.cases import NC, Case, fingerprint, fingerprint_diff, make, model, normalized, pretend_pretrained, size_of, trainable
from tests.support.check_cases import case_tests

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


def of_momentum_then_frozen() -> tlaudit.TransferSetup:
    """A few steps over everything, then the backbone frozen with the same optimizer: its momentum moves it."""
    m = model("resnet18")
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    x, y = normalized(), torch.tensor([0, 1])
    opt.zero_grad()
    F.cross_entropy(m(x), y).backward()
    opt.step()
    opt.zero_grad()  # .grad None, the momentum buffers stay
    tlaudit.freeze_backbone(m)
    return make(m, strategy="feature_extraction", optimizer=opt)


def of_stale_grad_then_frozen() -> tlaudit.TransferSetup:
    """A backward pass over everything, then ``layer4`` frozen without clearing its gradients."""
    m = model("resnet18")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    F.cross_entropy(m(normalized()), torch.tensor([0, 1])).backward()
    tlaudit.freeze(m, "layer4")
    for name, p in m.named_parameters():
        if not name.startswith("layer4"):
            p.grad = None
    return make(m, optimizer=opt)


def of_declared_frozen_still_trainable() -> tlaudit.TransferSetup:
    """``frozen=["layer4"]`` declared, the freeze never applied: ``layer4`` trains with the rest."""
    m = model("resnet18")
    return make(m, frozen=["layer4"], optimizer=torch.optim.AdamW(m.parameters(), lr=1e-4))


# Frozen parameters with no .grad and no state are skipped by every torch optimizer, weight decay
# included (test_weight_decay_and_momentum_do_not_move_a_parameter_without_grad below): info, not a warning.
IDLE = r"frozen and held by the optimizer, idle: no \.grad and no optimizer state, so torch's optimizers skip them"
TRIGGERS["optimizer-frozen"] = [
    Case(
        "resnet18-adamw-all-parameters",
        of_adamw_all_params,
        r"^60 parameters in 6 modules \(`conv1`, `bn1`, `layer1` and 3 more\): " + IDLE,
        severity="info",
        count=1,
    ),
    Case(
        "densenet121-frozen-features",
        of_densenet_frozen_features,
        r"^\d+ parameters of `features`: " + IDLE,
        severity="info",
        count=1,
    ),
    Case(
        "resnet18-momentum-state-then-frozen",
        of_momentum_then_frozen,
        r"^60 parameters in 6 modules \(`conv1`, `bn1`, `layer1` and 3 more\): frozen but held by the optimizer "
        r"with a \.grad or optimizer state, which its next step applies",
        count=1,
    ),
    Case(
        "resnet18-stale-grad-then-frozen",
        of_stale_grad_then_frozen,
        r"^\d+ parameters of `layer4`: frozen but held by the optimizer with a \.grad or optimizer state",
        count=1,
    ),
    Case(
        "resnet18-declared-frozen-still-trainable",
        of_declared_frozen_still_trainable,
        r"^\d+ parameters of `layer4`: frozen but held by the optimizer \(",
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
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=5)  # 0.01 -> 0.1
    return make(m, optimizer=opt, scheduler=sched)


def lr_adamw_onecycle() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=100)  # starts at 4e-4
    return make(m, optimizer=opt, scheduler=sched)


def lr_warmup_then_cosine() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=10)  # 0.001 -> 0.1 at step 10
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
    opt = torch.optim.SGD(m.parameters(), lr=0.003, momentum=0.9)
    return make(m, optimizer=opt, scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50))


def lr_clean_step_lr() -> tlaudit.TransferSetup:
    m = model("mobilenet_v3_small")
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)  # exactly lr_max: not above it, above the caution level
    return make(m, optimizer=opt, scheduler=torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.1), strategy="fine_tuning")


def lr_clean_head_only_high_lr() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m, batchnorm="frozen")
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(m.fc.parameters(), lr=0.5))


def lr_clean_reduce_on_plateau() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    return make(m, optimizer=opt, scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(opt))


# Long schedules as users write them. transformers' get_linear_schedule_with_warmup and
# get_cosine_schedule_with_warmup are LambdaLRs of these shapes (warm-up 0 -> 1, then decay).
WARMUP, TOTAL = 20_000, 100_000


def linear_warmup(step: int) -> float:
    """The shape of transformers' ``get_linear_schedule_with_warmup(opt, 20_000, 100_000)``."""
    if step < WARMUP:
        return step / WARMUP
    return max(0.0, (TOTAL - step) / (TOTAL - WARMUP))


def cosine_warmup(step: int) -> float:
    """The shape of transformers' ``get_cosine_schedule_with_warmup(opt, 20_000, 100_000)``."""
    if step < WARMUP:
        return step / WARMUP
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * (step - WARMUP) / (TOTAL - WARMUP))))


@functools.cache
def _resnet50_template() -> nn.Module:
    torch.manual_seed(0)
    m = torchvision.models.resnet50(weights=None)
    tlaudit.replace_head(m, NC)
    return pretend_pretrained(m)


def resnet50() -> nn.Module:
    """ResNet-50 with a new head: 159 backbone parameters, 2 in ``fc``."""
    return copy.deepcopy(_resnet50_template())


def lr_onecycle_100k() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.SGD(m.parameters(), lr=0.001, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=100_000)  # top at pct_start * total - 1
    return make(m, optimizer=opt, scheduler=sched)


def lr_lambda_warmup_20k() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)  # lr 0 now, 1e-2 after 20k steps
    return make(m, optimizer=opt, scheduler=torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup))


def lr_lambda_cosine_warmup_20k() -> tlaudit.TransferSetup:
    m = model("mobilenet_v3_small")
    opt = torch.optim.AdamW(m.parameters(), lr=5e-3)
    return make(m, optimizer=opt, scheduler=torch.optim.lr_scheduler.LambdaLR(opt, cosine_warmup))


def lr_timm_cosine_warmup_epochs() -> tlaudit.TransferSetup:
    from timm.scheduler import CosineLRScheduler

    m = model("resnet18")
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)  # timm sets lr to warmup_lr_init now
    sched = CosineLRScheduler(opt, t_initial=100, warmup_t=5, warmup_lr_init=1e-4, warmup_prefix=True)
    return make(m, optimizer=opt, scheduler=sched)


def lr_timm_cosine_warmup_updates() -> tlaudit.TransferSetup:
    from timm.scheduler import CosineLRScheduler

    m = model("resnet18")
    opt = torch.optim.AdamW(m.parameters(), lr=5e-3)
    sched = CosineLRScheduler(opt, t_initial=50_000, warmup_t=2_000, warmup_lr_init=1e-6, t_in_epochs=False)
    return make(m, optimizer=opt, scheduler=sched)


def lr_sequential_second_phase_high() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    gentle = torch.optim.lr_scheduler.ConstantLR(opt, factor=0.1, total_iters=5_000)  # 0.01 for 5000 steps
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9999)  # then from 0.1 down
    return make(m, optimizer=opt, scheduler=torch.optim.lr_scheduler.SequentialLR(opt, [gentle, decay], milestones=[5_000]))


def lr_cyclic() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.SGD(m.parameters(), lr=0.001, momentum=0.9)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=1e-3, max_lr=0.1, step_size_up=2_000)
    return make(m, optimizer=opt, scheduler=sched)


def lr_frozen_with_momentum_state() -> tlaudit.TransferSetup:
    """Trained, then frozen: ``layer4`` keeps momentum buffers in an LR-0.1 group (its momentum moves it)."""
    m = model("resnet18")
    tlaudit.freeze_backbone(m)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    for p in m.layer4.parameters():
        opt.state[p]["momentum_buffer"] = torch.full_like(p, 1e-3)
    return make(m, optimizer=opt)


def lr_frozen_with_stale_grad() -> tlaudit.TransferSetup:
    """A frozen ``conv1`` whose ``.grad`` from before the freeze was never cleared: ``opt.step()`` applies it."""
    m = model("resnet18")
    m.conv1.weight.grad = torch.full_like(m.conv1.weight, 1e-3)
    tlaudit.freeze_backbone(m)
    return make(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1))


def lr_tensor_lr_adam() -> tlaudit.TransferSetup:
    m = model("resnet18")
    return make(m, optimizer=torch.optim.Adam(m.parameters(), lr=torch.tensor(1e-2), foreach=False))


def lr_clean_onecycle_100k() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.AdamW(m.parameters(), lr=1e-5)
    return make(m, optimizer=opt, scheduler=torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-4, total_steps=100_000))


def lr_clean_lambda_warmup_20k() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.AdamW(m.parameters(), lr=2e-4)
    return make(m, optimizer=opt, scheduler=torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup))


def lr_clean_timm_cosine_warmup() -> tlaudit.TransferSetup:
    from timm.scheduler import CosineLRScheduler

    m = model("resnet18")
    opt = torch.optim.SGD(m.parameters(), lr=0.003, momentum=0.9)  # a common fine-tuning LR at the top
    sched = CosineLRScheduler(opt, t_initial=100, warmup_t=5, warmup_lr_init=1e-4, warmup_prefix=True)
    return make(m, optimizer=opt, scheduler=sched)


def lr_clean_sequential() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    gentle = torch.optim.lr_scheduler.ConstantLR(opt, factor=0.1, total_iters=5_000)
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9999)
    return make(
        m, optimizer=opt, scheduler=torch.optim.lr_scheduler.SequentialLR(opt, [gentle, decay], milestones=[5_000]), strategy="fine_tuning"
    )


def lr_clean_cyclic() -> tlaudit.TransferSetup:
    m = model("resnet18")
    opt = torch.optim.SGD(m.parameters(), lr=0.001, momentum=0.9)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=1e-4, max_lr=3e-3, step_size_up=2_000)
    return make(m, optimizer=opt, scheduler=sched)


def lr_clean_frozen_resnet50_one_high_group() -> tlaudit.TransferSetup:
    """The tutorial's feature extractor with the optimizer over everything: 159 frozen parameters and the head, lr 0.1."""
    m = resnet50()
    tlaudit.freeze_backbone(m)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return make(m, strategy="feature_extraction", optimizer=opt)


def step_and_schedule(m: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any, scheduler: Any) -> None:
    m.train()
    opt.zero_grad()
    F.cross_entropy(m(x), y).backward()
    opt.step()
    scheduler.step()


def lr_clean_tensor_lr_stepped_sequential() -> tlaudit.TransferSetup:
    """The same with a SequentialLR: its parts' tensors come back in place too."""
    m = model("resnet18")
    opt = torch.optim.AdamW(m.parameters(), lr=torch.tensor(2e-4), foreach=False)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=10)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=90)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cosine], milestones=[10])
    return make(m, optimizer=opt, scheduler=sched, train_step=functools.partial(step_and_schedule, scheduler=sched))


def lr_clean_tensor_lr_stepped_scheduler() -> tlaudit.TransferSetup:
    """A tensor LR (as compiled optimizers hold it) and a train step that steps the warm-up: fills the tensor in place."""
    m = model("resnet18")
    opt = torch.optim.AdamW(m.parameters(), lr=torch.tensor(2e-4), foreach=False)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=100)
    return make(m, optimizer=opt, scheduler=sched, train_step=functools.partial(step_and_schedule, scheduler=sched))


TRIGGERS["lr-threshold"] = [
    # at the ceiling is no longer silent: above the caution level (lr_max / 3) is a warning
    Case(
        "mobilenet-step-lr-at-lr-max",
        lr_clean_step_lr,
        r"^group 0 holds \d+ pretrained parameters with lr 0\.05 > the caution level 0\.01 \(fine-tuning "
        r"pretrained layers typically uses 1e-4 to 1e-2 with SGD\)$",
        severity="warning",
        count=1,
    ),
    Case(
        "resnet18-sequential-at-lr-max",
        lr_clean_sequential,
        r"^group 0 holds 60 pretrained parameters; the scheduler raises its lr to 0\.05 > the caution level 0\.01 "
        r"at step 5000 ",
        severity="warning",
        count=1,
    ),
    Case(
        "resnet18-adam-1e-2",
        lr_adam_1e2,
        r"^group 0 holds 60 pretrained parameters with lr 0\.01 > lr_max 0\.001$",
        count=1,
    ),
    Case(
        "resnet18-sgd-0.1",
        lr_sgd_01,
        r"^group 0 holds 60 pretrained parameters with lr 0\.1 > lr_max 0\.05$",
        count=1,
    ),
    Case("mobilenet-explicit-lr-max", lr_explicit_lr_max, r"with lr 0\.001 > lr_max 0\.0001$", count=1),
    Case(
        "resnet18-onecycle",
        lr_onecycle,
        r"^group 0 holds 60 pretrained parameters; the scheduler raises its lr to 0\.1 > lr_max 0\.05 at step 29$",
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
        r"the scheduler raises its lr to 0\.1 > lr_max 0\.05 at step 5$",
        count=1,
    ),
    Case(
        "resnet18-warmup-then-cosine",
        lr_warmup_then_cosine,
        r"the scheduler raises its lr to 0\.1 > lr_max 0\.05 at step 10$",
        count=1,
    ),
    Case(
        "vit-param-groups-named",
        lr_named_groups,
        r"^group 0 \(backbone\) holds \d+ pretrained parameters with lr 0\.01 > lr_max 0\.001",
        count=2,
    ),
    Case(
        "resnet18-onecycle-100k-steps",
        lr_onecycle_100k,
        r"^group 0 holds 60 pretrained parameters; the scheduler raises its lr to 0\.1 > lr_max 0\.05 at step 29999$",
        count=1,
    ),
    Case(
        "resnet18-lambda-linear-warmup-20k",
        lr_lambda_warmup_20k,
        r"^group 0 holds 60 pretrained parameters; the scheduler raises its lr to 0\.01 > lr_max 0\.001 at step 20000$",
        count=1,
    ),
    Case(
        "mobilenet-lambda-cosine-warmup-20k",
        lr_lambda_cosine_warmup_20k,
        r"the scheduler raises its lr to 0\.005 > lr_max 0\.001 at step 20000$",
        count=1,
    ),
    Case(
        "resnet18-sequential-second-phase-high",
        lr_sequential_second_phase_high,
        r"^group 0 holds 60 pretrained parameters; the scheduler raises its lr to 0\.1 > lr_max 0\.05 at step 5000$",
        count=1,
    ),
    Case(
        "resnet18-cyclic-max-lr",
        lr_cyclic,
        r"the scheduler raises its lr to 0\.1 > lr_max 0\.05 at step 2000$",
        count=1,
    ),
    Case(
        "resnet18-frozen-layer4-with-momentum-state",
        lr_frozen_with_momentum_state,
        r"^group 0 holds 15 pretrained parameters with lr 0\.1 > lr_max 0\.05$",
        count=1,
    ),
    Case(
        "resnet18-frozen-conv1-with-stale-grad",
        lr_frozen_with_stale_grad,
        r"^group 0 holds 1 pretrained parameter with lr 0\.1 > lr_max 0\.05$",
        count=1,
    ),
    Case(
        "resnet18-tensor-lr-adam",
        lr_tensor_lr_adam,
        r"^group 0 holds 60 pretrained parameters with lr 0\.01 > lr_max 0\.001$",
        count=1,
    ),
]
# torchvision's SSDlite recipe trains the detector whole around an ImageNet backbone at SGD 0.15: a
# warning (the weights cover the backbone only); the same LR on the COCO weights of the whole
# detector is a from-scratch LR on pretrained layers, still an error.
TRIGGERS["lr-threshold"] += [
    Case(
        "ssdlite-recipe-backbone-weights",
        fc.det_ssdlite_recipe,
        r"^group 0 holds \d+ pretrained parameters with lr 0\.15 > lr_max 0\.05; a warning, not an error: the weights "
        r"cover only the backbone",
        severity="warning",
        count=1,
    ),
    Case(
        "ssdlite-recipe-lr-on-whole-detector-weights",
        lambda: fc.det_ssdlite_recipe("SSDLite320_MobileNet_V3_Large_Weights.COCO_V1"),
        r"^group 0 holds \d+ pretrained parameters with lr 0\.15 > lr_max 0\.05$",
        severity="error",
        count=1,
    ),
]
CLEAN["lr-threshold"] = [
    Case("resnet18-param-groups-head-high", lr_clean_param_groups),
    Case("resnet18-adamw-cosine-decay", lr_clean_decaying_scheduler),
    Case("densenet121-sgd-cosine-decay", lr_clean_sgd_cosine_decay),
    Case("resnet18-head-only-high-lr", lr_clean_head_only_high_lr),
    Case("resnet18-reduce-on-plateau", lr_clean_reduce_on_plateau),
    Case("resnet18-onecycle-100k-fine-tuning-lr", lr_clean_onecycle_100k),
    Case("resnet18-lambda-warmup-20k-fine-tuning-lr", lr_clean_lambda_warmup_20k),
    Case("resnet18-cyclic-fine-tuning-lr", lr_clean_cyclic),
    Case("resnet50-159-frozen-and-head-in-one-sgd-0.1-group", lr_clean_frozen_resnet50_one_high_group),
    Case("resnet18-tensor-lr-stepped-by-train-step", lr_clean_tensor_lr_stepped_scheduler),
    Case("resnet18-tensor-lr-sequential-stepped-by-train-step", lr_clean_tensor_lr_stepped_sequential),
]
# The frozen backbone in the LR-0.1 group is optimizer-frozen's finding, one for all 159 parameters.
TRIGGERS["optimizer-frozen"].append(
    Case(
        "resnet50-159-frozen-in-an-sgd-0.1-group",
        lr_clean_frozen_resnet50_one_high_group,
        r"^159 parameters in 6 modules \(`conv1`, `bn1`, `layer1` and 3 more\): " + IDLE,
        severity="info",
        count=1,
    )
)


# timm's schedulers have no ``get_last_lr()``, which ``tests/support/cases.py``'s fingerprint reads: their cases
# run below with the same expectations, and the full audit compares the scheduler's state_dict instead.
TIMM_TRIGGERS = [
    Case(
        "resnet18-timm-cosine-warmup-per-epoch",
        lr_timm_cosine_warmup_epochs,
        r"^group 0 holds 60 pretrained parameters; the scheduler raises its lr to 0\.1 > lr_max 0\.05 at epoch 5$",
        count=1,
    ),
    Case(
        "resnet18-timm-cosine-warmup-per-update",
        lr_timm_cosine_warmup_updates,
        r"the scheduler raises its lr to 0\.0049975 > lr_max 0\.001 at update 1999$",  # warm-up's last update
        count=1,
    ),
]
TIMM_CLEAN = [Case("resnet18-timm-cosine-warmup-fine-tuning-lr", lr_clean_timm_cosine_warmup)]


# -- optimizer-state -------------------------------------------------------------------------------


def _stepped(m: nn.Module, opt: torch.optim.Optimizer, size: int = 64) -> None:
    m.train()
    opt.zero_grad()
    out = m(normalized(size))
    F.cross_entropy(out, torch.arange(2) % out.shape[1]).backward()
    opt.step()


def os_checkpoint_across_head_swap() -> tlaudit.TransferSetup:
    """The usual resume mistake: an optimizer checkpoint saved for the 1000-class head, loaded after the swap."""
    m = model("resnet18", head=False)
    old = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    _stepped(m, old)
    saved = old.state_dict()
    m.fc = nn.Linear(512, NC)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    opt.load_state_dict(saved)
    return make(m, optimizer=opt)


def os_adam_checkpoint_across_head_swap() -> tlaudit.TransferSetup:
    m = model("resnet18", head=False)
    old = torch.optim.AdamW(m.parameters(), lr=1e-4)
    _stepped(m, old)
    saved = old.state_dict()
    m.fc = nn.Linear(512, NC)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    opt.load_state_dict(saved)
    return make(m, optimizer=opt)


def os_clean_resumed_same_model() -> tlaudit.TransferSetup:
    m = model("resnet18")
    old = torch.optim.AdamW(m.parameters(), lr=1e-4)
    _stepped(m, old)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    opt.load_state_dict(old.state_dict())
    return make(m, optimizer=opt)


TRIGGERS["optimizer-state"] = [
    Case(
        "resnet18-sgd-checkpoint-across-head-swap",
        os_checkpoint_across_head_swap,
        r"^2 parameters of `fc`: optimizer state does not fit the parameter \(e\.g\. `momentum_buffer` of `fc\.weight` has "
        rf"shape \(1000, 512\), the parameter shape \({NC}, 512\)\)",
        count=1,
    ),
    Case(
        "resnet18-adamw-checkpoint-across-head-swap",
        os_adam_checkpoint_across_head_swap,
        r"^2 parameters of `fc`: optimizer state does not fit the parameter \(e\.g\. `exp_avg` of `fc\.weight`",
        count=1,
    ),
]
CLEAN["optimizer-state"] = [
    Case("resnet18-resumed-same-model", os_clean_resumed_same_model),
    Case("resnet18-fresh-optimizer", lr_clean_param_groups),
]


# -- the tests -------------------------------------------------------------------------------------


TRIGGERS["optimizer-missing"] += [
    Case("no-grad-probe-head-left-out", fc.probe_no_grad_head_left_out, r"^`fc\.weight`|2 parameters of `fc`", count=1),
]
# the no_grad probe's backbone is frozen in effect only with a traced step: tests/auditing/engine/test_audit.py


test_trigger, test_clean, test_full_audit_changes_nothing = case_tests(TRIGGERS, CLEAN)


def _timm_fingerprint(setup: tlaudit.TransferSetup) -> dict[str, Any]:
    fp = fingerprint(dataclasses.replace(setup, scheduler=None))
    fp["scheduler.state_dict"] = copy.deepcopy(setup.scheduler.state_dict())
    return fp


@pytest.mark.parametrize(
    ("kind", "case"),
    [pytest.param("trigger", c, id=f"trigger:{c.id}") for c in TIMM_TRIGGERS]
    + [pytest.param("clean", c, id=f"clean:{c.id}") for c in TIMM_CLEAN],
)
@pytest.mark.parametrize("full", [False, True], ids=["focused", "full-audit"])
def test_lr_threshold_timm_schedulers(kind: str, case: Case, full: bool) -> None:
    """timm's warm-up read per epoch or per update; a full audit leaves the setup as it was."""
    setup = case.build()
    before = _timm_fingerprint(setup)
    report = tlaudit.audit(setup) if full else tlaudit.audit(setup, select=["lr-threshold"])
    assert fingerprint_diff(before, _timm_fingerprint(setup)) == []
    assert "lr-threshold" in report.checks_run
    found = report.by_check("lr-threshold")
    if kind == "clean":
        assert found == []
        return
    assert len(found) == case.count
    assert re.search(case.match, found[0].message), found[0].message
    assert found[0].severity is tlaudit.Severity.ERROR


# -- lr-threshold never steps the user's scheduler -------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lr_onecycle,
        lr_linear_warmup,
        lr_warmup_then_cosine,
        lr_clean_step_lr,
        lr_clean_decaying_scheduler,
        lr_adamw_onecycle,
        lr_onecycle_100k,
        lr_lambda_warmup_20k,
        lr_sequential_second_phase_high,
        lr_cyclic,
    ],
)
def test_lr_threshold_does_not_step_the_users_scheduler(build: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The schedule is simulated on copies: the user's objects are untouched even without the engine's restore."""
    from tlaudit.auditing.engine.snapshot import Snapshot

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


def test_lr_threshold_does_not_step_a_timm_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    """timm's LR function is evaluated, never stepped: the scheduler's state and the group LRs stay as they were."""
    from tlaudit.auditing.engine.snapshot import Snapshot

    monkeypatch.setattr(Snapshot, "restore", lambda self: None)
    setup = lr_timm_cosine_warmup_updates()
    state, lrs = copy.deepcopy(setup.scheduler.state_dict()), [g["lr"] for g in setup.optimizer.param_groups]
    report = tlaudit.audit(setup, select=["lr-threshold"])
    assert len(report.by_check("lr-threshold")) == 1
    assert setup.scheduler.state_dict() == state
    assert [g["lr"] for g in setup.optimizer.param_groups] == lrs


# -- only parameters that can move count -----------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_weight_decay_and_momentum_do_not_move_a_parameter_without_grad(optimizer: str) -> None:
    """Why lr-threshold leaves frozen parameters without ``.grad`` to optimizer-frozen: torch skips them, decay included."""
    frozen = nn.Parameter(torch.ones(3), requires_grad=False)
    trained = nn.Parameter(torch.ones(3))
    params = [frozen, trained]
    opt = (
        torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1)
        if optimizer == "sgd"
        else torch.optim.AdamW(params, lr=0.1, weight_decay=0.1)
    )
    for _ in range(3):
        opt.zero_grad()
        (trained * 2).sum().backward()
        opt.step()
    assert torch.equal(frozen, torch.ones(3))
    assert not torch.equal(trained, torch.ones(3))
    assert frozen not in opt.state


# -- tensor LRs are restored by value, keeping the tensor ------------------------------------------


def test_a_tensor_lr_filled_by_the_users_step_is_restored_in_place() -> None:
    """The user's train step steps the scheduler, which fills the LR tensor in place: the audit puts its value back."""
    setup = lr_clean_tensor_lr_stepped_scheduler()
    groups = setup.optimizer.param_groups
    before = [(g["lr"], g["lr"].clone(), g["initial_lr"], g["initial_lr"].clone()) for g in groups]
    last_epoch = setup.scheduler.last_epoch
    report = tlaudit.audit(setup)
    assert "lr-threshold" in report.checks_run
    for g, (lr, value, initial, initial_value) in zip(setup.optimizer.param_groups, before):
        assert g["lr"] is lr and torch.equal(lr, value)
        assert g["initial_lr"] is initial and torch.equal(initial, initial_value)
    assert setup.scheduler.last_epoch == last_epoch


def test_the_users_step_did_change_the_tensor_lr() -> None:
    """The premise of the test above: one call of the setup's train step moves the LR tensor."""
    setup = lr_clean_tensor_lr_stepped_scheduler()
    lr = setup.optimizer.param_groups[0]["lr"]
    value = lr.clone()
    assert setup.train_step is not None
    setup.train_step(setup.model, setup.sample, setup.targets, setup.optimizer)
    assert setup.optimizer.param_groups[0]["lr"] is lr and not torch.equal(lr, value)


def test_other_param_group_values_are_restored_as_copies() -> None:
    """A value the user's step mutates in place (a list) comes back as it was."""

    def step_and_mutate(m: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
        step_and_schedule(m, x, y, opt, sched)
        opt.param_groups[0]["betas"] = (0.5, 0.5)
        opt.param_groups[0]["tags"].append("changed")

    m = model("resnet18")
    opt = torch.optim.AdamW([{"params": list(m.parameters()), "tags": ["backbone"]}], lr=1e-4)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=10)
    setup = make(m, optimizer=opt, scheduler=sched, train_step=step_and_mutate)
    report = tlaudit.audit(setup)  # a full audit runs the train step
    assert "frozen-changed" in report.checks_run
    group = opt.param_groups[0]
    assert group["tags"] == ["backbone"] and group["betas"] == (0.9, 0.999) and group["lr"] == pytest.approx(5e-5)


def test_the_caution_level_needs_evidence_that_the_layers_are_pretrained():
    """A from-scratch baseline at a normal LR is not a transfer setup: no caution warning without
    weights, load_result or a strategy; the ceiling (lr_max) still applies."""
    m = model("resnet18")
    setup = make(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.02, momentum=0.9))
    assert tlaudit.audit(setup, select=["lr-threshold"]).findings == ()
    [warning] = tlaudit.audit(setup.replace(strategy="fine_tuning"), select=["lr-threshold"]).findings
    assert warning.severity is tlaudit.Severity.WARNING and "> the caution level 0.01 " in warning.message
    [error] = tlaudit.audit(setup.replace(lr_max=0.015), select=["lr-threshold"]).findings
    assert error.severity is tlaudit.Severity.ERROR and error.message.endswith("with lr 0.02 > lr_max 0.015")
    [custom] = tlaudit.audit(setup.replace(strategy="fine_tuning", lr_caution=0.001), select=["lr-threshold"]).findings
    assert "> the caution level 0.001 " in custom.message
    [own_max] = tlaudit.audit(setup.replace(strategy="fine_tuning", lr_max=0.03), select=["lr-threshold"]).findings
    assert "> the caution level 0.01 " in own_max.message  # a third of the user's own ceiling


@pytest.mark.parametrize(
    ("lr", "severity"),
    [
        # https://pytorch.org/tutorials/intermediate/torchvision_tutorial.html: SGD lr 0.005 on a
        # pretrained Mask R-CNN: correct, silent
        (0.005, None),
        # https://github.com/pytorch/vision/tree/main/references/segmentation (README recipe): SGD lr
        # 0.02 on an ImageNet backbone: correct, but above where classification transfer stops
        (0.02, tlaudit.Severity.WARNING),
        # ImageNet's from-scratch LR (https://github.com/pytorch/vision/tree/main/references/classification)
        # on pretrained layers: the features are trained away
        (0.1, tlaudit.Severity.ERROR),
    ],
)
def test_the_sgd_defaults_follow_the_published_fine_tuning_recipes(lr: float, severity: Any) -> None:
    m = model("resnet18")
    setup = make(m, optimizer=torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9), strategy="fine_tuning")
    findings = tlaudit.audit(setup, select=["lr-threshold"]).findings
    assert [f.severity for f in findings] == ([severity] if severity else [])
    if severity is tlaudit.Severity.ERROR:
        assert findings[0].message.endswith(f"with lr {lr:g} > lr_max 0.05")
