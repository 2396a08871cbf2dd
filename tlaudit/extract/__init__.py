"""Fast feature extraction: :class:`FeatureExtractor`, its engines, configuration, sharding and storage.

* :mod:`tlaudit.extract.config`: :class:`ExtractConfig` and :func:`choose_config` (what runs, and why).
* :mod:`tlaudit.extract.extractor`: :class:`FeatureExtractor`.
* :mod:`tlaudit.extract.engines`: eager, torch-compile, OpenVINO, ONNX Runtime, TensorRT, and ``auto``.
* :mod:`tlaudit.extract.inputs`: batches with sample indices, shards without padding, uint8 on the device.
* :mod:`tlaudit.extract.files`: images on disk as a data set (decoded on DataLoader workers).
* :mod:`tlaudit.extract.backbones`: a backbone built with its weights and their preprocessing.
* :mod:`tlaudit.extract.job`: :func:`extract_images`, a folder to features in one call.
* :mod:`tlaudit.extract.storage`: ``.npy`` chunks on disk, resumable; :func:`load_features`.
* :mod:`tlaudit.extract.ray`: :class:`~tlaudit.extract.ray.RayExtractor` for Ray Data's ``map_batches``.
* the ``tlaudit extract`` sub-command is :mod:`tlaudit.cli.extract`.

The package is lazy (PEP 562): ``tlaudit --help`` lists the engines without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlaudit.extract.config import Capabilities, ExtractConfig, choose_config, device_capabilities
    from tlaudit.extract.extractor import FeatureExtractor
    from tlaudit.extract.inputs import normalize_uint8, shard_range
    from tlaudit.extract.job import ExtractionRun, extract_images
    from tlaudit.extract.storage import Features, load_features

DTYPE_NAMES = ("float32", "bfloat16", "float16")
"""Compute dtypes by name; anything but ``float32`` runs the backbone under ``torch.autocast``."""

_LAZY = {
    "Capabilities": "tlaudit.extract.config",
    "ExtractConfig": "tlaudit.extract.config",
    "choose_config": "tlaudit.extract.config",
    "device_capabilities": "tlaudit.extract.config",
    "FeatureExtractor": "tlaudit.extract.extractor",
    "normalize_uint8": "tlaudit.extract.inputs",
    "shard_range": "tlaudit.extract.inputs",
    "ExtractionRun": "tlaudit.extract.job",
    "extract_images": "tlaudit.extract.job",
    "Features": "tlaudit.extract.storage",
    "load_features": "tlaudit.extract.storage",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tlaudit.extract' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DTYPE_NAMES",
    "Capabilities",
    "ExtractConfig",
    "ExtractionRun",
    "FeatureExtractor",
    "Features",
    "choose_config",
    "device_capabilities",
    "extract_images",
    "load_features",
    "normalize_uint8",
    "shard_range",
]
