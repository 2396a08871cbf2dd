"""A sound feature-extraction setup: ResNet-18, new 5-class head, frozen backbone and BatchNorm,
an optimizer over the head only, the weights' own preset transform, inference in eval mode."""

from __future__ import annotations

import torch
import torchvision

import tlaudit
from tlaudit.examples._common import NUM_CLASSES, WEIGHTS, pixels, pretend_pretrained


def predict(model: torch.nn.Module, sample: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(model):
        return model(sample)


def setup() -> tlaudit.TransferSetup:
    weights = torchvision.models.get_weight(WEIGHTS)
    model = pretend_pretrained(torchvision.models.resnet18())  # real code: resnet18(weights=weights)
    tlaudit.replace_head(model, NUM_CLASSES)
    tlaudit.freeze_backbone(model, batchnorm="frozen")
    optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4, weight_decay=0.01), lr=1e-3)
    transform = weights.transforms()
    sample = transform(pixels())
    return tlaudit.TransferSetup(
        model=model,
        num_classes=NUM_CLASSES,
        sample=sample,
        targets=torch.arange(len(sample)) % NUM_CLASSES,
        optimizer=optimizer,
        weights=weights,
        transform=transform,
        strategy="feature_extraction",
        predict=predict,
    )
