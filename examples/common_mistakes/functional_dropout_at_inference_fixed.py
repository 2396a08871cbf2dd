"""Fixed twin of ``functional_dropout_at_inference.py``: the dropout follows the module's mode.

ResNet-18 at 64 px for speed (real code: ``resnet18(weights=WEIGHTS)`` and ``WEIGHTS.transforms()``).
"""
# Symptom (of the mistake): two predictions of the same image differ; test accuracy changes from run to run although model.eval() is called.
# Fix (applied here): F.dropout(x, p, training=self.training), or an nn.Dropout module (which model.eval() switches off).
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torchvision.transforms import v2

import tlaudit
from tlaudit.examples._common import pixels, pretend_pretrained

WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
NUM_CLASSES = 5


class DropoutHead(torch.nn.Module):
    """A linear classifier with dropout on its input."""

    def __init__(self, features: int, num_classes: int, p: float = 0.3) -> None:
        super().__init__()
        self.p = p
        self.linear = torch.nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(F.dropout(x, self.p, training=self.training))


def predict(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(model):
        return model(images)


def setup() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    model.fc = DropoutHead(512, NUM_CLASSES)
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
        strategy="fine_tuning",
        predict=predict,
    )
