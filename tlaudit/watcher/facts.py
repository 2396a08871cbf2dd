"""What a run holds that no hook passes through, read without changing it: its schedulers, the
class count and the normalization of the data it iterates, and the statistics its checkpoint expects.

The rules are general, by shape, and no framework is imported for them:

* a **scheduler** steps an optimizer when its ``optimizer`` is that optimizer or wraps it
  (accelerate's ``AcceleratedOptimizer``, Lightning's ``LightningOptimizer`` and DeepSpeed-style
  wrappers hold the real one in ``.optimizer``); PyTorch's schedulers and timm's (``timm.scheduler``,
  stepped per epoch or per update) count;
* the **class count** of a dataset is its ``classes`` (torchvision), its reader's ``class_to_idx``
  (timm's ``ImageDataset``), or the names of its label feature (a Hugging Face ``datasets`` ``ClassLabel``);
* **normalization done by a loader**: a live timm ``PrefetchLoader`` over the DataLoader being
  iterated normalizes on the device; it is the transform the audit compares;
* an **image processor** (``image_mean``, ``image_std``, ``do_normalize``) is read as the statistics it
  applies: as the dataset's transform, or, saved beside a Hugging Face checkpoint
  (``preprocessor_config.json`` in the folder the model was loaded from), as the weights' expected ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tlaudit._processors import is_image_processor, normalizes, saved_processor
from tlaudit.auditing.rules.wrappers import bound_to, rebound
from tlaudit.normalization import processor_normalization
from tlaudit.watcher.live import instances

__all__ = [
    "bound_to",
    "checkpoint_statistics",
    "config_sample",
    "hf_weights",
    "rebound",
    "class_count",
    "find_schedulers",
    "prefetch_loaders",
    "processor_statistics",
]


def _scheduler_types() -> tuple[type, ...]:
    """PyTorch's scheduler bases, and timm's when timm is loaded (it is never imported here)."""
    import sys

    lr = torch.optim.lr_scheduler
    timm_base = getattr(sys.modules.get("timm.scheduler.scheduler"), "Scheduler", None)
    return (lr.LRScheduler, lr.ReduceLROnPlateau, *([timm_base] if isinstance(timm_base, type) else []))


def _is_scheduler(obj: Any, kinds: tuple[type, ...] | None = None) -> bool:
    return isinstance(obj, kinds or _scheduler_types())


def find_schedulers(optimizer: torch.optim.Optimizer, given: Any = None) -> list[Any]:
    """The live LR schedulers that step ``optimizer`` (directly or through a wrapper); ``given`` (what a
    framework handed over) first, then composite ones (SequentialLR, ChainedScheduler)."""
    lr = torch.optim.lr_scheduler
    given = getattr(given, "scheduler", given) if given is not None and not _is_scheduler(given) else given
    kinds = _scheduler_types()
    found = [o for o in instances(kinds) if bound_to(o, optimizer)]
    if given is not None and _is_scheduler(given) and bound_to(given, optimizer):
        found = [given, *[s for s in found if s is not given]]
    return sorted(found, key=lambda s: (s is not given, not isinstance(s, (lr.SequentialLR, lr.ChainedScheduler))))


def class_count(dataset: Any) -> tuple[int, str] | None:
    """The number of classes a dataset declares, and where it was read; None when it declares none."""
    classes = getattr(dataset, "classes", None)
    if isinstance(classes, (list, tuple)) and classes:
        return len(classes), "classes"
    mapping = getattr(getattr(dataset, "reader", None), "class_to_idx", None)
    if isinstance(mapping, Mapping) and mapping:
        return len(mapping), "reader.class_to_idx"
    features = getattr(dataset, "features", None)
    if isinstance(features, Mapping):
        for name in ("label", "labels"):
            names = getattr(features.get(name), "names", None)
            if isinstance(names, (list, tuple)) and names:
                return len(names), f"features[{name!r}].names"
    return None


def prefetch_loaders(loaders: list[Any]) -> list[Any]:
    """The live timm ``PrefetchLoader`` objects over one of ``loaders`` (the DataLoaders being iterated)."""
    import sys

    module = sys.modules.get("timm.data.loader")
    cls = getattr(module, "PrefetchLoader", None)
    if cls is None:
        return []
    ids = {id(loader) for loader in loaders}
    return [o for o in instances(cls) if id(getattr(o, "loader", None)) in ids]


def processor_statistics(processor: Any) -> dict[str, Any] | None:
    """``{"mean", "std"}`` an image processor (or its saved config, a mapping) normalizes with; None if
    it has none or does not normalize."""
    if not is_image_processor(processor) or not normalizes(processor):
        return None
    try:
        found = processor_normalization(processor)
    except ValueError:
        return None
    return {"mean": list(found.mean), "std": list(found.std)}


def checkpoint_statistics(model: nn.Module) -> tuple[dict[str, Any], str] | None:
    """The statistics of the image processor saved beside the Hugging Face checkpoint ``model`` was
    loaded from (``config.name_or_path``/``preprocessor_config.json``), and that file's path."""
    saved = saved_processor(model)
    stats = processor_statistics(saved[0]) if saved is not None else None
    return (stats, saved[1]) if saved is not None and stats is not None else None


def hf_weights(model: nn.Module, processor: Any = None) -> tuple[dict[str, Any], str] | None:
    """The statistics a Hugging Face run's inputs are expected to have: those of the image processor
    it uses (``processor``, e.g. the Trainer's ``processing_class``), else of the one saved beside
    the checkpoint the model was loaded from."""
    if processor is not None and hasattr(processor, "image_mean"):
        stats = processor_statistics(processor)
        if stats is not None:
            return stats, f"{type(processor).__name__}.image_mean/image_std"
    saved = checkpoint_statistics(model)
    if saved is not None:
        return saved[0], f"image_mean/image_std of {saved[1]}"
    return None


def config_sample(model: nn.Module) -> torch.Tensor | None:
    """A batch of two inputs of the shape a Hugging Face model's config declares (``image_size`` and
    ``num_channels``; else token ids below ``vocab_size``), drawn from a private generator (the run's
    random state is not touched); None without a config that says."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    gen = torch.Generator().manual_seed(0)
    size = getattr(config, "image_size", None)
    if isinstance(size, int) or (isinstance(size, (list, tuple)) and len(size) == 2):
        height, width = (size, size) if isinstance(size, int) else size
        return torch.randn(2, int(getattr(config, "num_channels", 3)), int(height), int(width), generator=gen)
    vocab = getattr(config, "vocab_size", None)
    if isinstance(vocab, int) and vocab > 1:
        return torch.randint(1, vocab, (2, 8), generator=gen)
    return None
