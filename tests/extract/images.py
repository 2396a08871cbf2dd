"""Small image folders written with PIL for the extraction tests: smooth gradients plus noise, like photos."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def photo(seed: int, height: int, width: int) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 image: a colour gradient with noise (JPEG compresses it like a photo)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    base = 255 * (0.5 * y + 0.5 * x * rng.uniform(0.2, 1.0, 3))
    return (base + rng.normal(0, 12, (height, width, 3))).clip(0, 255).astype(np.uint8)


def write_images(
    root: Path, classes: Sequence[str] = ("cat", "dog"), per_class: int = 3, *, size: tuple[int, int] = (40, 48), fmt: str = "jpg"
) -> list[Path]:
    """``root/<class>/<i>.<fmt>`` (or ``root/<i>.<fmt>`` with ``classes=()``); returns the paths in sorted order."""
    paths = []
    folders = [root / c for c in classes] or [root]
    for k, folder in enumerate(folders):
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = folder / f"{i}.{fmt}"
            Image.fromarray(photo(100 * k + i, size[0] + i, size[1])).save(path, quality=92)
            paths.append(path)
    return paths
