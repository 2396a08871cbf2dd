"""The same job with the usual mistakes: the optimizer built before the head swap, a freeze loop that
compares instead of assigns, a from-scratch LR, the wrong normalization, inference in train mode."""

from __future__ import annotations

import torch
import torchvision
from torchvision.transforms import v2

import tlaudit
from tlaudit.examples._common import NUM_CLASSES, WEIGHTS, pixels, pretend_pretrained


def predict(model: torch.nn.Module, sample: torch.Tensor) -> torch.Tensor:
    return model(sample)  # no eval(), no no_grad()


def setup() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # built before the head swap
    model.fc = torch.nn.Linear(512, NUM_CLASSES)
    for name, param in model.named_parameters():
        if not name.startswith("fc"):
            param.requires_grad == False  # noqa: E712 - the bug: a comparison, not an assignment
    transform = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)])
    sample = transform(pixels())
    return tlaudit.TransferSetup(
        model=model,
        num_classes=NUM_CLASSES,
        sample=sample,
        targets=torch.arange(len(sample)) % NUM_CLASSES,
        optimizer=optimizer,
        weights=WEIGHTS,
        transform=transform,
        strategy="feature_extraction",
        predict=predict,
    )
