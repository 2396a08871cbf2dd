"""Mistake: ``load_state_dict(..., strict=False)`` on a checkpoint saved from DataParallel: every key carries ``module.``, nothing loads.

ResNet-18 at 64 px for speed (real code: ``resnet18(weights=WEIGHTS)`` and ``WEIGHTS.transforms()``).
The checkpoint is made here from a model with pretrained-like BatchNorm statistics; real code loads a file.
"""
# Symptom: no error (strict=False hides it); training "works" from random features, far below the expected accuracy.
# Fix: strip the wrapper prefix from the keys and load with strict=True (before replacing the head), or check missing_keys.
from __future__ import annotations

import torch
import torchvision
from torchvision.transforms import v2

import tlaudit
from tlaudit.examples._common import pixels, pretend_pretrained

NUM_CLASSES = 5


def checkpoint() -> dict[str, torch.Tensor]:
    """A checkpoint as ``torch.save(nn.DataParallel(model).state_dict())`` writes it: keys start with ``module.``."""
    trained = pretend_pretrained(torchvision.models.resnet18())
    return {f"module.{key}": value for key, value in trained.state_dict().items()}


def predict(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(model):
        return model(images)


def setup() -> tlaudit.TransferSetup:
    model = torchvision.models.resnet18()
    load_result = model.load_state_dict(checkpoint(), strict=False)  # the mistake: loads nothing, says nothing
    tlaudit.replace_head(model, NUM_CLASSES)
    optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4, head_lr=1e-3))
    transform = v2.Compose([v2.Resize(64), v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    sample = transform(pixels(4, 128))
    return tlaudit.TransferSetup(
        model=model,
        num_classes=NUM_CLASSES,
        sample=sample,
        targets=torch.arange(4) % NUM_CLASSES,
        optimizer=optimizer,
        transform=transform,
        weights={"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        strategy="fine_tuning",
        predict=predict,
        load_result=load_result,
    )
