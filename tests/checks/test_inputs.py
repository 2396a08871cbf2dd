"""The checks of ``tlaudit/checks/inputs.py``: normalization, input-range, label-range.

What they watch: that the inputs are normalized as the weights expect and the labels are in range.
For each check ID, the setups that must trigger it (``TRIGGERS``) next to the setups that must not
(``CLEAN``); ``tests/checks/_cases.py`` turns the tables into tests.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torchvision import transforms as v1
from torchvision.transforms import v2

import tlaudit
from tests.cases import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NC,
    RESNET18_WEIGHTS,
    Case,
    make,
    model,
    normalized,
    pixels,
    size_of,
)
from tests.checks._cases import case_tests


TRIGGERS: dict[str, list[Case]] = {}
CLEAN: dict[str, list[Case]] = {}


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


TRIGGERS["normalization"] = [
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
]
CLEAN["normalization"] = [
    Case("weights-transforms", nz_clean_preset),
    Case("v2-compose-right-normalize", nz_clean_v2),
    Case("v1-nested-compose", nz_clean_v1_nested),
    Case("vit-preset", nz_clean_vit_preset),
]


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


TRIGGERS["input-range"] = [
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
]
CLEAN["input-range"] = [
    Case("normalized", ir_clean_normalized),
    Case("preset-transform", ir_clean_preset_transform),
]


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


TRIGGERS["label-range"] = [
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
]
CLEAN["label-range"] = [
    Case("in-range", lb_clean),
    Case("ignore-index", lb_clean_ignore_index),
    Case("one-hot", lb_clean_one_hot),
]


# -- the tests -------------------------------------------------------------------------------------


test_trigger, test_clean, test_full_audit_changes_nothing = case_tests(TRIGGERS, CLEAN)
