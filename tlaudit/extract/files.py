"""Images on disk as a data set: a folder (ImageFolder layout or flat), a file list, or ``module:function``.

Each item is ``(uint8 (C, H, W) pixels, label)``, decoded and resized on the DataLoader's worker
processes. JPEG files are decoded by ``torchvision.io.decode_jpeg`` (libjpeg-turbo straight into a
tensor, no PIL image in between); other formats by ``torchvision.io.decode_image``. The pixels stay
uint8 until the extractor normalizes them on the device: a quarter of the bytes of float32 through
the workers' queues.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["IMAGE_EXTENSIONS", "ImageFiles", "Preprocess", "image_files", "load_dataset"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
"""File name endings taken as images (case-insensitive), as torchvision's ``ImageFolder`` takes them."""

_JPEG_MAGIC = b"\xff\xd8"


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize``, then center-crop ``crop`` x ``crop``: on uint8 tensors.

    The same steps as torchvision's ``ImageClassification`` preset (``resize_size``, ``crop_size``,
    bilinear with antialiasing), without the float conversion: normalization happens on the device.
    """

    resize: int | None
    crop: int | None
    interpolation: str = "bilinear"

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        if self.resize is not None:
            mode = InterpolationMode(self.interpolation) if self.interpolation else InterpolationMode.BILINEAR
            image = TF.resize(image, [self.resize], interpolation=mode, antialias=True)
        if self.crop is not None:
            image = TF.center_crop(image, [self.crop, self.crop])
        return image

    def describe(self) -> str:
        parts = [f"resize {self.resize}" if self.resize else "", f"crop {self.crop}" if self.crop else ""]
        return ", ".join(p for p in parts if p) or "no resizing"


def _decode_pil(raw: bytes) -> torch.Tensor:
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as image:
        pixels = np.array(image.convert("RGB"))
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def decode(path: str | os.PathLike[str]) -> torch.Tensor:
    """The image file at ``path`` as uint8 RGB ``(3, H, W)``.

    JPEG goes through ``torchvision.io.decode_jpeg`` (measured 2.5x PIL's decode-and-resize per image,
    see docs/extraction.md), other formats through PIL. torchvision 0.29 deprecates its decoders in
    favour of TorchCodec; that DeprecationWarning is about torchvision's roadmap, not the user's data,
    so it is silenced around the call, and PIL takes over once torchvision drops ``decode_jpeg``.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _JPEG_MAGIC:
        try:
            from torchvision.io import ImageReadMode, decode_jpeg
        except ImportError:
            return _decode_pil(raw)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*decoding and encoding capabilities of TorchVision", category=DeprecationWarning)
            data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
            return decode_jpeg(data, mode=ImageReadMode.RGB)
    return _decode_pil(raw)


class ImageFiles(Dataset):
    """Image files with labels: item ``i`` is ``(uint8 (3, H, W), label)`` (label -1 when there is none).

    Attributes:
        paths: the files, in item order.
        labels: class indices (ImageFolder layout) or -1.
        classes: the class names, indexed by label (empty for a flat folder or a list).
        preprocess: applied to every decoded image (resize, crop); None keeps the size.
    """

    def __init__(
        self, paths: Sequence[str], labels: Sequence[int] | None = None, classes: Sequence[str] = (), preprocess: Preprocess | None = None
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.labels = list(labels) if labels is not None else [-1] * len(self.paths)
        self.classes = list(classes)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            image = decode(self.paths[index])
        except (RuntimeError, OSError) as err:
            raise ValueError(f"cannot decode the image: {self.paths[index]!r} (DATA): {err}") from err
        if self.preprocess is not None:
            image = self.preprocess(image)
        return image, self.labels[index]


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def image_files(data: str | os.PathLike[str], preprocess: Preprocess | None = None) -> ImageFiles:
    """The images ``data`` names: a folder (class subfolders, ImageFolder's layout, or images directly in it),
    or a text file listing one image path per line (relative to the list's folder; ``#`` starts a comment).

    Raises:
        FileNotFoundError: ``data`` does not exist, or a listed file is missing.
        ValueError: no image found.
    """
    root = Path(data)
    if not root.exists():
        raise FileNotFoundError(f"no such folder or file list: {str(root)!r} (DATA)")
    if root.is_file():
        lines = [ln.split("#", 1)[0].strip() for ln in root.read_text(encoding="utf-8").splitlines()]
        paths = [(root.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines if ln]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"listed images not found: {', '.join(missing[:3])} (DATA: {root})")
        found = ImageFiles([str(p) for p in paths], preprocess=preprocess)
    else:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and any(_is_image(f) for f in d.rglob("*")))
        if classes:
            files: list[str] = []
            labels: list[int] = []
            for label, name in enumerate(classes):
                for f in sorted((root / name).rglob("*")):
                    if _is_image(f):
                        files.append(str(f))
                        labels.append(label)
            found = ImageFiles(files, labels, classes, preprocess)
        else:
            found = ImageFiles([str(f) for f in sorted(root.iterdir()) if _is_image(f)], preprocess=preprocess)
    if not len(found):
        raise ValueError(f"no images in: {str(root)!r} (DATA); expected files ending in {', '.join(IMAGE_EXTENSIONS)}")
    return found


def load_dataset(data: Any, preprocess: Preprocess | None = None) -> Dataset:
    """``data`` as a data set: a Dataset as it is, ``module:function`` (or ``file.py:function``) called,
    else a folder or file list (:func:`image_files`)."""
    if isinstance(data, Dataset):
        return data
    text = str(data)
    if ":" in text and not Path(text).exists() and not (len(text) > 1 and text[1] == ":"):
        from tlaudit.auditing.setup import load_object

        dataset, where = load_object(text, field="DATA")
        if not isinstance(dataset, Dataset) or not hasattr(dataset, "__len__"):
            raise TypeError(f"{where} returned {type(dataset).__name__}, not a map-style Dataset (DATA)")
        return dataset
    return image_files(text, preprocess)
