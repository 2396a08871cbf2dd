"""Which layers are new: the user's model compared with the architecture the pretrained weights belong to.

The reference is built on the meta device (no memory, no weights) from the weights' own builder:
a torchvision weights enum member (or its name), or a timm ``pretrained_cfg`` (its
``architecture``). A module of the user's model whose path, type or parameter shapes the
reference lacks is new: a replaced or multi-layer head, a bottleneck, an adapter. Adapter
parameters (LoRA's ``lora_A``/``lora_B``, peft's layers, recognised by name without importing peft)
are new with or without a reference.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from tlaudit._names import unwrap
from tlaudit.normalization import torchvision_weights

__all__ = ["is_adapter_name", "new_modules", "reference_model"]

_ADAPTER_MARKERS = ("lora_", "lora.", "adapter", "prompt_encoder")


def is_adapter_name(name: str) -> bool:
    """A module or parameter path that belongs to an adapter (LoRA ``lora_A``/``lora_B``, peft's adapters)."""
    return any(
        part.startswith(_ADAPTER_MARKERS) or part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B")
        for part in name.split(".")
    )


def _torchvision_builder(weights: Any) -> str | None:
    import torchvision
    from torchvision.models import get_model_weights, list_models

    weights = torchvision_weights(weights)
    if weights is None:
        return None
    for name in list_models(module=torchvision.models):
        try:
            if get_model_weights(name) is type(weights):
                return name
        except (ValueError, KeyError):  # pragma: no cover - a builder without weights
            continue
    return None


def reference_model(weights: Any) -> nn.Module | None:
    """The architecture ``weights`` were trained as, on the meta device; None where it cannot be told."""
    builder = _torchvision_builder(weights)
    if builder is not None:
        import torchvision

        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. GoogLeNet's init_weights FutureWarning: the reference is never run
            return torchvision.models.get_model(builder, weights=None)
    architecture = weights.get("architecture") if isinstance(weights, dict) else getattr(weights, "architecture", None)
    if isinstance(architecture, str):
        try:
            import timm
        except ImportError:
            return None
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return timm.create_model(architecture, pretrained=False)
        except Exception:  # an unknown or changed architecture name: cannot tell
            return None
    return None


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in module.named_parameters(recurse=False)}


def new_modules(model: nn.Module, weights: Any) -> list[str] | None:
    """Paths of the modules of ``model`` that the weights' architecture does not have (outermost only),
    plus adapter modules; None where no reference can be built (adapters are still found by name).
    When more than half of the model's layers differ from the reference, the weights do not describe
    this model and only adapters are reported.

    Example:
        >>> import torchvision
        >>> from torch import nn
        >>> m = torchvision.models.resnet18()
        >>> m.fc = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 5))
        >>> new_modules(m, torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
        ['fc']
    """
    inner = unwrap(model)
    task_heads = hf_task_heads(inner)
    reference = reference_model(weights) if weights is not None else None
    ref_modules = dict(reference.named_modules()) if reference is not None else {}
    found: list[str] = []
    for name, module in inner.named_modules():
        if not name or any(name.startswith(prefix + ".") for prefix in found):
            continue
        if is_adapter_name(name):
            found.append(name)
            continue
        if reference is None:
            continue
        ref = ref_modules.get(name)
        if ref is None or type(ref) is not type(module) or _shapes(ref) != _shapes(module):
            if not _shapes(module) and not any(True for _ in module.parameters()):
                continue  # a parameterless layer (ReLU, pooling) changes nothing pretrained
            found.append(name)
    if reference is not None:
        layers = [n for n, m in inner.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
        changed = [n for n in layers if any(n == f or n.startswith(f + ".") for f in found)]
        if len(changed) > len(layers) / 2:  # not these weights' architecture (or a narrowed copy): no reference
            return [f for f in found if is_adapter_name(f)]
    found = list(dict.fromkeys([*found, *(h for h in task_heads if not any(h.startswith(f + ".") or h == f for f in found))]))
    if reference is None and not found:
        return None
    return found


def hf_task_heads(model: nn.Module) -> list[str]:
    """The task-head modules of Hugging Face models inside ``model``: every child with parameters of a
    ``PreTrainedModel`` other than its base model (``base_model_prefix``), such as DistilBERT's
    ``pre_classifier`` and ``classifier``. ``from_pretrained`` initializes them new for the task
    ("Some weights ... were newly initialized"); read without importing transformers. A model that
    is no Hugging Face model has none (``[]``); ``tests/test_reference.py`` shows DistilBERT's.
    """
    heads: list[str] = []
    for name, module in model.named_modules():
        prefix = getattr(type(module), "base_model_prefix", None)
        if not isinstance(prefix, str) or not prefix or not hasattr(module, "config"):
            continue
        base = getattr(module, prefix, None)
        if not isinstance(base, nn.Module) or base is module:
            continue
        for child_name, child in module.named_children():
            if child is not base and any(True for _ in child.parameters()):
                heads.append(f"{name}.{child_name}" if name else child_name)
    return heads
