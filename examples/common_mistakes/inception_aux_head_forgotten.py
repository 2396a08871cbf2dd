"""Mistake: Inception v3's main head is replaced by hand and its auxiliary head (``AuxLogits.fc``) is forgotten.

Inception v3 at 299 px, batch 2: its auxiliary head needs the 17x17 map that only 299 px gives (real code:
``inception_v3(weights=WEIGHTS)`` and ``WEIGHTS.transforms()``).
"""
# Symptom: eval works (the auxiliary head only runs in training), then training adds a loss over 1000 aux classes, or crashes on the aux output.
# Fix: tlaudit.replace_head(model, num_classes) replaces the main and the auxiliary heads.
from __future__ import annotations

import torch
import torchvision
from torchvision.transforms import v2

import tlaudit
from tlaudit.examples._common import pixels, pretend_pretrained

WEIGHTS = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1
NUM_CLASSES = 5


def predict(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(model):
        return model(images)


def setup() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.inception_v3(init_weights=False, aux_logits=True, transform_input=True))  # as the weights build it
    model.fc = torch.nn.Linear(model.fc.in_features, NUM_CLASSES)  # the mistake: AuxLogits.fc keeps 1000 outputs
    optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4, head_lr=1e-3))
    transform = v2.Compose([v2.Resize(299), v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    sample = transform(pixels(2, 299))
    return tlaudit.TransferSetup(
        model=model,
        num_classes=NUM_CLASSES,
        sample=sample,
        targets=torch.arange(2) % NUM_CLASSES,
        optimizer=optimizer,
        weights=WEIGHTS,
        transform=transform,
        strategy="fine_tuning",
        predict=predict,
    )
