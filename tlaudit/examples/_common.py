"""Shared by the bundled examples: a real image batch and a stand-in for downloaded weights."""

from __future__ import annotations

import torch
from torch import nn

WEIGHTS = "ResNet18_Weights.IMAGENET1K_V1"
NUM_CLASSES = 5


def pixels(batch: int = 8, size: int = 224) -> torch.Tensor:
    """A batch of real photographs as 0..1 float pixels: crops of scikit-learn's sample images when
    installed, else a smooth synthetic gradient image (no download either way)."""
    try:
        from sklearn.datasets import load_sample_images

        images = [torch.tensor(img).permute(2, 0, 1).float() / 255 for img in load_sample_images().images]
    except ImportError:
        ramp = torch.linspace(0, 1, 427)
        images = [torch.stack([ramp.outer(torch.linspace(0, 1, 640)), ramp[:, None].expand(427, 640), torch.full((427, 640), 0.5)])]
    g = torch.Generator().manual_seed(0)
    crops = []
    for i in range(batch):
        img = images[i % len(images)]
        top = int(torch.randint(img.shape[1] - size, (1,), generator=g))
        left = int(torch.randint(img.shape[2] - size, (1,), generator=g))
        crops.append(img[:, top : top + size, left : left + size])
    return torch.stack(crops)


def pretend_pretrained(model: nn.Module) -> nn.Module:
    """Give BatchNorm layers non-initial running statistics, as loaded weights would have.

    The examples cannot download weights; real code builds the model with ``weights=...``.
    """
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d) and module.running_mean is not None and module.running_var is not None:
                assert module.num_batches_tracked is not None  # tracked whenever running statistics are
                module.running_mean.copy_(torch.randn(module.num_features, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=g) + 0.5)
                module.num_batches_tracked.fill_(1000)
    return model
