"""Fixed twin of ``stale_gradients_with_momentum.py``: after freezing, a new optimizer over the trainable parameters.

ResNet-18 at 64 px for speed (real code: ``resnet18(weights=WEIGHTS)`` and ``WEIGHTS.transforms()``).
The setup trains two steps with every layer, then freezes the early stages (as a schedule that
freezes after a warm start would), and builds a new optimizer over what still trains.
"""
# Symptom (of the mistake): the "frozen" layers keep changing: requires_grad=False stops new gradients, not momentum on zeroed ones.
# Fix (applied here): rebuild the optimizer from the trainable parameters (tlaudit.param_groups) after freezing, or set p.grad = None.
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


def train_step(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    """One step of the training loop: BatchNorm of the frozen stages in eval mode, gradients zeroed in place."""
    model.train()
    tlaudit.eval_frozen_batchnorm(model)
    optimizer.zero_grad(set_to_none=False)  # keeps a zero .grad on frozen parameters: momentum still moves them
    torch.nn.functional.cross_entropy(model(images), targets).backward()
    optimizer.step()


def setup() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    tlaudit.replace_head(model, NUM_CLASSES)
    transform = v2.Compose([v2.Resize(64), v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    sample = transform(pixels(4, 128))
    targets = torch.arange(4) % NUM_CLASSES
    optimizer = torch.optim.SGD(tlaudit.param_groups(model, 1e-3, head_lr=1e-2), lr=1e-3, momentum=0.9)
    for _ in range(2):  # a warm start with every layer trainable: momentum buffers everywhere
        train_step(model, sample, targets, optimizer)
    tlaudit.freeze(model, *FROZEN)
    optimizer = torch.optim.SGD(tlaudit.param_groups(model, 1e-3, head_lr=1e-2), lr=1e-3, momentum=0.9)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=NUM_CLASSES,
        sample=sample,
        targets=targets,
        optimizer=optimizer,
        weights=WEIGHTS,
        transform=transform,
        frozen=FROZEN,
        train_step=train_step,
        predict=predict,
    )
