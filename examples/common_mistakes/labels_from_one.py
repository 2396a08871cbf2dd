"""Mistake: class labels numbered 1..5 for a 5-class head.

ResNet-18 at 64 px for speed (real code: ``resnet18(weights=WEIGHTS)`` and ``WEIGHTS.transforms()``).
"""
# Symptom: on CPU an IndexError from cross_entropy ("Target 5 is out of bounds"); on GPU an opaque device-side assert.
# Fix: map labels to 0..num_classes-1 (labels - 1, or a class-to-index dict built from the sorted class names).
from __future__ import annotations

import torch
import torchvision
from torchvision.transforms import v2

import tlaudit
from tlaudit.examples._common import pixels, pretend_pretrained

WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
NUM_CLASSES = 5


def predict(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(model):
        return model(images)


def setup() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    tlaudit.replace_head(model, NUM_CLASSES)
    optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4, head_lr=1e-3))
    transform = v2.Compose([v2.Resize(64), v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    sample = transform(pixels(4, 128))
    targets = torch.tensor([5, 1, 3, 2])  # the mistake: the dataset's class numbers 1..5
    return tlaudit.TransferSetup(
        model=model,
        num_classes=NUM_CLASSES,
        sample=sample,
        targets=targets,
        optimizer=optimizer,
        weights=WEIGHTS,
        transform=transform,
        strategy="fine_tuning",
        predict=predict,
    )
