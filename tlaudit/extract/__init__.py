"""Fast feature extraction: :class:`FeatureExtractor`, its configuration, sharding and storage.

* :mod:`tlaudit.extract.config`: :class:`ExtractConfig` and :func:`choose_config` (what runs, and why).
* :mod:`tlaudit.extract.extractor`: :class:`FeatureExtractor`.
* :mod:`tlaudit.extract.inputs`: batches with sample indices, shards without padding, uint8 on the device.
* :mod:`tlaudit.extract.storage`: ``.npy`` chunks on disk, resumable; :func:`load_features`.
* :mod:`tlaudit.extract.ray`: :class:`~tlaudit.extract.ray.RayExtractor` for Ray Data's ``map_batches``.
"""
from __future__ import annotations

from tlaudit.extract.config import Capabilities, ExtractConfig, choose_config, device_capabilities
from tlaudit.extract.extractor import FeatureExtractor
from tlaudit.extract.inputs import normalize_uint8, shard_range
from tlaudit.extract.storage import Features, load_features

__all__ = [
    "Capabilities",
    "ExtractConfig",
    "FeatureExtractor",
    "Features",
    "choose_config",
    "device_capabilities",
    "load_features",
    "normalize_uint8",
    "shard_range",
]
