"""Mistake: a warm-up schedule that starts at a safe LR and climbs to a from-scratch one (0.1) on pretrained layers.

ResNet-18 at 64 px for speed (real code: ``resnet18(weights=WEIGHTS)`` and ``WEIGHTS.transforms()``).
"""
# Symptom: the first epochs look fine, then the loss jumps when warm-up ends and pretrained features are lost.
# Fix: warm up to a low peak for pretrained layers (per-group base LRs from tlaudit.param_groups(model, 1e-3, head_lr=1e-2)).
from __future__ import annotations

import torch
import torchvision
from torchvision.transforms import v2

import tlaudit
from tlaudit.examples._common import pixels, pretend_pretrained

WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
NUM_CLASSES = 5

STEPS = 100


def predict(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(model):
        return model(images)


def setup() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    tlaudit.replace_head(model, NUM_CLASSES)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # the mistake: a peak of 0.1 for every layer
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.05, total_iters=10)  # starts at 0.005
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=STEPS - 10)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[10])
    transform = v2.Compose([v2.Resize(64), v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    sample = transform(pixels(4, 128))
    return tlaudit.TransferSetup(
        model=model,
        num_classes=NUM_CLASSES,
        sample=sample,
        targets=torch.arange(4) % NUM_CLASSES,
        optimizer=optimizer,
        scheduler=scheduler,
        weights=WEIGHTS,
        transform=transform,
        strategy="fine_tuning",
        predict=predict,
    )
