"""Mistake: a freeze loop over parameter names with a typo (``layer_2``) silently skips a stage.

ResNet-18 at 64 px for speed (real code: ``resnet18(weights=WEIGHTS)`` and ``WEIGHTS.transforms()``).
``TransferSetup.frozen`` states the intent, so the audit can compare it with what the flags say.
"""
# Symptom: no error; one stage meant frozen trains, so results vary with the LR and the pretrained features drift.
# Fix: freeze by module name with tlaudit.freeze(model, "layer1", "layer2"): an unknown name raises with the closest ones.
from __future__ import annotations

import torch
import torchvision
from torchvision.transforms import v2

import tlaudit
from tlaudit.examples._common import pixels, pretend_pretrained

WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
NUM_CLASSES = 5
FROZEN = ["conv1", "bn1", "layer1", "layer2"]


def predict(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(model):
        return model(images)


def setup() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    tlaudit.replace_head(model, NUM_CLASSES)
    for name, param in model.named_parameters():
        if name.startswith(("conv1", "bn1", "layer1", "layer_2")):  # the mistake: "layer_2" matches nothing
            param.requires_grad = False
    tlaudit.freeze_batchnorm(model, *FROZEN)
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
        frozen=FROZEN,
        predict=predict,
    )
