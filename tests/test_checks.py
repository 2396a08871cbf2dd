"""The 16 checks: for each check ID, setups that must trigger it and setups that must not.

Cases (ruff-style fixture cases) are tables per check: ``TRIGGERS[check_id]`` and ``CLEAN[check_id]``,
built on real torchvision models (ResNet, VGG, MobileNet, EfficientNet, ViT, DenseNet, Inception,
GoogLeNet, SqueezeNet; ``weights=None``, never downloaded). Each case runs with
``audit(setup, select=[check_id])``; every case (trigger and clean) also runs through a full audit
between two fingerprints of everything the user owns, which must be identical.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision import transforms as v1
from torchvision.transforms import v2

import tlaudit
from tlaudit.checks import REGISTRY
from tlaudit.report import Skipped
from tlaudit.report import Severity
from tests.cases import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NC,
    RESNET18_WEIGHTS,
    Case,
    fingerprint,
    fingerprint_diff,
    make,
    model,
    normalized,
    pixels,
    size_of,
    warm_up,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """One intra-op thread per worker: the suite runs under xdist on a shared two-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- train steps and predict functions the cases use ----------------------------------------------


def _logits(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out


def step_keep_zero_grads(m: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
    """A train step that zeroes every gradient in place (``set_to_none=False``): stale grads become zeros."""
    m.train()
    m.zero_grad(set_to_none=False)
    F.cross_entropy(_logits(m(x)), y).backward()
    opt.step()


def step_eval_frozen_bn(m: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
    """``model.train()`` then ``tlaudit.eval_frozen_batchnorm(model)``: frozen BatchNorm uses running stats."""
    m.train()
    tlaudit.eval_frozen_batchnorm(m)
    opt.zero_grad()
    F.cross_entropy(m(x), y).backward()
    opt.step()


def step_main_output_only(m: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
    """A loss over the main output only: auxiliary heads get no gradient."""
    m.train()
    opt.zero_grad()
    F.cross_entropy(_logits(m(x)), y).backward()
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


def predict_inference(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(m):
        return m(x)


def predict_no_eval(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m(x)  # no model.eval()


def predict_with_grad(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m.eval()
    return m(x)  # no no_grad / inference_mode


def predict_no_grad(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m.eval()
    with torch.no_grad():
        return m(x)


def predict_inference_mode(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m.eval()
    with torch.inference_mode():
        return m(x)


class InputDropout(nn.Module):
    """A wrapper that drops input pixels with functional dropout; ``respect_mode`` passes ``training=self.training``."""

    def __init__(self, backbone: nn.Module, respect_mode: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.respect_mode = respect_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.respect_mode:
            x = F.dropout(x, 0.5, training=self.training)
        else:
            x = F.dropout(x, 0.5)  # training defaults to True for the functional form
        return self.backbone(x)


class NoisyInput(nn.Module):
    """A wrapper that adds random noise (augmentation) inside ``forward``, in eval mode too."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x + 0.1 * torch.randn_like(x))


def typo_freeze(m: nn.Module, head: str = "fc") -> nn.Module:
    """The freeze loop with the ``==`` typo: freezes nothing."""
    for name, param in m.named_parameters():
        if not name.startswith(head):
            param.requires_grad == False  # noqa: E712, B015 - the bug under test: a comparison, not an assignment
    return m


def trainable(m: nn.Module) -> list[nn.Parameter]:
    return [p for p in m.parameters() if p.requires_grad]


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


# -- frozen-bn-train -------------------------------------------------------------------------------


def fb_feature_extraction_keep() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m)  # batchnorm="keep"
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(trainable(m), lr=0.01))


def fb_fine_tuning_frozen_layer1() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze(m, "layer1")
    return make(m, strategy="fine_tuning", frozen=["layer1"], optimizer=torch.optim.SGD(trainable(m), lr=0.01))


def fb_no_running_stats() -> tlaudit.TransferSetup:
    m = model("resnet18")
    m.bn1 = nn.BatchNorm2d(64, track_running_stats=False)
    tlaudit.freeze_backbone(m)
    return make(
        m, strategy="feature_extraction", optimizer=torch.optim.SGD(trainable(m), lr=0.01), train_step=step_eval_frozen_bn
    )


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
    return make(
        m, strategy="feature_extraction", optimizer=torch.optim.SGD(trainable(m), lr=0.01), train_step=step_eval_frozen_bn
    )


def fb_clean_efficientnet_frozen_pattern_bn() -> tlaudit.TransferSetup:
    m = model("efficientnet_b0")
    tlaudit.freeze(m, "features.0", "features.1", batchnorm="frozen")
    opt = torch.optim.SGD(trainable(m), lr=0.01)
    return make(m, strategy="fine_tuning", frozen=["features.0", "features.1"], optimizer=opt)


def fb_clean_full_fine_tuning() -> tlaudit.TransferSetup:
    m = model("densenet121")
    return make(m, strategy="fine_tuning", optimizer=torch.optim.SGD(m.parameters(), lr=0.001))


# -- head-frozen -----------------------------------------------------------------------------------


def hf_freeze_after_replace() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze(m)  # after replace_head: the new head is frozen too
    return make(m, strategy="feature_extraction")


def hf_pattern_covers_head() -> tlaudit.TransferSetup:
    m = model("efficientnet_b0")
    tlaudit.freeze(m, "features")
    return make(m, frozen=["features", "classifier"], optimizer=torch.optim.AdamW(trainable(m), lr=1e-4))


def hf_head_lr_zero() -> tlaudit.TransferSetup:
    m = model("mobilenet_v3_small")
    return make(m, optimizer=torch.optim.AdamW(tlaudit.param_groups(m, 1e-4, head_lr=0.0)))


def hf_vit() -> tlaudit.TransferSetup:
    m = model("vit_tiny")
    tlaudit.freeze(m)
    return make(m, size_of("vit_tiny"), strategy="feature_extraction")


def hf_googlenet_aux_frozen() -> tlaudit.TransferSetup:
    m = model("googlenet", head=False)
    tlaudit.freeze(m)
    tlaudit.replace_head(m, NC, aux=False)  # only the main head is new (trainable); aux1.fc2, aux2.fc2 stay frozen
    return make(m, strategy="feature_extraction")


def hf_clean_resnet() -> tlaudit.TransferSetup:
    m = model("resnet18")
    tlaudit.freeze_backbone(m)
    return make(m, strategy="feature_extraction", optimizer=torch.optim.SGD(tlaudit.param_groups(m, 0.01), lr=0.01))


def hf_clean_squeezenet() -> tlaudit.TransferSetup:
    m = model("squeezenet1_1")
    tlaudit.freeze_backbone(m)
    return make(m, strategy="feature_extraction", frozen=["features"], optimizer=torch.optim.SGD(trainable(m), lr=0.01))


def hf_clean_vit_param_groups() -> tlaudit.TransferSetup:
    m = model("vit_tiny")
    return make(m, size_of("vit_tiny"), optimizer=torch.optim.AdamW(tlaudit.param_groups(m, 1e-5, head_lr=1e-3)))


# -- head-size -------------------------------------------------------------------------------------


def hs_resnet_head_1000() -> tlaudit.TransferSetup:
    return make(model("resnet18", head=False))


def hs_inception_aux_unreplaced() -> tlaudit.TransferSetup:
    m = model("inception_v3", head=False)
    m.fc = nn.Linear(2048, NC)  # AuxLogits.fc is left at 1000 classes
    return make(m, size_of("inception_v3"))


def hs_googlenet_aux_unreplaced() -> tlaudit.TransferSetup:
    m = model("googlenet", head=False)
    m.fc = nn.Linear(1024, NC)  # aux1.fc2 and aux2.fc2 are left at 1000 classes
    return make(m)


def hs_squeezenet_head_1000() -> tlaudit.TransferSetup:
    return make(model("squeezenet1_1", head=False))


def hs_vit_head_1000() -> tlaudit.TransferSetup:
    return make(model("vit_tiny", head=False), size_of("vit_tiny"))


def hs_clean_inception() -> tlaudit.TransferSetup:
    return make(model("inception_v3"), size_of("inception_v3"))


def hs_clean_googlenet() -> tlaudit.TransferSetup:
    return make(model("googlenet"))


def hs_clean_squeezenet() -> tlaudit.TransferSetup:
    return make(model("squeezenet1_1"))


def hs_clean_mobilenet() -> tlaudit.TransferSetup:
    return make(model("mobilenet_v3_small"))


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


# -- eval-mode -------------------------------------------------------------------------------------


def em_vgg() -> tlaudit.TransferSetup:
    return make(model("vgg11"), predict=predict_no_eval)


def em_mobilenet() -> tlaudit.TransferSetup:
    return make(model("mobilenet_v3_small"), predict=predict_no_eval)


def em_efficientnet() -> tlaudit.TransferSetup:
    return make(model("efficientnet_b0"), predict=predict_no_eval)


def em_one_submodule_in_train() -> tlaudit.TransferSetup:
    def predict(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        m.eval()
        m.layer3.train()  # e.g. left over from a staged-unfreezing loop
        with torch.no_grad():
            return m(x)

    return make(model("resnet18"), predict=predict)


def em_clean_vgg() -> tlaudit.TransferSetup:
    return make(model("vgg11"), predict=predict_inference)


def em_clean_mobilenet() -> tlaudit.TransferSetup:
    return make(model("mobilenet_v3_small"), predict=predict_no_grad)


def em_clean_efficientnet() -> tlaudit.TransferSetup:
    return make(model("efficientnet_b0"), predict=predict_inference_mode)


# -- eval-nondeterministic -------------------------------------------------------------------------


def en_functional_dropout() -> tlaudit.TransferSetup:
    return make(InputDropout(model("resnet18")), predict=predict_inference)


def en_noise_in_forward() -> tlaudit.TransferSetup:
    return make(NoisyInput(model("densenet121")), predict=predict_no_grad)


def en_clean_dropout_respects_mode() -> tlaudit.TransferSetup:
    return make(InputDropout(model("resnet18"), respect_mode=True), predict=predict_inference)


def en_clean_resnet() -> tlaudit.TransferSetup:
    return make(model("resnet18"), predict=predict_no_grad)


# -- grad-inference --------------------------------------------------------------------------------


def gi_resnet_with_grad() -> tlaudit.TransferSetup:
    return make(model("resnet18"), predict=predict_with_grad)


def gi_vit_with_grad() -> tlaudit.TransferSetup:
    return make(model("vit_tiny"), size_of("vit_tiny"), predict=predict_with_grad)


def gi_clean_inference_mode() -> tlaudit.TransferSetup:
    return make(model("resnet18"), predict=predict_inference_mode)


def gi_clean_no_grad() -> tlaudit.TransferSetup:
    return make(model("vit_tiny"), size_of("vit_tiny"), predict=predict_no_grad)


def gi_clean_grad_mode_left_off() -> tlaudit.TransferSetup:
    def predict(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        m.eval()
        torch.set_grad_enabled(False)  # and never turned back on: the audit restores it
        return m(x)

    return make(model("efficientnet_b0"), predict=predict)


def gi_clean_tlaudit_inference_no_grad() -> tlaudit.TransferSetup:
    def predict(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with tlaudit.inference(m, inference_mode=False):
            return m(x)

    return make(model("squeezenet1_1"), predict=predict)


# -- normalization ---------------------------------------------------------------------------------


def _norm_setup(transform: Any, weights: Any = RESNET18_WEIGHTS) -> tlaudit.TransferSetup:
    return make(model("resnet18"), weights=weights, transform=transform)


def nz_v1_wrong_mean_std() -> tlaudit.TransferSetup:
    return _norm_setup(v1.Compose([v1.Resize(72), v1.CenterCrop(64), v1.ToTensor(), v1.Normalize([0.5] * 3, [0.5] * 3)]))


def nz_v2_wrong_mean_std() -> tlaudit.TransferSetup:
    return _norm_setup(
        v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.25] * 3)])
    )


def nz_v1_none() -> tlaudit.TransferSetup:
    return _norm_setup(v1.Compose([v1.Resize(72), v1.CenterCrop(64), v1.ToTensor()]))


def nz_v2_none() -> tlaudit.TransferSetup:
    return _norm_setup(v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]))


def nz_v2_double() -> tlaudit.TransferSetup:
    norm = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    return _norm_setup(v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), norm, v2.Compose([norm])]))


def nz_v1_double() -> tlaudit.TransferSetup:
    return _norm_setup(
        v1.Compose([v1.ToTensor(), v1.Normalize(IMAGENET_MEAN, IMAGENET_STD), v1.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    )


def nz_preset_with_other_stats() -> tlaudit.TransferSetup:
    return _norm_setup(RESNET18_WEIGHTS.transforms(), weights={"mean": [0.5] * 3, "std": [0.5] * 3})


def nz_clean_preset() -> tlaudit.TransferSetup:
    return _norm_setup(RESNET18_WEIGHTS.transforms())


def nz_clean_v2() -> tlaudit.TransferSetup:
    return _norm_setup(
        v2.Compose(
            [
                v2.ToImage(),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        ),
        weights="ResNet18_Weights.IMAGENET1K_V1",
    )


def nz_clean_v1_nested() -> tlaudit.TransferSetup:
    return _norm_setup(
        v1.Compose([v1.Compose([v1.Resize(72), v1.ToTensor()]), v1.Compose([v1.Normalize(IMAGENET_MEAN, IMAGENET_STD)])])
    )


def nz_clean_vit_preset() -> tlaudit.TransferSetup:
    weights = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    return make(model("vit_tiny"), size_of("vit_tiny"), weights=weights, transform=weights.transforms())


# -- input-range -----------------------------------------------------------------------------------


def ir_unit_pixels() -> tlaudit.TransferSetup:
    return make(model("resnet18"), sample=pixels())


def ir_byte_pixels() -> tlaudit.TransferSetup:
    return make(model("resnet18"), sample=(pixels() * 255).round())


def ir_double_normalized() -> tlaudit.TransferSetup:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return make(model("efficientnet_b0"), sample=(normalized() - mean) / std)


def ir_clean_normalized() -> tlaudit.TransferSetup:
    return make(model("resnet18"))


def ir_clean_preset_transform() -> tlaudit.TransferSetup:
    from PIL import Image

    image = Image.fromarray((pixels(96)[0].permute(1, 2, 0).numpy() * 255).astype("uint8"))
    sample = torch.stack([RESNET18_WEIGHTS.transforms(crop_size=64, resize_size=72)(image)] * 2)
    return make(model("densenet121"), sample=sample)


# -- label-range -----------------------------------------------------------------------------------


def lb_one_based() -> tlaudit.TransferSetup:
    return make(model("resnet18"), targets=torch.tensor([1, NC]))


def lb_negative() -> tlaudit.TransferSetup:
    return make(model("mobilenet_v3_small"), targets=torch.tensor([-1, 2]))


def lb_one_hot_wrong_columns() -> tlaudit.TransferSetup:
    return make(model("resnet18"), targets=F.one_hot(torch.tensor([0, 3]), NC - 1).float())


def lb_clean() -> tlaudit.TransferSetup:
    return make(model("resnet18"), targets=torch.tensor([0, NC - 1]))


def lb_clean_ignore_index() -> tlaudit.TransferSetup:
    return make(model("resnet18"), targets=torch.tensor([-100, 3]))


def lb_clean_one_hot() -> tlaudit.TransferSetup:
    return make(model("squeezenet1_1"), targets=F.one_hot(torch.tensor([0, 4]), NC).float())


# -- pretrained-not-loaded -------------------------------------------------------------------------


def _checkpoint(name: str, *, head: bool = True) -> dict[str, torch.Tensor]:
    """A 'pretrained' checkpoint of ``name``: the stand-in weights' state dict."""
    return model(name, head=head).state_dict()


def pl_fresh_model_with_weights() -> tlaudit.TransferSetup:
    return make(model("resnet18", pretrained=False), weights=RESNET18_WEIGHTS)


def pl_missing_backbone_keys() -> tlaudit.TransferSetup:
    m = model("resnet18", pretrained=False)
    state = {k: v for k, v in _checkpoint("resnet18").items() if not k.startswith("layer4")}
    return make(m, load_result=m.load_state_dict(state, strict=False))


def pl_module_prefixed_keys() -> tlaudit.TransferSetup:
    m = model("resnet18", pretrained=False)
    state = {f"module.{k}": v for k, v in _checkpoint("resnet18").items()}  # saved from DataParallel/DDP
    return make(m, weights=RESNET18_WEIGHTS, load_result=m.load_state_dict(state, strict=False))


def pl_missing_keys_as_dict() -> tlaudit.TransferSetup:
    m = model("densenet121")
    return make(m, load_result={"missing_keys": ["features.conv0.weight"], "unexpected_keys": []})


def pl_vit_layernorm_at_init() -> tlaudit.TransferSetup:
    return make(
        model("vit_tiny", pretrained=False), size_of("vit_tiny"), weights=torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    )


def pl_efficientnet_fresh() -> tlaudit.TransferSetup:
    return make(model("efficientnet_b0", pretrained=False), weights="EfficientNet_B0_Weights.IMAGENET1K_V1")


def pl_clean_pretend_pretrained() -> tlaudit.TransferSetup:
    return make(model("resnet18"), weights=RESNET18_WEIGHTS)


def pl_clean_only_head_missing() -> tlaudit.TransferSetup:
    m = model("resnet18", pretrained=False)
    state = {k: v for k, v in _checkpoint("resnet18", head=False).items() if not k.startswith("fc.")}
    return make(m, weights=RESNET18_WEIGHTS, load_result=m.load_state_dict(state, strict=False))


def pl_clean_vit_trained_layernorm() -> tlaudit.TransferSetup:
    return make(model("vit_tiny"), size_of("vit_tiny"), weights=torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1)


def pl_clean_vit_b_32() -> tlaudit.TransferSetup:
    m = model("vit_b_32")
    return make(m, size_of("vit_b_32"), weights=torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1)


def pl_clean_googlenet_load_result() -> tlaudit.TransferSetup:
    m = model("googlenet", pretrained=False)
    heads = ("fc.", "aux1.fc2.", "aux2.fc2.")
    state = {k: v for k, v in _checkpoint("googlenet", head=False).items() if not k.startswith(heads)}
    return make(m, weights="GoogLeNet_Weights.IMAGENET1K_V1", load_result=m.load_state_dict(state, strict=False))


# -- the tables ------------------------------------------------------------------------------------


TRIGGERS: dict[str, list[Case]] = {
    "frozen-grad": [
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
    ],
    "frozen-changed": [
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
    ],
    "frozen-bn-train": [
        Case(
            "resnet18-feature-extraction-keep",
            fb_feature_extraction_keep,
            r"^20 BatchNorm layers in 5 modules \(`bn1`, `layer1`, `layer2` and 2 more\): frozen but in training mode",
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
            severity="error",
            count=1,
        ),
        Case(
            "densenet121-feature-extraction-keep",
            fb_densenet,
            r"BatchNorm layers of `features`: frozen but in training mode",
            severity="error",
            count=1,
        ),
        Case(
            "mobilenet-flags-only",
            fb_flags_only_mobilenet,
            r"BatchNorm layers of `features`: frozen but in training mode",
            severity="warning",
            count=1,
        ),
    ],
    "head-frozen": [
        Case(
            "resnet18-freeze-after-replace",
            hf_freeze_after_replace,
            r"^head `fc` has requires_grad=False \(`fc\.weight`, `fc\.bias`\)",
            count=1,
        ),
        Case(
            "efficientnet-patterns-cover-head",
            hf_pattern_covers_head,
            r"^head `classifier\.1` is covered by TransferSetup\.frozen patterns \['features', 'classifier'\]",
            count=1,
        ),
        Case(
            "mobilenet-head-lr-zero",
            hf_head_lr_zero,
            r"^head `classifier\.3` sits in optimizer group\(s\) \[\d+(, \d+)*\] with lr 0",
            count=1,
        ),
        Case(
            "vit-freeze-after-replace",
            hf_vit,
            r"^head `heads\.head` has requires_grad=False",
            count=1,
        ),
        Case(
            "googlenet-aux-heads-frozen",
            hf_googlenet_aux_frozen,
            r"^head `aux2\.fc2` has requires_grad=False",
            count=2,
        ),
    ],
    "head-size": [
        Case(
            "resnet18-head-1000",
            hs_resnet_head_1000,
            r"^output `output` has shape \(2, 1000\), expected 5 columns \(num_classes\)",
            count=1,
        ),
        Case(
            "inception-aux-unreplaced",
            hs_inception_aux_unreplaced,
            r"^output `aux_logits` has shape \(2, 1000\), expected 5 columns",
            count=1,
        ),
        Case(
            "googlenet-aux-unreplaced",
            hs_googlenet_aux_unreplaced,
            r"^output `aux_logits1` has shape \(2, 1000\)",
            count=2,
        ),
        Case("squeezenet-head-1000", hs_squeezenet_head_1000, r"^output `output` has shape \(2, 1000\)", count=1),
        Case("vit-head-1000", hs_vit_head_1000, r"^output `output` has shape \(2, 1000\)", count=1),
    ],
    "trainable-no-grad": [
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
    ],
    "optimizer-missing": [
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
    ],
    "optimizer-frozen": [
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
    ],
    "lr-threshold": [
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
    ],
    "eval-mode": [
        Case(
            "vgg11-no-eval",
            em_vgg,
            r"^`VGG` ran in training mode during predict: 2 dropout layers active \(`classifier\.2`, `classifier\.5`\)$",
            count=1,
        ),
        Case(
            "mobilenet-no-eval",
            em_mobilenet,
            r"^`MobileNetV3` ran in training mode during predict: 1 dropout layer active \(`classifier\.2`\); "
            r"\d+ BatchNorm layers using batch statistics",
            count=1,
        ),
        Case(
            "efficientnet-no-eval",
            em_efficientnet,
            r"^`EfficientNet` ran in training mode during predict: 1 dropout layer active",
            count=1,
        ),
        Case(
            "resnet18-one-stage-in-train",
            em_one_submodule_in_train,
            r"^`layer3` ran in training mode during predict: 5 BatchNorm layers using batch statistics \(`layer3\.0\.bn1`",
            count=1,
        ),
    ],
    "eval-nondeterministic": [
        Case(
            "resnet18-functional-dropout",
            en_functional_dropout,
            r"^two predict calls on the same sample returned different outputs$",
            count=1,
        ),
        Case(
            "densenet121-noise-in-forward",
            en_noise_in_forward,
            r"^two predict calls on the same sample returned different outputs$",
            count=1,
        ),
    ],
    "grad-inference": [
        Case(
            "resnet18-eval-without-no-grad",
            gi_resnet_with_grad,
            r"^predict runs the model with gradients enabled$",
            count=1,
        ),
        Case("vit-eval-without-no-grad", gi_vit_with_grad, r"^predict runs the model with gradients enabled$", count=1),
    ],
    "normalization": [
        Case(
            "v1-wrong-mean-std",
            nz_v1_wrong_mean_std,
            r"^the transform normalizes with mean \[0\.5, 0\.5, 0\.5\], std \[0\.5, 0\.5, 0\.5\]; the weights "
            r"\(ResNet18_Weights\.IMAGENET1K_V1\) expect mean \[0\.485, 0\.456, 0\.406\], std \[0\.229, 0\.224, 0\.225\]$",
            count=1,
        ),
        Case(
            "v2-wrong-mean-std",
            nz_v2_wrong_mean_std,
            r"normalizes with mean \[0\.5, 0\.5, 0\.5\], std \[0\.25, 0\.25, 0\.25\]",
            count=1,
        ),
        Case(
            "v1-no-normalize",
            nz_v1_none,
            r"^the transform applies no normalization; the weights expect mean \[0\.485, 0\.456, 0\.406\]",
            count=1,
        ),
        Case("v2-no-normalize", nz_v2_none, r"^the transform applies no normalization", count=1),
        Case("v2-double", nz_v2_double, r"^the transform normalizes 2 times \(double normalization\)$", count=1),
        Case("v1-double", nz_v1_double, r"^the transform normalizes 2 times \(double normalization\)$", count=1),
        Case(
            "preset-vs-other-weights",
            nz_preset_with_other_stats,
            r"normalizes with mean \[0\.485, 0\.456, 0\.406\].*the weights \(mapping\) expect mean \[0\.5, 0\.5, 0\.5\]",
            count=1,
        ),
    ],
    "input-range": [
        Case(
            "unit-pixels",
            ir_unit_pixels,
            r"^the sample looks like 0\.\.1 pixels, not normalized: range \[0(\.\d+)?, (0\.\d+|1)\]",
            count=1,
        ),
        Case(
            "byte-pixels",
            ir_byte_pixels,
            r"^the sample looks like 0\.\.255 pixels, not normalized: range \[\d+, \d+\]",
            count=1,
        ),
        Case(
            "double-normalized",
            ir_double_normalized,
            r"^the sample's statistics are far from a normalized input's .*doubly normalized\?$",
            count=1,
        ),
    ],
    "label-range": [
        Case(
            "one-based",
            lb_one_based,
            r"^targets range over \[1, 5\], outside \[0, 5\) \(num_classes\): e\.g\. \[5\]$",
            count=1,
        ),
        Case(
            "negative",
            lb_negative,
            r"^targets range over \[-1, 2\], outside \[0, 5\) \(num_classes\): e\.g\. \[-1\]$",
            count=1,
        ),
        Case(
            "one-hot-wrong-columns",
            lb_one_hot_wrong_columns,
            r"^soft/one-hot targets have 4 columns, expected num_classes 5$",
            count=1,
        ),
    ],
    "pretrained-not-loaded": [
        Case(
            "resnet18-fresh-with-weights",
            pl_fresh_model_with_weights,
            r"^weights are declared but all 20 norm layers of the backbone are at their initial values",
            severity="warning",
            count=1,
        ),
        Case(
            "resnet18-missing-backbone-keys",
            pl_missing_backbone_keys,
            r"^load_state_dict left \d+ backbone keys missing \(`layer4\.0\.conv1\.weight`",
            severity="error",
            count=1,
        ),
        Case(
            "resnet18-module-prefixed-keys",
            pl_module_prefixed_keys,
            r"^load_state_dict found \d+ unexpected keys \(`module\.conv1\.weight`, .*\); they carry a wrapper prefix$",
            severity="error",
            count=2,  # and the same keys, unprefixed, are missing
        ),
        Case(
            "densenet121-missing-keys-dict",
            pl_missing_keys_as_dict,
            r"^load_state_dict left 1 backbone key missing \(`features\.conv0\.weight`\)$",
            severity="error",
            count=1,
        ),
        Case(
            "vit-layernorm-at-init",
            pl_vit_layernorm_at_init,
            r"^weights are declared but all 3 norm layers of the backbone are at their initial values",
            severity="warning",
            count=1,
        ),
        Case(
            "efficientnet-fresh-with-weights",
            pl_efficientnet_fresh,
            r"norm layers of the backbone are at their initial values",
            severity="warning",
            count=1,
        ),
    ],
}

CLEAN: dict[str, list[Case]] = {
    "frozen-grad": [
        Case("resnet18-freeze-backbone", fg_clean_freeze_backbone),
        Case("resnet18-frozen-pattern-frozen", fg_clean_frozen_pattern),
        Case("vit-freeze-backbone", fg_clean_vit),
        Case("googlenet-freeze-backbone-aux", fg_clean_googlenet_aux),
        Case("resnet18-stale-grads-zeroed", fg_clean_stale_zeroed_grads),
    ],
    "frozen-changed": [
        Case("resnet18-param-groups", fc_clean_param_groups),
        Case("resnet18-adamw-all-no-stale-grads", fc_clean_adamw_no_stale_grads),
        Case("vit-train-step-only", fc_clean_vit_train_step_only),
    ],
    "frozen-bn-train": [
        Case("resnet18-batchnorm-frozen", fb_clean_frozen_batchnorm),
        Case("resnet18-eval-frozen-batchnorm", fb_clean_eval_frozen_batchnorm),
        Case("efficientnet-frozen-pattern-batchnorm-frozen", fb_clean_efficientnet_frozen_pattern_bn),
        Case("densenet121-full-fine-tuning", fb_clean_full_fine_tuning),
    ],
    "head-frozen": [
        Case("resnet18-freeze-backbone", hf_clean_resnet),
        Case("squeezenet-freeze-backbone", hf_clean_squeezenet),
        Case("vit-param-groups", hf_clean_vit_param_groups),
    ],
    "head-size": [
        Case("inception-replace-head", hs_clean_inception),
        Case("googlenet-replace-head", hs_clean_googlenet),
        Case("squeezenet-replace-head", hs_clean_squeezenet),
        Case("mobilenet-replace-head", hs_clean_mobilenet),
    ],
    "trainable-no-grad": [
        Case("resnet18", tn_clean_resnet),
        Case("googlenet-aux-loss", tn_clean_googlenet_aux_loss),
        Case("efficientnet-feature-extraction", tn_clean_feature_extraction),
    ],
    "optimizer-missing": [
        Case("resnet18-after-surgery", om_clean_after_surgery),
        Case("densenet121-feature-extraction-head-only", om_clean_feature_extraction),
    ],
    "optimizer-frozen": [
        Case("resnet18-param-groups", of_clean_param_groups),
        Case("vit-filter-requires-grad", of_clean_filter_requires_grad),
    ],
    "lr-threshold": [
        Case("resnet18-param-groups-head-high", lr_clean_param_groups),
        Case("resnet18-adamw-cosine-decay", lr_clean_decaying_scheduler),
        Case("densenet121-sgd-cosine-decay", lr_clean_sgd_cosine_decay),
        Case("mobilenet-step-lr-at-lr-max", lr_clean_step_lr),
        Case("resnet18-head-only-high-lr", lr_clean_head_only_high_lr),
        Case("resnet18-reduce-on-plateau", lr_clean_reduce_on_plateau),
    ],
    "eval-mode": [
        Case("vgg11-inference", em_clean_vgg),
        Case("mobilenet-eval-no-grad", em_clean_mobilenet),
        Case("efficientnet-eval-inference-mode", em_clean_efficientnet),
    ],
    "eval-nondeterministic": [
        Case("resnet18-dropout-respects-mode", en_clean_dropout_respects_mode),
        Case("resnet18", en_clean_resnet),
    ],
    "grad-inference": [
        Case("resnet18-inference-mode", gi_clean_inference_mode),
        Case("vit-no-grad", gi_clean_no_grad),
        Case("squeezenet-tlaudit-inference-no-grad", gi_clean_tlaudit_inference_no_grad),
        Case("efficientnet-grad-mode-left-off", gi_clean_grad_mode_left_off),
    ],
    "normalization": [
        Case("weights-transforms", nz_clean_preset),
        Case("v2-compose-right-normalize", nz_clean_v2),
        Case("v1-nested-compose", nz_clean_v1_nested),
        Case("vit-preset", nz_clean_vit_preset),
    ],
    "input-range": [
        Case("normalized", ir_clean_normalized),
        Case("preset-transform", ir_clean_preset_transform),
    ],
    "label-range": [
        Case("in-range", lb_clean),
        Case("ignore-index", lb_clean_ignore_index),
        Case("one-hot", lb_clean_one_hot),
    ],
    "pretrained-not-loaded": [
        Case("resnet18-pretend-pretrained", pl_clean_pretend_pretrained),
        Case("resnet18-only-head-keys-missing", pl_clean_only_head_missing),
        Case("vit-trained-layernorm", pl_clean_vit_trained_layernorm),
        Case("vit_b_32-trained-layernorm", pl_clean_vit_b_32),
        Case("googlenet-only-head-keys-missing", pl_clean_googlenet_load_result),
    ],
}


# -- the tests ---------------------------------------------------------------------------------------


class WrongFindings(AssertionError):
    """The findings (or an unexpected SetupError) differ from the case's expectation.

    Known library bugs are marked ``xfail(raises=WrongFindings)``, so a changed fingerprint (a plain
    AssertionError) still fails those cases.
    """


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise WrongFindings(message)


def _params(kind: str, *, full: bool = False) -> list[Any]:
    params = []
    for table_kind, table in (("trigger", TRIGGERS), ("clean", CLEAN)):
        if kind not in (table_kind, "all"):
            continue
        for check_id, cases in table.items():
            for case in cases:
                reason = case.xfail or (case.xfail_full if full else None)
                marks = [pytest.mark.xfail(strict=True, raises=WrongFindings, reason=reason)] if reason else []
                values = (check_id, table_kind, case) if kind == "all" else (check_id, case)
                params.append(pytest.param(*values, id=f"{check_id}:{table_kind}:{case.id}", marks=marks))
    return params


def _check_findings(report: tlaudit.Report, check_id: str, kind: str, case: Case) -> None:
    found = report.by_check(check_id)
    crashed = [f.message for f in found if f.message.startswith("check crashed")]
    _expect(not crashed, f"`{check_id}` crashed: {crashed}")
    if kind == "clean":
        _expect(not found, f"`{check_id}` fired on a clean setup:\n{report}")
        return
    matched = [f for f in found if re.search(case.match, f.message)]
    _expect(bool(matched), f"no `{check_id}` finding matches {case.match!r}:\n{report}")
    severity = Severity(case.severity) if case.severity else REGISTRY[check_id].severity
    _expect(all(f.severity is severity for f in matched), f"expected severity {severity.value}: {matched}")
    if case.count is not None:
        _expect(len(found) == case.count, f"expected {case.count} `{check_id}` findings, got {len(found)}:\n{report}")


@pytest.mark.parametrize(("check_id", "case"), _params("trigger"))
def test_trigger(check_id: str, case: Case) -> None:
    """The setup must trigger ``check_id``: a finding with the expected severity whose message names the culprit."""
    report = tlaudit.audit(case.build(), select=[check_id])
    assert report.checks_run == (check_id,), report.skipped
    _check_findings(report, check_id, "trigger", case)


@pytest.mark.parametrize(("check_id", "case"), _params("clean"))
def test_clean(check_id: str, case: Case) -> None:
    """The check must run on the setup (not be skipped) and find nothing."""
    report = tlaudit.audit(case.build(), select=[check_id])
    assert report.checks_run == (check_id,) and report.skipped == (), report.skipped
    _check_findings(report, check_id, "clean", case)


@pytest.mark.parametrize(("check_id", "kind", "case"), _params("all", full=True))
def test_full_audit_changes_nothing(check_id: str, kind: str, case: Case) -> None:
    """A full audit (all checks) leaves everything the user owns bit for bit as it was, and agrees with the focused run."""
    setup = case.build()
    before = fingerprint(setup)
    try:
        report, error = tlaudit.audit(setup), None
    except tlaudit.SetupError as err:
        report, error = None, err
    assert fingerprint_diff(before, fingerprint(setup)) == []
    if case.raises:
        raised = error is not None and re.search(case.raises, str(error)) is not None
        _expect(raised, f"expected SetupError {case.raises!r}, got {error!r}")
        return
    _expect(error is None, f"the full audit raised {error!r}")
    assert report is not None
    assert check_id in report.checks_run
    _check_findings(report, check_id, kind, case)


def test_every_check_has_cases_and_documentation() -> None:
    assert set(TRIGGERS) == set(REGISTRY) == set(CLEAN)
    for check_id, check in REGISTRY.items():
        assert TRIGGERS[check_id] and CLEAN[check_id], check_id
        assert all(case.match for case in TRIGGERS[check_id]), f"{check_id}: a trigger case without a message pattern"
        for part in ("What", "Why", "Example", "Fix"):
            assert check.section(part), f"{check_id}: docstring has no {part}: section"
    ids = [f"{c}:{case.id}" for table in (TRIGGERS, CLEAN) for c, cases in table.items() for case in cases]
    assert len(ids) == len(set(ids))


# -- skipped checks --------------------------------------------------------------------------------


def _bare(**fields: Any) -> tlaudit.TransferSetup:
    """A resnet18 setup with exactly the given fields (no optimizer, predict, weights ... unless passed)."""
    return tlaudit.TransferSetup(model=model("resnet18"), **fields)


@pytest.mark.parametrize(
    ("build", "checks", "reason"),
    [
        pytest.param(
            lambda: _bare(num_classes=NC),
            ["eval-mode", "eval-nondeterministic", "grad-inference"],
            "no `predict` given",
            id="no-predict",
        ),
        pytest.param(
            lambda: _bare(num_classes=NC),
            ["optimizer-missing", "optimizer-frozen", "lr-threshold"],
            "no `optimizer` given",
            id="no-optimizer",
        ),
        pytest.param(
            lambda: _bare(num_classes=NC), ["frozen-changed"], "no `optimizer` or `train_step` given", id="no-optimizer-no-train-step"
        ),
        pytest.param(lambda: _bare(sample=normalized()), ["head-size", "label-range"], "no `num_classes` given", id="no-num-classes"),
        pytest.param(lambda: _bare(num_classes=NC), ["normalization"], "no `weights` given", id="no-weights"),
        pytest.param(lambda: _bare(weights=RESNET18_WEIGHTS), ["normalization"], "no `transform` given", id="no-transform"),
        pytest.param(lambda: _bare(num_classes=NC), ["input-range"], "no `sample` given", id="sample-synthesized"),
        pytest.param(lambda: _bare(num_classes=NC, sample=normalized()), ["label-range"], "no `targets` given", id="no-targets"),
        pytest.param(
            lambda: _bare(num_classes=NC),
            ["pretrained-not-loaded"],
            "no `weights` or `load_result` given",
            id="no-weights-no-load-result",
        ),
        pytest.param(
            lambda: make(model("squeezenet1_1"), weights="SqueezeNet1_1_Weights.IMAGENET1K_V1"),
            ["pretrained-not-loaded"],
            "no norm layers with statistics to judge the backbone by; pass load_result=",
            id="squeezenet-no-norm-layers",
        ),
        pytest.param(
            lambda: make(model("vgg11"), weights="VGG11_Weights.IMAGENET1K_V1"),
            ["pretrained-not-loaded"],
            "no norm layers with statistics to judge the backbone by; pass load_result=",
            id="vgg-no-norm-layers",
        ),
        pytest.param(
            lambda: make(model("resnet18"), load_result="ok"),
            ["pretrained-not-loaded"],
            "TransferSetup.load_result has no missing_keys/unexpected_keys: str; "
            "pass what model.load_state_dict(...) returned",
            id="load-result-not-a-load-result",
        ),
        pytest.param(
            lambda: make(model("resnet18"), sample=(pixels() * 255).to(torch.uint8)),
            ["input-range"],
            "the sample is not a float image batch (dtype torch.uint8, shape (2, 3, 64, 64))",
            id="uint8-sample",
        ),
        pytest.param(
            lambda: make(
                nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                strategy="feature_extraction",  # what is meant frozen depends on the head
            ),
            ["head-frozen", "frozen-grad"],
            "no classification head found; pass TransferSetup(head='<module name>')",
            id="no-head-found",
        ),
    ],
)
def test_check_without_its_input_is_skipped_with_reason(build: Any, checks: list[str], reason: str) -> None:
    setup = build()
    report = tlaudit.audit(setup, select=checks)
    assert {s.check: s.reason for s in report.skipped} == dict.fromkeys(checks, reason)
    assert report.checks_run == () and report.findings == ()


def test_synthesized_sample_is_a_note_and_skips_input_range() -> None:
    setup = _bare(num_classes=NC)
    report = tlaudit.audit(setup)
    assert Skipped("input-range", "no `sample` given") in report.skipped
    assert "head-size" in report.checks_run
    note = r"no sample given: synthesized a standard-normal batch of shape \(2, 3, 224, 224\)"
    assert any(re.match(note, n) for n in report.notes), report.notes
    assert setup.sample is None and setup.targets is None


# -- full audits of whole setups -------------------------------------------------------------------


def _sound(name: str, weights: Any, *, scheduler: bool = False) -> tlaudit.TransferSetup:
    """A sound feature-extraction setup of ``name``: every field given, nothing for any check to find."""
    m = model(name)
    tlaudit.freeze_backbone(m, batchnorm="frozen")
    weights = torchvision.models.get_weight(weights)
    if scheduler:
        optimizer: torch.optim.Optimizer = torch.optim.SGD(tlaudit.param_groups(m, 1e-3, head_lr=0.05), momentum=0.9)
        sched: Any = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
    else:
        optimizer, sched = torch.optim.AdamW(tlaudit.param_groups(m, 1e-4, head_lr=1e-3, weight_decay=0.01)), None
    return make(
        m,
        size_of(name),
        optimizer=optimizer,
        scheduler=sched,
        weights=weights,
        transform=weights.transforms(),
        strategy="feature_extraction",
        predict=predict_inference,
    )


@pytest.mark.parametrize(
    ("name", "weights", "scheduler"),
    [
        ("resnet18", "ResNet18_Weights.IMAGENET1K_V1", True),
        ("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", False),
        ("googlenet", "GoogLeNet_Weights.IMAGENET1K_V1", True),
        ("vit_tiny", "ViT_B_32_Weights.IMAGENET1K_V1", False),
        ("densenet121", "DenseNet121_Weights.IMAGENET1K_V1", False),
    ],
)
def test_sound_setup_has_no_findings(name: str, weights: str, scheduler: bool) -> None:
    setup = _sound(name, weights, scheduler=scheduler)
    before = fingerprint(setup)
    report = tlaudit.audit(setup)
    assert fingerprint_diff(before, fingerprint(setup)) == []
    assert report.findings == () and report.skipped == (), str(report)
    assert report.checks_run == tuple(REGISTRY)


def test_bundled_correct_example_has_no_findings_and_skips_nothing() -> None:
    setup = tlaudit.load_setup(ROOT / "tlaudit" / "examples" / "correct.py")
    before = fingerprint(setup)
    report = tlaudit.audit(setup)
    assert fingerprint_diff(before, fingerprint(setup)) == []
    assert report.findings == () and report.skipped == (), str(report)
    assert report.checks_run == tuple(REGISTRY)


def test_bundled_buggy_example_triggers_the_usual_mistakes() -> None:
    setup = tlaudit.load_setup(ROOT / "tlaudit" / "examples" / "buggy.py")
    before = fingerprint(setup)
    report = tlaudit.audit(setup)
    assert fingerprint_diff(before, fingerprint(setup)) == []
    assert {f.check for f in report.findings} == {
        "frozen-grad",
        "frozen-changed",
        "frozen-bn-train",
        "optimizer-missing",
        "optimizer-frozen",
        "lr-threshold",
        "eval-mode",
        "grad-inference",
        "normalization",
    }, str(report)
    assert report.skipped == ()


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
    ("build", "message", "field"),
    [
        pytest.param(
            _raising_train_step_setup,
            r"^TransferSetup\.train_step raised RuntimeError: disk full$",
            "train_step",
            id="train_step",
        ),
        pytest.param(
            _raising_predict_setup, r"^TransferSetup\.predict raised ValueError: bad batch$", "predict", id="predict"
        ),
        pytest.param(
            lambda: make(model("resnet18"), sample=normalized()[:, :1]),
            r"^TransferSetup\.sample: the model cannot take the sample of shape \(2, 1, 64, 64\)",
            "sample",
            id="sample-shape",
        ),
    ],
)
def test_user_code_raising_is_a_setup_error_and_changes_nothing(build: Any, message: str, field: str) -> None:
    setup = build()
    before = fingerprint(setup)
    with pytest.raises(tlaudit.SetupError, match=message) as info:
        tlaudit.audit(setup)
    assert info.value.field == field
    assert fingerprint_diff(before, fingerprint(setup)) == []


# -- lr-threshold never steps the user's scheduler ---------------------------------------------------


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


# -- the fingerprint itself sees every kind of change ------------------------------------------------


def _fingerprinted_setup() -> tlaudit.TransferSetup:
    m = model("vit_tiny")
    optimizer = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    warm_up(m, size_of("vit_tiny"), optimizer)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    m.eval()
    return make(m, size_of("vit_tiny"), optimizer=optimizer, scheduler=scheduler)


def _grad(s: tlaudit.TransferSetup) -> torch.Tensor:
    grad = s.model.heads.head.weight.grad
    assert grad is not None
    return grad


_MUTATIONS: dict[str, Any] = {
    "parameter-bit": lambda s: s.model.heads.head.weight.data.view(torch.int32)[0, 0].add_(1),
    "requires-grad": lambda s: s.model.conv_proj.weight.requires_grad_(False),
    "training-flag": lambda s: s.model.encoder.dropout.train(),
    "grad-value": lambda s: _grad(s).add_(1),
    "grad-identity": lambda s: setattr(s.model.heads.head.weight, "grad", _grad(s).clone()),
    "grad-none": lambda s: setattr(s.model.heads.head.weight, "grad", None),
    "buffer": lambda s: s.model.register_buffer("extra", torch.zeros(1)),
    "optimizer-state": lambda s: s.optimizer.state[s.model.heads.head.weight]["momentum_buffer"].mul_(2),
    "optimizer-lr": lambda s: s.optimizer.param_groups[0].update(lr=0.5),
    "scheduler": lambda s: setattr(s.scheduler, "last_epoch", 5),
    "forward-hook": lambda s: s.model.encoder.register_forward_hook(lambda *a: None),
    "tensor-hook": lambda s: s.model.heads.head.weight.register_hook(lambda g: g),
    "sample": lambda s: s.sample.mul_(2),
    "targets": lambda s: s.targets.add_(1),
    "torch-rng": lambda s: torch.rand(1),
    "python-rng": lambda s: random.random(),
    "numpy-rng": lambda s: numpy.random.rand(),
    "grad-mode": lambda s: torch.set_grad_enabled(False),
}


@pytest.mark.parametrize("mutation", list(_MUTATIONS))
def test_fingerprint_sees_every_kind_of_change(mutation: str) -> None:
    """The no-change guarantee is only as good as the fingerprint: each kind of change must show up."""
    setup = _fingerprinted_setup()
    before = fingerprint(setup)
    assert fingerprint_diff(before, fingerprint(setup)) == []
    grad_enabled = torch.is_grad_enabled()
    try:
        _MUTATIONS[mutation](setup)
        assert fingerprint_diff(before, fingerprint(setup)) != []
    finally:
        torch.set_grad_enabled(grad_enabled)
