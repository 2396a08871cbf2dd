"""Semantic segmentation transcribed from torchvision's segmentation references and docs.

Adapted everywhere: ``weights=None, weights_backbone=None`` with pretrained-looking BatchNorm
statistics; 2 crops of 64x64; masks of ``(N, H, W)`` with a 255 border (VOC's "ignore" label).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead
from torchvision.transforms import v2 as T

import tlaudit
from tests.realistic.corpus import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    assert_correct,
    assert_named,
    eval_predict,
    images,
    rows,
)
from tlaudit.examples._common import pretend_pretrained


def masks(n: int = 2, size: int = 64, classes: int = 21) -> torch.Tensor:
    """Per-pixel labels in [0, classes) with a 255 border, as VOC masks come."""
    y = (torch.arange(size).view(1, 1, size) // (size // classes + 1)).expand(n, size, size).clone() % classes
    y[:, :2, :] = 255
    y[:, :, -2:] = 255
    return y.long()


def references_train_transform() -> T.Compose:
    """``SegmentationPresetTrain`` of references/segmentation/presets.py (v2 backend)."""
    return T.Compose(
        [
            T.RandomResize(min_size=260, max_size=1040),
            T.RandomHorizontalFlip(0.5),
            T.RandomCrop(480),
            T.PILToTensor(),
            T.ToDtype(torch.float, scale=True),
            T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
            T.ToPureTensor(),
        ]
    )


def references_criterion(inputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """references/segmentation/train.py ``criterion``: out + 0.5 * aux, ignore_index=255."""
    losses = {name: F.cross_entropy(x, target, ignore_index=255) for name, x in inputs.items()}
    if len(losses) == 1:
        return losses["out"]
    return losses["out"] + 0.5 * losses["aux"]


def references_step(model: nn.Module, image: torch.Tensor, target: torch.Tensor, optimizer: Any) -> None:
    model.train()
    output = model(image)
    loss = references_criterion(output, target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def references_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """train.py's ``params_to_optimize``: backbone and classifier at lr, aux_classifier at 10 x lr."""
    params = [
        {"params": [p for p in model.backbone.parameters() if p.requires_grad]},
        {"params": [p for p in model.classifier.parameters() if p.requires_grad]},
    ]
    if getattr(model, "aux_classifier", None) is not None:
        params.append({"params": [p for p in model.aux_classifier.parameters() if p.requires_grad], "lr": lr * 10})
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)


def predict_out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return eval_predict(model, x)["out"]


# https://github.com/pytorch/vision/blob/main/references/segmentation/train.py with
# ``--model fcn_resnet50 --aux-loss --weights-backbone ResNet50_Weights.IMAGENET1K_V1`` (lr 0.02,
# the README's recipe): the ImageNet backbone fine-tuned on VOC's 21 classes.
def references_fcn_aux_loss() -> tlaudit.TransferSetup:
    model = pretend_pretrained(
        torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    )
    return tlaudit.TransferSetup(
        model=model,
        num_classes=21,
        sample=images(),
        targets=masks(),
        optimizer=references_optimizer(model, 0.02),
        weights="ResNet50_Weights.IMAGENET1K_V1",
        transform=references_train_transform(),
        train_step=references_step,
        predict=predict_out,
    )


# The same recipe for ``--model lraspp_mobilenet_v3_large`` (no auxiliary head; lr 0.02 in the
# README); LRASPP's ``low_classifier``/``high_classifier`` make the class scores.
# Source: https://github.com/pytorch/vision/blob/main/references/segmentation/train.py
def references_lraspp() -> tlaudit.TransferSetup:
    model = pretend_pretrained(
        torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    )
    return tlaudit.TransferSetup(
        model=model,
        num_classes=21,
        sample=images(),
        targets=masks(),
        optimizer=references_optimizer(model, 0.02),
        weights="MobileNet_V3_Large_Weights.IMAGENET1K_V1",
        transform=references_train_transform(),
        train_step=references_step,
        predict=predict_out,
    )


# https://pytorch.org/vision/stable/models.html#semantic-segmentation: inference with the weights'
# own preset, ``weights.transforms()`` (a SemanticSegmentation preset) and ``model(batch)["out"]``.
def docs_inference_with_preset() -> tlaudit.TransferSetup:
    weights = torchvision.models.segmentation.FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1
    model = pretend_pretrained(
        torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    )
    model.eval()
    return tlaudit.TransferSetup(
        model=model, num_classes=21, sample=images(), weights=weights, transform=weights.transforms(), predict=predict_out
    )


# Fine-tuning a COCO/VOC DeepLabV3 to a new class count by replacing both heads, as the
# references' criterion needs (it applies the same targets to "out" and "aux"): DeepLabHead and
# FCNHead rebuilt for 3 classes, Adam over everything.
# Source: https://github.com/pytorch/vision/blob/main/references/segmentation/train.py
def deeplabv3_new_heads() -> tlaudit.TransferSetup:
    weights = torchvision.models.segmentation.DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1
    model = pretend_pretrained(
        torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    )
    model.classifier = DeepLabHead(960, 3)
    model.aux_classifier = FCNHead(40, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=3,
        sample=images(),
        targets=masks(classes=3),
        optimizer=optimizer,
        weights=weights,
        transform=weights.transforms(),
        train_step=references_step,
        predict=predict_out,
    )


CORRECT: dict[str, Any] = {
    "tv-references-segmentation-fcn-aux-loss": references_fcn_aux_loss,
    "tv-references-segmentation-lraspp": references_lraspp,
    "tv-docs-segmentation-inference-preset": docs_inference_with_preset,
    "tv-deeplabv3-new-heads": deeplabv3_new_heads,
}


@pytest.mark.parametrize("build", rows(CORRECT))
def test_correct_source_audits_without_errors(build: Any) -> None:
    assert_correct(build)


# -- the sources' own bugs -----------------------------------------------------------------------


# Only the main classifier replaced: ``aux_classifier`` keeps VOC's 21 classes while the
# references' criterion trains it on the new 3-class masks.
# Source: https://github.com/pytorch/vision/blob/main/references/segmentation/train.py
def deeplabv3_aux_classifier_left() -> tlaudit.TransferSetup:
    setup = deeplabv3_new_heads()
    setup.model.aux_classifier = FCNHead(40, 21)
    optimizer = torch.optim.Adam(setup.model.parameters(), lr=1e-4)
    return setup.replace(optimizer=optimizer)


# VOC masks hold 255 on object borders; a loss without ``ignore_index=255`` (the references pass
# it) fails with "Target 255 is out of bounds".
# Source: https://github.com/pytorch/vision/blob/main/references/segmentation/train.py
def loss_without_ignore_index() -> tlaudit.TransferSetup:
    def step(model: nn.Module, image: torch.Tensor, target: torch.Tensor, optimizer: Any) -> None:
        model.train()
        loss = nn.CrossEntropyLoss()(model(image)["out"], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return references_lraspp().replace(train_step=step)


BUGGY: dict[str, Any] = {
    "tv-deeplabv3-aux-classifier-left-at-21": (deeplabv3_aux_classifier_left, "head-size", "aux"),
    "tv-segmentation-loss-without-ignore-index": (loss_without_ignore_index, "label-range", "255"),
}


@pytest.mark.parametrize(("build", "check", "fragment"), rows(BUGGY))
def test_the_sources_bug_is_named(build: Any, check: str, fragment: str) -> None:
    assert_named(build, check, fragment)
