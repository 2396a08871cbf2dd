"""Data sets named ``module:function`` in the extraction tests: real pixels from scikit-learn's digits."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset


def digits() -> TensorDataset:
    """The first ten 8x8 digits as uint8 RGB ``(3, 32, 32)`` images with their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    pixels = torch.from_numpy(data.images[:10] * (255 / 16)).to(torch.uint8)
    images = pixels[:, None].repeat(1, 3, 4, 4)
    return TensorDataset(images, torch.from_numpy(data.target[:10]))
