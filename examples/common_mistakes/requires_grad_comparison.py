"""Mistake: ``param.requires_grad == False`` compares instead of assigning: nothing is frozen.

ResNet-18 at 64 px for speed (real code: ``resnet18(weights=WEIGHTS)`` and ``WEIGHTS.transforms()``).
"""
# Symptom: feature extraction as slow as full fine-tuning, and the pretrained backbone is overwritten by the first epochs.
# Fix: assign (param.requires_grad = False), or tlaudit.freeze_backbone(model, batchnorm="frozen").
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
    for name, param in model.named_parameters():
        if not name.startswith("fc."):
            param.requires_grad == False  # noqa: E712 - the mistake: a comparison, not an assignment
    optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4, head_lr=1e-3))
    transform = v2.Compose([v2.Resize(64), v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    sample = transform(pixels(4, 128))
    return tlaudit.TransferSetup(
        model=model,
        num_classes=NUM_CLASSES,
        sample=sample,
        targets=torch.arange(4) % NUM_CLASSES,
        optimizer=optimizer,
        weights=WEIGHTS,
        transform=transform,
        strategy="feature_extraction",
        predict=predict,
    )
