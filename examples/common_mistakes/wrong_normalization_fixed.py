"""Fixed twin of ``wrong_normalization.py``: the mean and std come from the weights.

ResNet-18 at 64 px for speed (real code: ``resnet18(weights=WEIGHTS)`` and ``WEIGHTS.transforms()``).
"""
# Symptom (of the mistake): no error; fine-tuning converges lower than published results, feature extraction is far worse.
# Fix (applied here): the weights' own preset (WEIGHTS.transforms()) or Normalize(**tlaudit.expected_normalization(WEIGHTS) mean/std).
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
    expected = tlaudit.expected_normalization(WEIGHTS)
    transform = v2.Compose([v2.Resize(64), v2.Normalize(mean=list(expected.mean), std=list(expected.std))])
    sample = transform(pixels(4, 128))
    return tlaudit.TransferSetup(
        model=model,
        num_classes=NUM_CLASSES,
        sample=sample,
        targets=torch.arange(4) % NUM_CLASSES,
        optimizer=optimizer,
        weights=WEIGHTS,
        transform=transform,
        strategy="fine_tuning",
        predict=predict,
    )
